"""Multi-scale state-space module (MSSM, paper eq. 3)."""
from semillie_mm.ops.mssm_lean import MSSMWeights, lean_lowp_dtype, mssm_lean

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ss2d import SS2D


def plain_path_needed(x: torch.Tensor) -> bool:
    """Whether the module-by-module forward must be used although
    :attr:`MSSM.memory_lean` is on: under ``torch.jit`` (FLOP counters see
    every layer) and under autocast (mixed precision keeps its per-op dtype
    choices) except CPU bfloat16 inference, which the no-grad lean path
    runs itself (:func:`~semillie_mm.ops.mssm_lean.lean_lowp_dtype`)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    return (torch.is_autocast_enabled(x.device.type)
            and lean_lowp_dtype(x) is None)


class MSSM(nn.Module):
    """Gated multi-scale SS2D (paper eq. 3).

    ``FC(C -> 2E)`` splits into the branch ``x`` and the gate ``z``
    (E = expand * C). The branch goes through depth-wise 3x3 and 5x5 convs,
    the two outputs pass through SiLU, are concatenated and projected back to
    E by a 1x1 conv, then SS2D, LayerNorm, multiplied by ``SiLU(z)`` and
    projected back to C::

        x, z = FC(x)
        a, b = DWConv3(x), DWConv5(x)       ('serial': DWConv5(a))
        y = SS2D(Conv1x1(cat(SiLU(a), SiLU(b))))
        out = FC(LN(y) * SiLU(z))

    :meth:`forward` computes exactly this, layer by layer, when
    ``memory_lean`` is off. With ``memory_lean`` on (the default) the same
    numbers, up to float rounding, come from
    :func:`semillie_mm.ops.mssm_lean.mssm_lean`: autograd functions that
    keep far fewer activations in training, a channel- and pixel-chunked
    path without gradients (see :mod:`semillie_mm.ops.mssm_lean`). Under
    ``torch.jit`` and autocast the layer-by-layer forward runs regardless
    (:func:`plain_path_needed`), except CPU bfloat16 inference: the no-grad
    lean path with its products and convs in bfloat16
    (:func:`~semillie_mm.ops.mssm_lean.mssm_lean_autocast`).

    Args:
        channels (int): block width C.
        d_state (int): SSM state size. Default: 16.
        expand (int): the paper's lambda. Default: 2.
        dt_rank (int | None): delta projection rank; None = ceil(C / 16).
        multiscale (str): 'parallel' (paper eq. 3, default):
            ``a = dw3(x0)``, ``b = dw5(x0)``; 'serial' (the authors'
            ``MambaLowlight``): ``a = dw3(x0)``, ``b = dw5(a)``, the 5x5
            taking the raw 3x3 output before any activation. Both then
            compute ``fuse(cat(SiLU(a), SiLU(b)))`` and have the same
            parameters.
        scan_backend (str | None): selective-scan backend override.
        memory_lean (bool): run the memory-lean implementation (the
            attribute of the same name can be switched at any time, like
            timm's ``fused_attn``). Default: True.
    """

    def __init__(self,
                 channels: int,
                 d_state: int = 16,
                 expand: int = 2,
                 dt_rank=None,
                 multiscale: str = 'parallel',
                 scan_backend=None,
                 memory_lean: bool = True):
        super().__init__()
        if multiscale not in ('parallel', 'serial'):
            raise ValueError(
                f"multiscale must be 'parallel' or 'serial', got {multiscale!r}")
        inner = expand * channels
        self.inner = inner
        self.multiscale = multiscale
        self.memory_lean = memory_lean
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

    def lean_weights(self) -> MSSMWeights:
        """The parameters as :func:`semillie_mm.ops.mssm_lean.mssm_lean`
        takes them.

        Returns:
            MSSMWeights
        """
        return MSSMWeights(
            self.in_proj.weight, self.dwconv3.weight, self.dwconv3.bias,
            self.dwconv5.weight, self.dwconv5.bias,
            self.fuse.weight.flatten(1), self.fuse.bias,
            self.out_norm.weight, self.out_norm.bias, self.out_norm.eps,
            self.out_proj.weight, self.multiscale == 'serial')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, H, W, C) channels-last tokens.

        Returns:
            Tensor: (B, H, W, C).
        """
        if self.memory_lean and not plain_path_needed(x):
            return mssm_lean(x, self.lean_weights(), self.ss2d)
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2)
        if not (x.device.type == 'cpu' and torch.is_autocast_enabled('cpu')):
            x = x.contiguous()
        # else channels-last (bf16 inference): oneDNN's bfloat16 convs run
        # on it, and SS2D's fused kernel takes their output without a copy
        a = self.dwconv3(x)
        b = self.dwconv5(a if self.multiscale == 'serial' else x)
        x = self.fuse(torch.cat([F.silu(a), F.silu(b)], dim=1))
        y = self.ss2d(x).permute(0, 2, 3, 1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)
