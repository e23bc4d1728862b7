# Copyright (c) semillie-mm contributors. All rights reserved.
"""The weight gradient of a dense KxK convolution (stride 1, "same" zero
padding) as K*K shifted GEMMs over pixel chunks, for CPU training.

oneDNN's weight gradient of the backbone's dense 3x3 convs is the slowest
part of their backward on the CPUs measured: on an AVX2-only Zen 3, 17-25
GMAC/s for 64 -> 64 and 64 -> 21 at 8 x 128^2 (its forward and input
gradient: 60-90), several times the sgemm rate's time. With both maps in a
channels-last copy padded to (H + 2p) x (W + 2p) pixels (p = K // 2; the
gradient's padding zero), the weight gradient of tap (i, j) is

    dW[:, :, i, j] = sum over padded pixels q of g[q] (x) x[q + s(i, j)]

with s(i, j) = (i - p) * (W + 2p) + (j - p): one GEMM ``g^T @ x_shifted``
over the flattened pixels, whose wrapped terms meet the gradient's zero
border. :func:`conv_weight_grad` runs those K*K GEMMs over chunks of
pixels (both operands of a chunk stay in cache across its taps) and adds
them up in the gradient's dtype.

:class:`Conv2d` is ``nn.Conv2d`` whose training forward on CPU uses it
(:class:`_ConvGemmWgradFn`: the forward, the input and bias gradients stay
oneDNN's). Which of the two weight gradients runs is chosen per shape by
timing both once in the process (``auto``), or forced by the environment
variable ``SEMILLIE_CONV_WGRAD`` (``gemm`` or ``onednn``): a CPU whose
oneDNN is faster keeps it. Timings can choose differently from one run to
the next, and the two paths round differently, so for gradients that are
the same bits in every run force one path, or turn on
``torch.use_deterministic_algorithms`` (the GEMMs, untimed).
"""
import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .log import log_current

#: environment variable forcing the weight gradient's path
ENV = 'SEMILLIE_CONV_WGRAD'
MODES = ('auto', 'gemm', 'onednn')
#: bytes of both operands per chunk of pixels (in L2 on the CPUs measured)
CHUNK_BYTES = 2 << 20

#: (shape key) -> 'gemm' or 'onednn', decided once per process by timing
_CHOICE: Dict[Tuple, str] = {}


def _padded_cl(t: Tensor, p: int, margin: int) -> Tensor:
    """(B, C, H, W) -> (rows, C): the map channels-last, zero-padded by
    ``p`` on every side, flattened over (batch, row, column), with
    ``margin`` zero rows before and after (so every shifted slice is in
    range)."""
    B, C, H, W = t.shape
    Hp, Wp = H + 2 * p, W + 2 * p
    flat = t.new_empty(margin * 2 + B * Hp * Wp, C)
    flat[:margin].zero_()
    flat[margin + B * Hp * Wp:].zero_()
    img = flat[margin:margin + B * Hp * Wp].view(B, Hp, Wp, C)
    img[:, p:p + H, p:p + W] = t.permute(0, 2, 3, 1)
    if p:
        img[:, :p].zero_()
        img[:, p + H:].zero_()
        img[:, p:p + H, :p].zero_()
        img[:, p:p + H, p + W:].zero_()
    return flat


def conv_weight_grad(grad_out: Tensor, x: Tensor, kernel_size: int,
                     chunk: Optional[int] = None) -> Tensor:
    """Weight gradient of ``F.conv2d(x, w, padding=kernel_size // 2)``
    (stride 1, dilation 1, one group) by shifted GEMMs.

    Args:
        grad_out (Tensor): (B, Co, H, W), the output's gradient (any memory
            format).
        x (Tensor): (B, Ci, H, W), the conv's input.
        kernel_size (int): K, odd.
        chunk (int, optional): pixels per chunk; by default as many as
            :data:`CHUNK_BYTES` hold of both operands.

    Returns:
        Tensor: dW, (Co, Ci, K, K), contiguous, in ``x``'s dtype.
    """
    K = int(kernel_size)
    if K < 1 or K % 2 == 0:
        raise ValueError(f'kernel_size must be odd and positive, got {K}')
    B, Ci, H, W = x.shape
    Co = grad_out.shape[1]
    if grad_out.shape != (B, Co, H, W):
        raise ValueError(f'grad_out {tuple(grad_out.shape)} does not match '
                         f'the input {tuple(x.shape)} of a "same" conv')
    p = K // 2
    Wp = W + 2 * p
    margin = p * Wp + p  # the largest |shift|
    xf = _padded_cl(x, p, margin)
    gf = _padded_cl(grad_out.to(x.dtype), p, margin)
    rows = xf.shape[0] - 2 * margin
    if chunk is None:
        chunk = max(256, CHUNK_BYTES // ((Ci + Co) * x.element_size()))
    # the product's columns the wider side: (Co, Ci) += g^T @ x, or
    # (Ci, Co) += x^T @ g when Co > Ci (21 -> 64 at 8 x 128^2 on the Zen 3:
    # 54 against 77 ms; 64 -> 21: 50 against 72)
    wide_out = Co > Ci
    dw = x.new_zeros(K, K, *((Ci, Co) if wide_out else (Co, Ci)))
    for s in range(margin, margin + rows, chunk):
        e = min(s + chunk, margin + rows)
        g = gf[s:e]
        gt = g.t()
        for i in range(K):
            for j in range(K):
                sh = (i - p) * Wp + (j - p)
                xs = xf[s + sh:e + sh]
                if wide_out:
                    dw[i, j].addmm_(xs.t(), g)
                else:
                    dw[i, j].addmm_(gt, xs)
    dims = (3, 2, 0, 1) if wide_out else (2, 3, 0, 1)
    return dw.permute(*dims).contiguous()


def onednn_weight_grad(grad_out: Tensor, x: Tensor, weight: Tensor,
                       padding: int) -> Tensor:
    """The same weight gradient by torch's own convolution backward
    (oneDNN on CPU).

    Args:
        grad_out (Tensor): (B, Co, H, W).
        x (Tensor): (B, Ci, H, W).
        weight (Tensor): (Co, Ci, K, K), for its shape.
        padding (int): the conv's padding.

    Returns:
        Tensor: dW, (Co, Ci, K, K).
    """
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], [padding, padding], [1, 1],
        False, [0, 0], 1, [False, True, False])[1]


