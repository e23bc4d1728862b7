"""The caching CPU allocator (semillie_mm.ops.cpu_cache).

It replaces torch's CPU allocator for the whole process, so every check
runs in a fresh interpreter."""
import json
import os
import subprocess
import sys
import textwrap

from semillie_mm.ops import cpu_cache

import pytest

needs_ext = pytest.mark.skipif(
    not cpu_cache.cpu_cache_available(),
    reason='CPU extension not built (tools/setup_env.sh builds it)')

MiB = 2**20


def run_fresh(code, env=None):
    full = dict(os.environ, **(env or {}))
    res = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        capture_output=True, text=True, env=full, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@needs_ext
def test_blocks_are_reused_and_bounded():
    out = run_fresh('''
        import json, torch
        from semillie_mm.ops import cpu_cache as cc
        MiB = 2**20
        r = {}
        r['before'] = cc.cpu_cache_stats()
        r['on'] = cc.enable_cpu_cache(64)
        a = torch.empty(4 * MiB // 4)
        pa = a.data_ptr()
        del a
        s = cc.cpu_cache_stats()
        r['cached_after_free'] = s['cached_bytes']
        b = torch.ones(4 * MiB // 4)  # same size: the same block
        r['same_block'] = b.data_ptr() == pa
        r['ones'] = float(b.min()) == 1.0 == float(b.max())
        del b
        c = torch.empty(7 * MiB // 8)  # a little smaller: best fit
        r['best_fit'] = c.data_ptr() == pa
        del c
        small = torch.empty(1000)  # < 1 MiB: torch's own allocator
        del small
        s = cc.cpu_cache_stats()
        r['hits'], r['misses'] = s['hits'], s['misses']
        # more than the limit is never kept
        big = [torch.empty(20 * MiB // 4) for _ in range(5)]
        del big
        r['cached_capped'] = cc.cpu_cache_stats()['cached_bytes']
        r['emptied'] = cc.empty_cpu_cache()
        r['cached_end'] = cc.cpu_cache_stats()['cached_bytes']
        cc.enable_cpu_cache(0)  # limit 0: frees go straight back
        d = torch.empty(4 * MiB // 4)
        del d
        r['cached_limit0'] = cc.cpu_cache_stats()['cached_bytes']
        print(json.dumps(r))
    ''')
    assert out['before']['installed'] == 0
    assert out['on'] is True
    assert out['cached_after_free'] == 4 * MiB
    assert out['same_block'] and out['ones'] and out['best_fit']
    assert out['hits'] == 2 and out['misses'] == 1
    assert 0 < out['cached_capped'] <= 64 * MiB
    assert out['emptied'] == out['cached_capped']
    assert out['cached_end'] == 0 and out['cached_limit0'] == 0


@needs_ext
def test_a_miss_releases_only_past_the_mark():
    """A request that finds no fitting block is added without releasing
    cached blocks while the footprint stays within 64 MiB of the most bytes
    ever in use at once (the old rule released blocks worth its size on
    every miss, which made a steady training step fault the same pages in
    again); past that mark, cached blocks go first."""
    out = run_fresh('''
        import json, torch
        from semillie_mm.ops import cpu_cache as cc
        MiB = 2**20
        keys = ('cached_bytes', 'footprint_bytes', 'peak_bytes', 'misses')
        snap = lambda: [cc.cpu_cache_stats()[k] // (MiB if k != 'misses'
                                                    else 1) for k in keys]
        r = {}
        cc.enable_cpu_cache(64)
        blocks = [torch.empty(32 * MiB // 4) for _ in range(4)]
        r['four'] = snap()
        del blocks  # two stay cached, two go back (the limit)
        r['freed'] = snap()
        c = torch.empty(48 * MiB // 4)  # no fit; 64 + 48 <= 128 + 64
        r['c'] = snap()
        d = torch.empty(48 * MiB // 4)  # 112 + 48 <= 192
        r['d'] = snap()
        e = torch.empty(48 * MiB // 4)  # 160 + 48 > 192: a 32 MiB block goes
        r['e'] = snap()
        hit = torch.empty(30 * MiB // 4)  # the other, a little larger
        r['hit'] = snap()
        del c, d, e, hit
        r['emptied'] = cc.empty_cpu_cache() // MiB
        r['end'] = snap()
        print(json.dumps(r))
    ''')
    # [cached, footprint, most in use at once] in MiB, misses
    assert out['four'] == [0, 128, 128, 4]
    assert out['freed'] == [64, 64, 128, 4]
    assert out['c'] == [64, 112, 128, 5]
    assert out['d'] == [64, 160, 128, 6]
    assert out['e'] == [32, 176, 144, 7]
    assert out['hit'] == [0, 176, 176, 7]
    assert out['emptied'] == 48  # c; d, e and the hit's block over the limit
    assert out['end'] == [0, 0, 0, 7]


