# Table III ablation, row 3: + semantic contrastive loss (RAM embeddings;
# here those of the ImageNet EfficientNet-Lite0 that stands in for RAM, see
# target_full.py; target_mt_scl_random.py is the random-Swin control).
_base_ = ['./target_full.py']
work_dir = './work_dirs/ablation/target_mt_scl'
model = dict(perceptual_loss=None, discriminator=None, gan_loss=None)
optim_wrapper = dict(
    _delete_=True,
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamP', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)))
