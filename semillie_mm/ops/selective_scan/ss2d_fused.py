# Copyright (c) semillie-mm contributors. All rights reserved.
"""Fused four-direction SS2D scan on CPU (a C++ kernel of
:mod:`semillie_mm.ops.cpu_ext`).

:func:`ss2d_scan_fused` computes exactly what :class:`SS2D`'s unfused path
computes -- per direction ``k`` the projections ``x_proj`` / ``dt_proj``,
``dt = softplus(dt_proj(x) + bias)``, the selective scan along the
direction's pixel order, and the sum of the four outputs in row-major order
-- without materialising any flipped or transposed copy:

- the projections are pointwise, so ``x_proj`` is a GEMM on the
  channels-last (batch, H*W, E) map in row-major order, giving per pixel
  ``[dt_low | B | C]`` (``dt_rank + 2N`` numbers). Up to
  :data:`COMBINED_BYTES` the four directions' products are one GEMM, a
  (batch, H*W, 4 (dt_rank + 2N)) buffer whose column blocks the kernel
  reads in place (36 columns a direction: 44-45 ms at 8 x 128^2 on the Zen
  3, four GEMMs 60-67); above it, one direction's at a time (an untiled
  1080p forward would hold 1.2 GB instead of 0.3). The kernel reads that
  row and u at the position of each step of the direction (index
  arithmetic), computes ``dt_proj``, its bias and softplus itself (``dt_rank``
  multiply-adds per channel and step), and adds its output into one
  row-major buffer -- no (batch, H*W, E) dt map exists;
- directions run one after another, so the only temporary is that row
  buffer (in the backward its gradient too, whose weight and input products
  are one GEMM each when combined); the first direction writes the output,
  the others add to it (no zero-filled buffer);
- for training only the input map and the states entering every chunk of
  ``K`` steps are kept (``batch * E * N * H*W / K`` numbers per direction);
  the backward recomputes ``x_proj`` and the states per chunk.

The result is a (B, E, H, W) tensor in channels-last memory format (a
permuted view of the (B, H, W, E) buffer), which is what SS2D's caller
permutes to anyway. The kernels run on torch's intra-op thread pool
(``at::parallel_for``), so ``torch.set_num_threads`` governs them and
nothing changes the thread count.
"""

import torch
from torch import Tensor

from .. import cpu_ext
from .common import chunk_size, cpp_blocks
from .common import num_slots as _num_slots

#: directions, in the order of SS2D's parameters: row-major, column-major,
#: row-major reversed, column-major reversed
NUM_DIRECTIONS = 4
#: pixels per chunk of the ``x_proj`` product in a lower precision
#: (``proj_dtype``)
PROJ_CHUNK = 1 << 14
#: bytes up to which the four directions' x_proj products (and in the
#: backward their gradients) are one buffer and one GEMM; above it one
#: direction's at a time
COMBINED_BYTES = 128 << 20
#: largest d_state / dt_rank the kernel takes (its per-thread arrays)
MAX_STATE = 64
MAX_RANK = 64


def num_slots(batch: int, channels: int, dtype: torch.dtype,
              threads: int) -> int:
    """Partial dxdbl buffers of the backward: enough (slot, batch) work
    items for ``threads``, at most one per block of channels; 1 (no extra
    buffer) whenever ``batch >= threads`` (:func:`.common.num_slots` with
    one group).

    Args:
        batch (int): batch size.
        channels (int): E.
        dtype (torch.dtype): float32 (16-lane blocks) or float64 (8).
        threads (int): torch's intra-op threads.

    Returns:
        int: S >= 1.
    """
    return _num_slots(batch, 1, cpp_blocks(channels, dtype), threads)


def _direction_params(k, E, dt_proj_weight, dt_proj_bias, A, D):
    e = slice(k * E, (k + 1) * E)
    return (dt_proj_weight[k].contiguous(), dt_proj_bias[k].contiguous(),
            A[e].contiguous(), D[e].contiguous())


def _combined(rows: int, X: int, dtype: torch.dtype) -> bool:
    """Whether the four directions' (rows, X) products fit
    :data:`COMBINED_BYTES` together."""
    size = torch.finfo(dtype).bits // 8
    return NUM_DIRECTIONS * rows * X * size <= COMBINED_BYTES


def _direction_groups(rows: int, X: int, dtype: torch.dtype):
    """The directions whose x_proj products are made together: all four
    (one GEMM, read in column blocks) when they fit :data:`COMBINED_BYTES`,
    else one at a time.

    Returns:
        list[range]: consecutive groups of direction indices.
    """
    if _combined(rows, X, dtype):
        return [range(NUM_DIRECTIONS)]
    return [range(k, k + 1) for k in range(NUM_DIRECTIONS)]


