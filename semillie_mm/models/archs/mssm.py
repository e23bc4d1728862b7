"""Multi-scale state-space module (MSSM, paper eq. 3)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .ss2d import SS2D


class MSSM(nn.Module):
    """Gated multi-scale SS2D.

    ``FC(C -> 2E)`` splits into the branch ``x`` and the gate ``z`` (E = expand * C).
    The branch ``x0`` goes through depth-wise 3x3 and 5x5 convs, the two outputs
    pass through SiLU, are concatenated and projected back to E by a 1x1 conv,
    then SS2D, LayerNorm, multiplied by ``SiLU(z)`` and projected back to C.

    Args:
        channels (int): block width C.
        d_state (int): SSM state size. Default: 16.
        expand (int): the paper's lambda. Default: 2.
        dt_rank (int | None): delta projection rank; None = ceil(C / 16).
        multiscale (str): 'parallel' (paper eq. 3, default):
            ``a = dw3(x0)``, ``b = dw5(x0)``; 'serial' (the authors'
            ``MambaLowlight``): ``a = dw3(x0)``, ``b = dw5(a)``, the 5x5 taking the
            raw 3x3 output before any activation. Both then compute
            ``fuse(cat(SiLU(a), SiLU(b)))`` and have the same parameters.
        scan_backend (str | None): selective-scan backend override.
    """

    def __init__(self,
                 channels: int,
                 d_state: int = 16,
                 expand: int = 2,
                 dt_rank=None,
                 multiscale: str = 'parallel',
                 scan_backend=None):
        super().__init__()
        if multiscale not in ('parallel', 'serial'):
            raise ValueError(
                f"multiscale must be 'parallel' or 'serial', got {multiscale!r}")
        inner = expand * channels
        self.multiscale = multiscale
        self.in_proj = nn.Linear(channels, 2 * inner, bias=False)
        self.dwconv3 = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.dwconv5 = nn.Conv2d(inner, inner, 5, padding=2, groups=inner)
        self.fuse = nn.Conv2d(2 * inner, inner, 1)
        self.ss2d = SS2D(
            inner,
            d_state=d_state,
            dt_rank=dt_rank or -(-channels // 16),
            scan_backend=scan_backend)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, H, W, C) channels-last tokens.

        Returns:
            Tensor: (B, H, W, C).
        """
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2).contiguous()
        a = self.dwconv3(x)
        b = self.dwconv5(a if self.multiscale == 'serial' else x)
        x = self.fuse(torch.cat([F.silu(a), F.silu(b)], dim=1))
        y = self.ss2d(x).permute(0, 2, 3, 1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)
