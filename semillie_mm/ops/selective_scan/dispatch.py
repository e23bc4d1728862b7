# Copyright (c) semillie-mm contributors. All rights reserved.
"""Which selective-scan implementation runs: the backend policy, in one
place.

Backends (:mod:`.backends`):

- ``'cuda'``: mamba-ssm's fused kernel (CUDA tensors, mamba-ssm installed,
  float32/float16/bfloat16 inputs);
- ``'native'``: the C++ kernel of the extension built by
  ``tools/setup_env.sh`` (CPU tensors, :mod:`semillie_mm.ops.cpu_ext`);
- ``'numba'``: numba kernels with their own backward (CPU tensors, numba
  installed); the fallback when the extension is not built;
- ``'reference'``: a plain PyTorch loop, any device.

``'cpu'`` names the fastest CPU kernel that runs here ('native', else
'numba'); ``'auto'`` (the default) picks by the tensors' device and what is
installed. The ``backend`` argument or the environment variable
``SEMILLIE_SCAN_BACKEND`` (``cuda`` | ``cpu`` | ``native`` | ``numba`` |
``reference`` | ``auto`` | ``fused``) force one; :func:`requested` is the
only reader of that variable. ``fused`` selects SS2D's fused C++ kernel
(:mod:`.ss2d_fused`, asked through :func:`use_fused`) and leaves plain scans
on ``auto``. Each choice is logged once per process.
"""
import logging
import os
from typing import Callable, Optional, Set, Tuple, Union

import torch
from torch import Tensor

from .. import cpu_ext
from ..log import log_current
from . import ss2d_fused as _ss2d_fused
from .backends import cuda as _cuda
from .backends import native as _native
from .backends import numba as _numba
from .backends import reference as _reference

BACKENDS = ('cuda', 'native', 'numba', 'reference')
#: names that choose among backends: 'cpu' = 'native', else 'numba'
ALIASES = ('cpu', 'auto')
ENV_VAR = 'SEMILLIE_SCAN_BACKEND'
#: whether 'auto' runs SS2D on its fused C++ kernel for CPU maps when the
#: extension is built
FUSED_BY_DEFAULT = True

_logged: Set[Tuple[str, str]] = set()


def _log_once(backend: str, reason: str, level: int = logging.INFO) -> None:
    key = (backend, reason)
    if key in _logged:
        return
    _logged.add(key)
    log_current(f'selective_scan: using the "{backend}" backend ({reason})',
                level)


def requested(backend: Optional[str] = None) -> Tuple[str, str]:
    """The backend asked for: ``backend``, else ``SEMILLIE_SCAN_BACKEND``,
    else ``'auto'`` (lower-cased, not yet checked).

    Args:
        backend (str, optional): an explicit choice (an argument).

    Returns:
        tuple[str, str]: the name and where it came from (for messages).
    """
    if backend is not None:
        return backend, 'argument backend'
    name = os.environ.get(ENV_VAR, '').strip().lower() or 'auto'
    return name, f'environment variable {ENV_VAR}'


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
        if _numba.numba_available():
            names.append('numba')
    names.append('reference')
    return tuple(names)


def resolve(backend: Optional[str], u: Tensor) -> str:
    """The backend a scan of ``u`` runs on (the choice logged once).

    Args:
        backend (str, optional): as :func:`selective_scan`'s argument.
        u (Tensor): the scan's input (its device and dtype decide 'auto').

    Returns:
        str: one of :data:`BACKENDS`.

    Raises:
        ValueError: an unknown name.
        RuntimeError: an explicit backend that cannot run here.
    """
    backend, source = requested(backend)
    if backend == 'fused' and source != 'argument backend':
        backend = 'auto'  # SS2D's fused kernel; plain scans: auto
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
        if not _numba.numba_available():
            raise RuntimeError(f'selective_scan: backend "numba" (from the '
                               f'{source}) needs numba: pip install numba')
    _log_once(backend, f'requested by the {source}')
    return backend


def kernel(name: str) -> Callable:
    """The function of backend ``name`` (looked up at call time).

    Args:
        name (str): one of :data:`BACKENDS`.

    Returns:
        Callable: with the signature of :func:`selective_scan` (without
        ``backend``).
    """
    if name == 'cuda':
        return _cuda.selective_scan_cuda
    if name == 'native':
        return _native.selective_scan_native
    if name == 'numba':
        return _numba.selective_scan_numba
    return _reference.selective_scan_reference


def use_fused(backend: Optional[str], device: torch.device,
              d_state: int) -> bool:
    """Whether SS2D runs its four directions on the fused C++ kernel
    (:mod:`.ss2d_fused`) rather than one grouped :func:`selective_scan`.

    ``'fused'`` (argument or environment) demands it; ``'auto'`` takes it
    for CPU maps when the extension is built (:data:`FUSED_BY_DEFAULT`) and
    ``d_state`` fits, and otherwise warns (an error under
    ``SEMILLIE_REQUIRE_NATIVE=1``); any other backend name means the
    unfused path.

    Args:
        backend (str, optional): SS2D's ``scan_backend``.
        device (torch.device): device of the map.
        d_state (int): SS2D's state size.

    Returns:
        bool

    Raises:
        RuntimeError: ``'fused'`` asked for where it cannot run, or a
            fallback forbidden by ``SEMILLIE_REQUIRE_NATIVE``.
    """
    backend, source = requested(backend)
    if source == 'argument backend':
        source = 'argument scan_backend'
    if backend == 'fused':
        if device.type != 'cpu':
            raise RuntimeError(f'SS2D: scan backend "fused" (from the '
                               f'{source}) needs CPU tensors, got '
                               f'{device.type}')
        if not _ss2d_fused.fused_available():
            raise RuntimeError(
                f'SS2D: scan backend "fused" (from the {source}) needs '
                f'the C++ extension: {cpu_ext.unavailable_reason()}')
        _log_once('fused', f'requested by the {source}')
        return True
    if backend != 'auto' or device.type != 'cpu' or not FUSED_BY_DEFAULT:
        return False
    if d_state > _ss2d_fused.MAX_STATE:
        return False
    if not _ss2d_fused.fused_available():
        # loud, or an error under SEMILLIE_REQUIRE_NATIVE=1
        _log_once('cpu', cpu_ext.check_fallback('SS2D'), logging.WARNING)
        return False
    _log_once('fused', 'C++ kernel, CPU tensors')
    return True


def _native_reason() -> str:
    return cpu_ext.unavailable_reason() or 'not built'


def _best_cpu(why: Optional[str] = None) -> Optional[str]:
    """'native' if the extension is built, else 'numba' if installed (the
    choice logged once), else None."""
    if _native.native_available():
        _log_once('native', why or 'C++ kernel, CPU tensors')
        return 'native'
    if _numba.numba_available():
        msg = cpu_ext.check_fallback('selective_scan')  # raises if forbidden
        _log_once('numba', f'{why}; {msg}' if why else msg, logging.WARNING)
        return 'numba'
    cpu_ext.check_fallback('selective_scan')
    return None
