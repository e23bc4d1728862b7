_paired_source = dict(
    data_root='data/target_domain',
    gt_dir='labeled/GT',
    input_dir='labeled/input',
    pipeline=[
        dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
        dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
        dict(
            crop_size=64, keys=[
                'img',
                'gt',
            ], type='PairedRandomCropWithPad'),
        dict(
            direction='horizontal',
            flip_ratio=0.5,
            keys=[
                'img',
                'gt',
            ],
            type='Flip'),
        dict(
            direction='vertical',
            flip_ratio=0.5,
            keys=[
                'img',
                'gt',
            ],
            type='Flip'),
        dict(
            keys=[
                'img',
                'gt',
            ],
            transpose_ratio=0.5,
            type='RandomTransposeHW'),
    ],
    prepare='target_domain',
    type='PairedLowLightDataset')
_paired_target = dict(
    data_root='data/target_domain',
    gt_dir='unlabeled_oracle/GT',
    input_dir='unlabeled/input',
    pipeline=[
        dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
        dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
        dict(
            crop_size=64, keys=[
                'img',
                'gt',
            ], type='PairedRandomCropWithPad'),
        dict(
            direction='horizontal',
            flip_ratio=0.5,
            keys=[
                'img',
                'gt',
            ],
            type='Flip'),
        dict(
            direction='vertical',
            flip_ratio=0.5,
            keys=[
                'img',
                'gt',
            ],
            type='Flip'),
        dict(
            keys=[
                'img',
                'gt',
            ],
            transpose_ratio=0.5,
            type='RandomTransposeHW'),
    ],
    prepare='target_domain',
    type='PairedLowLightDataset')
crop_size = 64
custom_hooks = [
    dict(type='MeanTeacherHook'),
    dict(type='RNGStateHook'),
    dict(type='CPUThreadsHook'),
    dict(type='CPUMemoryCacheHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'semillie_mm',
    ])
data_root = 'data/target_domain'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False,
        interval=500,
        max_keep_ckpts=3,
        rule='greater',
        save_best=None,
        save_optimizer=True,
        type='CheckpointHook'),
    logger=dict(interval=100, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'))
default_scope = 'mmagic'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
imagenet_size = 128
inference_pipeline = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=False, type='LogProcessor', window_size=50)
max_iters = 3500
model = dict(
    consistency_loss=dict(loss_weight=1.0, type='L1Loss'),
    contrastive_loss=None,
    data_preprocessor=dict(
        mean=[
            0.0,
            0.0,
            0.0,
        ],
        std=[
            255.0,
            255.0,
            255.0,
        ],
        type='DataPreprocessor'),
    discriminator=None,
    gan_loss=None,
    generator=dict(
        blocks_per_group=2,
        d_state=8,
        drop_path=0.0,
        embed_dim=32,
        expand=2,
        multiscale='parallel',
        num_groups=1,
        type='SemiLLIENet'),
    gradient_loss=dict(loss_weight=0.1, type='GradientMagnitudeLoss'),
    perceptual_loss=None,
    pixel_loss=dict(loss_weight=1.0, reduction='mean', type='L1Loss'),
    ram_encoder=None,
    teacher=dict(gamma=1, momentum=0.004, type='MomentumAnnealingEMA'),
    test_cfg=dict(use_teacher=True),
    type='SemiLLIE',
    unsup_ramp=dict(by='iter', length=150),
    unsup_weight=0.0)
model_wrapper_cfg = dict(
    broadcast_buffers=False,
    find_unused_parameters=False,
    type='DeviceAwareSeparateDDP')
optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        optimizer=dict(
            betas=(
                0.9,
                0.999,
            ), lr=0.001, type='AdamP', weight_decay=0.0001),
        type='OptimWrapper'))
