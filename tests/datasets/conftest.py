"""Fixtures of the dataset tests: mmagic's scope, small image folders."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest


@pytest.fixture(autouse=True, scope='session')
def mmagic_scope():
    """Register the plugin and make ``mmagic`` the default registry scope."""
    import semillie_mm  # noqa: F401

    from mmengine.registry import init_default_scope
    init_default_scope('mmagic')


def write_rgb(path, img):
    """Write an RGB uint8 array (any extension cv2 knows)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.ascontiguousarray(img[..., ::-1]))


def make_pairs(root, names, size=(40, 48), seed=0, input_ext='.png',
               gt_ext='.png'):
    """Write ``root/input/<name><input_ext>`` and ``root/GT/<name><gt_ext>``.

    The input is ``gt // 4`` so that a pair can be recognised pixel by pixel.

    Returns:
        dict: name -> gt array.
    """
    rng = np.random.default_rng(seed)
    gts = {}
    for name in names:
        gt = rng.integers(0, 256, size + (3, ), dtype=np.uint8)
        write_rgb(osp.join(root, 'input', name + input_ext), gt // 4)
        write_rgb(osp.join(root, 'GT', name + gt_ext), gt)
        gts[name] = gt
    return gts


@pytest.fixture
def image_writer():
    """The :func:`write_rgb` function."""
    return write_rgb


@pytest.fixture
def pair_factory():
    """The :func:`make_pairs` function."""
    return make_pairs
