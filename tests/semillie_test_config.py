"""A complete, CPU-sized training config and a tiny data set for tool tests."""
import os.path as osp
import textwrap

import cv2
import numpy as np

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def make_dataset(root: str, n_train=4, n_unpaired=4, n_val=2, size=40, seed=0):
    """Write a tiny semi-supervised data set in the authors' layout.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)

    def save(sub, name, img):
        path = osp.join(root, sub)
        import os
        os.makedirs(path, exist_ok=True)
        cv2.imwrite(osp.join(path, name), img)

    for split, n in (('labeled', n_train), ('val', n_val)):
        for i in range(n):
            gt = rng.integers(40, 255, (size, size, 3), dtype=np.uint8)
            save(f'{split}/GT', f'{i:03d}.png', gt)
            save(f'{split}/input', f'{i:03d}.png', (gt * 0.2).astype(np.uint8))
    for i in range(n_unpaired):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        save('unlabeled/input', f'u{i:03d}.png', img)
    return root


def write_config(path: str, data_root: str, max_iters=2, num_workers=0,
                 drop_path=0.0, val_interval=None, ckpt_interval=None,
                 batch_size=2) -> str:
    """Write a config inheriting the project's runtime/model/schedule bases.

    Returns:
        str: ``path``.
    """
    val_interval = val_interval or max_iters
    ckpt_interval = ckpt_interval or max_iters
    text = f'''
    _base_ = [
        '{REPO}/configs/_base_/default_runtime.py',
        '{REPO}/configs/_base_/models/semillie.py',
        '{REPO}/configs/_base_/schedules/semillie_200e.py',
    ]
    data_root = '{data_root}'
    model = dict(
        generator=dict(embed_dim=8, num_groups=1, blocks_per_group=1,
                       d_state=4, drop_path={drop_path}),
        ram_encoder=dict(_delete_=True, type='RAMImageEncoder',
                         pretrained=None, img_size=32, patch_size=4,
                         embed_dim=8, depths=(1, 1, 1, 1),
                         num_heads=(1, 1, 1, 1), window_size=2, proj_dim=8),
        discriminator=dict(base_channels=8, num_conv=2),
        unsup_ramp=dict(length={max_iters}, by='iter'))
    paired_pipeline = [
        dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
        dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
        dict(type='PairedRandomCropWithPad', crop_size=24, keys=['img', 'gt']),
        dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
             direction='horizontal'),
    ]
    unpaired_pipeline = [
        dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
        dict(type='Resize', keys=['img'], output_keys=['weak'],
             scale=(24, 24), keep_ratio=False, interpolation='bilinear'),
        dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
        dict(type='RandomGaussianBlur', keys=['strong'],
             kernel_sizes=(1, 3, 5), sigma=(0.1, 2.0), prob=0.5),
    ]
    train_dataloader = dict(
        batch_size={batch_size},
        num_workers={num_workers},
        persistent_workers={num_workers > 0},
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='SemiSupervisedDataset',
            paired=dict(type='PairedLowLightDataset', data_root=data_root,
                        input_dir='labeled/input', gt_dir='labeled/GT',
                        pipeline=paired_pipeline),
            unpaired=dict(type='UnpairedLowLightDataset', data_root=data_root,
                          input_dir='unlabeled/input',
                          pipeline=unpaired_pipeline),
            pipeline=[dict(type='PackSemiInputs')]))
    val_dataloader = dict(
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='PairedLowLightDataset', data_root=data_root,
            input_dir='val/input', gt_dir='val/GT', test_mode=True,
            pipeline=[
                dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
                dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
                dict(type='PackInputs'),
            ]))
    test_dataloader = val_dataloader
    val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]
    test_evaluator = val_evaluator
    train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                     max_iters={max_iters}, val_interval={val_interval})
    param_scheduler = []
    optim_wrapper = dict(generator=dict(optimizer=dict(lr=1e-3)))
    default_hooks = dict(
        logger=dict(interval=1),
        checkpoint=dict(by_epoch=False, interval={ckpt_interval},
                        max_keep_ckpts=10, save_best=None))
    log_processor = dict(by_epoch=False)
    visualizer = dict(img_keys=['pred_img'])
    '''
    with open(path, 'w', encoding='utf-8') as f:
        f.write(textwrap.dedent(text))
    return path
