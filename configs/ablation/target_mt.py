# Table III ablation, row 2: + mean teacher with the L1 consistency loss
# (student on the strong view vs. teacher on the weak view of the TARGET
# unpaired images), lambda1(t) ramped to 0.2.
_base_ = ['./target_full.py']
work_dir = './work_dirs/ablation/target_mt'
model = dict(
    ram_encoder=None,
    contrastive_loss=None,
    perceptual_loss=None,
    discriminator=None,
    gan_loss=None)
optim_wrapper = dict(
    _delete_=True,
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamP', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)))
