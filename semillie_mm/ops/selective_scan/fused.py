# Copyright (c) semillie-mm contributors. All rights reserved.
"""Fused four-direction SS2D scan on CPU (the C++ kernel of :mod:`.ext`).

:func:`ss2d_scan_fused` computes exactly what :class:`SS2D`'s unfused path
computes -- per direction ``k`` the projections ``x_proj`` / ``dt_proj``,
``dt = softplus(dt_proj(x) + bias)``, the selective scan along the
direction's pixel order, and the sum of the four outputs in row-major order
-- without materialising any flipped or transposed copy:

- the projections are pointwise, so they are computed on the channels-last
  (batch, H*W, E) map in row-major order (plain GEMMs), and the kernel reads
  u, dt, B and C at the position of each step of the direction
  (index arithmetic) and adds its output into one row-major buffer;
- directions run one after another, and within a direction the channels
  are processed in groups (the scan is independent per channel; B and C are
  shared), so the largest temporary is one group's ``dt`` -- a
  (batch, H*W, group) map of at most about 64 MiB unless the thread count
  asks for wider groups;
- for training only the states entering every chunk of ``K`` steps are
  kept (``batch * E * N * H*W / K`` numbers per direction); the backward
  recomputes the projections and dt per (direction, group) and the states
  per chunk.

The result is a (B, E, H, W) tensor in channels-last memory format (a
permuted view of the (B, H, W, E) buffer), which is what SS2D's caller
permutes to anyway. The kernels run on torch's intra-op thread pool
(``at::parallel_for``), so ``torch.set_num_threads`` governs them and
nothing changes the thread count.
"""
import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ext

#: directions, in the order of SS2D's parameters: row-major, column-major,
#: row-major reversed, column-major reversed
NUM_DIRECTIONS = 4
#: largest d_state the kernel takes (its per-thread state arrays)
MAX_STATE = 64
#: channels per kernel call are chosen so one group's dt stays below this
GROUP_BYTES = 64 << 20


def chunk_size(length: int) -> int:
    """Checkpoint interval of the backward: ceil(sqrt(L)), at most 128 (the
    per-thread recompute buffers then stay in L2).

    Args:
        length (int): H * W.

    Returns:
        int: K >= 1.
    """
    return max(1, min(128, math.isqrt(max(length - 1, 0)) + 1))


