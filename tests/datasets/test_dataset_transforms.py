"""Tests of the paired crop/flip pipeline, the weak/strong views, the strong
view's grayscale / blur transforms and PackSemiInputs."""
import random

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose

CROP_FLIP = [
    dict(type='PairedRandomCropWithPad', crop_size=24, keys=['img', 'gt']),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
]


def _unpaired_pipeline(size=32):
    return [
        dict(type='Resize', keys=['img'], output_keys=['weak'],
             scale=(size, size), keep_ratio=False, interpolation='bilinear'),
        dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
        dict(type='RandomApply', prob=0.8, transforms=[
            dict(type='ColorJitter', keys=['strong'], channel_order='rgb',
                 brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25)]),
        dict(type='RandomGrayscaleKeys', keys=['strong'], prob=0.2),
        dict(type='RandomGaussianBlur', keys=['strong'],
             kernel_sizes=(1, 3, 5), sigma=(0.1, 2.0), prob=0.5),
    ]


def _seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _coord_image(h, w):
    """gt[y, x] = (y, x, y + x): every pixel says where it comes from."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx, (yy + xx) % 256], -1).astype(np.uint8)


def _dihedral(a):
    """The 8 flips/rotations of a HxWxC array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, r[:, ::-1]]
    return out


def test_paired_crop_flip_same_transform_on_img_and_gt():
    gt = _coord_image(60, 70)
    img = 255 - gt  # a pixel-wise partner of gt
    pipeline = Compose(CROP_FLIP)
    seen = set()
    for seed in range(64):
        _seed_all(seed)
        out = pipeline(dict(img=img.copy(), gt=gt.copy()))
        assert out['img'].shape == out['gt'].shape == (24, 24, 3)
        # same window and same flip/rotation on both
        np.testing.assert_array_equal(out['img'], 255 - out['gt'])
        # gt is one of the 8 transforms of a contiguous 24x24 window
        top, left = out['gt'][..., 0].min(), out['gt'][..., 1].min()
        window = gt[top:top + 24, left:left + 24]
        matches = [
            i for i, t in enumerate(_dihedral(window))
            if np.array_equal(t, out['gt'])
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))  # all 8 group elements occur


def test_paired_crop_reproducible_under_seed():
    gt = _coord_image(60, 70)
    pipeline = Compose(CROP_FLIP)
    _seed_all(3)
    a = pipeline(dict(img=gt.copy(), gt=gt.copy()))
    _seed_all(3)
    b = pipeline(dict(img=gt.copy(), gt=gt.copy()))
    np.testing.assert_array_equal(a['gt'], b['gt'])


def test_crop_pads_small_images_or_raises():
    from mmagic.registry import TRANSFORMS
    gt = _coord_image(20, 30)
    crop = TRANSFORMS.build(dict(type='PairedRandomCropWithPad',
                                 crop_size=(32, 40)))
    out = crop(dict(img=255 - gt, gt=gt.copy()))
    assert out['gt'].shape == (32, 40, 3)
    np.testing.assert_array_equal(out['img'], 255 - out['gt'])
    # mirrored padding: rows 20..31 repeat rows 19..8
    np.testing.assert_array_equal(out['gt'][20:32, :30], gt[19:7:-1])
    strict = TRANSFORMS.build(dict(type='PairedRandomCropWithPad',
                                   crop_size=32, pad_mode='error'))
    with pytest.raises(ValueError, match='small_input.png'):
        strict(dict(img=gt.copy(), gt=gt.copy(),
                    img_path='/x/small_input.png', gt_path='/y/gt.png'))
    with pytest.raises(ValueError, match='differ in size'):
        crop(dict(img=gt[:10], gt=gt))


def test_weak_view_deterministic_strong_view_random_but_seeded():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    pipeline = Compose(_unpaired_pipeline(32))
    weak_ref = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR)
    strongs = []
    for seed in range(6):
        _seed_all(seed)
        out = pipeline(dict(img=img.copy()))
        np.testing.assert_array_equal(out['weak'], weak_ref)
        assert out['strong'].shape == (32, 32, 3)
        strongs.append(out['strong'])
        _seed_all(seed)
        again = pipeline(dict(img=img.copy()))
        np.testing.assert_array_equal(again['strong'], out['strong'])
    differs = [not np.array_equal(s, weak_ref) for s in strongs]
    assert sum(differs) >= 4
    assert len({s.tobytes() for s in strongs}) >= 4


