"""The downstream detection study (paper Sec. V, Table VII); mmdet itself is not imported here.

Modules, by job (``tools/detection_study.py`` is the command line):

- :mod:`.methods`: the enhancement methods of the rows (``NAME=SPEC``), the enhancer loading and
  the enhancement of the night images;
- :mod:`.detector`: the shipped mmdet configs (``configs/`` in this package) and one row's
  detector config and COCO annotations;
- :mod:`.runner`: training and testing one row with mmengine's Runner in a child process;
- :mod:`.tables`: CocoMetric results to Table VII rows, Markdown and CSV;
- :mod:`.study`: :func:`run_study`, the rows in order, resumed from stored results;
- :mod:`.weight_init`: ``LocalPretrained``, a weight initializer that never downloads.
"""
from .detector import (
                       DEFAULT_DET_CONFIG,
                       DETECTOR_CONFIG_DIR,
                       build_detector_config,
                       find_detector_config,
                       resolve_annotations,
)
from .methods import KINDS, Method, enhance_images, load_enhancer, parse_method
from .runner import run_row, run_row_subprocess
from .study import StoredResultMismatch, run_study, slugify
from .tables import METRICS, metrics_to_row, write_tables
from .weight_init import LocalPretrainedInit, check_local_checkpoint

__all__ = [
    'DEFAULT_DET_CONFIG', 'DETECTOR_CONFIG_DIR', 'KINDS', 'METRICS', 'LocalPretrainedInit',
    'Method', 'StoredResultMismatch', 'build_detector_config', 'check_local_checkpoint',
    'enhance_images', 'find_detector_config', 'load_enhancer', 'metrics_to_row', 'parse_method',
    'resolve_annotations', 'run_row', 'run_row_subprocess', 'run_study', 'slugify',
    'write_tables'
]