def channel_groups(batch: int, length: int, channels: int, itemsize: int,
                   threads: int) -> List[Tuple[int, int]]:
    """Channel ranges of the kernel calls of one direction.

    Groups are multiples of 16 channels (one kernel block) with
    ``batch * length * group * itemsize <= GROUP_BYTES``, but wide enough to
    give every thread a block.

    Args:
        batch (int): batch size.
        length (int): H * W.
        channels (int): E.
        itemsize (int): bytes per number.
        threads (int): torch's intra-op threads.

    Returns:
        list[tuple[int, int]]: ``(start, stop)`` ranges covering
        ``[0, channels)``.
    """
    fit = GROUP_BYTES // max(1, batch * length * itemsize)
    need = 16 * max(1, -(-threads // batch))
    g = max(fit // 16 * 16, need, 16)
    return [(c, min(c + g, channels)) for c in range(0, channels, g)]


def _slots(batch: int, blocks: int, threads: int) -> int:
    return max(1, min(blocks, -(-threads // batch)))


class SS2DScanFusedFn(torch.autograd.Function):
    """Autograd function of the fused SS2D scan; see :func:`ss2d_scan_fused`
    for the arguments."""

    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log,
                D, dt_rank: int, need_grad: bool):
        mod = ext.load()
        Bsz, E, H, W = x.shape
        L = H * W
        N = A_log.shape[1]
        R = dt_rank
        K = chunk_size(L)
        threads = torch.get_num_threads()
        x_cl = x.permute(0, 2, 3, 1).contiguous().view(Bsz, L, E)
        x2d = x_cl.view(Bsz * L, E)
        A = -torch.exp(A_log)
        groups = channel_groups(Bsz, L, E, x.element_size(), threads)
        y = torch.zeros(Bsz, L, E, dtype=x.dtype)
        ckpts = []
        empty = x.new_empty(0)
        for k in range(NUM_DIRECTIONS):
            xdbl = x2d @ x_proj_weight[k].t()  # (B*L, R + 2N)
            Bk = xdbl[:, R:R + N].view(Bsz, L, N)
            Ck = xdbl[:, R + N:].view(Bsz, L, N)
            for c0, c1 in groups:
                e = slice(k * E + c0, k * E + c1)
                dt = F.softplus(
                    torch.addmm(dt_proj_bias[k, c0:c1], xdbl[:, :R],
                                dt_proj_weight[k, c0:c1].t())).view(
                                    Bsz, L, c1 - c0)
                ck = (x.new_empty(Bsz, -(-L // K), N, c1 - c0)
                      if need_grad else empty)
                mod.fwd(x_cl[:, :, c0:c1], dt, Bk, Ck, A[e].contiguous(),
                        D[e].contiguous(), y[:, :, c0:c1], ck, H, W, k, K)
                ckpts.append(ck)
                del dt
            del xdbl, Bk, Ck
        if need_grad:
            ctx.save_for_backward(x_proj_weight, dt_proj_weight,
                                  dt_proj_bias, A_log, D)
            ctx.x_cl = x_cl
            ctx.ckpts = ckpts
            ctx.meta = (Bsz, E, H, W, N, R, K, groups)
        return y.view(Bsz, H, W, E).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, dy):
        mod = ext.load()
        x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D = \
            ctx.saved_tensors
        x_cl = ctx.x_cl
        Bsz, E, H, W, N, R, K, groups = ctx.meta
        L = H * W
        threads = torch.get_num_threads()
        dtype = x_cl.dtype
        dy_cl = dy.permute(0, 2, 3, 1).to(dtype).contiguous().view(Bsz, L, E)
        x2d = x_cl.view(Bsz * L, E)
        A = -torch.exp(A_log)
        dx = torch.zeros(Bsz, L, E, dtype=dtype)
        dWx = torch.empty_like(x_proj_weight)
        dWdt = torch.empty_like(dt_proj_weight)
        dbias = torch.empty_like(dt_proj_bias)
        dA = torch.empty(A_log.shape, dtype=torch.float64)
        dD = torch.empty(D.shape, dtype=torch.float64)
        ckpts = iter(ctx.ckpts)
        for k in range(NUM_DIRECTIONS):
            xdbl = x2d @ x_proj_weight[k].t()
            Bk = xdbl[:, R:R + N].view(Bsz, L, N)
            Ck = xdbl[:, R + N:].view(Bsz, L, N)
            dxdbl = torch.zeros_like(xdbl)
            dR = dxdbl[:, :R]
            for c0, c1 in groups:
                Eg = c1 - c0
                e = slice(k * E + c0, k * E + c1)
                raw = torch.addmm(dt_proj_bias[k, c0:c1], xdbl[:, :R],
                                  dt_proj_weight[k, c0:c1].t())
                dt = F.softplus(raw).view(Bsz, L, Eg)
                S = _slots(Bsz, -(-Eg // (16 if dtype == torch.float32
                                           else 8)), threads)
                dBp = torch.empty(S, Bsz, L, N, dtype=dtype)
                dCp = torch.empty(S, Bsz, L, N, dtype=dtype)
                ddt = torch.empty(Bsz, L, Eg, dtype=dtype)
                dA_g, dD_g = mod.bwd(x_cl[:, :, c0:c1], dt, Bk, Ck,
                                     A[e].contiguous(), D[e].contiguous(),
                                     dy_cl[:, :, c0:c1], next(ckpts),
                                     dx[:, :, c0:c1], ddt, dBp, dCp, H, W, k,
                                     K)
                dA[e] = dA_g
                dD[e] = dD_g
                # through softplus (torch's threshold 20, like F.softplus)
                draw = torch.ops.aten.softplus_backward(
                    ddt.view(Bsz * L, Eg), raw, 1.0, 20.0)
                del raw, dt, ddt
                dbias[k, c0:c1] = draw.sum(0)
                dWdt[k, c0:c1] = draw.t() @ xdbl[:, :R]
                dR.addmm_(draw, dt_proj_weight[k, c0:c1])
                dxdbl[:, R:R + N] += dBp.sum(0).view(Bsz * L, N)
                dxdbl[:, R + N:] += dCp.sum(0).view(Bsz * L, N)
                del draw, dBp, dCp
            dWx[k] = dxdbl.t() @ x2d
            dx.view(Bsz * L, E).addmm_(dxdbl, x_proj_weight[k])
            del xdbl, dxdbl, Bk, Ck
        dA_log = (dA * A.to(torch.float64)).to(A_log.dtype)
        dx = dx.view(Bsz, H, W, E).permute(0, 3, 1, 2)
        return dx, dWx, dWdt, dbias, dA_log, dD.to(D.dtype), None, None


def fused_available() -> bool:
    """Whether :func:`ss2d_scan_fused` can run (the extension is built).

    Returns:
        bool
    """
    return ext.available()


def ss2d_scan_fused(x: Tensor, x_proj_weight: Tensor, dt_proj_weight: Tensor,
                    dt_proj_bias: Tensor, A_log: Tensor, D: Tensor,
                    dt_rank: int) -> Tensor:
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

    Returns:
        Tensor: (B, E, H, W), channels-last memory format, in ``x``'s dtype:
        the sum of the four directional scans in row-major order.
    """
    if ext.load() is None:
        raise RuntimeError('ss2d_scan_fused: the C++ extension is not '
                           f'available: {ext.unavailable_reason()}')
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
    if N > MAX_STATE:
        raise ValueError(f'ss2d_scan_fused: d_state {N} exceeds the '
                         f'kernel\'s {MAX_STATE}')
    dtype_in = x.dtype
    cdt = torch.float64 if dtype_in == torch.float64 else torch.float32
    params = [p.to(cdt) for p in (x_proj_weight, dt_proj_weight,
                                  dt_proj_bias, A_log, D)]
    args = [x.to(cdt)] + params
    need_grad = torch.is_grad_enabled() and any(a.requires_grad for a in args)
    y = SS2DScanFusedFn.apply(*args, int(dt_rank), need_grad)
    return y if dtype_in == cdt else y.to(dtype_in)
