# Copyright (c) semillie-mm contributors. All rights reserved.
"""Selective scan in standard operators only, for ONNX export.

:func:`selective_scan_exportable` computes what
:func:`~.reference.selective_scan_reference` computes (no ``z``, no last
state: what SS2D asks for). Everything that does not depend on the previous
state (softplus, ``dt * u``, the output skip ``D * u``) is done for the whole
sequence at once; the recurrence itself is a TorchScript function whose loop
over the sequence the (TorchScript) ONNX exporter turns into one ONNX
``Loop`` node: per step ``Exp``, ``Mul``, ``Add`` and a ``MatMul`` with
``C``, on a ``(batch, dim, N)`` state. The sequence length is read at run
time, so the exported model takes any H x W.

Why a step loop and not a chunked closed form: a closed form within a chunk
of ``T`` steps must form the pairwise decays ``exp(A * (cs[t] - cs[s]))``
(``A`` is per channel *and* state here, unlike Mamba-2's scalar per head),
``batch * dim * T * T * N`` numbers per chunk, and still needs a loop over
the chunks for dynamic lengths; the cheaper factorised form
``exp(A cs[t]) * exp(-A cs[s])`` overflows float32 when a chunk's decay
exceeds ``exp(88)``, which trained weights can reach. The measured
comparison is in docs/enhance.md, section "ONNX".
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _recurrence_impl(dt: Tensor, dtu: Tensor, A: Tensor, Bs: Tensor,
                     Cs: Tensor) -> Tensor:
    """``h = exp(dt * A) * h + dtu * B``; ``y = h @ C`` per step.

    Args:
        dt (Tensor): (L, batch, G, J) step sizes (after bias / softplus).
        dtu (Tensor): (L, batch, G, J) ``dt * u``.
        A (Tensor): (G, J, N).
        Bs (Tensor): (L, batch, G, N).
        Cs (Tensor): (L, batch, G, N).

    Returns:
        Tensor: (L, batch, G, J).
    """
    h = torch.zeros([dt.size(1), dt.size(2), dt.size(3), A.size(2)],
                    dtype=dt.dtype, device=dt.device)
    ys = []
    for t in range(dt.size(0)):
        h = (torch.exp(dt[t].unsqueeze(-1) * A) * h +
             dtu[t].unsqueeze(-1) * Bs[t].unsqueeze(2))
        ys.append(torch.matmul(h, Cs[t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, 0)


_recurrence = None


def _scripted_recurrence():
    """The recurrence compiled by TorchScript once, on first use (a plain
    Python loop would be unrolled, for one fixed length, by the tracer)."""
    global _recurrence
    if _recurrence is None:
        import warnings
        with warnings.catch_warnings():
            # deprecated in torch 2.14, and the only way to a Loop with the
            # TorchScript exporter
            warnings.simplefilter('ignore', FutureWarning)
            _recurrence = torch.jit.script(_recurrence_impl)
    return _recurrence


def selective_scan_exportable(u: Tensor,
                              delta: Tensor,
                              A: Tensor,
                              B: Tensor,
                              C: Tensor,
                              D: Optional[Tensor] = None,
                              delta_bias: Optional[Tensor] = None,
                              delta_softplus: bool = False) -> Tensor:
    """Selective scan traceable to standard ONNX operators (see the module
    docstring); the arguments as :func:`semillie_mm.ops.selective_scan`
    (without ``z`` and ``return_last_state``), inputs not validated.

    Args:
        u (Tensor): (batch, dim, L).
        delta (Tensor): (batch, dim, L).
        A (Tensor): (dim, N).
        B (Tensor): (batch, N, L) or (batch, G, N, L).
        C (Tensor): (batch, N, L) or (batch, G, N, L).
        D (Tensor, optional): (dim,).
        delta_bias (Tensor, optional): (dim,).
        delta_softplus (bool): apply softplus to ``delta + delta_bias``.

    Returns:
        Tensor: (batch, dim, L) in ``u``'s dtype (computed in float32, or
        float64 for float64 inputs).
    """
    dtype_in = u.dtype
    cdt = torch.float64 if dtype_in == torch.float64 else torch.float32
    batch, dim, length = u.shape
    u = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bg = (B if B.dim() == 4 else B.unsqueeze(1)).to(cdt)  # (batch, G, N, L)
    Cg = (C if C.dim() == 4 else C.unsqueeze(1)).to(cdt)
    groups, N = Bg.shape[1], Bg.shape[2]
    # time first: the loop takes one (batch, G, J) slice per step
    dt_l = dt.view(batch, groups, -1, length).permute(3, 0, 1, 2)
    dtu_l = (dt * u).view(batch, groups, -1, length).permute(3, 0, 1, 2)
    ys = _scripted_recurrence()(
        dt_l, dtu_l, A.to(cdt).view(groups, -1, N), Bg.permute(3, 0, 1, 2),
        Cg.permute(3, 0, 1, 2))
    y = ys.permute(1, 2, 3, 0).reshape(batch, dim, length)
    if D is not None:
        y = y + D.to(cdt)[:, None] * u
    return y.to(dtype_in)
