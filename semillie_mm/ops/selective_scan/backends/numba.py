# Copyright (c) semillie-mm contributors. All rights reserved.
"""The 'numba' backend (the fallback of the C++ one where the extension is
not built): numba kernels (:mod:`.numba_kernels`) + autograd.

The forward runs :func:`numba_kernels.scan_fwd` (parallel over
batch x channels, one N-vector of state per pair). When a gradient is needed
it also stores the state entering every chunk of
``K = min(128, ceil(sqrt(L)))`` steps (:func:`..common.chunk_size`, the C++
kernels' interval; ``batch * dim * N * ceil(L / K)`` numbers); the backward
recomputes one chunk at a time into a K x N buffer per worker and runs the
adjoint recurrence (:func:`numba_kernels.scan_bwd`). dB and dC, shared by the channels
of a group, are accumulated without races: work items are
(slot, batch, group) and each slot writes its own partial buffer; there is
one slot (no extra buffer) whenever ``batch * groups`` covers the threads.

Dtypes: float64 inputs are computed in float64, float32/float16/bfloat16 in
float32 (numba has no half types); sums over the sequence (dA, dD) are
accumulated in float64. numba is imported on first use only: the first call
in a fresh environment JIT-compiles the kernels (about 1-2 minutes per dtype
on a 2-core machine, see docs/benchmarks.md); ``cache=True`` stores them in
``__pycache__`` next to the source (or ``NUMBA_CACHE_DIR``) for later
processes, which then load them in about a second.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common import chunk_size, kernel_args, num_slots

_kernels = None


def numba_available() -> bool:
    """Whether numba imports (the kernels are not compiled by this call).

    Returns:
        bool: True if the 'numba' backend can run.
    """
    try:
        import numba  # noqa: F401
    except Exception:  # ImportError, or numba incompatible with numpy
        return False
    return True


def _get_kernels():
    global _kernels
    if _kernels is None:
        from . import numba_kernels
        _kernels = numba_kernels
    return _kernels


def _num_threads() -> int:
    import numba
    return max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))


def _launch(kernel, threads: int, *args) -> None:
    """Run a parallel numba kernel on ``threads`` threads, leaving torch's
    intra-op thread count as it was.

    With numba's OpenMP threading layer, ``numba.set_num_threads`` sets the
    OpenMP thread count that torch shares: restoring numba's previous count
    (its default, all cores) used to raise torch's count, e.g. from 1 to 2.
    numba's count is set to torch's (never above it) and torch's count is
    put back if anything changed it.
    """
    import numba
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(threads)
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


def _np(x: Tensor):
    return x.detach().contiguous().numpy()


def _prepare(u, delta, A, B, C, D, z, delta_bias):
    """Contiguous numpy views (B/C transposed to (batch, G, L, N))."""
    dim = u.shape[1]
    dtype = u.dtype
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    Bt = B.detach().transpose(2, 3).contiguous()
    Ct = C.detach().transpose(2, 3).contiguous()
    zeros = torch.zeros(dim, dtype=dtype)
    Dn = _np(D) if D is not None else zeros.numpy()
    bn = _np(delta_bias) if delta_bias is not None else zeros.numpy()
    zn = _np(z) if z is not None else torch.zeros(1, 1, 1, dtype=dtype).numpy()
    return (_np(u), _np(delta), _np(A), Bt.numpy(), Ct.numpy(), Dn, zn, bn)


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
             save_ckpt: bool) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    kernels = _get_kernels()
    batch, dim, length = u.shape
    N = A.shape[1]
    K = chunk_size(length)
    n_chunks = -(-length // K)
    groups = B.shape[1] if B.dim() == 4 else 1
    lanes = kernels.lanes_for(dim // groups)
    arrays = _prepare(u, delta, A, B, C, D, z, delta_bias)
    out = torch.empty(batch, dim, length, dtype=u.dtype)
    last = torch.empty(batch, dim, N, dtype=u.dtype)
    if save_ckpt:
        ckpt = torch.empty(batch, dim, n_chunks, N, dtype=u.dtype)
    else:
        ckpt = torch.empty(1, 1, 1, N, dtype=u.dtype)
    _launch(kernels.scan_fwd, _num_threads(), *arrays, D is not None,
            z is not None, bool(delta_softplus), K, lanes, save_ckpt,
            out.numpy(), last.numpy(), ckpt.numpy())
    return out, last, (ckpt if save_ckpt else None)


class SelectiveScanNumbaFn(torch.autograd.Function):
    """Autograd function of the numba scan (inputs in the compute dtype,
    float32 or float64, CPU). Returns ``(out, last_state)``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        out, last, ckpt = _forward(u, delta, A, B, C, D, z, delta_bias,
                                   delta_softplus, save_ckpt=True)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.has_D = D is not None
        ctx.has_z = z is not None
        ctx.has_bias = delta_bias is not None
        ctx.B_dim = B.dim()
        ctx.C_dim = C.dim()
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        kernels = _get_kernels()
        batch, dim, length = u.shape
        N = A.shape[1]
        dtype = u.dtype
        G = B.shape[1] if B.dim() == 4 else 1
        K = chunk_size(length)
        threads = _num_threads()
        lanes = kernels.lanes_for(dim // G)
        S = num_slots(batch, G, -(-(dim // G) // lanes), threads)
        arrays = _prepare(u, delta, A, B, C, D, z, delta_bias)
        dummy = torch.zeros(1, 1, 1, dtype=dtype)
        dout_t = dout.contiguous().to(dtype) if dout is not None else dummy
        dlast_t = (dlast.contiguous().to(dtype)
                   if dlast is not None else torch.zeros(1, 1, N, dtype=dtype))
        du = torch.empty(batch, dim, length, dtype=dtype)
        ddelta = torch.empty(batch, dim, length, dtype=dtype)
        dz = (torch.empty(batch, dim, length, dtype=dtype)
              if ctx.has_z else dummy)
        dA = torch.empty(batch, dim, N, dtype=torch.float64)
        dD = torch.empty(batch, dim, dtype=torch.float64)
        dbias = torch.empty(batch, dim, dtype=torch.float64)
        dBp = torch.zeros(S, batch, G, length, N, dtype=dtype)
        dCp = torch.zeros(S, batch, G, length, N, dtype=dtype)
        _launch(kernels.scan_bwd, threads, *arrays, ctx.has_D, ctx.has_z,
                ctx.delta_softplus, K, lanes, ckpt.numpy(), dout_t.numpy(),
                dout is not None, dlast_t.numpy(), dlast is not None, S,
                du.numpy(), ddelta.numpy(), dz.numpy(), dA.numpy(),
                dD.numpy(), dbias.numpy(), dBp.numpy(), dCp.numpy())
        dB = (dBp[0] if S == 1 else dBp.sum(0)).transpose(2, 3)
        dC = (dCp[0] if S == 1 else dCp.sum(0)).transpose(2, 3)
        if ctx.B_dim == 3:
            dB = dB.squeeze(1)
        if ctx.C_dim == 3:
            dC = dC.squeeze(1)
        dA = dA.sum(0).to(dtype)
        dD = dD.sum(0).to(dtype) if ctx.has_D else None
        ddelta_bias = dbias.sum(0).to(dtype) if ctx.has_bias else None
        return (du, ddelta, dA, dB, dC, dD, dz if ctx.has_z else None,
                ddelta_bias, None)


def warm_up(dtypes=(torch.float32, )) -> None:
    """Compile the numba kernels for ``dtypes`` into numba's on-disk cache
    (run by ``tools/setup_env.sh``, so that the first scan of a later
    process loads them instead of compiling).

    Args:
        dtypes (tuple[torch.dtype]): compute dtypes to compile.
    """
    for dtype in dtypes:
        g = torch.Generator().manual_seed(0)
        shapes = ((1, 8, 4), (1, 8, 4), (8, 2), (1, 2, 2, 4), (1, 2, 2, 4),
                  (8, ), (1, 8, 4), (8, ))
        x = [torch.randn(*s, generator=g, dtype=dtype).requires_grad_()
             for s in shapes]
        out, last = selective_scan_numba(*x, delta_softplus=True,
                                       return_last_state=True)
        (out.sum() + last.sum()).backward()


def selective_scan_numba(u: Tensor,
                       delta: Tensor,
                       A: Tensor,
                       B: Tensor,
                       C: Tensor,
                       D: Optional[Tensor] = None,
                       z: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = False,
                       return_last_state: bool = False):
    """Selective scan on CPU tensors with the numba kernels.

    Same arguments and results as :func:`selective_scan`; inputs are not
    validated here. Inputs are cast to the compute dtype (float64 for
    float64 ``u``, else float32); ``out`` is returned in ``u``'s dtype and
    ``last_state`` in the compute dtype. The gradient of ``last_state`` is
    propagated (mamba-ssm's CUDA kernel ignores it).

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` or ``(out, last_state)``.
    """
    dtype_in = u.dtype
    args, need_grad = kernel_args(u, delta, A, B, C, D, z, delta_bias)
    if need_grad:
        out, last = SelectiveScanNumbaFn.apply(*args, bool(delta_softplus))
    else:
        with torch.no_grad():
            out, last, _ = _forward(*args, delta_softplus, save_ckpt=False)
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out
