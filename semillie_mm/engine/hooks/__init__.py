from .atomic_checkpoint_hook import AtomicCheckpointHook
from .cpu_memory_cache_hook import CPUMemoryCacheHook
from .cpu_threads_hook import CPUThreadsHook
from .mean_teacher_hook import MeanTeacherHook
from .rng_state_hook import RNGStateHook

__all__ = [
    'AtomicCheckpointHook', 'CPUMemoryCacheHook', 'CPUThreadsHook',
    'MeanTeacherHook', 'RNGStateHook'
]
