# LSRW (paired, real) + EnlightenGAN's unpaired low-light images (paper Sec.
# IV-B). Published layouts (docs/datasets.md):
#   data/LSRW/Training data/{Huawei,Nikon}/{low,high}   5600 training pairs
#   data/LSRW/Eval/{Huawei,Nikon}/{low,high}            50 evaluation pairs
#   data/EnlightenGAN/trainA                            914 low-light images
# (EnlightenGAN's trainB, the 1016 normal-light images, is not used.)
lsrw_root = 'data/LSRW'
lsrw_train = lsrw_root + '/Training data'
lsrw_eval = lsrw_root + '/Eval'
unpaired_root = 'data/EnlightenGAN'
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


# Each LSRW split = its Huawei half + its Nikon half (mmengine's ConcatDataset).
lsrw_train_pairs = dict(
    type='ConcatDataset',
    datasets=[
        dict(type='PairedLowLightDataset', data_root=lsrw_train + '/Huawei',
             input_dir='low', gt_dir='high', pipeline=paired_pipeline),
        dict(type='PairedLowLightDataset', data_root=lsrw_train + '/Nikon',
             input_dir='low', gt_dir='high', pipeline=paired_pipeline),
    ])
lsrw_eval_pairs = dict(
    type='ConcatDataset',
    datasets=[
        dict(type='PairedLowLightDataset', data_root=lsrw_eval + '/Huawei',
             input_dir='low', gt_dir='high', test_mode=True,
             pipeline=val_pipeline),
        dict(type='PairedLowLightDataset', data_root=lsrw_eval + '/Nikon',
             input_dir='low', gt_dir='high', test_mode=True,
             pipeline=val_pipeline),
    ])

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
        paired=lsrw_train_pairs,
        unpaired=dict(
            type='UnpairedLowLightDataset',
            data_root=unpaired_root,
            input_dir='trainA',
            pipeline=unpaired_pipeline),
        pipeline=[dict(type='PackSemiInputs')]))

val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=lsrw_eval_pairs)
test_dataloader = val_dataloader

val_evaluator = [dict(type='PSNR'), dict(type='SSIM')]
test_evaluator = [
    dict(type='PSNR'),
    dict(type='SSIM'),
    dict(type='NIQE', input_order='CHW', convert_to='gray'),
]
