# Copyright (c) semillie-mm contributors. All rights reserved.
"""Selective scan (Mamba's S6 recurrence) with CUDA, C++ CPU, numba CPU and
reference backends. numba and mamba-ssm are imported on first use only; the
C++ extension is loaded (never compiled) on first use."""
from .cpu import numba_available, selective_scan_cpu
from .cuda import mamba_available, selective_scan_cuda
from .interface import (BACKENDS, ENV_VAR, available_backends,
                        selective_scan)
from .native import native_available, selective_scan_native
from .reference import selective_scan_reference

__all__ = [
    'selective_scan', 'selective_scan_reference', 'selective_scan_cpu',
    'selective_scan_native', 'selective_scan_cuda', 'available_backends',
    'numba_available', 'native_available', 'mamba_available', 'BACKENDS',
    'ENV_VAR'
]
