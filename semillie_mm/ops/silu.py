# Copyright (c) semillie-mm contributors. All rights reserved.
"""SiLU, its gradient and MSSM's gate for the insides of autograd Functions
(C++ kernels).

MSSM's memory-lean training (:mod:`semillie_mm.ops.mssm_lean`) applies SiLU
to its fuse conv's two branches and to its gate, and recomputes them in the
backward. torch's ``silu`` and ``silu_backward`` each take one full pass of
Sleef's exp (about 1 ms per 2 M float32 elements on 2 threads of an AVX2
Zen 3); the extension's ``silu_fwd`` / ``silu_bwd`` (``csrc/pointwise.cpp``)
use the scans' exp2 and give the gradient and SiLU itself in one pass;
``gate_bwd`` (:func:`gate_backward`) does the whole backward of MSSM's gate
``LN(y) * SiLU(z)`` in one pass.

None of them records autograd (they are for the forward and backward of
autograd Functions, and for no-grad inference). The kernels run where they
apply: float32 CPU tensors of the same sizes and strides, contiguous or
channels-last, the extension built, no tracing. Anything else takes torch's
``silu`` / ``silu_backward`` and products; the two agree to about 1e-6
relative.
"""
from typing import Optional

import torch
from torch import Tensor

from . import cpu_ext


def _dense_alike(ts) -> bool:
    x = ts[0]
    if not (x.is_contiguous()
            or x.is_contiguous(memory_format=torch.channels_last)):
        return False
    return all(t.shape == x.shape and t.stride() == x.stride() for t in ts)


def kernel_applies(*tensors: Tensor) -> bool:
    """Whether :func:`silu` / :func:`silu_backward` run the C++ kernel on
    these tensors (inputs and outputs).

    Args:
        *tensors (Tensor): the operands.

    Returns:
        bool
    """
    if any(t.device.type != 'cpu' or t.dtype != torch.float32
           for t in tensors):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    return (_dense_alike(tensors) and cpu_ext.available()
            and hasattr(cpu_ext.load(), 'silu_fwd'))


def silu(x: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``x * sigmoid(x)``, not recorded by autograd.

    Args:
        x (Tensor): the input.
        out (Tensor, optional): where to write it (may be ``x``).

    Returns:
        Tensor: SiLU of ``x`` (``out`` when given).
    """
    if out is None:
        out = torch.empty_like(x)
    with torch.no_grad():
        if kernel_applies(x, out):
            cpu_ext.load().silu_fwd(x, out)
            return out
        return torch.ops.aten.silu.out(x, out=out)


def silu_backward(x: Tensor, d: Tensor, grad: Optional[Tensor] = None,
                  silu_out: Optional[Tensor] = None) -> Tensor:
    """The gradient ``d * silu'(x)`` and, into ``silu_out``, ``silu(x)``
    from the same pass; not recorded by autograd.

    Args:
        x (Tensor): SiLU's input.
        d (Tensor): the gradient of SiLU's output.
        grad (Tensor, optional): where to write the gradient (may be
            ``d``).
        silu_out (Tensor, optional): where to write ``silu(x)`` too (may
            be ``x``, not ``d`` or ``grad``).

    Returns:
        Tensor: the gradient (``grad`` when given).
    """
    if grad is None:
        grad = torch.empty_like(x)
    outs = (grad, ) if silu_out is None else (grad, silu_out)
    with torch.no_grad():
        if kernel_applies(x, d, *outs):
            cpu_ext.load().silu_bwd(
                x, d, grad, x.new_empty(0) if silu_out is None else silu_out)
            return grad
        torch.ops.aten.silu_backward.grad_input(d, x, grad_input=grad)
        if silu_out is not None:
            torch.ops.aten.silu.out(x, out=silu_out)
    return grad


def gate_backward(z: Tensor, ln: Tensor, dg: Tensor,
                  g_out: Optional[Tensor] = None,
                  dz_out: Optional[Tensor] = None,
                  dln_out: Optional[Tensor] = None) -> None:
    """The backward of MSSM's gate ``g = ln * silu(z)`` in one pass; not
    recorded by autograd. Each output is written only when given.

    Args:
        z (Tensor): the gate's input.
        ln (Tensor): the normalised map it multiplies.
        dg (Tensor): the gradient of ``g``.
        g_out (Tensor, optional): receives ``g`` itself.
        dz_out (Tensor, optional): receives ``dg * ln * silu'(z)``.
        dln_out (Tensor, optional): receives ``dg * silu(z)`` (may be
            ``dg``).
    """
    outs = [t for t in (g_out, dz_out, dln_out) if t is not None]
    none = z.new_empty(0)
    with torch.no_grad():
        if kernel_applies(z, ln, dg, *outs):
            cpu_ext.load().gate_bwd(
                z, ln, dg, *(none if t is None else t
                             for t in (g_out, dz_out, dln_out)))
            return
        s = torch.ops.aten.silu(z)
        if g_out is not None:
            torch.mul(ln, s, out=g_out)
        if dz_out is not None:  # before dln_out, which may be dg
            torch.ops.aten.silu_backward.grad_input(dg * ln, z,
                                                    grad_input=dz_out)
        if dln_out is not None:
            torch.mul(dg, s, out=dln_out)
