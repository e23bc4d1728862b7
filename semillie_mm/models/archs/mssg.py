"""Multi-scale state-space group (MSSG)."""
from typing import Sequence

import torch
import torch.nn as nn

from ...ops.conv_wgrad import Conv2d
from .mssb import MSSB


class MSSG(nn.Module):
    """A stack of MSSBs, a 3x3 conv on the spatial map, and the group's residual.

    Args:
        channels (int): width C.
        num_blocks (int): MSSBs in the group. Default: 2.
        drop_path (Sequence[float] | float): per-block stochastic-depth rates.
        **block_kwargs: passed to :class:`MSSB` (d_state, expand, multiscale,
            scan_backend).
    """

    def __init__(self,
                 channels: int,
                 num_blocks: int = 2,
                 drop_path=0.,
                 **block_kwargs):
        super().__init__()
        if not isinstance(drop_path, Sequence):
            drop_path = [drop_path] * num_blocks
        self.blocks = nn.ModuleList([
            MSSB(channels, drop_path=drop_path[i], **block_kwargs)
            for i in range(num_blocks)
        ])
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, H, W, C).

        Returns:
            Tensor: (B, H, W, C).
        """
        y = x
        for block in self.blocks:
            y = block(y)
        y = self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return y + x
