# Copyright (c) semillie-mm contributors.
"""Frozen feature encoders used by the losses: RAM's image encoder and its
installable stand-in, an ImageNet-trained EfficientNet-Lite0."""
from .frozen_encoder import FrozenImageEncoder
from .imagenet_encoder import (
                               ImageNetEncoder,
                               convert_efficientnet_lite0_state_dict,
                               efficientnet_lite0_weights_path,
)
from .ram_image_encoder import RAMImageEncoder, build_ram_encoder, convert_ram_checkpoint
from .ram_tagging_head import RAMTaggingHead

__all__ = ['RAMImageEncoder', 'build_ram_encoder', 'convert_ram_checkpoint',
           'RAMTaggingHead', 'ImageNetEncoder',
           'convert_efficientnet_lite0_state_dict',
           'efficientnet_lite0_weights_path', 'FrozenImageEncoder']
