"""Multi-scale state-space module (MSSM, paper eq. 3)."""
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from semillie_mm.ops.depthwise_conv import depthwise_conv2d
from .ss2d import SS2D

#: pixels per chunk of the point-wise tail (LayerNorm, gate, out_proj) on
#: the no-grad path
PIXEL_CHUNK = 1 << 16
#: channels per chunk of the depth-wise convs + fuse on the no-grad path
CHANNEL_CHUNK = 16


def _pixels(t: torch.Tensor) -> torch.Tensor:
    """(B, E, H, W) -> (B, H*W, E): a view when ``t`` is channels-last."""
    B, E, H, W = t.shape
    return t.permute(0, 2, 3, 1).reshape(B, H * W, E)


def _silu_fuse_fwd(a, b, wa, wb, bias):
    """``SiLU(a) @ wa^T + SiLU(b) @ wb^T + bias`` per pixel.

    ``a``, ``b``: (B, E, H, W), channels-last memory (else copied);
    returns (B, H, W, E_out), contiguous.
    """
    B, E, H, W = a.shape
    al, bl = _pixels(a), _pixels(b)
    out = a.new_empty(B, H * W, wa.shape[0])
    for i in range(B):  # one image's SiLU at a time: no full-size temporary
        torch.mm(F.silu(al[i]), wa.t(), out=out[i])
        out[i].addmm_(F.silu(bl[i]), wb.t())
    out.add_(bias)
    return out.view(B, H, W, -1)


def plain_path_needed(x: torch.Tensor) -> bool:
    """Whether the module-by-module forward must be used: under ``torch.jit``
    (FLOP counters see every layer) and under autocast (mixed precision keeps
    its per-op dtype choices; the lean paths assume one dtype)."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.is_autocast_enabled(x.device.type))


class _SiLUFuse(torch.autograd.Function):
    """The 1x1 ``fuse`` conv over ``cat(SiLU(a), SiLU(b))``, without the
    concatenation and without saving the SiLU outputs (recomputed, element-wise,
    in the backward); the result is channels-last (B, H, W, E). The backward
    runs one image at a time, so its temporaries are one image's."""

    @staticmethod
    def forward(ctx, a, b, wa, wb, bias):
        ctx.save_for_backward(a, b, wa, wb)
        return _silu_fuse_fwd(a, b, wa, wb, bias)

    @staticmethod
    def backward(ctx, dout):
        a, b, wa, wb = ctx.saved_tensors
        B, E, H, W = a.shape
        L = H * W
        d2 = dout.reshape(B, L, -1)  # (B, L, Eo)
        need = ctx.needs_input_grad
        grads = []
        for t, w, need_t, need_w in ((a, wa, need[0], need[2]),
                                     (b, wb, need[1], need[3])):
            tl = _pixels(t)
            dt = (torch.empty_like(t, memory_format=torch.channels_last)
                  if need_t else None)
            dtl = _pixels(dt) if need_t else None  # a view of dt
            dw = torch.zeros_like(w) if need_w else None
            for i in range(B):
                if need_w:  # dW += dout_i^T @ SiLU(t_i)
                    dw.addmm_(d2[i].t(), F.silu(tl[i]))
                if need_t:
                    torch.ops.aten.silu_backward.grad_input(
                        d2[i] @ w, tl[i], grad_input=dtl[i])
            grads += [dt, dw]
        dbias = d2.sum((0, 1)) if need[4] else None
        return grads[0], grads[2], grads[1], grads[3], dbias


def _branch(n, w_x, w3, b3, w5, b5, serial):
    """``x0 = n @ w_x^T`` viewed channels-last as (B, E, H, W); returns
    ``a = dw3(x0)``, ``b = dw5(a if serial else x0)``."""
    B, H, W, C = n.shape
    x0 = torch.matmul(n.reshape(B, H * W, C), w_x.t())
    x0 = x0.view(B, H, W, w_x.shape[0]).permute(0, 3, 1, 2)
    a = depthwise_conv2d(x0, w3, b3)
    b = depthwise_conv2d(a if serial else x0, w5, b5)
    return a, b


class _BranchConvs(torch.autograd.Function):
    """:func:`_branch` saving only ``n`` (which ``_GateOut`` keeps anyway) and
    the weights: the E-channel map ``x0`` is not kept but recomputed in the
    backward (one C -> E product and the two depth-wise convs, ~3 % of a
    training step), one E-channel map less per block at the peak."""

    @staticmethod
    def forward(ctx, n, w_x, w3, b3, w5, b5, serial):
        ctx.save_for_backward(n, w_x, w3, b3, w5, b5)
        ctx.serial = serial
        return _branch(n, w_x, w3, b3, w5, b5, serial)

    @staticmethod
    def backward(ctx, da, db):
        need = ctx.needs_input_grad[:6]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(bool(k))
                      for t, k in zip(ctx.saved_tensors, need)]
            outs = _branch(*leaves, ctx.serial)
        pairs = [(o, g) for o, g in zip(outs, (da, db)) if g is not None]
        wanted = [t for t in leaves if t.requires_grad]
        if not pairs or not wanted:
            return (None, ) * 7
        got = iter(torch.autograd.grad([o for o, _ in pairs], wanted,
                                       [g for _, g in pairs],
                                       allow_unused=True))
        return (*(next(got) if t.requires_grad else None
                  for t in leaves), None)


