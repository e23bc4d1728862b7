# Copyright (c) semillie-mm contributors. All rights reserved.
"""Inference precision: ``'fp32'`` (default) or ``'bf16'`` (docs/enhance.md).

``'bf16'`` runs the network under ``torch.autocast(dtype=torch.bfloat16)``:
the GEMMs (linear layers, 1x1 convs) and convolutions in bfloat16, with
float32 accumulation in oneDNN. SS2D's selective-scan recurrence stays in
float32 with autocast off (:class:`~semillie_mm.models.archs.SS2D`), since
the C++ kernels take float32 and the recurrence's exponentials compound
rounding. On the CPU without gradients MSSM and MSSB keep their memory-lean
path and choose each op's dtype themselves
(:func:`~semillie_mm.ops.mssm_lean.mssm_lean_autocast`: products, convs
and SS2D's ``x_proj`` in bfloat16, LayerNorms, gate and scan in float32);
elsewhere MSSM runs its module-by-module forward under autocast
(:func:`~semillie_mm.models.archs.mssm.plain_path_needed`). On the CPU it is
used only where the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16,
read from the CPU flags: :func:`cpu_has_bf16`); elsewhere oneDNN emulates
bfloat16 or lacks it, which gains nothing over float32, so a one-line notice
is logged and float32 runs (:func:`resolve_precision`).
"""
import contextlib
import functools
import logging
from typing import Callable, ContextManager, FrozenSet, Optional, Union

import torch

from .tiling import _net_device

logger = logging.getLogger(__name__)

#: the precisions :func:`resolve_precision` takes
PRECISIONS = ('fp32', 'bf16')
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic
BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')


def cpu_flags(path: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """The CPU's feature flags (the first ``flags`` line of ``path``).

    Args:
        path (str): The cpuinfo file. Default: ``/proc/cpuinfo``.

    Returns:
        frozenset[str]: Empty where the file cannot be read (not Linux).
    """
    try:
        with open(path) as f:
            for line in f:
                if line.split(':', 1)[0].strip() == 'flags':
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16(flags: Optional[FrozenSet[str]] = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16).

    torch's own test (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is
    true on every AVX-512 CPU, where oneDNN emulates bfloat16; the flags
    tell the CPUs with the instructions.

    Args:
        flags (frozenset[str], optional): Default: :func:`cpu_flags`.

    Returns:
        bool
    """
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def resolve_precision(precision: str,
                      device: Union[str, torch.device] = 'cpu') -> str:
    """The precision that runs on ``device``: ``precision``, or ``'fp32'``
    with a one-line notice (logged as a warning) where ``'bf16'`` is asked
    for but the device lacks native bfloat16.

    Args:
        precision (str): ``'fp32'`` or ``'bf16'``.
        device (str | torch.device): Where the network runs.

    Returns:
        str: ``'fp32'`` or ``'bf16'``.

    Raises:
        ValueError: An unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got '
                         f'{precision!r}')
    if precision == 'fp32':
        return precision
    device = torch.device(device)
    if device.type == 'cpu':
        ok = cpu_has_bf16()
        why = 'this CPU lacks AVX512-BF16 / AMX-BF16'
    elif device.type == 'cuda':
        ok = torch.cuda.is_bf16_supported()
        why = 'this GPU lacks bfloat16'
    else:
        ok, why = False, f'no bfloat16 autocast on {device.type}'
    if not ok:
        logger.warning('precision bf16: %s; running in fp32', why)
        return 'fp32'
    return precision


def autocast_context(precision: str,
                     device: Union[str, torch.device] = 'cpu'
                     ) -> ContextManager:
    """The context a forward pass of ``precision`` runs in.

    Args:
        precision (str): A precision :func:`resolve_precision` returned.
        device (str | torch.device): Where the network runs.

    Returns:
        ContextManager: ``torch.autocast`` in bfloat16 for ``'bf16'``, else
        a no-op context.
    """
    if precision == 'bf16':
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def in_precision(method: Callable) -> Callable:
    """Decorator of an inferencer method (an object with ``precision`` and
    ``get_network()``): the method runs under :func:`autocast_context` of
    its ``precision`` on the device of its network.

    Args:
        method (callable): The method.

    Returns:
        callable: The wrapped method.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        precision = getattr(self, 'precision', 'fp32')
        if precision == 'fp32':
            return method(self, *args, **kwargs)
        with autocast_context(precision, _net_device(self.get_network())):
            return method(self, *args, **kwargs)

    return wrapper


__all__ = ['PRECISIONS', 'cpu_flags', 'cpu_has_bf16', 'resolve_precision',
           'autocast_context', 'in_precision']
