# Table III ablation on the target-domain benchmark (docs/semi_supervised.md):
# row 5, the full method (mean teacher + L1 consistency + semantic contrastive
# loss + RAM perceptual loss + PatchGAN), demo-sized so that 5 rows x 3 seeds
# train on 2 CPU cores. The other rows inherit from this file and switch parts
# off; benchmarks/ablation.py runs them all (iterations set there).
#  - data: SOURCE-degraded pairs, TARGET-degraded unpaired images, TARGET val;
#  - model: the demo's (C=16, 1 group x 1 MSSB, N=8, 64x64 crops and views);
#  - RAM: a small randomly initialised Swin (real RAM weights cannot ship).
_base_ = ['../semillie_demo.py']
work_dir = './work_dirs/ablation/target_full'
data_root = 'data/target_domain'
max_iters = 300

model = dict(unsup_ramp=dict(length=max_iters // 2, by='iter'))
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        paired=dict(data_root=data_root, prepare='target_domain'),
        unpaired=dict(data_root=data_root, prepare='target_domain')))
val_dataloader = dict(
    num_workers=0,
    dataset=dict(data_root=data_root, prepare='target_domain'))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0,
        end_factor=0.0,
        by_epoch=False,
        begin=max_iters // 2,
        end=max_iters),
]
default_hooks = dict(
    checkpoint=dict(interval=max_iters // 2, max_keep_ckpts=2),
    logger=dict(interval=25))
