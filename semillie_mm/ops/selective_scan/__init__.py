# Copyright (c) semillie-mm contributors. All rights reserved.
"""Selective scan (Mamba's S6 recurrence): :func:`selective_scan`, its
plain-PyTorch ground truth :func:`selective_scan_reference` and
:func:`available_backends`.

Layout:

- :mod:`.dispatch`: which backend runs (argument, ``SEMILLIE_SCAN_BACKEND``,
  what is installed), logged once; SS2D asks it too
  (:func:`dispatch.use_fused`);
- :mod:`.backends`: ``cuda`` (mamba-ssm), ``native`` (C++, in
  :mod:`semillie_mm.ops.cpu_ext`), ``numba`` (fallback), ``reference``;
- :mod:`.ss2d_fused`: SS2D's fused four-direction CPU scan (C++);
- :mod:`.common`: what the CPU kernels share (compute dtype, checkpoint
  interval, partial-buffer split).

numba and mamba-ssm are imported on first use only; the C++ extension is
loaded (never compiled) on first use.
"""
from typing import Optional, Tuple, Union

from torch import Tensor

from . import dispatch
from .backends.reference import selective_scan_reference
from .dispatch import available_backends

__all__ = ['selective_scan', 'selective_scan_reference', 'available_backends']


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Raise ValueError/TypeError for inputs that do not fit together."""

    def fail(msg):
        raise ValueError(f'selective_scan: {msg}')

    for name, x in (('u', u), ('delta', delta), ('A', A), ('B', B), ('C', C),
                    ('D', D), ('z', z), ('delta_bias', delta_bias)):
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f'selective_scan: {name} must be a Tensor, got '
                            f'{type(x).__name__}')
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f'selective_scan: {name} must be a real '
                            f'floating-point tensor, got {x.dtype}')
        if x.device != u.device:
            fail(f'{name} is on {x.device} but u is on {u.device}')
    if u.dim() != 3:
        fail(f'u must be (batch, dim, L), got shape {tuple(u.shape)}')
    batch, dim, length = u.shape
    if length < 1 or dim < 1 or batch < 1:
        fail(f'u must have non-empty batch, dim and L, got {tuple(u.shape)}')
    if delta.shape != u.shape:
        fail(f'delta must have the shape of u {tuple(u.shape)}, got '
             f'{tuple(delta.shape)}')
    if A.dim() != 2 or A.shape[0] != dim:
        fail(f'A must be (dim, N) = ({dim}, N), got {tuple(A.shape)}')
    N = A.shape[1]
    for name, X in (('B', B), ('C', C)):
        if X.dim() == 3:
            if tuple(X.shape) != (batch, N, length):
                fail(f'{name} must be (batch, N, L) = {(batch, N, length)} '
                     f'or (batch, groups, N, L), got {tuple(X.shape)}')
        elif X.dim() == 4:
            G = X.shape[1]
            if (X.shape[0], X.shape[2], X.shape[3]) != (batch, N, length):
                fail(f'{name} must be (batch, groups, N, L) = '
                     f'{(batch, "groups", N, length)}, got {tuple(X.shape)}')
            if G < 1 or dim % G != 0:
                fail(f'{name} has {G} groups, which do not divide dim={dim}')
        else:
            fail(f'{name} must be (batch, N, L) or (batch, groups, N, L); '
                 f'a constant (dim, N) {name} is not supported, got '
                 f'{tuple(X.shape)}')
    for name, x in (('D', D), ('delta_bias', delta_bias)):
        if x is not None and tuple(x.shape) != (dim, ):
            fail(f'{name} must be (dim,) = ({dim},), got {tuple(x.shape)}')
    if z is not None and z.shape != u.shape:
        fail(f'z must have the shape of u {tuple(u.shape)}, got '
             f'{tuple(z.shape)}')


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False,
                   return_last_state: bool = False,
                   backend: Optional[str] = None
                   ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Mamba's selective scan (same interface as mamba-ssm's
    ``selective_scan_fn``), differentiable on every backend.

    For every batch ``b``, channel ``d``, state ``n`` and step ``t``::

        dt[t]   = softplus(delta[t] + delta_bias[d])   (softplus optional)
        h[t, n] = exp(dt[t] * A[d, n]) * h[t-1, n] + dt[t] * B[t, n] * u[t]
        y[t]    = sum_n C[t, n] * h[t, n] + D[d] * u[t]
        out[t]  = y[t] * silu(z[t])                    (if z is given)

    with ``h[-1] = 0``. Grouped B/C (batch, G, N, L) split the channels into
    ``G`` equal consecutive blocks: channel ``d`` uses group
    ``d // (dim // G)``.

    Args:
        u (Tensor): input, (batch, dim, L).
        delta (Tensor): step sizes before bias/softplus, (batch, dim, L).
        A (Tensor): real state matrix (diagonal per channel), (dim, N).
        B (Tensor): input projection, (batch, N, L) or (batch, G, N, L).
        C (Tensor): output projection, (batch, N, L) or (batch, G, N, L).
        D (Tensor, optional): skip weight, (dim,).
        z (Tensor, optional): gate, (batch, dim, L): ``out = y * silu(z)``.
        delta_bias (Tensor, optional): added to delta, (dim,).
        delta_softplus (bool): apply softplus to ``delta + delta_bias``.
            Defaults to False.
        return_last_state (bool): also return ``h[L-1]``. Defaults to False.
        backend (str, optional): ``'cuda'``, ``'native'``, ``'numba'``,
            ``'reference'``, ``'cpu'`` (native, else numba) or ``'auto'``;
            None reads ``SEMILLIE_SCAN_BACKEND`` (default ``'auto'``). An
            explicit backend that cannot run raises. See :mod:`.dispatch`.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` (batch, dim, L) in ``u``'s
        dtype; with ``return_last_state`` also ``last_state``
        (batch, dim, N) in float32 (float64 for float64 inputs). The CPU
        and 'reference' backends also back-propagate through
        ``last_state``; mamba-ssm's kernel ('cuda') does not.

    Note:
        Computation is in float32 for float32/float16/bfloat16 inputs and in
        float64 for float64 inputs ('cuda' does not take float64; 'auto'
        then uses 'reference').
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    fn = dispatch.kernel(dispatch.resolve(backend, u))
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
              delta_softplus=delta_softplus,
              return_last_state=return_last_state)
