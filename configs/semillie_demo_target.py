# The demo of tools/demo.sh: the paper-default backbone (SemiLLIENet C=64,
# 2 groups x 2 MSSBs, N=16, as in configs/_base_/models/semillie.py) trained
# with the full method (mean teacher + L1 consistency + semantic contrastive
# loss + RAM perceptual loss + PatchGAN) on the target-domain benchmark
# (docs/semi_supervised.md): SOURCE-degraded pairs, TARGET-degraded unpaired
# images, evaluated on the TARGET val pairs. Sized to train in about 15 min on
# 2 CPU cores (docs/semi_supervised.md, "Demo"); RAM weights cannot ship, so
# the RAM losses use a small randomly initialised Swin (the log says so).
_base_ = ['./ablation/target_full.py']
work_dir = './work_dirs/semillie_demo_target'
max_iters = 300

model = dict(
    generator=dict(
        _delete_=True,
        type='SemiLLIENet',
        embed_dim=64,
        num_groups=2,
        blocks_per_group=2,
        d_state=16,
        expand=2,
        multiscale='parallel',
        drop_path=0.1),
    unsup_ramp=dict(length=max_iters // 2, by='iter'))
train_dataloader = dict(batch_size=4)
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
default_hooks = dict(checkpoint=dict(interval=max_iters // 2))
