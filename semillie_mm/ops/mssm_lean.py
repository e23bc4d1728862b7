# Copyright (c) semillie-mm contributors. All rights reserved.
"""MSSM's memory-lean implementation (the same numbers as its plain forward,
paper eq. (3), up to float rounding).

:class:`~semillie_mm.models.archs.MSSM` computes, for channels-last tokens
``x`` (B, H, W, C) and E = expand * C::

    x0, z = split(in_proj(x))                     # E channels each
    a = dw3(x0);  b = dw5(x0)   ('serial': dw5(a))
    f = fuse(cat(SiLU(a), SiLU(b)))               # 1x1 conv, 2E -> E
    out = out_proj(LN(SS2D(f)) * SiLU(z))

:func:`mssm_lean` runs this with less memory:

- with gradients (:func:`mssm_lean_train`): the concatenation is never built
  (``fuse`` is applied to its two halves and summed, :class:`_SiLUFuse`),
  ``x0`` and ``z`` come from separate products with the two halves of
  ``in_proj``'s weight, only the inputs of element-wise steps are saved (the
  SiLU outputs, the normalised map and the gated product are recomputed in
  the backward, :class:`_GateOut`) and ``x0`` is recomputed instead of kept
  (:class:`_BranchConvs`);
- without (:func:`mssm_lean_no_grad`): the depth-wise convs + ``fuse`` run
  over chunks of :data:`CHANNEL_CHUNK` channels and the point-wise tail over
  chunks of :data:`PIXEL_CHUNK` pixels, so only about three full E-channel
  maps exist at once. ``prenorm`` lets the block's LayerNorm be applied per
  chunk, so that the normalised input is never kept whole while SS2D runs.
  With ``dtype=torch.bfloat16`` (bf16 inference) its products and convs
  run in bfloat16 (:func:`_conv_fuse_lowp` and the tail), LayerNorms, gate
  and residual stream in float32.

Layers are applied through their weights here, so module hooks do not see
them (FLOP counters use the plain forward). The weights travel as one
:class:`MSSMWeights`.
"""
import functools
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .depthwise_conv import depthwise_conv2d
from .silu import gate_backward, silu, silu_backward


class MSSMWeights(NamedTuple):
    """MSSM's parameters, as :func:`mssm_lean` takes them.

    Args:
        in_proj (Tensor): (2E, C), rows ``[:E]`` the branch, ``[E:]`` the
            gate.
        dw3_weight, dw3_bias (Tensor): the depth-wise 3x3, (E, 1, 3, 3), (E,).
        dw5_weight, dw5_bias (Tensor): the depth-wise 5x5, (E, 1, 5, 5), (E,).
        fuse_weight (Tensor): the 1x1 ``fuse`` conv as (E, 2E).
        fuse_bias (Tensor): (E,).
        norm_weight, norm_bias (Tensor): ``out_norm``, (E,) each.
        norm_eps (float): ``out_norm``'s epsilon.
        out_proj (Tensor): (C, E).
        serial (bool): ``b = dw5(a)`` instead of ``dw5(x0)``.
    """
    in_proj: Tensor
    dw3_weight: Tensor
    dw3_bias: Tensor
    dw5_weight: Tensor
    dw5_bias: Tensor
    fuse_weight: Tensor
    fuse_bias: Tensor
    norm_weight: Tensor
    norm_bias: Tensor
    norm_eps: float
    out_proj: Tensor
    serial: bool

    def split(self):
        """``(w_x, w_z, w_a, w_b)``: the halves of ``in_proj`` (branch,
        gate) and of ``fuse`` (for SiLU(a), SiLU(b))."""
        E = self.fuse_weight.shape[0]
        return (self.in_proj[:E], self.in_proj[E:], self.fuse_weight[:, :E],
                self.fuse_weight[:, E:])


#: pixels per chunk of the point-wise tail (LayerNorm, gate, out_proj) on
#: the no-grad path
PIXEL_CHUNK = 1 << 16
#: channels per chunk of the depth-wise convs + fuse on the no-grad path
CHANNEL_CHUNK = 16
#: the same in bfloat16 (:func:`_conv_fuse_lowp`): 32 two-byte channels are
#: one 64-byte cache line of each row of its SiLU map
LOWP_CHANNEL_CHUNK = 32