class _GateOut(torch.autograd.Function):
    """``out_proj(LN(y) * SiLU(n @ w_z^T))`` saving only ``y`` and ``n`` (the
    block's normalised input, which ``in_proj`` keeps anyway): the gate ``z``
    (one C -> E product), the normalised map, the SiLU and their product are
    recomputed in the backward, one image at a time, instead of being kept."""

    @staticmethod
    def forward(ctx, y, n, w_z, ln_w, ln_b, w_out, eps):
        ctx.save_for_backward(y, n, w_z, ln_w, ln_b, w_out)
        ctx.eps = eps
        g = F.layer_norm(y, (y.shape[-1], ), ln_w, ln_b, eps)
        g.mul_(F.silu(F.linear(n, w_z), inplace=True))
        return F.linear(g, w_out)

    @staticmethod
    def backward(ctx, dout):
        saved = ctx.saved_tensors
        y, n, w_z, ln_w, ln_b, w_out = saved
        need = ctx.needs_input_grad
        E = y.shape[-1]
        out = [torch.empty_like(t) if need[k] else None
               for k, t in enumerate(saved[:2])]
        out += [torch.zeros_like(t) if need[k + 2] else None
                for k, t in enumerate(saved[2:])]
        shared = [t.detach().requires_grad_(bool(need[k + 2]))
                  for k, t in enumerate((w_z, ln_w, ln_b))]
        for i in range(y.shape[0]):
            with torch.enable_grad():
                yi = y[i].detach().requires_grad_(bool(need[0]))
                ni = n[i].detach().requires_grad_(bool(need[1]))
                g = F.layer_norm(yi, (E, ), shared[1], shared[2],
                                 ctx.eps) * F.silu(F.linear(ni, shared[0]))
            if need[5]:  # dW_out += dout_i^T @ g_i
                out[5].addmm_(dout[i].reshape(-1, dout.shape[-1]).t(),
                              g.detach().reshape(-1, E))
            leaves = [t for t in (yi, ni, *shared) if t.requires_grad]
            if not leaves:
                continue
            got = iter(torch.autograd.grad(g, leaves, dout[i] @ w_out))
            for k, t in enumerate((yi, ni, *shared)):
                if t.requires_grad:
                    gk = next(got)
                    if k < 2:
                        out[k][i] = gk
                    else:
                        out[k].add_(gk)
        return (*out, None)


