"""Tests of the paired, unpaired and semi-supervised datasets."""
import os
import os.path as osp

import numpy as np
import pytest
import torch

PAIRED_PIPELINE = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
    dict(type='PairedRandomCropWithPad', crop_size=24, keys=['img', 'gt']),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='horizontal'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
]
UNPAIRED_PIPELINE = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='Resize', keys=['img'], output_keys=['weak'], scale=(16, 16),
         keep_ratio=False),
    dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', keys=['strong'], channel_order='rgb',
             brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25)]),
    dict(type='RandomGrayscaleKeys', keys=['strong'], prob=0.2),
    dict(type='RandomGaussianBlur', keys=['strong'], prob=0.5),
]


def _build(cfg):
    from mmagic.registry import DATASETS
    return DATASETS.build(cfg)


def test_paired_matching_with_extension_mapping(tmp_path, pair_factory):
    make_pairs = pair_factory
    root = str(tmp_path / 'pairs')
    gts = make_pairs(root, ['b', 'a'], input_ext='.png', gt_ext='.bmp')
    make_pairs(root, ['sub/c'], seed=1)
    flat = _build(dict(type='PairedLowLightDataset', data_root=root))
    assert len(flat) == 2
    info = flat.get_data_info(0)
    assert info['key'] == 'a'
    assert info['img_path'] == osp.join(root, 'input', 'a.png')
    assert info['gt_path'] == osp.join(root, 'GT', 'a.bmp')
    rec = _build(dict(type='PairedLowLightDataset', data_root=root,
                      recursive=True))
    assert [rec.get_data_info(i)['key'] for i in range(3)] == [
        'a', 'b', 'sub/c'
    ]
    # with mmagic's loading + PackInputs (the val/test pipeline)
    val = _build(dict(type='PairedLowLightDataset', data_root=root,
                      test_mode=True, pipeline=[
                          dict(type='LoadImageFromFile', key='img',
                               channel_order='rgb'),
                          dict(type='LoadImageFromFile', key='gt',
                               channel_order='rgb'),
                          dict(type='PackInputs')]))
    item = val[1]
    assert item['data_samples'].img_path.endswith('b.png')
    np.testing.assert_array_equal(
        item['data_samples'].gt_img.permute(1, 2, 0).numpy(), gts['b'])
    np.testing.assert_array_equal(
        item['inputs'].permute(1, 2, 0).numpy(), gts['b'] // 4)


def test_paired_missing_partner_is_an_error(tmp_path, pair_factory):
    make_pairs = pair_factory
    root = str(tmp_path / 'pairs')
    make_pairs(root, ['a', 'b'])
    os.remove(osp.join(root, 'GT', 'b.png'))
    with pytest.raises(FileNotFoundError, match=r'input/b\.png'):
        _build(dict(type='PairedLowLightDataset', data_root=root))
    make_pairs(root, ['b'])
    os.remove(osp.join(root, 'input', 'a.png'))
    with pytest.raises(FileNotFoundError, match=r'GT/a\.png'):
        _build(dict(type='PairedLowLightDataset', data_root=root))
    with pytest.raises(FileNotFoundError, match='nowhere'):
        _build(dict(type='PairedLowLightDataset',
                    data_root=str(tmp_path / 'nowhere')))


def test_paired_duplicate_stem_is_an_error(tmp_path, pair_factory,
                                           image_writer):
    make_pairs, write_rgb = pair_factory, image_writer
    root = str(tmp_path / 'pairs')
    make_pairs(root, ['a'])
    write_rgb(osp.join(root, 'input', 'a.bmp'), np.zeros((4, 4, 3),
                                                          np.uint8))
    with pytest.raises(ValueError, match='share the name'):
        _build(dict(type='PairedLowLightDataset', data_root=root))


def test_unpaired_recursive(tmp_path, image_writer):
    write_rgb = image_writer
    root = str(tmp_path / 'night')
    for rel in ['x.png', 'deep/y.png', 'deep/er/z.bmp']:
        write_rgb(osp.join(root, 'imgs', rel), np.zeros((8, 8, 3), np.uint8))
    with open(osp.join(root, 'imgs', 'notes.txt'), 'w') as f:
        f.write('not an image')
    ds = _build(dict(type='UnpairedLowLightDataset', data_root=root,
                     input_dir='imgs'))
    assert [ds.get_data_info(i)['key'] for i in range(len(ds))] == [
        'deep/er/z', 'deep/y', 'x'
    ]
    assert ds.get_data_info(2)['img_path'] == osp.join(root, 'imgs', 'x.png')
    assert 'gt_path' not in ds.get_data_info(0)
    flat = _build(dict(type='UnpairedLowLightDataset', data_root=root,
                       input_dir='imgs', recursive=False))
    assert len(flat) == 1


def _semi_cfg(paired_root, unpaired_root):
    return dict(
        type='SemiSupervisedDataset',
        paired=dict(type='PairedLowLightDataset', data_root=paired_root,
                    pipeline=PAIRED_PIPELINE),
        unpaired=dict(type='UnpairedLowLightDataset',
                      data_root=unpaired_root, pipeline=UNPAIRED_PIPELINE),
        pipeline=[dict(type='PackSemiInputs')])


def _make_unpaired(write_rgb, root, n):
    for i in range(n):
        img = np.full((20 + i, 30, 3), 10 * i, np.uint8)
        write_rgb(osp.join(root, f'u{i}.png'), img)


def test_semi_supervised_length_indexing_and_format(tmp_path, pair_factory,
                                                    image_writer):
    make_pairs = pair_factory
    paired_root, unpaired_root = str(tmp_path / 'p'), str(tmp_path / 'u')
    make_pairs(paired_root, ['p0', 'p1', 'p2'])
    _make_unpaired(image_writer, unpaired_root, 5)
    ds = _build(_semi_cfg(paired_root, unpaired_root))
    assert len(ds) == 5
    assert ds.metainfo['num_paired'] == 3
    assert ds.metainfo['num_unpaired'] == 5
    for i in range(len(ds)):
        item = ds[i]
        meta = item['data_samples'].metainfo
        assert meta == dict(
            img_path=osp.join(paired_root, 'input', f'p{i % 3}.png'),
            gt_path=osp.join(paired_root, 'GT', f'p{i % 3}.png'),
            unpaired_path=osp.join(unpaired_root, f'u{i % 5}.png'))
        inputs = item['inputs']
        assert set(inputs) == {'paired', 'unpaired_weak', 'unpaired_strong'}
        assert inputs['paired'].shape == (3, 24, 24)
        assert inputs['unpaired_weak'].shape == (3, 16, 16)
        assert inputs['unpaired_strong'].shape == (3, 16, 16)
        for t in list(inputs.values()) + [item['data_samples'].gt_img]:
            assert t.dtype == torch.float32
            assert 0 <= t.min() and t.max() <= 255
        gt = item['data_samples'].gt_img
        assert gt.shape == (3, 24, 24)
        # input is gt // 4 pixel by pixel: the crop/flip hit both alike
        torch.testing.assert_close(inputs['paired'], torch.floor(gt / 4))
        # the weak view of u_k is the constant 10 k
        assert torch.all(inputs['unpaired_weak'] == 10 * (i % 5))
    with pytest.raises(IndexError):
        ds[5]
    # more paired than unpaired: length follows the paired part
    small_u = str(tmp_path / 'u2')
    _make_unpaired(image_writer, small_u, 2)
    ds2 = _build(_semi_cfg(paired_root, small_u))
    assert len(ds2) == 3
    assert ds2[2]['data_samples'].unpaired_path.endswith('u0.png')


def test_semi_supervised_pipeline_overrides_and_collate(
        tmp_path, pair_factory, image_writer):
    make_pairs = pair_factory
    from mmengine.dataset import pseudo_collate
    paired_root, unpaired_root = str(tmp_path / 'p'), str(tmp_path / 'u')
    make_pairs(paired_root, ['p0', 'p1'])
    _make_unpaired(image_writer, unpaired_root, 2)
    cfg = _semi_cfg(paired_root, unpaired_root)
    cfg['paired_pipeline'] = PAIRED_PIPELINE[:2] + [
        dict(type='PairedRandomCropWithPad', crop_size=8)
    ]
    ds = _build(cfg)
    assert ds[0]['inputs']['paired'].shape == (3, 8, 8)
    batch = pseudo_collate([ds[0], ds[1]])
    assert batch['inputs']['paired'][1].shape == (3, 8, 8)
    assert len(batch['data_samples']) == 2


def test_semi_supervised_reproducible_under_mmengine_seeding(
        tmp_path, pair_factory, image_writer):
    make_pairs = pair_factory
    from mmengine.runner import set_random_seed
    paired_root, unpaired_root = str(tmp_path / 'p'), str(tmp_path / 'u')
    make_pairs(paired_root, ['p0', 'p1'], size=(40, 48))
    _make_unpaired(image_writer, unpaired_root, 3)
    ds = _build(_semi_cfg(paired_root, unpaired_root))
    set_random_seed(11)
    a = [ds[i] for i in range(3)]
    set_random_seed(11)
    b = [ds[i] for i in range(3)]
    for x, y in zip(a, b):
        for k in x['inputs']:
            torch.testing.assert_close(x['inputs'][k], y['inputs'][k])
