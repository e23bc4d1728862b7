# Embedded demo data (semillie_mm/datasets/demo_data.py): built on first use at
# data_root from photos shipped in scikit-image / scikit-learn, no download.
# 109 paired 128x128 train tiles, 30 unpaired tiles, 12 val pairs (docs/datasets.md).
# Small crops and batches so that a demo training runs on 2 CPU cores.
data_root = 'data/demo'
crop_size = 64  # paired random crop (paper: 256)
view_size = 64  # weak / strong views of the unpaired images (paper: 256)

paired_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
    dict(type='PairedRandomCropWithPad', crop_size=crop_size,
         keys=['img', 'gt']),
    # horizontal flip x vertical flip x transpose = the 8 flips/rotations
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
]
unpaired_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    # weak view (teacher): resize only
    dict(type='Resize', keys=['img'], output_keys=['weak'],
         scale=(view_size, view_size), keep_ratio=False,
         interpolation='bilinear'),
    # strong view (student): the weak view + photometric augmentations
    dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', keys=['strong'], channel_order='rgb',
             brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25)]),
    dict(type='RandomGrayscaleKeys', keys=['strong'], prob=0.2),
    dict(type='RandomGaussianBlur', keys=['strong'], kernel_sizes=(1, 3, 5),
         sigma=(0.1, 2.0), prob=0.5),
]
val_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
    dict(type='PackInputs'),
]

# Enhancing users' own images (SemiLLIEInferencer, tools/enhance.py, tools/webui.py): no
# ground truth; EXIF orientation, 16-bit, grayscale and alpha are kept (docs/enhance.md).
inference_pipeline = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]

train_dataloader = dict(
    batch_size=4,  # 4 paired + 4 unpaired images per iteration
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='SemiSupervisedDataset',
        paired=dict(
            type='PairedLowLightDataset',
            data_root=data_root,
            input_dir='labeled/input',
            gt_dir='labeled/GT',
            prepare='demo',
            pipeline=paired_pipeline),
        unpaired=dict(
            type='UnpairedLowLightDataset',
            data_root=data_root,
            input_dir='unlabeled/input',
            prepare='demo',
            pipeline=unpaired_pipeline),
        pipeline=[dict(type='PackSemiInputs')]))

val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PairedLowLightDataset',
        data_root=data_root,
        input_dir='val/input',
        gt_dir='val/GT',
        prepare='demo',
        test_mode=True,
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]
test_evaluator = val_evaluator
