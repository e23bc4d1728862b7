# Copyright (c) semillie-mm contributors. All rights reserved.
"""The 'native' backend: the generic selective scan on CPU with the C++
extension (:mod:`semillie_mm.ops.cpu_ext`, ``csrc/selective_scan.cpp``);
the first choice of 'auto' and 'cpu' for CPU tensors.

Same interface as mamba-ssm's ``selective_scan_fn`` (see
:func:`selective_scan`); the kernel reads u, delta and z in their
(batch, dim, L) layout (any strides) and makes its own (batch, G, L, N)
copies of B and C. The forward keeps, when a gradient is needed, the state
entering every chunk of ``K = min(128, ceil(sqrt(L)))`` steps
(``batch * dim * N * ceil(L / K)`` numbers); the backward recomputes one
chunk at a time in per-thread buffers. dB / dC are accumulated into
``S`` partial buffers (one, i.e. none extra, whenever ``batch * groups``
covers the threads) and summed here. The kernels run on torch's intra-op
thread pool (``at::parallel_for``): ``torch.set_num_threads`` governs them
and nothing changes the thread count.

float64 inputs are computed in float64, float32/float16/bfloat16 in
float32; sums over the sequence (dA, dD, d delta_bias) in float64.
"""
from typing import Optional

import torch
from torch import Tensor

from ... import cpu_ext
from ..common import chunk_size, cpp_blocks, kernel_args, num_slots


def native_available() -> bool:
    """Whether the extension (with its generic-layout scan) is built here.

    Returns:
        bool
    """
    mod = cpu_ext.load()
    return mod is not None and hasattr(mod, 'scan_fwd')


def _grouped(X: Tensor) -> Tensor:
    """(batch, N, L) or (batch, G, N, L) -> a detached (batch, G, N, L) view
    (the kernel reads any strides)."""
    return (X.unsqueeze(1) if X.dim() == 3 else X).detach()


class SelectiveScanNativeFn(torch.autograd.Function):
    """Autograd function of the C++ scan (inputs in the compute dtype,
    float32 or float64, CPU; B and C with the same number of groups; A, D,
    delta_bias contiguous). Returns ``(out, last_state)``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        mod = cpu_ext.load()
        K = chunk_size(u.shape[2])
        out, last, ckpt = mod.scan_fwd(u, delta, A, _grouped(B),
                                       _grouped(C), D, z,
                                       delta_bias, bool(delta_softplus), K,
                                       True)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.K = K
        ctx.B_dim = B.dim()
        ctx.C_dim = C.dim()
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        mod = cpu_ext.load()
        batch, dim, _ = u.shape
        G = B.shape[1] if B.dim() == 4 else 1
        S = num_slots(batch, G, cpp_blocks(dim // G, u.dtype),
                      torch.get_num_threads())
        dtype = u.dtype
        du, ddelta, dz, dA, dB, dC, dD, dbias = mod.scan_bwd(
            u, delta, A, _grouped(B), _grouped(C), D, z,
            delta_bias, ctx.delta_softplus, ctx.K, ckpt,
            None if dout is None else dout.to(dtype),
            None if dlast is None else dlast.to(dtype).contiguous(), S)
        if ctx.B_dim == 3:
            dB = dB.squeeze(1)
        if ctx.C_dim == 3:
            dC = dC.squeeze(1)
        return (du, ddelta, dA.to(dtype), dB, dC,
                dD.to(dtype) if D is not None else None,
                dz if z is not None else None,
                dbias.to(dtype) if delta_bias is not None else None, None)


def selective_scan_native(u: Tensor,
                          delta: Tensor,
                          A: Tensor,
                          B: Tensor,
                          C: Tensor,
                          D: Optional[Tensor] = None,
                          z: Optional[Tensor] = None,
                          delta_bias: Optional[Tensor] = None,
                          delta_softplus: bool = False,
                          return_last_state: bool = False):
    """Selective scan on CPU tensors with the C++ kernel.

    Same arguments and results as :func:`selective_scan`; inputs are not
    validated here (that is :func:`selective_scan`'s job). Inputs are cast
    to the compute dtype (float64 for float64 ``u``, else float32); ``out``
    is returned in ``u``'s dtype and ``last_state`` in the compute dtype.
    The gradient of ``last_state`` is propagated.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` or ``(out, last_state)``.

    Raises:
        RuntimeError: the extension is not built here.
    """
    if not native_available():
        raise RuntimeError('selective_scan: the C++ CPU kernel is not '
                           f'available: {cpu_ext.unavailable_reason()}')
    dtype_in = u.dtype
    args, need_grad = kernel_args(u, delta, A, B, C, D, z, delta_bias)
    for i in (2, 5, 7):  # A, D, delta_bias: the kernel takes them dense
        if args[i] is not None:
            args[i] = args[i].contiguous()
    if need_grad:
        out, last = SelectiveScanNativeFn.apply(*args, bool(delta_softplus))
    else:
        u_, delta_, A_, B_, C_, D_, z_, bias_ = [
            None if x is None else x.detach() for x in args]
        out, last, _ = cpu_ext.load().scan_fwd(
            u_, delta_, A_, _grouped(B_), _grouped(C_),
            D_, z_, bias_, bool(delta_softplus), chunk_size(u.shape[2]),
            False)
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out
