# Copyright (c) semillie-mm contributors. All rights reserved.
"""Depth-wise KxK convolution on channels-last CPU maps (C++ kernel).

MSSM's depth-wise 3x3 and 5x5 convs (stride 1, padding K // 2, one filter
per channel) dominate its training step on CPU, and most of that is
oneDNN's weight gradient of the 5x5 (3x its forward on a channels-last map,
measured on a 2-core Zen-5 VM). :func:`depthwise_conv2d` runs forward,
input gradient (the forward with the kernel flipped) and weight gradient
(per-thread float32 row sums added in float64) in the extension of
:mod:`semillie_mm.ops.cpu_ext`, where it applies: a float32
CPU input in channels-last memory, K in {3, 5, 7}, the extension built,
no ``torch.jit`` tracing. Anything else goes to ``F.conv2d`` with the same
arguments, so the results agree to float rounding either way.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_ext

KERNEL_SIZES = (3, 5, 7)


def _taps(weight: Tensor, flip: bool = False) -> Tensor:
    """(C, 1, K, K) -> (K*K, C) contiguous, tap-major."""
    C, _, K, _ = weight.shape
    w = weight.flip(-1, -2) if flip else weight
    return w.reshape(C, K * K).t().contiguous()


class _DepthwiseConvFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias):
        mod = cpu_ext.load()
        B, C, H, W = x.shape
        K = weight.shape[-1]
        xl = x.permute(0, 2, 3, 1).contiguous()  # a view: x is channels-last
        out = x.new_empty(B, H, W, C)
        mod.dw_conv_fwd(xl, _taps(weight),
                        bias.contiguous() if bias is not None else
                        x.new_empty(0), out, K)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        mod = cpu_ext.load()
        x, weight = ctx.saved_tensors
        C, _, K, _ = weight.shape
        gl = grad.permute(0, 2, 3, 1).contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        dx = dw = db = None
        if need_x:
            dxl = torch.empty_like(gl)
            mod.dw_conv_fwd(gl, _taps(weight, flip=True), gl.new_empty(0),
                            dxl, K)
            dx = dxl.permute(0, 3, 1, 2)
        if need_w:
            xl = x.permute(0, 2, 3, 1).contiguous()
            dw = mod.dw_conv_wgrad(xl, gl, K).t().reshape(C, 1, K, K)
            dw = dw.to(weight.dtype)
        if need_b and ctx.has_bias:
            db = gl.sum((0, 1, 2))
        return dx, dw, db


def kernel_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`depthwise_conv2d` runs the C++ kernel for these inputs.

    Args:
        x (Tensor): (B, C, H, W) input.
        weight (Tensor): (C, 1, K, K) filters.

    Returns:
        bool
    """
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.dim() == 4
            and weight.dim() == 4 and weight.shape[0] == x.shape[1]
            and weight.shape[1] == 1 and weight.shape[2] == weight.shape[3]
            and weight.shape[-1] in KERNEL_SIZES
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and cpu_ext.available()
            and hasattr(cpu_ext.load(), 'dw_conv_fwd'))


def depthwise_conv2d(x: Tensor, weight: Tensor,
                     bias: Optional[Tensor] = None) -> Tensor:
    """Depth-wise convolution, stride 1, zero padding ``K // 2``.

    Same as ``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``.

    Args:
        x (Tensor): (B, C, H, W); the kernel runs when it is a float32 CPU
            tensor in channels-last memory.
        weight (Tensor): (C, 1, K, K), K odd.
        bias (Tensor, optional): (C,).

    Returns:
        Tensor: (B, C, H, W), channels-last memory on the kernel path.
    """
    if kernel_applies(x, weight):
        return _DepthwiseConvFn.apply(x, weight, bias)
    K = weight.shape[-1]
    return F.conv2d(x, weight, bias, padding=K // 2, groups=weight.shape[0])
