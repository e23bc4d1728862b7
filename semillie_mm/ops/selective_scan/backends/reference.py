# Copyright (c) semillie-mm contributors. All rights reserved.
"""Readable pure-PyTorch selective scan (the 'reference' backend).

This is the recurrence of Mamba's selective state-space layer written as a
plain loop over the sequence. It runs on any device, is differentiated by
autograd and serves as the ground truth in the tests. It is slow (one small
batch of tensor operations per time step) and autograd keeps every state, so
its memory grows as ``batch * dim * N * L``.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import compute_dtype_for


def selective_scan_reference(
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Optional[Tensor] = None,
        z: Optional[Tensor] = None,
        delta_bias: Optional[Tensor] = None,
        delta_softplus: bool = False,
        return_last_state: bool = False
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan as a plain recurrence (see :func:`selective_scan`).

    For every batch ``b``, channel ``d``, state ``n`` and step ``t``::

        dt[t]   = softplus(delta[t] + delta_bias)   (or without softplus)
        h[t, n] = exp(dt[t] * A[n]) * h[t-1, n] + dt[t] * B[t, n] * u[t]
        y[t]    = sum_n C[t, n] * h[t, n] + D * u[t]
        out[t]  = y[t] * silu(z[t])                 (if z is given)

    Inputs are not validated here; call it through :func:`selective_scan`.

    Args:
        u (Tensor): (batch, dim, L).
        delta (Tensor): (batch, dim, L).
        A (Tensor): (dim, N).
        B (Tensor): (batch, N, L) or (batch, G, N, L).
        C (Tensor): (batch, N, L) or (batch, G, N, L).
        D (Tensor, optional): (dim,).
        z (Tensor, optional): (batch, dim, L).
        delta_bias (Tensor, optional): (dim,).
        delta_softplus (bool): apply softplus to ``delta + delta_bias``.
        return_last_state (bool): also return the final state.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` (batch, dim, L) in ``u``'s
        dtype, and ``last_state`` (batch, dim, N) in the compute dtype
        when ``return_last_state``.
    """
    dtype_in = u.dtype
    cdt = compute_dtype_for(dtype_in)
    batch, dim, length = u.shape
    u = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A = A.to(cdt)
    N = A.shape[1]
    # grouped view: channel d = g * (dim // G) + j; 3-d B/C are one group
    Bg = (B if B.dim() == 4 else B.unsqueeze(1)).to(cdt)  # (batch, G, N, L)
    Cg = (C if C.dim() == 4 else C.unsqueeze(1)).to(cdt)
    groups = Bg.shape[1]
    dtu = dt * u  # (batch, dim, L)

    # unbind along L (its backward is one stack, where indexing step by step
    # would cost a full-size zero tensor per step)
    steps = zip(dt.unbind(2), dtu.unbind(2), Bg.unbind(3), Cg.unbind(3))
    h = u.new_zeros(batch, groups, dim // groups, N)
    ys = []
    for dt_t, dtu_t, B_t, C_t in steps:
        decay = torch.exp(torch.einsum('bd,dn->bdn', dt_t, A))
        h = (decay.view_as(h) * h +
             dtu_t.view(batch, groups, -1, 1) * B_t.unsqueeze(2))
        ys.append(torch.einsum('bgjn,bgn->bgj', h, C_t).reshape(batch, dim))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D.to(cdt)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(cdt))
    out = y.to(dtype_in)
    return (out, h.reshape(batch, dim, N)) if return_last_state else out
