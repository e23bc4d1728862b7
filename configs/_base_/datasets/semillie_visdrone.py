# VisDrone-derived low-light set (paper Sec. IV-B, Table II), in the authors'
# layout (docs/datasets.md):
#   data_root/labeled/{input,GT}   5213 pairs (synthetic low light + daytime GT)
#   data_root/unlabeled/input      1258 real night images (no GT)
#   data_root/val/{input,GT}       533 pairs
#   data_root/test/input           657 real night images (no GT)
# Build it with tools/dataset_converters/visdrone_lowlight.py.
data_root = 'data/visdrone_lowlight'
crop_size = 256  # paper: random 256x256 crops of the paired data
view_size = 256  # weak / strong views resized to the input resolution

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
test_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='PackInputs'),
]

# Enhancing users' own images (SemiLLIEInferencer, tools/enhance.py, tools/webui.py): no
# ground truth; EXIF orientation, 16-bit, grayscale and alpha are kept (docs/enhance.md).
inference_pipeline = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]

train_dataloader = dict(
    batch_size=8,  # 8 paired + 8 unpaired = the paper's batch of 16
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='SemiSupervisedDataset',
        paired=dict(
            type='PairedLowLightDataset',
            data_root=data_root,
            input_dir='labeled/input',
            gt_dir='labeled/GT',
            pipeline=paired_pipeline),
        unpaired=dict(
            type='UnpairedLowLightDataset',
            data_root=data_root,
            input_dir='unlabeled/input',
            pipeline=unpaired_pipeline),
        pipeline=[dict(type='PackSemiInputs')]))

val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PairedLowLightDataset',
        data_root=data_root,
        input_dir='val/input',
        gt_dir='val/GT',
        test_mode=True,
        pipeline=val_pipeline))
val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]

# Test on the 657 real night images: no GT, so only no-reference metrics
# (mmagic's NIQE here; the method config may add LOE / FID).
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='UnpairedLowLightDataset',
        data_root=data_root,
        input_dir='test/input',
        test_mode=True,
        pipeline=test_pipeline))
test_evaluator = [dict(type='NIQE', input_order='CHW', convert_to='gray')]
