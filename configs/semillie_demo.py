# The embedded demo (README quick start): Semi-LLIE trained on CPU in minutes on a
# small data set built from photos that ship inside scikit-image / scikit-learn.
# Same model and objective as the paper configs, scaled down:
#  - a narrower backbone (C=16, 1 group x 1 block, N=8) and 64x64 crops;
#  - RAM weights cannot ship, so the RAM losses use a small randomly
#    initialised Swin (the log says so);
#  - an iteration-based schedule with a larger learning rate.
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/semillie.py',
    './_base_/schedules/semillie_200e.py',
    './_base_/datasets/semillie_demo.py',
]
work_dir = './work_dirs/semillie_demo'
max_iters = 500

model = dict(
    generator=dict(
        embed_dim=16, num_groups=1, blocks_per_group=1, d_state=8,
        drop_path=0.0),
    ram_encoder=dict(
        _delete_=True,
        type='RAMImageEncoder',
        pretrained=None,  # random weights: the demo cannot ship RAM's
        img_size=64,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        proj_dim=32),
    discriminator=dict(base_channels=16),
    unsup_ramp=dict(length=max_iters // 2, by='iter'))

# iteration-based: the train loader cycles through the data without epoch ends
# (DefaultSampler would log "Reach the end of the dataloader" at every pass)
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters // 2)
optim_wrapper = dict(
    generator=dict(optimizer=dict(lr=1e-3)),
    discriminator=dict(optimizer=dict(lr=2e-4)))
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
    logger=dict(interval=20),
    checkpoint=dict(
        by_epoch=False, interval=max_iters // 2, max_keep_ckpts=2,
        save_best=None))
log_processor = dict(by_epoch=False)
