"""The mmdet configs of the detection study (data, not code; mmengine reads them).

``faster-rcnn_r50_fpn_12e_visdrone-night.py`` (the paper's setting, from scratch; the default of
``tools/detection_study.py``) and ``faster-rcnn_r50_fpn_12e_visdrone-night_imagenet.py`` (from a
local ImageNet ResNet-50). Find them with :func:`semillie_mm.detection.find_detector_config`.
This file makes the folder a package so that ``setup.py`` installs its files (``package_data``),
and the configs are found in an installed package as in a checkout.
"""