def _pixels(t: Tensor) -> Tensor:
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
    s = al.new_empty(al.shape[1:])  # one image's SiLU at a time
    for i in range(B):
        torch.mm(silu(al[i], out=s), wa.t(), out=out[i])
        out[i].addmm_(silu(bl[i], out=s), wb.t())
    out.add_(bias)
    return out.view(B, H, W, -1)


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
            s = tl.new_empty(tl.shape[1:]) if need_w else None
            g = tl.new_empty(tl.shape[1:]) if need_t else None
            for i in range(B):
                if need_t:  # dt_i = silu'(t_i) * (dout_i @ W), SiLU(t_i)
                    silu_backward(tl[i], torch.mm(d2[i], w, out=g),
                                  grad=dtl[i], silu_out=s)
                elif need_w:
                    silu(tl[i], out=s)
                if need_w:  # dW += dout_i^T @ SiLU(t_i)
                    dw.addmm_(d2[i].t(), s)
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
        z = F.linear(n, w_z)
        g.mul_(silu(z, out=z))
        return F.linear(g, w_out)

    @staticmethod
    def backward(ctx, dout):
        saved = ctx.saved_tensors
        y, n, w_z, ln_w, ln_b, w_out = saved
        need = ctx.needs_input_grad
        E, C = y.shape[-1], n.shape[-1]
        out = [torch.empty_like(t) if need[k] else None
               for k, t in enumerate(saved[:2])]
        out += [torch.zeros_like(t) if need[k + 2] else None
                for k, t in enumerate(saved[2:])]
        # by hand, one image at a time: g = LN(y) * SiLU(z), z = n @ w_z^T
        need_dz = need[1] or need[2]
        need_ln = need[0] or need[3] or need[4]
        for i in range(y.shape[0]):
            yi = y[i]
            lnv, mean, rstd = torch.ops.aten.native_layer_norm(
                yi, [E], ln_w, ln_b, ctx.eps)
            zi = F.linear(n[i], w_z)
            dg = dout[i] @ w_out  # dL/dg
            g = torch.empty_like(lnv) if need[5] else None
            dz = torch.empty_like(lnv) if need_dz else None
            gate_backward(zi, lnv, dg, g_out=g, dz_out=dz,
                          dln_out=dg if need_ln else None)
            if need[5]:  # dW_out += dout_i^T @ g_i
                out[5].addmm_(dout[i].reshape(-1, dout.shape[-1]).t(),
                              g.reshape(-1, E))
            if need_dz:
                dz2 = dz.reshape(-1, E)
                if need[1] and out[1][i].is_contiguous():
                    torch.mm(dz2, w_z, out=out[1][i].view(-1, C))
                elif need[1]:
                    out[1][i] = (dz2 @ w_z).view(n.shape[1:])
                if need[2]:  # dW_z += dz^T @ n_i
                    out[2].addmm_(dz2.t(), n[i].reshape(-1, C))
            if need_ln:  # dg now holds dL/dLN(y)
                direct = (need[0] and out[0][i].is_contiguous()
                          and yi.is_contiguous())
                gi = out[0][i] if direct else torch.empty_like(yi)
                gw, gb = torch.empty_like(ln_w), torch.empty_like(ln_b)
                torch.ops.aten.native_layer_norm_backward.out(
                    dg, yi, [E], mean, rstd, ln_w, ln_b, [True, True, True],
                    out0=gi, out1=gw, out2=gb)
                if need[0] and not direct:
                    out[0][i] = gi
                if need[3]:
                    out[3].add_(gw)
                if need[4]:
                    out[4].add_(gb)
        return (*out, None)