def _x_proj(x2d: Tensor, w: Tensor, proj_dtype=None) -> Tensor:
    """``x2d @ w^T`` in ``x2d``'s dtype; with ``proj_dtype`` the product in
    that dtype, over chunks of :data:`PROJ_CHUNK` pixels (each cast where
    it is used, so no full-size low-precision copy of ``x2d`` is kept),
    widened into the result."""
    if proj_dtype is None or proj_dtype == x2d.dtype:
        return x2d @ w.t()
    out = x2d.new_empty(x2d.shape[0], w.shape[0])
    wt = w.to(proj_dtype).t()
    for s in range(0, x2d.shape[0], PROJ_CHUNK):
        out[s:s + PROJ_CHUNK] = x2d[s:s + PROJ_CHUNK].to(proj_dtype) @ wt
    return out


class SS2DScanFusedFn(torch.autograd.Function):
    """Autograd function of the fused SS2D scan; see :func:`ss2d_scan_fused`
    for the arguments."""

    @staticmethod
    @torch.amp.custom_fwd(device_type='cpu')
    def forward(ctx, x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log,
                D, need_grad: bool, proj_dtype=None):
        mod = cpu_ext.load()
        Bsz, E, H, W = x.shape
        L = H * W
        N = A_log.shape[1]
        X = x_proj_weight.shape[1]
        K = chunk_size(L)
        # a view when x is channels-last already, else one copy
        x_cl = x.permute(0, 2, 3, 1).contiguous().view(Bsz, L, E)
        x2d = x_cl.view(Bsz * L, E)
        A = -torch.exp(A_log)
        y = x.new_empty(Bsz, L, E)  # written by direction 0
        ckpts = []
        empty = x.new_empty(0)
        if need_grad:
            proj_dtype = None
        # x_proj on the row-major map: per pixel [dt_low | B | C] of each
        # direction of the group, side by side
        for grp in _direction_groups(Bsz * L, X, x.dtype):
            xdbl = _x_proj(x2d, x_proj_weight[grp.start:grp.stop].reshape(
                -1, E), proj_dtype).view(Bsz, L, len(grp) * X)
            for i, k in enumerate(grp):
                ck = (x.new_empty(Bsz, -(-L // K), N, E)
                      if need_grad else empty)
                mod.fwd(x_cl, xdbl[:, :, i * X:(i + 1) * X],
                        *_direction_params(k, E, dt_proj_weight,
                                           dt_proj_bias, A, D), y, ck, H, W,
                        k, K, accumulate=k > 0)
                ckpts.append(ck)
            del xdbl
        if need_grad:
            # x, not x_cl: the channels-last copy is remade in the backward
            # instead of being kept alive until then
            ctx.save_for_backward(x, x_proj_weight, dt_proj_weight,
                                  dt_proj_bias, A_log, D)
            ctx.ckpts = ckpts
            ctx.K = K
        return y.view(Bsz, H, W, E).permute(0, 3, 1, 2)

    @staticmethod
    @torch.amp.custom_bwd(device_type='cpu')
    def backward(ctx, dy):
        mod = cpu_ext.load()
        x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D = \
            ctx.saved_tensors
        Bsz, E, H, W = x.shape
        L = H * W
        X = x_proj_weight.shape[1]
        K = ctx.K
        dtype = x.dtype
        x_cl = x.permute(0, 2, 3, 1).contiguous().view(Bsz, L, E)
        x2d = x_cl.view(Bsz * L, E)
        dy_cl = dy.to(dtype).permute(0, 2, 3, 1).contiguous().view(Bsz, L, E)
        S = num_slots(Bsz, E, dtype, torch.get_num_threads())
        A = -torch.exp(A_log)
        dx = torch.zeros(Bsz, L, E, dtype=dtype)
        dWdt = torch.empty(dt_proj_weight.shape, dtype=torch.float64)
        dbias = torch.empty(dt_proj_bias.shape, dtype=torch.float64)
        dA = torch.empty(A_log.shape, dtype=torch.float64)
        dD = torch.empty(D.shape, dtype=torch.float64)
        dWx = torch.empty_like(x_proj_weight)
        for grp in _direction_groups(S * Bsz * L, X, dtype):
            g = slice(grp.start, grp.stop)
            Xg = len(grp) * X
            wg = x_proj_weight[g].reshape(Xg, E)
            xdbl = (x2d @ wg.t()).view(Bsz, L, Xg)
            # every direction writes its column block at every position
            dxp = torch.empty(S, Bsz, L, Xg, dtype=dtype)
            for i, k in enumerate(grp):
                e = slice(k * E, (k + 1) * E)
                cols = slice(i * X, (i + 1) * X)
                dWdt[k], dbias[k], dA[e], dD[e] = mod.bwd(
                    x_cl, xdbl[:, :, cols],
                    *_direction_params(k, E, dt_proj_weight, dt_proj_bias, A,
                                       D), dy_cl, ctx.ckpts[k], dx,
                    dxp[..., cols], H, W, k, K)
            del xdbl
            dxd = (dxp[0] if S == 1 else dxp.sum(0)).view(Bsz * L, Xg)
            del dxp
            dWx[g] = (dxd.t() @ x2d).view(len(grp), X, E)
            dx.view(Bsz * L, E).addmm_(dxd, wg)
            del dxd
        dA_log = (dA * A.to(torch.float64)).to(A_log.dtype)
        dx = dx.view(Bsz, H, W, E).permute(0, 3, 1, 2)
        return (dx, dWx, dWdt.to(dtype), dbias.to(dtype), dA_log,
                dD.to(D.dtype), None, None)


def fused_available() -> bool:
    """Whether :func:`ss2d_scan_fused` can run (the extension is built).

    Returns:
        bool
    """
    return cpu_ext.available()


def ss2d_scan_fused(x: Tensor, x_proj_weight: Tensor, dt_proj_weight: Tensor,
                    dt_proj_bias: Tensor, A_log: Tensor, D: Tensor,
                    dt_rank: int, proj_dtype=None) -> Tensor:
    """SS2D's four-direction scan, fused (CPU, C++ kernel).

    Args:
        x (Tensor): (B, E, H, W) CPU map, float32 or float64 (float16 /
            bfloat16 are computed in float32).
        x_proj_weight (Tensor): (4, dt_rank + 2N, E).
        dt_proj_weight (Tensor): (4, E, dt_rank).
        dt_proj_bias (Tensor): (4, E), the scan's delta bias.
        A_log (Tensor): (4E, N); the scan uses ``A = -exp(A_log)``.
        D (Tensor): (4E,) skip weights.
        dt_rank (int): rank of the delta projection.
        proj_dtype (torch.dtype, optional): without gradients, the dtype
            of the ``x_proj`` products (``torch.bfloat16`` for bf16
            inference; their outputs, the scan's delta, B and C, are
            rounded to it and the recurrence runs in float32). None: the
            compute dtype. Ignored when gradients are needed.

    Returns:
        Tensor: (B, E, H, W), channels-last memory format, in ``x``'s dtype
        (float32 under CPU autocast: the projections and the kernel run
        with autocast off): the sum of the four directional scans in
        row-major order.
    """
    if cpu_ext.load() is None:
        raise RuntimeError('ss2d_scan_fused: the C++ extension is not '
                           f'available: {cpu_ext.unavailable_reason()}')
    if x.dim() != 4:
        raise ValueError(f'ss2d_scan_fused: x must be (B, E, H, W), got '
                         f'shape {tuple(x.shape)}')
    if x.device.type != 'cpu':
        raise ValueError(f'ss2d_scan_fused: x must be a CPU tensor, got '
                         f'{x.device}')
    if not x.is_floating_point():
        raise TypeError(f'ss2d_scan_fused: x must be floating point, got '
                        f'{x.dtype}')
    _, E, _, _ = x.shape
    N = A_log.shape[-1]
    expect = dict(x_proj_weight=(4, dt_rank + 2 * N, E),
                  dt_proj_weight=(4, E, dt_rank), dt_proj_bias=(4, E),
                  A_log=(4 * E, N), D=(4 * E, ))
    got = dict(x_proj_weight=x_proj_weight, dt_proj_weight=dt_proj_weight,
               dt_proj_bias=dt_proj_bias, A_log=A_log, D=D)
    for name, shape in expect.items():
        if tuple(got[name].shape) != shape:
            raise ValueError(f'ss2d_scan_fused: {name} must be {shape}, got '
                             f'{tuple(got[name].shape)}')
        if got[name].device.type != 'cpu':
            raise ValueError(f'ss2d_scan_fused: {name} must be on the CPU')
    if N > MAX_STATE or dt_rank > MAX_RANK:
        raise ValueError(f'ss2d_scan_fused: d_state {N} / dt_rank {dt_rank} '
                         f'exceed the kernel\'s {MAX_STATE} / {MAX_RANK}')
    dtype_in = x.dtype
    cdt = torch.float64 if dtype_in == torch.float64 else torch.float32
    params = [p.to(cdt) for p in (x_proj_weight, dt_proj_weight,
                                  dt_proj_bias, A_log, D)]
    args = [x.to(cdt)] + params
    need_grad = torch.is_grad_enabled() and any(a.requires_grad for a in args)
    if torch.is_autocast_enabled('cpu'):
        # the kernel takes its projections in the compute dtype: autocast
        # off for them (custom_bwd: the backward too); the float32 result
        # is kept, as autocast's float32 ops return theirs
        with torch.autocast('cpu', enabled=False):
            return SS2DScanFusedFn.apply(*args, need_grad, proj_dtype)
    y = SS2DScanFusedFn.apply(*args, need_grad, proj_dtype)
    return y if dtype_in == cdt else y.to(dtype_in)
