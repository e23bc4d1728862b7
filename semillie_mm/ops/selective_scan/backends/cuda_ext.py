# Copyright (c) semillie-mm contributors. All rights reserved.
"""Autograd wrapper around a standalone ``selective_scan_cuda`` extension.

mamba-ssm's selective-scan kernel is compiled into a Python extension module
named ``selective_scan_cuda`` with two functions, ``fwd`` and ``bwd``. The
full mamba-ssm package wraps it in ``selective_scan_fn``; on machines where
only the extension was built (``benchmarks/gpu/build_selective_scan.py``
builds just that module from mamba-ssm's ``csrc/selective_scan`` sources, see
docs/benchmarks.md, "GPU check"), this module provides the same function.

The extension's calling convention (mamba-ssm 2.x, read from its
``selective_scan.cpp``):

- ``fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)`` returns
  ``[out, x]`` or, with ``z``, ``[out, x, out_z]``; ``x`` holds the chunk
  states (batch, dim, n_chunks, 2 * N) the backward needs, the last state
  being ``x[:, :, -1, 1::2]``;
- ``bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz,
  delta_softplus, recompute_out_z)`` returns
  ``[du, ddelta, dA, dB, dC, dD, ddelta_bias]`` (+ ``dz`` with ``z``);
- input-dependent ``B``/``C`` must be 4-d (batch, groups, N, L), ``u``,
  ``delta``, ``B``, ``C``, ``z`` and ``dout`` contiguous along L, ``A``,
  ``D`` and ``delta_bias`` float32.
"""
from typing import Optional

import torch
from torch import Tensor


def _last_contiguous(x: Optional[Tensor]) -> Optional[Tensor]:
    if x is None or x.stride(-1) == 1:
        return x
    return x.contiguous()


class ExtensionScanFn(torch.autograd.Function):
    """``selective_scan`` through the compiled module's ``fwd``/``bwd``."""

    @staticmethod
    def forward(ctx, module, u, delta, A, B, C, D, z, delta_bias,
                delta_softplus, return_last_state):
        u, delta, z = (_last_contiguous(t) for t in (u, delta, z))
        squeeze_B, squeeze_C = B.dim() == 3, C.dim() == 3
        B = _last_contiguous(B.unsqueeze(1) if squeeze_B else B)
        C = _last_contiguous(C.unsqueeze(1) if squeeze_C else C)
        out, x, *rest = module.fwd(u, delta, A, B, C, D, z, delta_bias,
                                   delta_softplus)
        ctx.module = module
        ctx.delta_softplus = delta_softplus
        ctx.squeeze = (squeeze_B, squeeze_C)
        ctx.has_z = z is not None
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        result = rest[0] if z is not None else out
        last_state = x[:, :, -1, 1::2]
        ctx.mark_non_differentiable(last_state)
        return result, last_state

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        dout = _last_contiguous(dout)
        grads = ctx.module.bwd(u, delta, A, B, C, D, z, delta_bias, dout, x,
                               out, None, ctx.delta_softplus, False)
        du, ddelta, dA, dB, dC, dD, ddelta_bias = grads[:7]
        dz = grads[7] if ctx.has_z else None
        squeeze_B, squeeze_C = ctx.squeeze
        if squeeze_B:
            dB = dB.squeeze(1)
        if squeeze_C:
            dC = dC.squeeze(1)
        return (None, du, ddelta, dA, dB, dC, dD if D is not None else None,
                dz, ddelta_bias if delta_bias is not None else None, None,
                None)


def make_extension_scan_fn(module):
    """A ``selective_scan_fn``-like function over a compiled module.

    Args:
        module: the imported ``selective_scan_cuda`` extension.

    Returns:
        Callable: ``fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
        delta_softplus=False, return_last_state=False)`` with mamba-ssm's
        ``selective_scan_fn`` semantics (no gradient through
        ``last_state``).
    """

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False):
        out, last_state = ExtensionScanFn.apply(module, u, delta, A, B, C, D,
                                                z, delta_bias,
                                                bool(delta_softplus),
                                                bool(return_last_state))
        return (out, last_state) if return_last_state else out

    return selective_scan_fn
