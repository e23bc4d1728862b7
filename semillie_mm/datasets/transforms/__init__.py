# Copyright (c) semillie-mm contributors. All rights reserved.
"""Data transforms of Semi-LLIE, registered in mmagic's ``TRANSFORMS``.

The rest of the pipelines reuses mmagic / mmcv transforms: ``LoadImageFromFile``,
``Flip`` and ``RandomTransposeHW`` (together the 8 flips/rotations), ``Resize``,
``CopyValues``, ``ColorJitter`` (wrapped in mmcv's ``RandomApply``) and
``PackInputs`` for validation. :mod:`.enhancement_inputs` holds the
ground-truth-free pipeline of :class:`~semillie_mm.apis.SemiLLIEInferencer`.
"""
from .enhancement_inputs import LoadImageForEnhancement, PackEnhancementInputs
from .low_light_synthesis import (
                                 DEFAULT_LOW_LIGHT_RANGES,
                                 LowLightSynthesis,
                                 sample_low_light_params,
                                 synthesize_low_light,
)
from .pack_semi_inputs import PackSemiInputs
from .paired_random_crop import PairedRandomCropWithPad
from .random_gaussian_blur import RandomGaussianBlur
from .random_grayscale_keys import RandomGrayscaleKeys

__all__ = [
    'DEFAULT_LOW_LIGHT_RANGES', 'LowLightSynthesis', 'sample_low_light_params',
    'synthesize_low_light', 'PackSemiInputs', 'PairedRandomCropWithPad',
    'RandomGaussianBlur', 'RandomGrayscaleKeys', 'LoadImageForEnhancement',
    'PackEnhancementInputs'
]
