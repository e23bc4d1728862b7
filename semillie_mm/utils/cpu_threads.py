"""Share the CPU with other jobs: torch's thread count follows the free cores.

Torch's OpenMP pool busy-waits at the end of every parallel region. When two
jobs each run as many threads as there are cores, a waiting thread burns the
time slice that the thread it waits for needs, and both jobs collapse
(measured on 2 cores: two copies of a small training loop 5-14x slower each
than one alone, two demo trainings 18x). One thread per job instead costs
each job only its own parallel speed-up (about 1.5x on 2 cores).

:class:`CPUThreadGovernor` samples, at most once per ``interval`` seconds,
how busy the cores this process may run on are (``/proc/stat``) and how much
of that is this job (the process and its children, e.g. data-loader
workers), and sets ``torch.set_num_threads`` to the cores the other jobs
leave free: never more than the count it started with (the user's
``OMP_NUM_THREADS`` or ``torch.set_num_threads`` stays the ceiling), never
fewer than one. It lowers the count at the first busy sample and raises it
again after ``raise_after`` samples in a row with room. It must be called
from the thread that runs the model (OpenMP's thread count is a per-thread
setting), e.g. once per iteration: :class:`~semillie_mm.engine.hooks.
CPUThreadsHook` does that for MMEngine's runner and
:class:`~semillie_mm.apis.SemiLLIEInferencer` between images and tiles
(with ``cpu_tuning=True``, see :mod:`semillie_mm.apis.cpu_tuning`). On
systems without ``/proc`` it does nothing. ``SEMILLIE_ADAPTIVE_THREADS=0``
turns it off.
"""
import os
import time
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

ENV_SWITCH = 'SEMILLIE_ADAPTIVE_THREADS'
_CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def adaptive_threads_enabled() -> bool:
    """Whether ``SEMILLIE_ADAPTIVE_THREADS`` leaves the governor on.

    Returns:
        bool: False when the variable is ``0``, ``false``, ``no`` or ``off``.
    """
    value = os.environ.get(ENV_SWITCH, '1').strip().lower()
    return value not in ('0', 'false', 'no', 'off')


