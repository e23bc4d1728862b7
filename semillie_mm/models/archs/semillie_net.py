"""SemiLLIENet: the Mamba-based enhancement backbone of Semi-LLIE (Sec. III-C)."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from ...ops.conv_wgrad import Conv2d
from .illumination_estimator import IlluminationEstimator
from .mssg import MSSG


@MODELS.register_module()
class SemiLLIENet(BaseModule):
    """Illumination estimation + multi-scale state-space groups.

    ``x_n = x - mean``; the illumination map ``IEM(x_n)`` is concatenated with
    ``x_n`` and a 3x3 conv gives the shallow features ``f``. The illumination-guided
    enhancement module embeds ``f`` as tokens (LayerNorm), runs ``num_groups``
    MSSGs, a LayerNorm and a 3x3 conv, adds ``f`` and maps to a 3-channel residual:
    ``out = x + residual``. The output is not clamped (clamp when saving images).

    Any H x W works (the scan runs on any length), 1 x 1 included; the output has
    the input's size.

    Args:
        in_channels (int): image channels. Default: 3.
        embed_dim (int): feature width C. Default: 64.
        num_groups (int): number of MSSGs. Default: 2.
        blocks_per_group (int): MSSBs per MSSG. Default: 2.
        d_state (int): SSM state size. Default: 16.
        expand (int): MSSM expansion (lambda). Default: 2.
        multiscale (str): 'parallel' (paper eq. 3, default) or 'serial' (the
            authors' code).
        drop_path (float): stochastic depth, spread linearly from 0 to this value
            over all blocks. Default: 0.1.
        iem_groups (int): groups of the IEM's 5x5 conv. Default: 4.
        rgb_mean (Sequence[float]): mean subtracted from the input.
        scan_backend (str | None): force a selective-scan backend.
        with_cp (bool): checkpoint every MSSB's state-space branch in
            training (less memory, one more forward of it; see
            :class:`MSSB`). Default: False.
        init_cfg (dict | None): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dim: int = 64,
                 num_groups: int = 2,
                 blocks_per_group: int = 2,
                 d_state: int = 16,
                 expand: int = 2,
                 multiscale: str = 'parallel',
                 drop_path: float = 0.1,
                 iem_groups: int = 4,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 scan_backend: Optional[str] = None,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.register_buffer(
            'rgb_mean',
            torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1),
            persistent=False)
        self.illumination = IlluminationEstimator(
            in_channels, embed_dim, groups=iem_groups, out_channels=in_channels)
        self.conv_first = Conv2d(2 * in_channels, embed_dim, 3, padding=1)
        self.patch_norm = nn.LayerNorm(embed_dim)
        rates = torch.linspace(0, drop_path,
                               num_groups * blocks_per_group).tolist()
        self.groups = nn.ModuleList([
            MSSG(
                embed_dim,
                num_blocks=blocks_per_group,
                drop_path=rates[i * blocks_per_group:(i + 1) *
                                blocks_per_group],
                d_state=d_state,
                expand=expand,
                multiscale=multiscale,
                scan_backend=scan_backend,
                with_cp=with_cp) for i in range(num_groups)
        ])
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.conv_last = Conv2d(embed_dim, in_channels, 3, padding=1)
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): low-light RGB image(s), (B, 3, H, W) in [0, 1].

        Returns:
            Tensor: enhanced image(s), (B, 3, H, W).
        """
        mean = self.rgb_mean.to(x.dtype)
        x_n = x - mean
        illumination = self.illumination(x_n)
        shallow = self.conv_first(torch.cat([x_n, illumination], dim=1))
        feat = self.patch_norm(shallow.permute(0, 2, 3, 1))
        for group in self.groups:
            feat = group(feat)
        feat = self.norm(feat).permute(0, 3, 1, 2)
        feat = self.conv_after_body(feat) + shallow
        return x + self.conv_last(feat)