def test_random_grayscale_keys_matches_pil():
    from mmagic.registry import TRANSFORMS
    from PIL import Image
    img = np.random.default_rng(1).integers(0, 256, (16, 20, 3),
                                            dtype=np.uint8)
    t = TRANSFORMS.build(dict(type='RandomGrayscaleKeys', keys=['a'],
                              prob=1.0))
    out = t(dict(a=img.copy()))
    assert out['grayscale'] and out['a'].shape == img.shape
    ref = np.asarray(Image.fromarray(img).convert('L')).astype(int)
    for c in range(3):
        assert np.abs(out['a'][..., c].astype(int) - ref).max() <= 1
    bgr = TRANSFORMS.build(dict(type='RandomGrayscaleKeys', keys=['a'],
                                prob=1.0, channel_order='bgr'))
    np.testing.assert_array_equal(
        bgr(dict(a=img[..., ::-1].copy()))['a'], out['a'])
    never = TRANSFORMS.build(dict(type='RandomGrayscaleKeys', keys=['a'],
                                  prob=0.0))
    np.testing.assert_array_equal(never(dict(a=img.copy()))['a'], img)


def test_random_gaussian_blur_matches_torchvision():
    import torchvision.transforms.functional as TF
    from mmagic.registry import TRANSFORMS
    img = np.random.default_rng(2).integers(0, 256, (24, 30, 3),
                                            dtype=np.uint8)
    t = TRANSFORMS.build(dict(type='RandomGaussianBlur', keys=['a'],
                              kernel_sizes=(5, ), sigma=(1.5, 1.5),
                              prob=1.0))
    out = t(dict(a=img.copy()))
    assert out['blur_info'] == (5, 1.5)
    ref = TF.gaussian_blur(
        torch.from_numpy(img).permute(2, 0, 1).float(), [5, 5], [1.5, 1.5])
    ref = ref.permute(1, 2, 0).numpy()
    assert np.abs(out['a'].astype(np.float64) - ref).max() <= 1.0
    ident = TRANSFORMS.build(dict(type='RandomGaussianBlur', keys=['a'],
                                  kernel_sizes=(1, ), prob=1.0))
    np.testing.assert_array_equal(ident(dict(a=img.copy()))['a'], img)


def test_pack_semi_inputs_format():
    from mmagic.registry import TRANSFORMS
    from mmagic.structures import DataSample
    rng = np.random.default_rng(0)
    results = dict(
        img=rng.integers(0, 256, (24, 20, 3), dtype=np.uint8),
        gt=rng.integers(0, 256, (24, 20, 3), dtype=np.uint8),
        unpaired_weak=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        unpaired_strong=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        img_path='a/in.png', gt_path='a/gt.png', unpaired_path='b/u.png',
        key='in')
    packed = TRANSFORMS.build(dict(type='PackSemiInputs'))(dict(results))
    assert set(packed) == {'inputs', 'data_samples'}
    inputs = packed['inputs']
    assert set(inputs) == {'paired', 'unpaired_weak', 'unpaired_strong'}
    for name, src in [('paired', 'img'), ('unpaired_weak', 'unpaired_weak'),
                      ('unpaired_strong', 'unpaired_strong')]:
        assert inputs[name].dtype == torch.float32
        torch.testing.assert_close(
            inputs[name],
            torch.from_numpy(results[src]).permute(2, 0, 1).float())
    ds = packed['data_samples']
    assert isinstance(ds, DataSample)
    assert ds.gt_img.dtype == torch.float32 and ds.gt_img.shape == (3, 24,
                                                                     20)
    torch.testing.assert_close(
        ds.gt_img, torch.from_numpy(results['gt']).permute(2, 0, 1).float())
    assert ds.metainfo == dict(img_path='a/in.png', gt_path='a/gt.png',
                               unpaired_path='b/u.png')
    with pytest.raises(KeyError, match='unpaired_strong'):
        TRANSFORMS.build(dict(type='PackSemiInputs'))(
            {k: v for k, v in results.items() if k != 'unpaired_strong'})


def test_registered_names_do_not_shadow_other_registries():
    import mmengine.registry as mme
    from mmagic.registry import DATASETS, TRANSFORMS
    for registry, root, names in [
        (TRANSFORMS, mme.TRANSFORMS, [
            'LowLightSynthesis', 'PairedRandomCropWithPad',
            'RandomGaussianBlur', 'RandomGrayscaleKeys', 'PackSemiInputs'
        ]),
        (DATASETS, mme.DATASETS, [
            'PairedLowLightDataset', 'UnpairedLowLightDataset',
            'SemiSupervisedDataset'
        ]),
    ]:
        for name in names:
            cls = registry.get(name)
            assert cls is not None and cls.__module__.startswith(
                'semillie_mm.'), name
            assert name not in root.module_dict, name
