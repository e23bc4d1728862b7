# Faster R-CNN R50-FPN trained from scratch for 12 epochs on (enhanced) VisDrone night images:
# the downstream detection study of the Semi-LLIE paper (Sec. V, Table VII).
#
# mmdet 3.3.0's own base configs (shipped in the wheel under mmdet/.mim/configs) are inherited;
# only what the study changes is written here:
# - 10 VisDrone classes (categories 1..10 of tools/dataset_converters/visdrone2coco.py);
# - trained from scratch, as the paper: no pretrained backbone (init_cfg=None, i.e. mmdet's
#   ResNet default Kaiming init), every stage trained (frozen_stages=-1) and the BatchNorm
#   statistics updated during training (norm_eval=False). Plain BN is kept as in the paper.
#   Note: from-scratch detectors usually need SyncBN or GroupNorm and longer schedules (mmdet's
#   configs/scratch use GN and 6x); with 2 images per GPU plain BN statistics are noisy, so
#   absolute APs are low (the paper's Table VII: 8-9 AP) - the study compares enhancers under the
#   same detector, which is what the table is about;
# - 12 epochs (mmdet's 1x schedule: lr steps at epochs 8 and 11), SGD lr 0.02 for a total batch of
#   16, scaled linearly to the actual total batch (auto_scale_lr enabled: 1 GPU x 2 images ->
#   lr 0.0025);
# - COCO bbox evaluation (AP, AP50, AP75, APs, APm, APl) on the 131 test images. The paper has no
#   separate validation set: validation (when run through mmdet's tools/train.py) uses the test
#   split once, after the last epoch. tools/detection_study.py switches validation off and runs
#   mmengine's test loop after training.
#
# Data layout (set by tools/dataset_converters/visdrone2coco.py); tools/detection_study.py
# overrides data_root / ann_file / data_prefix / the evaluator's ann_file per enhancer:
#   data/visdrone_night/images/*.jpg
#   data/visdrone_night/annotations/{train,test}.json
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

classes = ('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck', 'tricycle',
           'awning-tricycle', 'bus', 'motor')
metainfo = dict(
    classes=classes,
    palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228),
             (0, 60, 100), (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30)])

data_root = 'data/visdrone_night/'
img_prefix = 'images/'
train_ann_file = 'annotations/train.json'
test_ann_file = 'annotations/test.json'
# mmdet's COCO scale; VisDrone night images are about 1360x765 .. 1920x1080
img_scale = (1333, 800)
max_epochs = 12

model = dict(
    backbone=dict(frozen_stages=-1, norm_eval=False, init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=len(classes))))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann_file,
        data_prefix=dict(img=img_prefix),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=test_ann_file,
        data_prefix=dict(img=img_prefix),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + test_ann_file,
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=True, base_batch_size=16)

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
