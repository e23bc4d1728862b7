# Copyright (c) semillie-mm contributors.
"""Semantic-aware contrastive loss of Semi-LLIE (paper Sec. III-D, eq. 4)."""
from typing import Union

import torch
import torch.nn as nn
from mmagic.registry import MODELS

from ..encoders.ram_image_encoder import build_ram_encoder

_REDUCTIONS = ('none', 'mean', 'sum')


@MODELS.register_module()
class SemanticContrastiveLoss(nn.Module):
    """Contrastive ratio of L1 distances in RAM's image-embedding space.

    ``loss = loss_weight * |E(anchor) - E(positive)|_1 / (|E(anchor) - E(negative)|_1 + eps)``

    with ``E`` the RAM image embeddings (B, 145, 512). In Semi-LLIE the anchor
    is the student's output on the strongly augmented unpaired image, the
    positive the teacher's output on the weak view and the negative the
    low-light input itself, so the student is pulled towards the teacher and
    pushed away from the dark image. (This is the form of the SPEC and of the
    authors' code; the paper's printed eq. 4 has a garbled numerator and
    denominator.)

    Gradient flows through the anchor only: the positive and negative
    embeddings are computed under ``torch.no_grad``. The encoder is frozen but
    differentiable with respect to the anchor image (unlike the authors' code,
    which ran every branch under ``no_grad`` and so gave this loss no
    gradient).

    The authors add the same ratio on RAM's tag logits (from RAM's tagging
    head, weight 1). Here that term is optional: ``tag_weight > 0`` adds
    ``tag_weight`` times it, and needs an encoder built with
    ``with_tagging_head=True``. Off by default (the head adds ~16 M parameters
    and 4585 cross-attention queries per image).

    Args:
        encoder (dict | nn.Module): The RAM image encoder, as a config dict of
            ``RAMImageEncoder`` (built here) or an already built module (used
            as is, e.g. shared with :class:`RAMPerceptualLoss`). It must return
            ``(embeddings, stage_features)``.
        loss_weight (float): The weight omega. Default: 1.0.
        reduction (str): ``'mean'`` (default): ratio of the batch-mean L1
            distances, as the authors compute it (for batch 1 the same as
            per-sample); ``'none'``: one ratio per sample, shape (B,);
            ``'sum'``: sum of the per-sample ratios. Note that ``'mean'`` is a
            ratio of means, not the mean of the ``'none'`` values.
        eps (float): Added to the denominator. Default: 1e-7 (authors' value).
        tag_weight (float): Weight of the tag-logit term relative to the
            embedding term (authors: 1.0). Default: 0.0 (term off).
    """

    def __init__(self,
                 encoder: Union[dict, nn.Module, None] = None,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 eps: float = 1e-7,
                 tag_weight: float = 0.0) -> None:
        super().__init__()
        if encoder is None:
            raise ValueError(
                'SemanticContrastiveLoss needs `encoder`: a config such as '
                'dict(type="RAMImageEncoder", pretrained="path/to/'
                'ram_swin_large_14m.pth") or a built (shared) encoder module.')
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. '
                             f'Supported ones are: {_REDUCTIONS}')
        self.encoder = build_ram_encoder(encoder)
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.eps = eps
        self.tag_weight = tag_weight
        if tag_weight and getattr(self.encoder, 'tagging_head', None) is None:
            raise ValueError(
                'tag_weight > 0 needs the RAM tagging head: build the encoder '
                'with with_tagging_head=True.')

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """RAM image embeddings of ``img`` (differentiable w.r.t. ``img``).

        Args:
            img (Tensor): (B, 3, H, W), RGB in [0, 1].

        Returns:
            Tensor: (B, N, D) embeddings.
        """
        return self.encoder(img)[0]

    def _ratio(self, a: torch.Tensor, p: torch.Tensor,
               n: torch.Tensor) -> torch.Tensor:
        """L1(a, p) / (L1(a, n) + eps), reduced as ``self.reduction`` says."""
        if self.reduction == 'mean':
            return (a - p).abs().mean() / ((a - n).abs().mean() + self.eps)
        d_ap = (a - p).abs().flatten(1).mean(dim=1)
        d_an = (a - n).abs().flatten(1).mean(dim=1)
        ratio = d_ap / (d_an + self.eps)
        return ratio if self.reduction == 'none' else ratio.sum()

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor,
                negative: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            anchor (Tensor): (B, 3, H, W) student output, RGB in [0, 1].
            positive (Tensor): (B, 3, H', W') teacher output (detached here).
            negative (Tensor): (B, 3, H'', W'') low-light input (detached here).

        Returns:
            Tensor: scalar, or (B,) for ``reduction='none'``.
        """
        emb_a = self.embed(anchor)
        with torch.no_grad():
            if positive.shape == negative.shape:
                emb_pn = self.embed(torch.cat([positive, negative]).detach())
                emb_p, emb_n = emb_pn.chunk(2)
            else:
                emb_p = self.embed(positive.detach())
                emb_n = self.embed(negative.detach())
        loss = self._ratio(emb_a, emb_p, emb_n)
        if self.tag_weight:
            tag_a = self.encoder.tag_logits(emb_a)
            with torch.no_grad():
                tag_p = self.encoder.tag_logits(emb_p)
                tag_n = self.encoder.tag_logits(emb_n)
            loss = loss + self.tag_weight * self._ratio(tag_a, tag_p, tag_n)
        return self.loss_weight * loss
