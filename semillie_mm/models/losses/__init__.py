# Copyright (c) semillie-mm contributors.
"""Losses of Semi-LLIE (paper Sec. III-D..F), registered in mmagic's MODELS.

The adversarial part uses mmagic's own ``PatchDiscriminator`` and ``GANLoss``.
"""
from .gradient_magnitude_loss import GradientMagnitudeLoss, gradient_magnitude
from .ram_perceptual_loss import RAMPerceptualLoss
from .semantic_contrastive_loss import SemanticContrastiveLoss

__all__ = [
    'GradientMagnitudeLoss', 'gradient_magnitude', 'RAMPerceptualLoss',
    'SemanticContrastiveLoss'
]
