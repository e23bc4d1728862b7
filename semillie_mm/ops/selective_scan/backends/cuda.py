# Copyright (c) semillie-mm contributors. All rights reserved.
"""The 'cuda' backend: mamba-ssm's fused selective-scan kernel.

mamba-ssm is an optional dependency (``requirements/optional.txt``) that only
builds on CUDA machines; a standalone build of just its ``selective_scan_cuda``
extension works too (:mod:`.cuda_ext`). It is imported lazily, on the first
scan of CUDA tensors; nothing here fails when it is missing.
"""
from typing import Callable, Optional

import torch
from torch import Tensor

_UNSET = object()
_scan_fn = _UNSET
_import_error: Optional[str] = None

#: input dtypes mamba-ssm's kernel accepts for u, delta, B, C, z
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _load() -> Optional[Callable]:
    """mamba-ssm's ``selective_scan_fn``; failing that, a standalone build of
    its ``selective_scan_cuda`` extension (see :mod:`.cuda_ext`)."""
    global _scan_fn, _import_error
    if _scan_fn is _UNSET:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception as exc:  # ImportError, or a broken CUDA build
            _scan_fn = None
            _import_error = f'{type(exc).__name__}: {exc}'
            try:
                import selective_scan_cuda
            except Exception as exc2:
                _import_error += (f'; standalone selective_scan_cuda: '
                                  f'{type(exc2).__name__}: {exc2}')
            else:
                from .cuda_ext import make_extension_scan_fn
                _scan_fn = make_extension_scan_fn(selective_scan_cuda)
                _import_error = None
        else:
            _scan_fn = selective_scan_fn
    return _scan_fn


def mamba_available() -> bool:
    """Whether ``mamba_ssm``'s ``selective_scan_fn`` imports.

    Returns:
        bool: True if the 'cuda' backend can run (on CUDA tensors).
    """
    return _load() is not None


def mamba_import_error() -> Optional[str]:
    """Why mamba-ssm could not be imported (None if it could or was not
    tried).

    Returns:
        str | None: the exception text.
    """
    _load()
    return _import_error


def selective_scan_cuda(u: Tensor,
                        delta: Tensor,
                        A: Tensor,
                        B: Tensor,
                        C: Tensor,
                        D: Optional[Tensor] = None,
                        z: Optional[Tensor] = None,
                        delta_bias: Optional[Tensor] = None,
                        delta_softplus: bool = False,
                        return_last_state: bool = False):
    """Selective scan with mamba-ssm's CUDA kernel.

    Same arguments and results as :func:`selective_scan`. The kernel wants
    ``delta``, ``B``, ``C`` and ``z`` in ``u``'s dtype (float32, float16 or
    bfloat16) and ``A``, ``D``, ``delta_bias`` in float32; inputs are cast
    accordingly (autograd casts the gradients back). As in mamba-ssm, no
    gradient flows from ``last_state``.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` or ``(out, last_state)``.
    """
    fn = _load()
    if fn is None:
        raise RuntimeError(
            'The "cuda" selective-scan backend needs mamba-ssm '
            f'(pip install -r requirements/optional.txt): {_import_error}')
    if u.dtype not in KERNEL_DTYPES:
        raise TypeError(f'mamba-ssm\'s kernel does not take {u.dtype} '
                        f'inputs; use one of {KERNEL_DTYPES} or the '
                        '"reference" backend')
    itype = u.dtype

    def f32(x):
        return None if x is None else x.float()

    return fn(
        u,
        delta.to(itype),
        A.float(),
        B.to(itype),
        C.to(itype),
        D=f32(D),
        z=None if z is None else z.to(itype),
        delta_bias=f32(delta_bias),
        delta_softplus=bool(delta_softplus),
        return_last_state=bool(return_last_state))