def mode() -> str:
    """The weight gradient's path from ``SEMILLIE_CONV_WGRAD`` (default
    ``auto``).

    Returns:
        str: one of :data:`MODES`.
    """
    m = os.environ.get(ENV, 'auto').strip().lower() or 'auto'
    if m not in MODES:
        raise ValueError(f'{ENV}={m!r}: expected one of {", ".join(MODES)}')
    return m


def _key(x: Tensor, weight: Tensor) -> Tuple:
    return (tuple(x.shape), tuple(weight.shape), x.dtype,
            x.is_contiguous(memory_format=torch.channels_last),
            torch.get_num_threads())


def choose(grad_out: Tensor, x: Tensor, weight: Tensor, padding: int,
           clock: Callable[[], float] = time.perf_counter,
           rounds: int = 2) -> str:
    """Which weight gradient runs for this shape: the forced one, or in
    ``auto`` the faster of the two, timed once per process and shape
    (``rounds`` alternating runs each, the fastest of each counted); the
    GEMMs without timing while ``torch.use_deterministic_algorithms`` is on
    (mmengine's ``randomness=dict(deterministic=True)``).

    Args:
        grad_out, x, weight (Tensor): as for :func:`onednn_weight_grad`.
        padding (int): the conv's padding.
        clock (callable): the timer (tests pass a fake one).
        rounds (int): runs of each path.

    Returns:
        str: ``'gemm'`` or ``'onednn'``.
    """
    m = mode()
    if m != 'auto':
        return m
    if torch.are_deterministic_algorithms_enabled():
        # the same path in every run (a timing could choose differently),
        # so that the gradients are the same bits
        return 'gemm'
    key = _key(x, weight)
    if key not in _CHOICE:
        best = {'gemm': float('inf'), 'onednn': float('inf')}
        runs = {
            'gemm': lambda: conv_weight_grad(grad_out, x, weight.shape[-1]),
            'onednn': lambda: onednn_weight_grad(grad_out, x, weight,
                                                 padding),
        }
        for r in range(rounds):
            for name in (('gemm', 'onednn') if r % 2 == 0 else
                         ('onednn', 'gemm')):
                t0 = clock()
                runs[name]()
                best[name] = min(best[name], clock() - t0)
        _CHOICE[key] = min(best, key=best.get)
        log_current(
            f'conv weight gradient, input {key[0]}, weight {key[1]}: '
            f'shifted GEMMs {best["gemm"] * 1e3:.1f} ms, oneDNN '
            f'{best["onednn"] * 1e3:.1f} ms -> {_CHOICE[key]}')
    return _CHOICE[key]


class _ConvGemmWgradFn(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, padding=p)`` (stride 1, one group) whose
    backward takes the weight gradient from :func:`choose`'s path."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.padding = padding
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_w and choose(grad, x, weight, p) == 'onednn':
            return torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None,
                [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                [need_x, True, need_b and ctx.has_bias]) + (None, )
        if need_x:
            # the input gradient alone: asking oneDNN for the bias gradient
            # too runs its whole weight-gradient primitive (51 against 193
            # ms for 64 -> 64 at 8 x 128^2 on a Zen 3)
            dx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [p, p], [1, 1], False, [0, 0],
                1, [True, False, False])[0]
        if need_w:
            dw = conv_weight_grad(grad, x, weight.shape[-1])
        if need_b and ctx.has_bias:
            db = grad.sum((0, 2, 3)).to(weight.dtype)
        return dx, dw, db, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) whose training
    forward on CPU takes the weight gradient from :func:`choose` where it
    applies: float32/float64 CPU tensors, gradients enabled and wanted for
    the weight, stride 1, dilation 1, one group, a square odd kernel of at
    least 3 with "same" zero padding, no autocast, no tracing or ONNX
    export. Anything else is ``nn.Conv2d.forward``.
    """

    def _gemm_applies(self, x: Tensor) -> bool:
        k = self.kernel_size
        return (torch.is_grad_enabled() and self.weight.requires_grad
                and x.device.type == 'cpu' and self.weight.device.type
                == 'cpu' and x.dtype in (torch.float32, torch.float64)
                and self.weight.dtype == x.dtype and x.dim() == 4
                and self.groups == 1 and self.stride == (1, 1)
                and self.dilation == (1, 1) and k[0] == k[1] and k[0] >= 3
                and k[0] % 2 == 1 and self.padding == (k[0] // 2, ) * 2
                and self.padding_mode == 'zeros'
                and not torch.is_autocast_enabled('cpu')
                and not torch.jit.is_tracing() and not torch.jit.is_scripting()
                and not torch.onnx.is_in_onnx_export())

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x (Tensor): (B, Ci, H, W).

        Returns:
            Tensor: (B, Co, H, W), as ``nn.Conv2d``.
        """
        if not self._gemm_applies(x) or mode() == 'onednn':
            return super().forward(x)
        return _ConvGemmWgradFn.apply(x, self.weight, self.bias,
                                      self.padding[0])