class MSSM(nn.Module):
    """Gated multi-scale SS2D.

    ``FC(C -> 2E)`` splits into the branch ``x`` and the gate ``z`` (E = expand * C).
    The branch ``x0`` goes through depth-wise 3x3 and 5x5 convs, the two outputs
    pass through SiLU, are concatenated and projected back to E by a 1x1 conv,
    then SS2D, LayerNorm, multiplied by ``SiLU(z)`` and projected back to C.

    Memory (except under autocast or ``torch.jit``, which use the
    module-by-module forward): the concatenation is never built (the 1x1 ``fuse`` conv is applied
    to its two halves and summed), ``x`` and ``z`` come from separate products
    with the two halves of ``in_proj``'s weight, and in training only the
    inputs of element-wise steps are saved (the SiLU outputs, the normalised
    map and the gated product are recomputed in the backward), and the
    branch ``x0`` is recomputed (one C -> E product and the depth-wise convs)
    instead of kept. Without gradients (``torch.no_grad()``), the depth-wise
    convs + ``fuse`` run over chunks of ``CHANNEL_CHUNK`` channels and the
    point-wise tail over chunks of ``PIXEL_CHUNK`` pixels, so only about three
    full E-channel maps exist at once. All paths compute the same numbers up
    to float rounding.

    Args:
        channels (int): block width C.
        d_state (int): SSM state size. Default: 16.
        expand (int): the paper's lambda. Default: 2.
        dt_rank (int | None): delta projection rank; None = ceil(C / 16).
        multiscale (str): 'parallel' (paper eq. 3, default):
            ``a = dw3(x0)``, ``b = dw5(x0)``; 'serial' (the authors'
            ``MambaLowlight``): ``a = dw3(x0)``, ``b = dw5(a)``, the 5x5 taking the
            raw 3x3 output before any activation. Both then compute
            ``fuse(cat(SiLU(a), SiLU(b)))`` and have the same parameters.
        scan_backend (str | None): selective-scan backend override.
    """

    def __init__(self,
                 channels: int,
                 d_state: int = 16,
                 expand: int = 2,
                 dt_rank=None,
                 multiscale: str = 'parallel',
                 scan_backend=None):
        super().__init__()
        if multiscale not in ('parallel', 'serial'):
            raise ValueError(
                f"multiscale must be 'parallel' or 'serial', got {multiscale!r}")
        inner = expand * channels
        self.inner = inner
        self.multiscale = multiscale
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

    def _weights(self):
        E = self.inner
        w_in = self.in_proj.weight
        w_fuse = self.fuse.weight.flatten(1)
        return w_in[:E], w_in[E:], w_fuse[:, :E], w_fuse[:, E:]

    def forward(self,
                x: torch.Tensor,
                norm: Optional[Callable] = None) -> torch.Tensor:
        """Args:
            x (Tensor): (B, H, W, C) channels-last tokens.
            norm (callable | None): applied to ``x`` first (MSSB passes its
                LayerNorm so that the no-grad path need not keep the
                normalised map while SS2D runs).

        Returns:
            Tensor: (B, H, W, C).
        """
        if plain_path_needed(x):
            return self._forward_plain(x if norm is None else norm(x))
        if not torch.is_grad_enabled():
            return self._forward_lean(x, norm)
        if norm is not None:
            x = norm(x)
        w_x, w_z, w_a, w_b = self._weights()
        # the branch channels-last: (B, L, C) @ (C, E) viewed as (B, E, H, W);
        # the depth-wise convs are 3-5x faster on it than on NCHW (oneDNN),
        # and the extension's kernel (ops.depthwise_conv) faster still
        a, b = _BranchConvs.apply(x, w_x, self.dwconv3.weight,
                                  self.dwconv3.bias, self.dwconv5.weight,
                                  self.dwconv5.bias,
                                  self.multiscale == 'serial')
        f = _SiLUFuse.apply(a, b, w_a, w_b, self.fuse.bias)
        del a, b
        y = self.ss2d(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        del f
        return _GateOut.apply(y, x, w_z, self.out_norm.weight,
                              self.out_norm.bias, self.out_proj.weight,
                              self.out_norm.eps)

    def _forward_plain(self, x):
        """The module-by-module forward (with the concatenation): used under
        ``torch.jit`` tracing, so that FLOP counters see every layer as
        before."""
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2).contiguous()
        a = self.dwconv3(x)
        b = self.dwconv5(a if self.multiscale == 'serial' else x)
        x = self.fuse(torch.cat([F.silu(a), F.silu(b)], dim=1))
        y = self.ss2d(x).permute(0, 2, 3, 1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)

    @torch.no_grad()
    def _forward_lean(self, x, norm=None):
        """No-grad forward over channel chunks (convs + fuse) and pixel chunks
        (point-wise tail); same numbers as :meth:`forward`."""
        n = norm(x) if norm is not None else x
        f = self._conv_fuse_lean(n)
        del n
        y = self.ss2d(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        del f
        B, H, W, C = x.shape
        x2 = x.reshape(-1, C)
        y2 = y.reshape(-1, self.inner)
        out = x.new_empty(B * H * W, self.out_proj.out_features)
        _, w_z, _, _ = self._weights()
        for s in range(0, x2.shape[0], PIXEL_CHUNK):
            xs = x2[s:s + PIXEL_CHUNK]
            if norm is not None:
                xs = norm(xs)
            g = self.out_norm(y2[s:s + PIXEL_CHUNK])
            g.mul_(F.silu(F.linear(xs, w_z), inplace=True))
            torch.matmul(g, self.out_proj.weight.t(),
                         out=out[s:s + PIXEL_CHUNK])
        return out.view(B, H, W, -1)

    def _conv_fuse_lean(self, n):
        """``fuse(cat(SiLU(a), SiLU(b)))`` over chunks of channels of the
        branch; returns (B, H, W, E), contiguous."""
        w_x, _, w_a, w_b = self._weights()
        B, H, W, C = n.shape
        E, L = self.inner, H * W
        n3 = n.reshape(B, L, C)
        f = self.fuse.bias.expand(B, L, E).contiguous()
        serial = self.multiscale == 'serial'
        f2 = f.view(B * L, E)
        for c in range(0, E, CHANNEL_CHUNK):
            sl = slice(c, c + CHANNEL_CHUNK)
            x0 = torch.matmul(n3, w_x[sl].t())  # (B, L, Ec), channels-last
            Ec = x0.shape[-1]
            x0 = x0.view(B, H, W, Ec).permute(0, 3, 1, 2)
            a = F.conv2d(x0, self.dwconv3.weight[sl], self.dwconv3.bias[sl],
                         padding=1, groups=Ec)
            b = F.conv2d(a if serial else x0, self.dwconv5.weight[sl],
                         self.dwconv5.bias[sl], padding=2, groups=Ec)
            del x0
            for t, w in ((a, w_a), (b, w_b)):
                t = _pixels(F.silu(t, inplace=True)).reshape(B * L, Ec)
                f2.addmm_(t, w[:, sl].t())  # f += SiLU(t) @ w[:, sl]^T
            del a, b
        return f.view(B, H, W, E)
