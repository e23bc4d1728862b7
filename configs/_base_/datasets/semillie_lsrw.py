# LSRW (paired, real) + EnlightenGAN's unpaired low-light images (paper Sec.
# IV-B). Published layouts (docs/datasets.md):
#   data/LSRW/Training data/{Huawei,Nikon}/{low,high}   5600 training pairs
#   data/LSRW/Eval/{Huawei,Nikon}/{low,high}            50 evaluation pairs
#   data/EnlightenGAN/trainA                            914 low-light images
# (EnlightenGAN's trainB, the 1016 normal-light images, is not used.)
_base_ = ['./semillie_pipelines.py']

lsrw_root = 'data/LSRW'
lsrw_train = lsrw_root + '/Training data'
lsrw_eval = lsrw_root + '/Eval'
unpaired_root = 'data/EnlightenGAN'

# the shared pipelines (semillie_pipelines.py)
paired_pipeline = _base_.paired_pipeline
unpaired_pipeline = _base_.unpaired_pipeline
val_pipeline = _base_.val_pipeline

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
