# Table III ablation, row 1: supervised only (L1 + gradient loss on the
# SOURCE pairs). The unpaired branch is off (unsup_weight=0: its forward
# passes are skipped); the teacher is still the EMA of the student and is
# what validation uses, as in every row.
_base_ = ['./target_full.py']
work_dir = './work_dirs/ablation/target_sup'
model = dict(
    unsup_weight=0.0,
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
