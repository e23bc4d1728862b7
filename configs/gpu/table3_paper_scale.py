# Overlay of the Table III rows (configs/ablation/target_*.py) for the GPU run of
# benchmarks/gpu_check.py (issue 21): `benchmarks/ablation.py --overlay` merges `overlay`
# into each row's config; a part a row switched off (None) stays off.
#  - the paper-default backbone (configs/_base_/models/semillie.py: C=64, 2 groups x 2 MSSBs,
#    N=16) and PatchGAN (base 64), as the paper trains them;
#  - batch 8 paired + 8 unpaired images, as the paper;
#  - 128x128 crops and views, not the paper's 256: the target-domain benchmark is made of
#    128x128 tiles (semillie_mm/datasets/target_domain_data.py, fixed before any result), and
#    a 256 crop of a 128 tile would be three quarters padding. The TARGET val set is the same
#    as the CPU table's, so the two tables can be compared.
# Everything else (losses, the ImageNet semantic encoder of the contrastive and perceptual
# rows, here at its 224x224 training size, learning rates, schedule shape) is the row's own.
description = ('SemiLLIENet paper default (C=64, 2 groups x 2 MSSBs, N=16), PatchGAN base 64, '
               '128x128 crops and views (the benchmark tiles), batch 8 paired + 8 unpaired, '
               'ImageNet encoder at 224x224')
crop_size = 128
view_size = 128

overlay = dict(
    model=dict(
        generator=dict(
            embed_dim=64,
            num_groups=2,
            blocks_per_group=2,
            d_state=16,
            expand=2,
            multiscale='parallel',
            drop_path=0.1),
        discriminator=dict(base_channels=64),
        # the ImageNet encoder at the size it was trained at (the CPU rows use
        # 128 for time); rows without the semantic losses have none
        ram_encoder=dict(img_size=224)),
    train_dataloader=dict(
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
        dataset=dict(
            paired=dict(pipeline=[
                dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
                dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
                dict(type='PairedRandomCropWithPad', crop_size=crop_size,
                     keys=['img', 'gt']),
                dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
                     direction='horizontal'),
                dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
                     direction='vertical'),
                dict(type='RandomTransposeHW', keys=['img', 'gt'],
                     transpose_ratio=0.5),
            ]),
            unpaired=dict(pipeline=[
                dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
                dict(type='Resize', keys=['img'], output_keys=['weak'],
                     scale=(view_size, view_size), keep_ratio=False,
                     interpolation='bilinear'),
                dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
                dict(type='RandomApply', prob=0.8, transforms=[
                    dict(type='ColorJitter', keys=['strong'],
                         channel_order='rgb', brightness=0.5, contrast=0.5,
                         saturation=0.5, hue=0.25)]),
                dict(type='RandomGrayscaleKeys', keys=['strong'], prob=0.2),
                dict(type='RandomGaussianBlur', keys=['strong'],
                     kernel_sizes=(1, 3, 5), sigma=(0.1, 2.0), prob=0.5),
            ]))))
