"""Opt-in CPU tuning for a run of the inferencer, undone when it ends.

``SemiLLIEInferencer(...)(inputs, cpu_tuning=True)`` (``tools/enhance.py``
passes it) runs the call inside :func:`cpu_tuning`:

- torch's intra-op thread count follows the cores that other jobs leave
  free (:class:`~semillie_mm.utils.cpu_threads.CPUThreadGovernor`, sampled
  between images and tiles);
- large CPU tensors reuse freed blocks
  (:func:`~semillie_mm.ops.cpu_cache.enable_cpu_cache`).

Both are process-wide, so they are never switched on behind the caller's
back (the default is ``cpu_tuning=False``), and on exit (an exception
included) the thread count is put back and the allocator's cached blocks
are released and its limit put back: to 0 when it was not in use before
(torch cannot swap an allocator back while tensors it allocated live, so
the caching allocator then stays installed but keeps nothing).
"""
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from semillie_mm.ops.cpu_cache import cpu_cache_stats, empty_cpu_cache, enable_cpu_cache
from semillie_mm.utils.cpu_threads import CPUThreadGovernor

import torch


@contextmanager
def cpu_tuning(enabled: bool = True) -> Iterator[Optional[Callable]]:
    """Tune the CPU for enhancing images; restore it on exit.

    Args:
        enabled (bool): False does nothing (yields None). Default: True.

    Yields:
        callable | None: The governor's ``update``, to call between images
        and tiles from the thread that runs the network; None when the
        governor is off (``SEMILLIE_ADAPTIVE_THREADS=0``, no ``/proc``).
    """
    if not enabled:
        yield None
        return
    threads = torch.get_num_threads()
    before = cpu_cache_stats()
    governor = CPUThreadGovernor()
    cache_on = enable_cpu_cache()
    try:
        yield governor.update if governor.enabled else None
    finally:
        governor.restore()
        torch.set_num_threads(threads)
        if cache_on:
            enable_cpu_cache(before['limit_bytes'] >> 20)
            empty_cpu_cache()


__all__ = ['cpu_tuning']
