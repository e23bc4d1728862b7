"""CPUThreadGovernor and CPUThreadsHook: torch's threads follow the free cores."""
import os
import subprocess
import sys
import time

from semillie_mm.utils import cpu_threads
from semillie_mm.utils.cpu_threads import (
    CPUThreadGovernor,
    descendant_cpu_seconds,
    read_cpu_jiffies,
)

import pytest
import torch

linux_only = pytest.mark.skipif(
    not os.path.exists('/proc/self/stat'), reason='needs /proc')

BUSY = 'import time\nt = time.time()\nwhile time.time() - t < 30: pass\n'


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def write_stat(path, cpus):
    """A /proc/stat with the given (busy, idle) jiffies per CPU."""
    lines = ['cpu  0 0 0 0 0 0 0 0 0 0']
    for i, (busy, idle) in enumerate(cpus):
        # user nice system idle iowait irq softirq steal guest guest_nice:
        # busy split over user/system/steal, idle over idle/iowait
        lines.append(f'cpu{i} {busy - busy // 2 - busy // 4} 0 {busy // 2} '
                     f'{idle - idle // 3} {idle // 3} 0 0 {busy // 4} 7 0')
    lines.append('intr 1 2 3')
    path.write_text('\n'.join(lines) + '\n')


def test_read_cpu_jiffies(tmp_path):
    stat = tmp_path / 'stat'
    write_stat(stat, [(100, 50), (30, 20), (5, 995)])
    # guest (7) is inside user already and is not counted again
    assert read_cpu_jiffies([0, 1], str(stat)) == (130, 200)
    assert read_cpu_jiffies([2], str(stat)) == (5, 1000)
    assert read_cpu_jiffies([7], str(stat)) is None
    assert read_cpu_jiffies([0], str(tmp_path / 'missing')) is None


class FakeClock:
    """Stands in for time.monotonic / time.process_time in the module."""

    def __init__(self):
        self.wall = 100.0
        self.cpu = 10.0

    def install(self, monkeypatch):
        monkeypatch.setattr(cpu_threads.time, 'monotonic', lambda: self.wall)
        monkeypatch.setattr(cpu_threads.time, 'process_time',
                            lambda: self.cpu)
        monkeypatch.setattr(cpu_threads, 'descendant_cpu_seconds', dict)
        monkeypatch.setattr(cpu_threads, '_allowed_cpus', lambda: [0, 1])


def test_governor_lowers_and_raises(tmp_path, monkeypatch):
    """Two CPUs; jiffies at 100 per CPU-second. The other jobs' share is
    busy - own: 1 core -> 1 thread at once; 0 cores for two samples -> back
    to the ceiling."""
    clock = FakeClock()
    clock.install(monkeypatch)
    stat = tmp_path / 'stat'
    jiffies = [[10, 10], [10, 10]]  # busy, idle per CPU

    def advance(seconds, busy_cores, own_cores):
        clock.wall += seconds
        clock.cpu += own_cores * seconds
        left = busy_cores * seconds * 100
        for cpu in jiffies:
            b = min(left, seconds * 100)
            cpu[0] += int(b)
            cpu[1] += int(seconds * 100 - b)
            left -= b
        write_stat(stat, jiffies)

    write_stat(stat, jiffies)
    torch.set_num_threads(2)
    gov = CPUThreadGovernor(interval=1.0, raise_after=2, enabled=True,
                            stat_path=str(stat))
    assert gov.enabled and gov.max_threads == 2
    assert gov.update() == 2  # first sample: nothing to compare yet
    advance(0.5, 2, 1)
    assert gov.update() == 2  # within the interval: no new sample
    advance(1.5, 2, 1)  # another job uses the other core
    assert gov.update() == 1
    assert torch.get_num_threads() == 1
    assert gov.last_free == pytest.approx(1.0, abs=0.02)
    advance(2, 1.0, 1)  # it ended: one sample with room is not enough
    assert gov.update() == 1
    advance(2, 1.0, 1)
    assert gov.update() == 2
    assert torch.get_num_threads() == 2
    advance(2, 1.3, 1)  # 0.3 cores of others: more than the margin
    assert gov.update() == 1
    advance(2, 1.2, 1)  # 0.2 cores: within it
    assert gov.update() == 1
    advance(2, 1.2, 1)
    assert gov.update() == 2
    # the user sets the count: that is the new ceiling
    torch.set_num_threads(1)
    advance(2, 0.5, 0.5)
    assert gov.update() == 1 and gov.max_threads == 1
    gov.restore()
    assert torch.get_num_threads() == 2


def test_governor_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv('SEMILLIE_ADAPTIVE_THREADS', '0')
    assert not CPUThreadGovernor().enabled
    monkeypatch.setenv('SEMILLIE_ADAPTIVE_THREADS', '1')
    assert not CPUThreadGovernor(
        stat_path=str(tmp_path / 'missing')).enabled
    with pytest.raises(ValueError, match='max_threads'):
        CPUThreadGovernor(max_threads=-1)


def _measure_free(interval=1.0):
    gov = CPUThreadGovernor(max_threads=2, interval=0.0, enabled=True)
    first = gov._take_sample()
    time.sleep(interval)
    return gov, gov.free_cores(first, gov._take_sample())


@linux_only
def test_other_job_counts_own_child_does_not():
    """On the real /proc: a busy process outside this job takes about one
    core from the free ones; a busy child of this process (like a
    data-loader worker) is this job's own."""
    ncpu = len(os.sched_getaffinity(0))
    _, idle_free = _measure_free()
    child = subprocess.Popen([sys.executable, '-c', BUSY])
    try:
        time.sleep(0.3)
        assert child.pid in descendant_cpu_seconds()
        _, free = _measure_free()
    finally:
        child.kill()
        child.wait()
    # the child is ours: the others' share does not grow by its core
    assert ncpu - free < (ncpu - idle_free) + 0.5
    # an orphan (its parent shell exits at once) is somebody else's job
    shell = subprocess.run(
        ['sh', '-c', f'"{sys.executable}" -c "{BUSY}" >/dev/null 2>&1 & '
         'echo $!'], capture_output=True, text=True, check=True)
    pid = int(shell.stdout.split()[0])
    try:
        time.sleep(0.3)
        assert pid not in descendant_cpu_seconds()
        gov, free = _measure_free()
    finally:
        os.kill(pid, 9)
    others = ncpu - free
    assert others > 0.6, (others, ncpu)


def test_hook_on_cpu_model(monkeypatch):
    from semillie_mm.engine.hooks import CPUThreadsHook

    from mmengine.model import BaseModule

    class Runner:
        model = BaseModule()
    Runner.model.w = torch.nn.Linear(2, 2)
    torch.set_num_threads(1)
    hook = CPUThreadsHook(interval=0.0)
    hook.before_run(Runner)
    if not os.path.exists('/proc/stat'):
        assert hook.governor is None
        return
    assert isinstance(hook.governor, CPUThreadGovernor)
    assert hook.governor.max_threads == 1
    hook.before_train_iter(Runner, 0)
    hook.before_val_iter(Runner, 0)
    hook.before_test_iter(Runner, 0)
    assert torch.get_num_threads() == 1  # never above the ceiling
    hook.governor.max_threads = 3
    torch.set_num_threads(2)  # as if it had lowered 3 -> 2
    hook.governor._threads = 2
    hook.governor._initial = 1
    hook.after_run(Runner)
    assert torch.get_num_threads() == 1 and hook.governor is None
    monkeypatch.setenv('SEMILLIE_ADAPTIVE_THREADS', 'off')
    hook.before_run(Runner)
    assert hook.governor is None
