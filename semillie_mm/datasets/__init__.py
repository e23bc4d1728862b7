# Copyright (c) semillie-mm contributors. All rights reserved.
"""Datasets of Semi-LLIE (paired, unpaired, semi-supervised) and transforms.

Importing registers the classes in mmagic's ``DATASETS`` / ``TRANSFORMS``;
no folder is scanned and no image is read at import time.
"""
from .demo_data import prepare_demo_data
from .paired_low_light_dataset import PairedLowLightDataset
from .semi_supervised_dataset import SemiSupervisedDataset
from .transforms import *  # noqa: F401,F403
from .unpaired_low_light_dataset import UnpairedLowLightDataset

__all__ = [
    'PairedLowLightDataset', 'UnpairedLowLightDataset',
    'SemiSupervisedDataset', 'prepare_demo_data'
]
