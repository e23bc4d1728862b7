# Copyright (c) semillie-mm contributors.
"""Frozen feature encoders used by the losses (RAM's image encoder)."""
from .ram_image_encoder import (RAMImageEncoder, build_ram_encoder,
                                convert_ram_checkpoint)
from .ram_tagging_head import RAMTaggingHead

__all__ = ['RAMImageEncoder', 'build_ram_encoder', 'convert_ram_checkpoint',
           'RAMTaggingHead']
