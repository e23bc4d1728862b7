# Copyright (c) semillie-mm contributors. All rights reserved.
"""A caching allocator for large CPU tensors (C++, in the CPU extension).

torch frees CPU tensors with ``free()``, and glibc gives every block above
its mmap threshold (at most 32 MiB) back to the kernel at once, so the next
tensor of that size is page-faulted in again. A SemiLLIENet training step
(batch 8 x 128x128) allocates about 8 GB that way; on the 2-core Zen-5 VM
the page faults took 3.2 of its 13.8 CPU seconds (``benchmarks/
bench_cpu_path.py``, rows ``train`` and ``train_nocache``).

:func:`enable_cpu_cache` installs, as torch's CPU allocator, one that keeps
freed blocks of 1 MiB and more and hands them out again (best fit, at most
a quarter larger than the size asked for, its pages kept resident); smaller
requests go to torch's allocator. The resident memory grows little because
of it: cached bytes are capped (``limit_mb``), and a request that finds no
fitting block first releases cached blocks as far as the fresh block would
take the memory it holds more than 64 MiB past the most it has had in use
at once (below that mark the fresh block is added: a steady 256x256
forward then faults no page in). The memory it holds between two steps is
released by :func:`empty_cpu_cache`. It is enabled by
:class:`~semillie_mm.engine.hooks.CPUMemoryCacheHook` (the runner, i.e.
``tools/train.py`` / ``tools/test.py``) and by
:class:`~semillie_mm.apis.SemiLLIEInferencer` with ``cpu_tuning=True``;
``SEMILLIE_CPU_CACHE_MB`` sets the limit, ``0`` turns it off. Without the
extension it is not available and nothing changes.
"""
import os
from typing import Optional

from . import cpu_ext

ENV_LIMIT = 'SEMILLIE_CPU_CACHE_MB'
#: default limit: a quarter of the machine's memory, at most 4 GiB
DEFAULT_MAX_MB = 4096

_FIELDS = ('installed', 'active', 'limit_bytes', 'cached_bytes', 'hits',
           'misses', 'released', 'footprint_bytes', 'peak_bytes')


def _total_memory_mb() -> Optional[int]:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 20
    except (AttributeError, ValueError, OSError):
        return None


def default_limit_mb() -> int:
    """The limit used when none is given.

    Returns:
        int: ``SEMILLIE_CPU_CACHE_MB`` when set, else a quarter of the
        physical memory, at most 4096.

    Raises:
        ValueError: ``SEMILLIE_CPU_CACHE_MB`` is not a whole number >= 0.
    """
    value = os.environ.get(ENV_LIMIT, '').strip()
    if value:
        try:
            mb = int(value)
        except ValueError:
            mb = -1
        if mb < 0:
            raise ValueError(f'{ENV_LIMIT} must be a whole number of MiB '
                             f'>= 0 (0 = off), got {value!r}')
        return mb
    total = _total_memory_mb()
    return DEFAULT_MAX_MB if total is None else min(DEFAULT_MAX_MB,
                                                    total // 4)


def cpu_cache_available() -> bool:
    """Whether the extension (with the allocator) is built.

    Returns:
        bool
    """
    mod = cpu_ext.load()
    return mod is not None and hasattr(mod, 'cpu_cache_install')


def enable_cpu_cache(limit_mb: Optional[int] = None) -> bool:
    """Install the caching allocator (once) or change its limit.

    Args:
        limit_mb (int, optional): Most MiB kept cached. Defaults to
            :func:`default_limit_mb`. 0 leaves torch's allocator in place
            (or, once installed, caches nothing more).

    Returns:
        bool: Whether the caching allocator is torch's CPU allocator now.
    """
    mb = default_limit_mb() if limit_mb is None else int(limit_mb)
    if mb < 0:
        raise ValueError(f'limit_mb must be >= 0, got {limit_mb}')
    if not cpu_cache_available():
        return False
    mod = cpu_ext.load()
    if mb == 0 and not cpu_cache_stats()['installed']:
        return False
    mod.cpu_cache_install(mb << 20)
    return bool(cpu_cache_stats()['active'])


def cpu_cache_stats() -> dict:
    """The allocator's counters.

    Returns:
        dict: ``installed``, ``active`` (it is torch's CPU allocator),
        ``limit_bytes``, ``cached_bytes``, ``hits``, ``misses`` (requests of
        1 MiB or more), ``released`` (blocks given back to the system),
        ``footprint_bytes`` (every block it holds, in use or cached) and
        ``peak_bytes`` (the most of them in use at once; a miss releases
        cached blocks only as far as the footprint would pass it by more
        than 64 MiB); all 0 when it was never installed or is not built.
    """
    if not cpu_cache_available():
        return dict.fromkeys(_FIELDS, 0)
    return dict(zip(_FIELDS, cpu_ext.load().cpu_cache_stats()))


def empty_cpu_cache() -> int:
    """Release every cached block and lower ``peak_bytes`` to the blocks in
    use.

    Returns:
        int: The bytes released.
    """
    if not cpu_cache_available():
        return 0
    return int(cpu_ext.load().cpu_cache_empty())
