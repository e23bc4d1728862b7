# Paper schedule: AdamP lr 2e-4 for 100 epochs, then linearly to 0 over 100 epochs.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200, val_interval=5)
# mmagic's loops: its metrics (PSNR, SSIM, NIQE, ...) need mmagic's evaluator
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamP', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4)),
    discriminator=dict(
        type='OptimWrapper',
        optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0,
        end_factor=0.0,
        by_epoch=True,
        begin=100,
        end=200,
        convert_to_iter_based=True),
]
