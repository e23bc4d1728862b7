"""Multi-scale state-space block (MSSB)."""
from semillie_mm.ops.mssm_lean import mssm_lean_autocast

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from timm.layers import DropPath

from .cab import CAB
from .mssm import MSSM, plain_path_needed


class MSSB(nn.Module):
    """``x = s1 * x + DropPath(MSSM(LN(x)))``; ``x = s2 * x + CAB(LN(x))``.

    Args:
        channels (int): block width C.
        d_state (int): SSM state size. Default: 16.
        expand (int): MSSM expansion lambda. Default: 2.
        multiscale (str): 'parallel' or 'serial' (see :class:`MSSM`).
        drop_path (float): stochastic-depth rate of the MSSM branch. Default: 0.
        scan_backend (str | None): selective-scan backend override.
        with_cp (bool): checkpoint ``MSSM(LN(x))`` when training: its
            activations (most of the backbone's) are not kept but recomputed
            in the backward, which costs one more forward of the branch.
            Default: False.
    """

    def __init__(self,
                 channels: int,
                 d_state: int = 16,
                 expand: int = 2,
                 multiscale: str = 'parallel',
                 drop_path: float = 0.,
                 scan_backend=None,
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.norm1 = nn.LayerNorm(channels)
        self.mssm = MSSM(
            channels,
            d_state=d_state,
            expand=expand,
            multiscale=multiscale,
            scan_backend=scan_backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.skip_scale1 = nn.Parameter(torch.ones(channels))
        self.norm2 = nn.LayerNorm(channels)
        self.cab = CAB(channels)
        self.skip_scale2 = nn.Parameter(torch.ones(channels))

    def _mssm_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mssm(self.norm1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, H, W, C).

        Returns:
            Tensor: (B, H, W, C).
        """
        if (not torch.is_grad_enabled() and self.mssm.memory_lean
                and not plain_path_needed(x)
                and (not self.training
                     or isinstance(self.drop_path, nn.Identity))):
            return self._forward_lean(x)
        if self.with_cp and torch.is_grad_enabled() and x.requires_grad:
            branch = cp.checkpoint(
                self._mssm_branch, x, use_reentrant=False)
        else:
            branch = self._mssm_branch(x)
        x = x * self.skip_scale1 + self.drop_path(branch)
        y = self.cab(self.norm2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x * self.skip_scale2 + y

    @torch.no_grad()
    def _forward_lean(self, x: torch.Tensor) -> torch.Tensor:
        """No-grad forward with in-place residuals and without keeping the
        normalised maps (MSSM's chunked path applies ``norm1`` per chunk,
        see :func:`semillie_mm.ops.mssm_lean.mssm_lean_no_grad`); same
        numbers as the standard path up to float rounding. Under CPU
        bfloat16 autocast MSSM's products and convs run in bfloat16
        (:func:`~semillie_mm.ops.mssm_lean.mssm_lean_autocast`), CAB under
        autocast."""
        h = mssm_lean_autocast(x, self.mssm.lean_weights(), self.mssm.ss2d,
                               prenorm=self.norm1)
        h.addcmul_(x, self.skip_scale1)  # x * s1 + branch
        n = self.norm2(h)
        y = self.cab(n.permute(0, 3, 1, 2), inplace=True).permute(0, 2, 3, 1)
        del n
        return h.mul_(self.skip_scale2).add_(y)
