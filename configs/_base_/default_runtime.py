# Runtime shared by all Semi-LLIE configs.
default_scope = 'mmagic'
custom_imports = dict(imports=['semillie_mm'], allow_failed_imports=False)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo on machines without CUDA
    dist_cfg=dict(backend='nccl'),
)

log_level = 'INFO'
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
load_from = None
resume = False

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='AtomicCheckpointHook',  # semillie_mm: atomic writes
        interval=5,
        by_epoch=True,
        save_optimizer=True,
        max_keep_ckpts=5,
        save_best='PSNR',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# the teacher is the EMA of the student, updated after every generator step
# RNGStateHook: --resume continues with the interrupted run's random state
# CPUThreadsHook: on CPU, torch's thread count follows the cores other jobs
# leave free (two trainings on the same cores do not busy-wait each other)
# CPUMemoryCacheHook: on CPU, large tensor blocks are reused, not page-faulted
# in again every step (SEMILLIE_CPU_CACHE_MB=0 turns it off)
custom_hooks = [
    dict(type='MeanTeacherHook'),
    dict(type='RNGStateHook'),
    dict(type='CPUThreadsHook'),
    dict(type='CPUMemoryCacheHook'),
]

# one DDP per trainable submodule (student, discriminator); works on CPU too
model_wrapper_cfg = dict(
    type='DeviceAwareSeparateDDP',
    broadcast_buffers=False,
    find_unused_parameters=False)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='ConcatImageVisualizer',
    vis_backends=vis_backends,
    fn_key='img_path',
    img_keys=['input', 'pred_img', 'gt_img'],
    bgr2rgb=False)

randomness = dict(seed=0, deterministic=False)
