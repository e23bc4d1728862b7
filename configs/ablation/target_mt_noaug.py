# Diagnostic: + mean teacher (L1 consistency) with the student's view equal
# to the teacher's (no colour jitter, grayscale or blur): isolates what the
# strong photometric augmentations contribute.
_base_ = ['./target_mt.py']
work_dir = './work_dirs/ablation/target_mt_noaug'
view_size = 64
train_dataloader = dict(
    dataset=dict(
        unpaired=dict(pipeline=[
            dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
            dict(type='Resize', keys=['img'], output_keys=['weak'],
                 scale=(view_size, view_size), keep_ratio=False,
                 interpolation='bilinear'),
            dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
        ])))
