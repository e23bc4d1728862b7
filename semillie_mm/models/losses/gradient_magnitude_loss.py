# Copyright (c) semillie-mm contributors.
"""Gradient(-magnitude) loss of Semi-LLIE (paper Sec. III-F, eq. 6)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmagic.models.losses.pixelwise_loss import l1_loss
from mmagic.registry import MODELS

_REDUCTIONS = ('none', 'mean', 'sum')


def gradient_magnitude(img: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel gradient-magnitude map ``f_g`` of eq. 6.

    Central differences with the kernels ``[[0, -1, 0], [0, 0, 0], [0, 1, 0]]``
    (vertical) and ``[[0, 0, 0], [-1, 0, 1], [0, 0, 0]]`` (horizontal) applied
    to every channel with zero padding 1, then ``sqrt(gx^2 + gy^2 + eps)``.

    Args:
        img (Tensor): (B, C, H, W).
        eps (float): Inside the square root, keeps its gradient finite at
            flat regions. Default: 1e-6.

    Returns:
        Tensor: (B, C, H, W) gradient magnitude.
    """
    c = img.size(1)
    kernels = img.new_zeros(2, 1, 3, 3)
    kernels[0, 0, 0, 1], kernels[0, 0, 2, 1] = -1, 1  # vertical (y)
    kernels[1, 0, 1, 0], kernels[1, 0, 1, 2] = -1, 1  # horizontal (x)
    grads = F.conv2d(img, kernels.repeat(c, 1, 1, 1), padding=1, groups=c)
    gy, gx = grads[:, 0::2], grads[:, 1::2]
    return torch.sqrt(gx.pow(2) + gy.pow(2) + eps)


@MODELS.register_module()
class GradientMagnitudeLoss(nn.Module):
    """L1 distance between gradient-magnitude maps (eq. 6).

    ``loss = loss_weight * |f_g(pred) - f_g(target)|_1`` with ``f_g`` from
    :func:`gradient_magnitude`. (mmagic's own ``GradientLoss`` is a different
    loss: L1 on the signed Sobel responses.)

    Args:
        loss_weight (float): The weight gamma_2. Default: 0.1.
        reduction (str): ``'none'`` | ``'mean'`` | ``'sum'``, as mmagic's
            ``L1Loss``. Default: ``'mean'``.
        sample_wise (bool): As mmagic's ``L1Loss`` (only used with a ``weight``
            and ``reduction='mean'``). Default: False.
        eps (float): See :func:`gradient_magnitude`. Default: 1e-6.
    """

    def __init__(self,
                 loss_weight: float = 0.1,
                 reduction: str = 'mean',
                 sample_wise: bool = False,
                 eps: float = 1e-6) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. '
                             f'Supported ones are: {_REDUCTIONS}')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.sample_wise = sample_wise
        self.eps = eps

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): (B, C, H, W) enhanced image.
            target (Tensor): (B, C, H, W) ground truth.
            weight (Tensor, optional): element-wise weight, (B, 1 or C, H, W).

        Returns:
            Tensor: the loss (element-wise for ``reduction='none'``).
        """
        return self.loss_weight * l1_loss(
            gradient_magnitude(pred, self.eps),
            gradient_magnitude(target, self.eps),
            weight,
            reduction=self.reduction,
            sample_wise=self.sample_wise)