paired_pipeline = [
    dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
    dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
    dict(crop_size=64, keys=[
        'img',
        'gt',
    ], type='PairedRandomCropWithPad'),
    dict(
        direction='horizontal',
        flip_ratio=0.5,
        keys=[
            'img',
            'gt',
        ],
        type='Flip'),
    dict(
        direction='vertical',
        flip_ratio=0.5,
        keys=[
            'img',
            'gt',
        ],
        type='Flip'),
    dict(keys=[
        'img',
        'gt',
    ], transpose_ratio=0.5, type='RandomTransposeHW'),
]
param_scheduler = [
    dict(
        begin=1750,
        by_epoch=False,
        end=3500,
        end_factor=0.0,
        start_factor=1.0,
        type='LinearLR'),
]
randomness = dict(deterministic=False, seed=0)
resume = False
test_cfg = dict(type='MultiTestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_root='data/target_domain',
        gt_dir='val/GT',
        input_dir='val/input',
        pipeline=[
            dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
            dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
            dict(type='PackInputs'),
        ],
        prepare='target_domain',
        test_mode=True,
        type='PairedLowLightDataset'),
    drop_last=False,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = [
    dict(type='PSNR'),
    dict(type='SSIM'),
]
train_cfg = dict(max_iters=3500, type='IterBasedTrainLoop', val_interval=3500)
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        paired=dict(
            datasets=[
                dict(
                    data_root='data/target_domain',
                    gt_dir='labeled/GT',
                    input_dir='labeled/input',
                    pipeline=[
                        dict(
                            channel_order='rgb',
                            key='img',
                            type='LoadImageFromFile'),
                        dict(
                            channel_order='rgb',
                            key='gt',
                            type='LoadImageFromFile'),
                        dict(
                            crop_size=64,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='PairedRandomCropWithPad'),
                        dict(
                            direction='horizontal',
                            flip_ratio=0.5,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='Flip'),
                        dict(
                            direction='vertical',
                            flip_ratio=0.5,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='Flip'),
                        dict(
                            keys=[
                                'img',
                                'gt',
                            ],
                            transpose_ratio=0.5,
                            type='RandomTransposeHW'),
                    ],
                    prepare='target_domain',
                    type='PairedLowLightDataset'),
                dict(
                    data_root='data/target_domain',
                    gt_dir='unlabeled_oracle/GT',
                    input_dir='unlabeled/input',
                    pipeline=[
                        dict(
                            channel_order='rgb',
                            key='img',
                            type='LoadImageFromFile'),
                        dict(
                            channel_order='rgb',
                            key='gt',
                            type='LoadImageFromFile'),
                        dict(
                            crop_size=64,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='PairedRandomCropWithPad'),
                        dict(
                            direction='horizontal',
                            flip_ratio=0.5,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='Flip'),
                        dict(
                            direction='vertical',
                            flip_ratio=0.5,
                            keys=[
                                'img',
                                'gt',
                            ],
                            type='Flip'),
                        dict(
                            keys=[
                                'img',
                                'gt',
                            ],
                            transpose_ratio=0.5,
                            type='RandomTransposeHW'),
                    ],
                    prepare='target_domain',
                    type='PairedLowLightDataset'),
            ],
            type='ConcatDataset'),
        pipeline=[
            dict(type='PackSemiInputs'),
        ],
        type='SemiSupervisedDataset',
        unpaired=dict(
            data_root='data/target_domain',
            input_dir='unlabeled/input',
            pipeline=[
                dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
                dict(
                    interpolation='bilinear',
                    keep_ratio=False,
                    keys=[
                        'img',
                    ],
                    output_keys=[
                        'weak',
                    ],
                    scale=(
                        64,
                        64,
                    ),
                    type='Resize'),
                dict(
                    dst_keys=[
                        'strong',
                    ],
                    src_keys=[
                        'weak',
                    ],
                    type='CopyValues'),
                dict(
                    prob=0.8,
                    transforms=[
                        dict(
                            brightness=0.5,
                            channel_order='rgb',
                            contrast=0.5,
                            hue=0.25,
                            keys=[
                                'strong',
                            ],
                            saturation=0.5,
                            type='ColorJitter'),
                    ],
                    type='RandomApply'),
                dict(keys=[
                    'strong',
                ], prob=0.2, type='RandomGrayscaleKeys'),
                dict(
                    kernel_sizes=(
                        1,
                        3,
                        5,
                    ),
                    keys=[
                        'strong',
                    ],
                    prob=0.5,
                    sigma=(
                        0.1,
                        2.0,
                    ),
                    type='RandomGaussianBlur'),
            ],
            prepare='target_domain',
            type='UnpairedLowLightDataset')),
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=True, type='InfiniteSampler'))
unpaired_pipeline = [
    dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
    dict(
        interpolation='bilinear',
        keep_ratio=False,
        keys=[
            'img',
        ],
        output_keys=[
            'weak',
        ],
        scale=(
            64,
            64,
        ),
        type='Resize'),
    dict(dst_keys=[
        'strong',
    ], src_keys=[
        'weak',
    ], type='CopyValues'),
    dict(
        prob=0.8,
        transforms=[
            dict(
                brightness=0.5,
                channel_order='rgb',
                contrast=0.5,
                hue=0.25,
                keys=[
                    'strong',
                ],
                saturation=0.5,
                type='ColorJitter'),
        ],
        type='RandomApply'),
    dict(keys=[
        'strong',
    ], prob=0.2, type='RandomGrayscaleKeys'),
    dict(
        kernel_sizes=(
            1,
            3,
            5,
        ),
        keys=[
            'strong',
        ],
        prob=0.5,
        sigma=(
            0.1,
            2.0,
        ),
        type='RandomGaussianBlur'),
]
val_cfg = dict(type='MultiValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_root='data/target_domain',
        gt_dir='val/GT',
        input_dir='val/input',
        pipeline=[
            dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
            dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
            dict(type='PackInputs'),
        ],
        prepare='target_domain',
        test_mode=True,
        type='PairedLowLightDataset'),
    drop_last=False,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = [
    dict(type='PSNR'),
    dict(type='SSIM'),
]
val_pipeline = [
    dict(channel_order='rgb', key='img', type='LoadImageFromFile'),
    dict(channel_order='rgb', key='gt', type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
view_size = 64
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    bgr2rgb=False,
    fn_key='img_path',
    img_keys=[
        'input',
        'pred_img',
        'gt_img',
    ],
    type='ConcatImageVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
work_dir = './work_dirs/pretrained/semillie_target'
