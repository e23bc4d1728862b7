# Variant of faster-rcnn_r50_fpn_12e_visdrone-night.py whose ResNet-50 starts from a local ImageNet
# checkpoint instead of random weights (NOT the paper's setting: the paper trains from scratch).
#
# Nothing is downloaded: put torchvision's ImageNet ResNet-50 weights (the file mmdet's
# 'torchvision://resnet50' would fetch, resnet50-0676ba61.pth from download.pytorch.org) at the
# path below, or point the path elsewhere:
#     --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50.pth
# (tools/detection_study.py: --pretrained-backbone /path/to/resnet50.pth).
# A missing file fails when the detector is initialised, with an error naming the file
# (semillie_mm.detection.LocalPretrainedInit).
#
# With pretrained weights the usual fine-tuning setting is restored: the stem and the first stage
# frozen and BatchNorm in eval mode (mmdet's Faster R-CNN defaults).
_base_ = './faster-rcnn_r50_fpn_12e_visdrone-night.py'

custom_imports = dict(imports=['semillie_mm.detection'], allow_failed_imports=False)

pretrained_backbone = 'checkpoints/resnet50-0676ba61.pth'

model = dict(
    backbone=dict(
        frozen_stages=1,
        norm_eval=True,
        init_cfg=dict(
            _delete_=True, type='LocalPretrained', checkpoint=pretrained_backbone)))
