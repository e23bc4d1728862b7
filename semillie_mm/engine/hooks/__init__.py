from .cpu_threads_hook import CPUThreadsHook
from .mean_teacher_hook import MeanTeacherHook
from .rng_state_hook import RNGStateHook

__all__ = ['CPUThreadsHook', 'MeanTeacherHook', 'RNGStateHook']
