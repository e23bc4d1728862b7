# Embedded demo data (semillie_mm/datasets/demo_data.py): built on first use at
# data_root from photos shipped in scikit-image / scikit-learn, no download.
# 109 paired 128x128 train tiles, 30 unpaired tiles, 12 val pairs (docs/datasets.md).
# Small crops and batches so that a demo training runs on 2 CPU cores.
_base_ = ['./semillie_pipelines.py']

data_root = 'data/demo'
crop_size = 64  # paired random crop (paper: 256)
view_size = 64  # weak / strong views of the unpaired images (paper: 256)

# the shared pipelines (semillie_pipelines.py), the two size-dependent steps
# rebuilt at these sizes
paired_pipeline = [
    dict(t, crop_size=crop_size) if t.type == 'PairedRandomCropWithPad' else t
    for t in _base_.paired_pipeline
]
unpaired_pipeline = [
    dict(t, scale=(view_size, view_size)) if t.type == 'Resize' else t
    for t in _base_.unpaired_pipeline
]
val_pipeline = _base_.val_pipeline

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
