# Table III ablation, row 4: + RAM perceptual loss on the paired data
# (on the ImageNet EfficientNet-Lite0 that stands in for RAM, see
# target_full.py). No GAN.
_base_ = ['./target_full.py']
work_dir = './work_dirs/ablation/target_mt_scl_rp'
model = dict(discriminator=None, gan_loss=None)
optim_wrapper = dict(
    _delete_=True,
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamP', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)))
