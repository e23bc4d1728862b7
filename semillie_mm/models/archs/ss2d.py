"""SS2D: the 2D selective-scan state-space model with four scan directions."""
import math
from typing import Optional

from semillie_mm.ops import selective_scan
from semillie_mm.ops.mssm_lean import lean_lowp_dtype
from semillie_mm.ops.selective_scan import dispatch
from semillie_mm.ops.selective_scan.backends.exportable import selective_scan_exportable
from semillie_mm.ops.selective_scan.ss2d_fused import ss2d_scan_fused

import torch
import torch.nn as nn


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


class SS2D(nn.Module):
    """Four-direction selective scan over a feature map (paper Sec. III-C).

    The map is flattened row-major, column-major, and both reversed. Each direction
    has its own input projection (to ``dt_rank + 2 * d_state``: delta, B, C), its own
    delta projection (with bias, used as the scan's ``delta_bias``), ``A_log``
    (S4D-real initialisation ``log(1..d_state)``) and ``D`` (ones).

    Two implementations compute the same numbers:

    - fused (CPU maps, the default there when the C++ extension is built, see
      :mod:`semillie_mm.ops.selective_scan.ss2d_fused`): the kernel reads the four
      directions from the map by index arithmetic, accumulates them into one
      row-major buffer and runs them one after another, so neither flipped /
      transposed copies nor four directions' temporaries exist at once; the
      result is in channels-last memory format;
    - unfused (CUDA, or CPU without the extension): the four flattened
      copies go through one grouped :func:`semillie_mm.ops.selective_scan`
      call (``groups=4``) and the outputs are mapped back and summed.

    Args:
        channels (int): channels of the input map (``lambda * C`` in the paper).
        d_state (int): state size N. Default: 16.
        dt_rank (int | None): rank of the delta projection. Default: None means
            ``ceil(channels / 16)`` computed on the block width ``C`` by the caller;
            here ``ceil(channels / 16)``.
        dt_min (float): lower end of the initial delta range. Default: 1e-3.
        dt_max (float): upper end of the initial delta range. Default: 0.1.
        dt_init_floor (float): minimum initial delta. Default: 1e-4.
        scan_backend (str | None): force a selective-scan backend
            ('fused' | 'cuda' | 'cpu' | 'reference'); None reads
            ``SEMILLIE_SCAN_BACKEND`` and otherwise chooses automatically
            ('fused' on CPU when built, else the unfused path's choice); the
            policy is :func:`semillie_mm.ops.selective_scan.dispatch.use_fused`.

    Attributes:
        export_mode (bool): run the unfused path with the scan in standard
            operators (:func:`~semillie_mm.ops.selective_scan.backends.
            exportable.selective_scan_exportable`), whatever the backend, so
            that the ONNX exporter can trace it. Default: False (set by
            :func:`semillie_mm.deployment.onnx_export.export_mode`).
    """

    num_directions = 4
    export_mode = False

    def __init__(self,
                 channels: int,
                 d_state: int = 16,
                 dt_rank: Optional[int] = None,
                 dt_min: float = 1e-3,
                 dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4,
                 scan_backend: Optional[str] = None):
        super().__init__()
        K = self.num_directions
        self.channels = channels
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(channels / 16)
        self.scan_backend = scan_backend

        bound = 1.0 / math.sqrt(channels)
        self.x_proj_weight = nn.Parameter(
            torch.empty(K, self.dt_rank + 2 * d_state,
                        channels).uniform_(-bound, bound))
        dt_std = self.dt_rank**-0.5
        self.dt_proj_weight = nn.Parameter(
            torch.empty(K, channels, self.dt_rank).uniform_(-dt_std, dt_std))
        dt = torch.exp(
            torch.rand(K, channels) * (math.log(dt_max) - math.log(dt_min)) +
            math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_proj_bias = nn.Parameter(_inverse_softplus(dt))
        A = torch.arange(1, d_state + 1, dtype=torch.float32)
        self.A_log = nn.Parameter(
            torch.log(A).repeat(K * channels, 1).contiguous())
        self.D = nn.Parameter(torch.ones(K * channels))

    def _use_fused(self, x: torch.Tensor) -> bool:
        return dispatch.use_fused(self.scan_backend, x.device, self.d_state)

    def forward(self, x: torch.Tensor, proj_dtype=None) -> torch.Tensor:
        """Args:
            x (Tensor): (B, E, H, W) feature map, E = ``channels``.
            proj_dtype (torch.dtype, optional): on the fused CPU path
                without gradients, the dtype of the ``x_proj`` products
                (see :func:`ss2d_scan_fused`); MSSM's lean bf16 path passes
                ``torch.bfloat16``. None: bfloat16 under CPU bfloat16
                autocast without gradients, else the compute dtype.

        Returns:
            Tensor: (B, E, H, W), the sum of the four directional scans
            (channels-last memory format on the fused path). Under CPU
            autocast (``--precision bf16``) SS2D runs with autocast off:
            the recurrence in float32 (the C++ kernels take float32), the
            ``x_proj`` products, which make the scan's delta, B and C, in
            bfloat16 on the fused path without gradients (float32 on the
            others) -- and returns float32 (what autocast's float32 ops
            return; the LayerNorm after it then runs in float32 too). CUDA
            autocast (AMP training) is left as it was: mamba-ssm's kernel
            takes half inputs.
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f'SS2D: x must be (B, {self.channels}, H, W), '
                             f'got shape {tuple(x.shape)}')
        if x.device.type == 'cpu' and torch.is_autocast_enabled('cpu'):
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()
            if proj_dtype is None:
                proj_dtype = lean_lowp_dtype(x)
            with torch.autocast('cpu', enabled=False):
                return self._scan(x, proj_dtype)
        return self._scan(x, proj_dtype)

    def _scan(self, x: torch.Tensor, proj_dtype=None) -> torch.Tensor:
        """:meth:`forward` without the checks and the autocast handling."""
        if not self.export_mode and self._use_fused(x):
            return ss2d_scan_fused(x, self.x_proj_weight,
                                   self.dt_proj_weight, self.dt_proj_bias,
                                   self.A_log, self.D, self.dt_rank,
                                   proj_dtype=proj_dtype)
        B, E, H, W = x.shape
        L = H * W
        K = self.num_directions
        row = x.flatten(2)
        col = x.transpose(2, 3).flatten(2)
        xs = torch.stack([row, col], dim=1)
        xs = torch.cat([xs, xs.flip(-1)], dim=1)  # (B, 4, E, L)

        x_dbl = torch.einsum('bkel,kce->bkcl', xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum('bkrl,ker->bkel', dts, self.dt_proj_weight)

        # float32 parameters for half inputs, float64 for float64 inputs
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        A = -torch.exp(self.A_log.to(cdt))
        scan_args = (xs.reshape(B, K * E, L), dts.reshape(B, K * E, L), A,
                     Bs.contiguous(), Cs.contiguous())
        scan_kwargs = dict(D=self.D.to(cdt),
                           delta_bias=self.dt_proj_bias.reshape(-1).to(cdt),
                           delta_softplus=True)
        if self.export_mode:
            ys = selective_scan_exportable(*scan_args, **scan_kwargs)
        else:
            ys = selective_scan(*scan_args, **scan_kwargs,
                                backend=self.scan_backend)
        ys = ys.view(B, K, E, L)

        y_row = ys[:, 0] + ys[:, 2].flip(-1)
        y_col = ys[:, 1] + ys[:, 3].flip(-1)
        y_col = y_col.view(B, E, W, H).transpose(2, 3).reshape(B, E, L)
        return (y_row + y_col).view(B, E, H, W)