@needs_ext
def test_training_step_is_unchanged_and_fork_is_safe():
    """Same gradients with and without the cache (deterministic ops), and a
    forked child (a data-loader worker) can allocate."""
    code = '''
        import json, os, sys, torch
        from semillie_mm.ops import cpu_cache as cc
        if sys.argv[-1] == 'on':
            assert cc.enable_cpu_cache(256)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1),
                                  torch.nn.GELU(),
                                  torch.nn.Conv2d(32, 3, 3, padding=1))
        x = torch.rand(2, 3, 96, 96)
        for _ in range(3):
            net.zero_grad()
            (net(x) - x).abs().mean().backward()
        g = [p.grad.double().sum().item() for p in net.parameters()]
        pid = os.fork()
        if pid == 0:  # libgomp's pool does not survive fork: one thread,
            torch.set_num_threads(1)  # as in a data-loader worker
            y = torch.rand(4, 64, 64, 64) * 2
            os._exit(0 if float(y.max()) <= 2 else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(dict(g=g, child=status,
                              hits=cc.cpu_cache_stats()['hits'])))
    '''
    res = {}
    for mode in ('off', 'on'):
        proc = subprocess.run(
            [sys.executable, '-c', textwrap.dedent(code), mode],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['on']['g'] == res['off']['g']
    assert res['on']['child'] == 0 and res['off']['child'] == 0
    assert res['on']['hits'] > 0 and res['off']['hits'] == 0


def test_limit_from_environment(monkeypatch):
    monkeypatch.setenv('SEMILLIE_CPU_CACHE_MB', '123')
    assert cpu_cache.default_limit_mb() == 123
    monkeypatch.setenv('SEMILLIE_CPU_CACHE_MB', 'lots')
    with pytest.raises(ValueError, match='SEMILLIE_CPU_CACHE_MB'):
        cpu_cache.default_limit_mb()
    monkeypatch.delenv('SEMILLIE_CPU_CACHE_MB')
    assert 0 < cpu_cache.default_limit_mb() <= cpu_cache.DEFAULT_MAX_MB
    with pytest.raises(ValueError, match='limit_mb'):
        cpu_cache.enable_cpu_cache(-1)


@needs_ext
def test_hook_enables_on_cpu_only():
    out = run_fresh('''
        import json, torch
        from semillie_mm.engine.hooks import CPUMemoryCacheHook
        from semillie_mm.ops import cpu_cache as cc

        class Runner:
            model = torch.nn.Linear(2, 2)
        hook = CPUMemoryCacheHook(limit_mb=0)
        hook.before_run(Runner)
        off = cc.cpu_cache_stats()['installed']
        hook = CPUMemoryCacheHook(limit_mb=32)
        hook.before_run(Runner)
        a = torch.empty(2**20)
        del a
        cached = cc.cpu_cache_stats()['cached_bytes']
        hook.after_run(Runner)
        print(json.dumps(dict(off=off, on=hook.enabled, cached=cached,
                              end=cc.cpu_cache_stats()['cached_bytes'])))
    ''')
    assert out == dict(off=0, on=True, cached=4 * MiB, end=0)
