"""Helpers for the downstream detection study (paper Sec. V); mmdet itself is not imported here.

The study itself is :mod:`semillie_mm.detection.study` (imported on demand;
``tools/detection_study.py`` is its command line).
"""
from .weight_init import LocalPretrainedInit, check_local_checkpoint

__all__ = ['LocalPretrainedInit', 'check_local_checkpoint']