def mssm_lean_train(x: Tensor, w: MSSMWeights,
                    scan: Callable[[Tensor], Tensor]) -> Tensor:
    """MSSM with gradients, saving little (see the module docstring).

    Args:
        x (Tensor): (B, H, W, C) channels-last tokens.
        w (MSSMWeights): the parameters.
        scan (callable): SS2D, (B, E, H, W) -> (B, E, H, W).

    Returns:
        Tensor: (B, H, W, C).
    """
    w_x, w_z, w_a, w_b = w.split()
    # the branch channels-last: (B, L, C) @ (C, E) viewed as (B, E, H, W);
    # the depth-wise convs are 3-5x faster on it than on NCHW (oneDNN),
    # and the extension's kernel (ops.depthwise_conv) faster still
    a, b = _BranchConvs.apply(x, w_x, w.dw3_weight, w.dw3_bias, w.dw5_weight,
                              w.dw5_bias, w.serial)
    f = _SiLUFuse.apply(a, b, w_a, w_b, w.fuse_bias)
    del a, b
    y = scan(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    del f
    return _GateOut.apply(y, x, w_z, w.norm_weight, w.norm_bias, w.out_proj,
                          w.norm_eps)


def _conv_fuse_chunked(n: Tensor, w: MSSMWeights) -> Tensor:
    """``fuse(cat(SiLU(a), SiLU(b)))`` over chunks of channels of the
    branch; returns (B, H, W, E), contiguous."""
    w_x, _, w_a, w_b = w.split()
    B, H, W, C = n.shape
    E, L = w_x.shape[0], H * W
    n3 = n.reshape(B, L, C)
    # a new tensor even for one pixel: expand().contiguous() of a (1, 1, E)
    # view is the bias itself, and addmm_ below would write into it
    f = w.fuse_bias.expand(B, L, E).clone(memory_format=torch.contiguous_format)
    f2 = f.view(B * L, E)
    for c in range(0, E, CHANNEL_CHUNK):
        sl = slice(c, c + CHANNEL_CHUNK)
        x0 = torch.matmul(n3, w_x[sl].t())  # (B, L, Ec), channels-last
        Ec = x0.shape[-1]
        x0 = x0.view(B, H, W, Ec).permute(0, 3, 1, 2)
        a = F.conv2d(x0, w.dw3_weight[sl], w.dw3_bias[sl], padding=1,
                     groups=Ec)
        b = F.conv2d(a if w.serial else x0, w.dw5_weight[sl],
                     w.dw5_bias[sl], padding=2, groups=Ec)
        del x0
        for t, wt in ((a, w_a), (b, w_b)):
            t = _pixels(silu(t, out=t)).reshape(B * L, Ec)
            f2.addmm_(t, wt[:, sl].t())  # f += SiLU(t) @ wt[:, sl]^T
        del a, b
    return f.view(B, H, W, E)


def _conv_fuse_lowp(n: Tensor, w: MSSMWeights, dtype: torch.dtype) -> Tensor:
    """:func:`_conv_fuse_chunked` with the products and the depth-wise convs
    in ``dtype`` (bfloat16): ``in_proj``'s branch half and the two convs run
    over chunks of :data:`LOWP_CHANNEL_CHUNK` channels (:func:`_branch`),
    their SiLU outputs go into one (B*H*W, 2E) ``dtype`` map (the
    concatenation, as many bytes as one float32 E-channel map) and ``fuse``
    is one product, its bias added in float32 as the product is widened.
    Returns (B, H, W, E) float32, contiguous: SS2D's input (its scan runs in
    float32)."""
    w_x, _, _, _ = w.split()
    B, H, W, C = n.shape
    E, L = w_x.shape[0], H * W
    n = n.to(dtype)
    w_x = w_x.to(dtype)
    w3, b3 = w.dw3_weight.to(dtype), w.dw3_bias.to(dtype)
    w5, b5 = w.dw5_weight.to(dtype), w.dw5_bias.to(dtype)
    s = n.new_empty(B * L, 2 * E)
    for c in range(0, E, LOWP_CHANNEL_CHUNK):
        sl = slice(c, c + LOWP_CHANNEL_CHUNK)
        a, b = _branch(n, w_x[sl], w3[sl], b3[sl], w5[sl], b5[sl], w.serial)
        Ec = a.shape[1]
        for t, off in ((a, c), (b, E + c)):
            s[:, off:off + Ec].view(B, L, Ec).copy_(
                _pixels(F.silu(t, inplace=True)))
        del a, b
    f = torch.mm(s, w.fuse_weight.to(dtype).t())
    del s
    # widened, then the bias added in float32 (faster than one mixed-dtype
    # add, which takes TensorIterator's casting path)
    return f.float().add_(w.fuse_bias.float()).view(B, H, W, E)


@torch.no_grad()
def mssm_lean_no_grad(x: Tensor,
                      w: MSSMWeights,
                      scan: Callable[[Tensor], Tensor],
                      prenorm: Optional[Callable[[Tensor], Tensor]] = None,
                      dtype: Optional[torch.dtype] = None) -> Tensor:
    """MSSM without gradients over channel chunks (convs + fuse) and pixel
    chunks (point-wise tail).

    Args:
        x (Tensor): (B, H, W, C) channels-last tokens.
        w (MSSMWeights): the parameters.
        scan (callable): SS2D, (B, E, H, W) -> (B, E, H, W).
        prenorm (callable, optional): a normalisation over C applied to
            ``x`` first (MSSB's LayerNorm), per chunk: the normalised map is
            not kept while SS2D runs. None: ``x`` is MSSM's input itself.
        dtype (torch.dtype, optional): the compute dtype of the products
            and the depth-wise convs (``torch.bfloat16`` for ``--precision
            bf16``: :func:`lean_lowp_dtype`),
            with float32 LayerNorms, SiLU gate product, scan input and
            output. None: ``x``'s dtype throughout.

    Returns:
        Tensor: (B, H, W, C), MSSM(prenorm(x)), in ``x``'s dtype.
    """
    n = prenorm(x) if prenorm is not None else x
    if dtype is None or dtype == x.dtype:
        dtype = None
        f = _conv_fuse_chunked(n, w)
    else:
        f = _conv_fuse_lowp(n, w, dtype)
    del n
    y = scan(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    del f
    B, H, W, C = x.shape
    E = y.shape[-1]
    x2 = x.reshape(-1, C)
    y2 = y.reshape(-1, E)
    out = x.new_empty(B * H * W, w.out_proj.shape[0])
    _, w_z, _, _ = w.split()
    w_out = w.out_proj
    if dtype is not None:
        w_z, w_out = w_z.to(dtype), w_out.to(dtype)
    for s in range(0, x2.shape[0], PIXEL_CHUNK):
        xs = x2[s:s + PIXEL_CHUNK]
        if prenorm is not None:
            xs = prenorm(xs)
        g = F.layer_norm(y2[s:s + PIXEL_CHUNK], (E, ), w.norm_weight,
                         w.norm_bias, w.norm_eps)
        if dtype is None:
            z = F.linear(xs, w_z)
            g.mul_(silu(z, out=z))
            torch.matmul(g, w_out.t(), out=out[s:s + PIXEL_CHUNK])
        else:
            g.mul_(F.silu(F.linear(xs.to(dtype), w_z), inplace=True))
            out[s:s + PIXEL_CHUNK] = torch.mm(g.to(dtype), w_out.t())
    return out.view(B, H, W, -1)


def lean_lowp_dtype(x: Tensor) -> Optional[torch.dtype]:
    """The dtype the no-grad lean path computes its products and depth-wise
    convs in: bfloat16 under CPU bfloat16 autocast without gradients
    (``--precision bf16``, :mod:`semillie_mm.apis.precision`), else None
    (the input's dtype). SS2D takes its ``x_proj`` dtype from it too.

    Args:
        x (Tensor): the input (its device counts).

    Returns:
        torch.dtype | None
    """
    if (x.device.type == 'cpu' and torch.is_autocast_enabled('cpu')
            and not torch.is_grad_enabled()
            and torch.get_autocast_dtype('cpu') == torch.bfloat16):
        return torch.bfloat16
    return None


def mssm_lean_autocast(x: Tensor, w: MSSMWeights,
                       scan: Callable[..., Tensor],
                       prenorm: Optional[Callable[[Tensor], Tensor]] = None
                       ) -> Tensor:
    """:func:`mssm_lean_no_grad` in :func:`lean_lowp_dtype` with autocast off
    (the path sets each op's dtype itself), ``x`` and the result in float32;
    without that dtype (fp32 inference) ``mssm_lean_no_grad`` as it is.

    Args:
        x (Tensor): (B, H, W, C) channels-last tokens.
        w (MSSMWeights): the parameters.
        scan (callable): SS2D; in bfloat16 called with ``proj_dtype``.
        prenorm (callable, optional): see :func:`mssm_lean_no_grad`.

    Returns:
        Tensor: (B, H, W, C), float32 under bfloat16 autocast.
    """
    dtype = lean_lowp_dtype(x)
    if dtype is None:
        return mssm_lean_no_grad(x, w, scan, prenorm=prenorm)
    with torch.autocast(x.device.type, enabled=False):
        return mssm_lean_no_grad(x.float(), w,
                                 functools.partial(scan, proj_dtype=dtype),
                                 prenorm=prenorm, dtype=dtype)


def mssm_lean(x: Tensor, w: MSSMWeights,
              scan: Callable[[Tensor], Tensor]) -> Tensor:
    """MSSM, memory-lean: :func:`mssm_lean_train` when autograd records,
    else :func:`mssm_lean_autocast` (:func:`mssm_lean_no_grad`, in
    bfloat16 under CPU bfloat16 autocast).

    Args:
        x (Tensor): (B, H, W, C) channels-last tokens.
        w (MSSMWeights): the parameters.
        scan (callable): SS2D, (B, E, H, W) -> (B, E, H, W).

    Returns:
        Tensor: (B, H, W, C).
    """
    if torch.is_grad_enabled():
        return mssm_lean_train(x, w, scan)
    return mssm_lean_autocast(x, w, scan)
