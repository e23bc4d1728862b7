# The data pipelines shared by the dataset configs (semillie_demo.py,
# semillie_lsrw.py, semillie_visdrone.py), which inherit this file. The sizes
# are the paper's; a config with other sizes sets crop_size / view_size and
# rebuilds the two steps that use them (see semillie_demo.py).
crop_size = 256  # paper: random 256x256 crops of the paired data
view_size = 256  # weak / strong views resized to the input resolution

paired_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
    dict(type='PairedRandomCropWithPad', crop_size=crop_size,
         keys=['img', 'gt']),
    # horizontal flip x vertical flip x transpose = the 8 flips/rotations
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5,
         direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
]
unpaired_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    # weak view (teacher): resize only
    dict(type='Resize', keys=['img'], output_keys=['weak'],
         scale=(view_size, view_size), keep_ratio=False,
         interpolation='bilinear'),
    # strong view (student): the weak view + photometric augmentations
    dict(type='CopyValues', src_keys=['weak'], dst_keys=['strong']),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', keys=['strong'], channel_order='rgb',
             brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25)]),
    dict(type='RandomGrayscaleKeys', keys=['strong'], prob=0.2),
    dict(type='RandomGaussianBlur', keys=['strong'], kernel_sizes=(1, 3, 5),
         sigma=(0.1, 2.0), prob=0.5),
]
val_pipeline = [
    dict(type='LoadImageFromFile', key='img', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
    dict(type='PackInputs'),
]

# Enhancing users' own images (SemiLLIEInferencer, tools/enhance.py, tools/webui.py): no
# ground truth; EXIF orientation, 16-bit, grayscale and alpha are kept (docs/enhance.md).
inference_pipeline = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]
