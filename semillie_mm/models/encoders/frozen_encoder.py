# Copyright (c) semillie-mm contributors.
"""What the frozen image encoders of the semantic losses share.

:class:`RAMImageEncoder` (RAM's Swin) and :class:`ImageNetEncoder` (its
ImageNet stand-in) are fixed feature extractors: no parameter is trained, the
normalisation layers stay in eval mode whatever the parent model's mode,
mmengine's recursive ``init_weights`` does not touch the loaded weights, and
(by default) their tensors stay out of the parent's checkpoints — they come
from their own weight file, which a checkpoint can neither carry nor replace.
Both take RGB batches in [0, 1], resized to their input size and normalised
with ImageNet's mean and std.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenImageEncoder(nn.Module):
    """Base of the frozen encoders (see the module docstring).

    A subclass builds its network, sets ``img_size`` (int or None: keep the
    input size) and ``normalize``, calls :meth:`_register_normalisation`
    before loading weights and :meth:`_freeze` at the end of ``__init__``.
    """

    def _register_normalisation(self) -> None:
        """ImageNet mean / std as non-persistent buffers (follow ``.to``)."""
        self.register_buffer(
            'mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
            persistent=False)
        self.register_buffer(
            'std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
            persistent=False)

    def _freeze(self, exclude_from_state_dict: bool) -> None:
        """No gradients for the weights, eval mode, and (optionally) no
        entries in the parent's state dict.

        Args:
            exclude_from_state_dict (bool): keep the tensors out of
                ``state_dict()`` and leave them untouched by
                ``load_state_dict``.
        """
        self.requires_grad_(False)
        super().train(False)
        self.exclude_from_state_dict = exclude_from_state_dict
        if exclude_from_state_dict:
            self.register_state_dict_post_hook(_drop_own_keys)
            self.register_load_state_dict_pre_hook(_keep_own_weights)

    def init_weights(self) -> None:
        """Do nothing: the weights come from the weight file only.

        Defined so that mmengine's recursive ``init_weights`` of a parent
        model stops here (timm's networks have ``init_weights`` of their own).
        """

    def train(self, mode: bool = True) -> 'FrozenImageEncoder':
        """Keep the frozen encoder (its normalisation layers) in eval mode.

        Args:
            mode (bool): Ignored.

        Returns:
            FrozenImageEncoder: self.
        """
        return super().train(False)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """Resize an RGB [0, 1] batch to the input size and normalise it.

        Args:
            img (Tensor): (B, 3, H, W), RGB in [0, 1].

        Returns:
            Tensor: (B, 3, img_size, img_size), or (B, 3, H, W) when
            ``img_size`` is None.
        """
        if img.dim() != 4 or img.size(1) != 3:
            raise ValueError(f'{type(self).__name__} expects (B, 3, H, W) RGB '
                             f'images, got shape {tuple(img.shape)}.')
        size: Optional[int] = self.img_size
        if size is not None and img.shape[-2:] != (size, size):
            img = F.interpolate(
                img, size=(size, size), mode='bilinear', align_corners=False)
        if self.normalize:
            img = (img - self.mean.to(img.dtype)) / self.std.to(img.dtype)
        return img


def _drop_own_keys(module: nn.Module, state_dict: dict, prefix: str,
                   local_metadata: dict) -> None:
    """State-dict post-hook: remove the encoder's entries (see class doc)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _keep_own_weights(module: nn.Module, state_dict: dict, prefix: str,
                      local_metadata: dict, strict: bool, missing_keys: list,
                      unexpected_keys: list, error_msgs: list) -> None:
    """Load pre-hook: make loading leave the encoder's weights as they are.

    Fills (or overwrites) the encoder's entries of the incoming state dict with
    its current tensors, so a state dict saved without them loads strictly
    and one saved with them cannot replace the encoder's weights.
    """
    with torch.no_grad():
        for name, tensor in _own_tensors(module):
            state_dict[prefix + name] = tensor.detach()


def _own_tensors(module: nn.Module):
    """Yield (name, tensor) for the parameters and persistent buffers."""
    yield from module.named_parameters()
    for mod_name, mod in module.named_modules():
        for buf_name, buf in mod._buffers.items():
            if buf is None or buf_name in mod._non_persistent_buffers_set:
                continue
            yield (f'{mod_name}.{buf_name}' if mod_name else buf_name), buf
