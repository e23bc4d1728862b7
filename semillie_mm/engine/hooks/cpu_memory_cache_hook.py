"""CPUMemoryCacheHook: reuse large CPU tensor blocks instead of page-faulting them in."""
from typing import Optional

from semillie_mm.ops.cpu_cache import (
    cpu_cache_available,
    default_limit_mb,
    empty_cpu_cache,
    enable_cpu_cache,
)

from mmagic.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log

from .cpu_threads_hook import model_on_cpu


@HOOKS.register_module()
class CPUMemoryCacheHook(Hook):
    """Run training / testing on the CPU with the caching allocator of
    :mod:`semillie_mm.ops.cpu_cache`, and release what it holds at the end.

    Without it every large tensor freed by a step is handed back to the
    kernel and page-faulted in again by the next step (on 2 cores a quarter
    of a training step's CPU time). It does nothing when the model is not
    on the CPU, the extension is not built or the limit is 0.

    Args:
        limit_mb (int, optional): Most MiB kept cached. Defaults to
            ``SEMILLIE_CPU_CACHE_MB``, else a quarter of the memory, at most
            4096.
    """

    priority = 'VERY_HIGH'

    def __init__(self, limit_mb: Optional[int] = None):
        self.limit_mb = limit_mb
        self.enabled = False

    def before_run(self, runner) -> None:
        """Install the allocator when the model runs on the CPU."""
        if not model_on_cpu(runner.model):
            return
        limit = (default_limit_mb()
                 if self.limit_mb is None else int(self.limit_mb))
        if limit == 0 or not cpu_cache_available():
            return
        self.enabled = enable_cpu_cache(limit)
        if self.enabled:
            print_log(f'CPU tensors >= 1 MiB: caching allocator, at most '
                      f'{limit} MiB kept', logger='current')

    def after_run(self, runner) -> None:
        """Give the cached blocks back."""
        if self.enabled:
            empty_cpu_cache()
