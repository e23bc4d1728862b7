# VisDrone-derived low-light set (paper Sec. IV-B, Table II), in the authors'
# layout (docs/datasets.md):
#   data_root/labeled/{input,GT}   5213 pairs (synthetic low light + daytime GT)
#   data_root/unlabeled/input      1258 real night images (no GT)
#   data_root/val/{input,GT}       533 pairs
#   data_root/test/input           657 real night images (no GT)
# Build it with tools/dataset_converters/visdrone_lowlight.py.
_base_ = ['./semillie_pipelines.py']

data_root = 'data/visdrone_lowlight'

# the shared pipelines (semillie_pipelines.py)
paired_pipeline = _base_.paired_pipeline
unpaired_pipeline = _base_.unpaired_pipeline
val_pipeline = _base_.val_pipeline

test_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='PackInputs'),
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