def _allowed_cpus() -> List[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_cpu_jiffies(cpus: List[int],
                     path: str = '/proc/stat') -> Optional[Tuple[int, int]]:
    """Busy and total jiffies of the given CPUs since boot.

    Args:
        cpus (list[int]): CPU numbers (the ``cpuN`` lines of ``/proc/stat``).
        path (str): The file to read. Defaults to ``/proc/stat``.

    Returns:
        tuple[int, int] | None: ``(busy, total)``; idle and iowait count as
        not busy, steal as busy (another guest ran). None when the file is
        missing or names none of the CPUs.
    """
    wanted = {f'cpu{i}' for i in cpus}
    busy = total = 0
    found = False
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(' ')
                if name not in wanted:
                    continue
                # user nice system idle iowait irq softirq steal (guest is
                # already inside user)
                vals = [int(v) for v in rest.split()[:8]]
                vals += [0] * (8 - len(vals))
                t = sum(vals)
                busy += t - vals[3] - vals[4]
                total += t
                found = True
    except (OSError, ValueError):
        return None
    return (busy, total) if found and total > 0 else None


def _children(pid: int) -> List[int]:
    kids = []
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                kids.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            pass
    return kids


def _proc_cpu_seconds(pid: int) -> Optional[float]:
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its ')'
    fields = stat.rpartition(')')[2].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (IndexError, ValueError):
        return None


def descendant_cpu_seconds(pid: Optional[int] = None) -> Dict[int, float]:
    """CPU seconds used so far by every living descendant of a process.

    Args:
        pid (int, optional): The root process. Defaults to this process.

    Returns:
        dict[int, float]: pid -> user + system seconds (empty where
        ``/proc/<pid>/task/<tid>/children`` is not available).
    """
    out = {}
    stack = _children(os.getpid() if pid is None else pid)
    while stack:
        p = stack.pop()
        if p in out:
            continue
        seconds = _proc_cpu_seconds(p)
        if seconds is not None:
            out[p] = seconds
            stack.extend(_children(p))
    return out


class CPUThreadGovernor:
    """Set torch's intra-op thread count to the cores other jobs leave free.

    Args:
        max_threads (int, optional): The ceiling. Defaults to
            ``torch.get_num_threads()`` when the governor is created.
        interval (float): Seconds between two samples; :meth:`update` calls
            in between return at once. Defaults to 1.0.
        margin (float): Cores the other jobs may use without costing this
            job a thread. Defaults to 0.25.
        raise_after (int): Samples in a row with room for more threads
            before the count goes up. Defaults to 2.
        enabled (bool, optional): Defaults to
            :func:`adaptive_threads_enabled`.
        logger (str): MMEngine logger that reports changes. Defaults to
            ``'current'``.
        stat_path (str): Defaults to ``/proc/stat`` (tests give a file).
    """

    def __init__(self,
                 max_threads: Optional[int] = None,
                 interval: float = 1.0,
                 margin: float = 0.25,
                 raise_after: int = 2,
                 enabled: Optional[bool] = None,
                 logger: str = 'current',
                 stat_path: str = '/proc/stat'):
        self.max_threads = int(max_threads or torch.get_num_threads())
        if self.max_threads < 1:
            raise ValueError(f'max_threads must be >= 1, got {max_threads}')
        self.interval = float(interval)
        self.margin = float(margin)
        self.raise_after = max(1, int(raise_after))
        self.enabled = (adaptive_threads_enabled()
                        if enabled is None else bool(enabled))
        self.logger = logger
        self.stat_path = stat_path
        self.cpus = _allowed_cpus()
        self._threads = torch.get_num_threads()
        self._initial = self._threads
        self._sample = None
        self._room = 0
        self.last_free: Optional[float] = None
        if self.enabled and read_cpu_jiffies(self.cpus,
                                             self.stat_path) is None:
            self.enabled = False  # no /proc/stat: nothing to go by

    @property
    def threads(self) -> int:
        """int: The thread count last set (or found)."""
        return self._threads

    def _take_sample(self):
        cpu = read_cpu_jiffies(self.cpus, self.stat_path)
        if cpu is None:
            return None
        return (time.monotonic(), time.process_time(),
                descendant_cpu_seconds(), cpu)

    def free_cores(self, previous, current) -> Optional[float]:
        """Cores not used by other jobs between two samples.

        Args:
            previous (tuple): An earlier sample.
            current (tuple): A later sample.

        Returns:
            float | None: ``cores - (busy cores - this job's cores)``; None
            when no time passed between the samples.
        """
        t0, own0, kids0, (busy0, total0) = previous
        t1, own1, kids1, (busy1, total1) = current
        wall = t1 - t0
        d_total = total1 - total0
        if wall <= 0 or d_total <= 0:
            return None
        ncpu = len(self.cpus)
        busy = ncpu * (busy1 - busy0) / d_total
        # a child first seen in this interval counts with all its CPU time
        own = (own1 - own0) + sum(s - kids0.get(p, 0.0)
                                  for p, s in kids1.items())
        own_cores = own / wall
        others = max(0.0, busy - own_cores)
        return ncpu - others

    def update(self) -> int:
        """Sample (at most once per interval) and adjust the thread count.

        Returns:
            int: Torch's intra-op thread count after the call.
        """
        if not self.enabled:
            return torch.get_num_threads()
        now = time.monotonic()
        if self._sample is not None and now - self._sample[0] < self.interval:
            return self._threads
        current = torch.get_num_threads()
        if current != self._threads:
            # someone else set it: that is the new ceiling
            self.max_threads = self._threads = current
            self._room = 0
        sample = self._take_sample()
        if sample is None:
            return current
        previous, self._sample = self._sample, sample
        if previous is None:
            return current
        free = self.free_cores(previous, sample)
        if free is None:
            return current
        self.last_free = free
        want = max(1, min(self.max_threads, int(free + self.margin)))
        if want < self._threads:
            self._set(want, free)
            self._room = 0
        elif want > self._threads:
            self._room += 1
            if self._room >= self.raise_after:
                self._set(want, free)
                self._room = 0
        else:
            self._room = 0
        return self._threads

    def _set(self, threads: int, free: float):
        print_log(
            f'CPU threads {self._threads} -> {threads}: other jobs leave '
            f'{free:.1f} of {len(self.cpus)} cores free',
            logger=self.logger)
        torch.set_num_threads(threads)
        self._threads = threads

    def restore(self):
        """Put back the thread count found when the governor was created."""
        if self.enabled and torch.get_num_threads() != self._initial:
            torch.set_num_threads(self._initial)
        self._threads = torch.get_num_threads()
        self._sample = None
        self._room = 0
