# Copyright (c) semillie-mm contributors. All rights reserved.
"""The ground-truth-free pipeline that enhances users' own images.

``inference_pipeline = [dict(type='LoadImageForEnhancement'),
dict(type='PackEnhancementInputs')]`` in the configs; used by
:class:`~semillie_mm.apis.SemiLLIEInferencer`.
"""
from semillie_mm.apis.image_io import image_to_tensor, read_image

import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform


@TRANSFORMS.register_module()
class LoadImageForEnhancement(BaseTransform):
    """Load the image to enhance, from a file or an array.

    Required keys: ``img_path`` (a file, read with
    :func:`~semillie_mm.apis.image_io.read_image`: EXIF orientation applied,
    bit depth and alpha kept) or ``img`` (an RGB(A)/gray array, used as is).

    Added keys: ``img``, ``img_path`` (None for arrays), ``ori_shape``.
    """

    def transform(self, results: dict) -> dict:
        """Load the image.

        Args:
            results (dict): With ``img_path`` or ``img``.

        Returns:
            dict: ``results`` with ``img``, ``img_path`` and ``ori_shape``.
        """
        if results.get('img') is None:
            results['img'] = read_image(results['img_path'])
        else:
            results['img'] = np.asarray(results['img'])
            results.setdefault('img_path', None)
        results['ori_shape'] = tuple(results['img'].shape)
        return results


@TRANSFORMS.register_module()
class PackEnhancementInputs(BaseTransform):
    """Pack an image for the enhancement network.

    Required keys: ``img`` (RGB(A)/gray, uint8/uint16/float in [0, 1]).

    Returns a dict with ``inputs`` (``(3, H, W)`` float32 RGB in [0, 1]:
    gray replicated, alpha left out), ``layout`` (what
    :func:`~semillie_mm.apis.image_io.tensor_to_image` needs to give the
    output the input's shape, dtype and alpha), ``img`` and ``metainfo``
    (``img_path``, ``ori_shape``, ``ori_dtype``).
    """

    def transform(self, results: dict) -> dict:
        """Pack.

        Args:
            results (dict): With ``img`` (and ``img_path``, ``ori_shape``).

        Returns:
            dict: ``inputs``, ``layout``, ``img`` and ``metainfo``.
        """
        x, layout = image_to_tensor(results['img'])
        meta = dict(img_path=results.get('img_path'),
                    ori_shape=tuple(results['img'].shape),
                    ori_dtype=str(np.asarray(results['img']).dtype))
        return dict(inputs=x, layout=layout, img=results['img'],
                    metainfo=meta)
