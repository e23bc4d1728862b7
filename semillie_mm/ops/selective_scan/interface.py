# Copyright (c) semillie-mm contributors. All rights reserved.
"""``selective_scan``: Mamba's selective scan with four backends.

- ``'cuda'``: mamba-ssm's fused kernel (CUDA tensors, mamba-ssm installed,
  float32/float16/bfloat16 inputs);
- ``'native'``: the C++ kernel of the extension built by
  ``tools/setup_env.sh`` (CPU tensors), see :mod:`.native`;
- ``'numba'``: numba kernels with their own backward (CPU tensors, numba
  installed), see :mod:`.cpu`; the fallback when the extension is not
  built;
- ``'reference'``: a plain PyTorch loop, any device, see :mod:`.reference`.

``'cpu'`` names the fastest CPU kernel that runs here ('native', else
'numba'). The backend is picked per call from the tensors' device and what
is installed; the ``backend`` argument or the environment variable
``SEMILLIE_SCAN_BACKEND`` (``cuda`` | ``cpu`` | ``native`` | ``numba`` |
``reference`` | ``auto``) force one. Each choice is logged once.
``SEMILLIE_SCAN_BACKEND=fused`` selects SS2D's fused C++ kernel
(:mod:`.fused`) and leaves plain scans on ``auto``.
"""
import logging
import os
from typing import Optional, Set, Tuple, Union

import torch
from torch import Tensor

from . import cpu as _cpu
from . import cuda as _cuda
from . import ext as _ext
from . import native as _native
from .reference import selective_scan_reference

BACKENDS = ('cuda', 'native', 'numba', 'reference')
#: names that choose among backends: 'cpu' = 'native', else 'numba'
ALIASES = ('cpu', 'auto')
ENV_VAR = 'SEMILLIE_SCAN_BACKEND'

_logged: Set[Tuple[str, str]] = set()


def _emit(msg: str, level: int) -> None:
    try:
        from mmengine.logging import print_log
    except Exception:
        logging.getLogger(__name__).log(level, msg)
    else:
        print_log(msg, logger='current', level=level)


def _log_once(backend: str, reason: str, level: int = logging.INFO) -> None:
    key = (backend, reason)
    if key in _logged:
        return
    _logged.add(key)
    _emit(f'selective_scan: using the "{backend}" backend ({reason})', level)


def available_backends(device: Union[str, torch.device] = 'cpu',
                       dtype: torch.dtype = torch.float32) -> Tuple[str, ...]:
    """Backends that can run tensors of ``device`` and ``dtype`` here.

    Args:
        device (str | torch.device): device of the inputs.
        dtype (torch.dtype): dtype of ``u``.

    Returns:
        tuple[str]: in order of preference.
    """
    device = torch.device(device)
    names = []
    if (device.type == 'cuda' and dtype in _cuda.KERNEL_DTYPES
            and _cuda.mamba_available()):
        names.append('cuda')
    if device.type == 'cpu':
        if _native.native_available():
            names.append('native')
        if _cpu.numba_available():
            names.append('numba')
    names.append('reference')
    return tuple(names)


def _resolve_backend(backend: Optional[str], u: Tensor) -> str:
    source = 'argument backend'
    if backend is None:
        backend = os.environ.get(ENV_VAR, '').strip().lower() or 'auto'
        source = f'environment variable {ENV_VAR}'
        if backend == 'fused':  # SS2D's fused kernel; plain scans: auto
            backend = 'auto'
    if backend not in BACKENDS + ALIASES:
        raise ValueError(f'selective_scan: unknown backend {backend!r} '
                         f'(from the {source}); expected one of '
                         f'{BACKENDS + ALIASES}')
    device = u.device.type
    if backend == 'auto':
        if device == 'cuda':
            if u.dtype not in _cuda.KERNEL_DTYPES:
                _log_once('reference', f'{u.dtype} is not supported by '
                          'mamba-ssm\'s kernel', logging.WARNING)
                return 'reference'
            if _cuda.mamba_available():
                _log_once('cuda', 'mamba-ssm kernel, CUDA tensors')
                return 'cuda'
            _log_once(
                'reference', 'CUDA tensors but mamba-ssm is not available: '
                f'{_cuda.mamba_import_error()}; install '
                'requirements/optional.txt for the fast kernel',
                logging.WARNING)
            return 'reference'
        if device == 'cpu':
            name = _best_cpu()
            if name is None:
                _log_once(
                    'reference', 'neither the C++ extension '
                    f'({_native_reason()}) nor numba is available: the CPU '
                    'scan is slow and memory-hungry; run tools/setup_env.sh',
                    logging.WARNING)
                return 'reference'
            return name
        _log_once('reference', f'{device} tensors')
        return 'reference'
    # an explicit choice must be able to run
    if backend in ('cpu', 'native', 'numba') and device != 'cpu':
        raise RuntimeError(f'selective_scan: backend "{backend}" (from the '
                           f'{source}) needs CPU tensors, got {device}')
    if backend == 'cuda':
        if device != 'cuda':
            raise RuntimeError(f'selective_scan: backend "cuda" (from the '
                               f'{source}) needs CUDA tensors, got {device}')
        if not _cuda.mamba_available():
            raise RuntimeError(
                f'selective_scan: backend "cuda" (from the {source}) needs '
                f'mamba-ssm: {_cuda.mamba_import_error()}')
    elif backend == 'cpu':
        name = _best_cpu(f'requested by the {source}')
        if name is None:
            raise RuntimeError(
                f'selective_scan: backend "cpu" (from the {source}) needs the '
                f'C++ extension ({_native_reason()}) or numba (pip install '
                'numba)')
        return name
    elif backend == 'native':
        if not _native.native_available():
            raise RuntimeError(
                f'selective_scan: backend "native" (from the {source}) needs '
                f'the C++ extension: {_native_reason()}')
    elif backend == 'numba':
        if not _cpu.numba_available():
            raise RuntimeError(f'selective_scan: backend "numba" (from the '
                               f'{source}) needs numba: pip install numba')
    _log_once(backend, f'requested by the {source}')
    return backend


def _native_reason() -> str:
    return _ext.unavailable_reason() or 'not built'


def _best_cpu(why: Optional[str] = None) -> Optional[str]:
    """'native' if the extension is built, else 'numba' if installed (the
    choice logged once), else None."""
    if _native.native_available():
        _log_once('native', why or 'C++ kernel, CPU tensors')
        return 'native'
    if _cpu.numba_available():
        msg = _ext.check_fallback('selective_scan')  # raises if forbidden
        _log_once('numba', f'{why}; {msg}' if why else msg, logging.WARNING)
        return 'numba'
    _ext.check_fallback('selective_scan')
    return None


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
            explicit backend that cannot run raises.

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
    name = _resolve_backend(backend, u)
    if name == 'cuda':
        fn = _cuda.selective_scan_cuda
    elif name == 'native':
        fn = _native.selective_scan_native
    elif name == 'numba':
        fn = _cpu.selective_scan_cpu
    else:
        fn = selective_scan_reference
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
              delta_softplus=delta_softplus,
              return_last_state=return_last_state)
