"""bench_ab_binaries.py in its dry-run sizes, in a child process: this
checkout's binary against itself (no timing is asserted: the figures are
for an idle machine)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_ab_binaries.py')
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import bench_ab_binaries  # noqa: E402


def _binary():
    from semillie_mm.ops.cpu_ext import build
    if build.load() is None:
        pytest.skip('no C++ extension here (the script then refuses)')
    return build.binary_path()


def _run(args, tmp_path):
    out = tmp_path / 'ab.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--dry-run', '--rounds', '3', '--out',
         str(out)] + args, cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    return proc, out


def test_ab_roots_dry_run(tmp_path):
    """A and B from checkouts (both this one): each names the binary its own
    build script gives, gets the CPU's variant, and both passes of the
    dry-run shape are timed; the ratios are of the rounds' times."""
    path = _binary()
    proc, out = _run(['--a-root', ROOT, '--variant', 'issue10,tile=16'],
                     tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '| case | pass | A: best / median (ns; model: s) |' in proc.stdout
    res = json.loads(out.read_text())
    assert res['binaries'] == dict(A=path, B=path)
    assert res['variant']['A'] == dict(lanes=16, exp=0, tile=16, ahead=2,
                                       bwd16=0, pfy=1, spread=0)
    assert [(r['case'], r['kind']) for r in res['results']] == [
        ('1x16x24', 'fwd'), ('1x16x24', 'fwdbwd')]
    for r in res['results']:
        assert r['a_best'] > 0 and r['b_best'] > 0
        assert r['a_best'] <= r['a_median'] and r['b_best'] <= r['b_median']
        assert r['ratio_min'] <= r['ratio_median'] <= r['ratio_max']


def test_ab_scan_kinds_dry_run(tmp_path):
    """The plain scan's and the model's kinds beside a fused one: each
    timed on its own problem (the dry-run shapes), in the fused, scan,
    model order; the model's figures are seconds, without a floor."""
    path = _binary()
    proc, out = _run(['--binaries', f'{path},{path}', '--kind',
                      'model_train,scan_fwdbwd,fwd,scan_fwd,model_fwd'],
                     tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [(r['case'], r['kind']) for r in res['results']] == [
        ('1x16x24', 'fwd'), ('1x32x300', 'scan_fwdbwd'),
        ('1x32x300', 'scan_fwd'), ('32x32 / 2x16x16', 'model_train'),
        ('32x32 / 2x16x16', 'model_fwd')]
    for r in res['results']:
        assert r['a_best'] > 0 and r['b_best'] > 0
        assert r['ratio_min'] <= r['ratio_median'] <= r['ratio_max']
        if r['kind'].startswith('model'):
            assert 'b_best_floor_x' not in r and r['b_best'] < 60
            continue
        floor = res['opmix_floor']['fwdbwd' if 'fwdbwd' in r['kind']
                                   else 'fwd']
        assert r['b_best_floor_x'] == pytest.approx(r['b_best'] / floor)
    proc, _ = _run(['--binaries', f'{path},{path}', '--kind', 'scan'],
                   tmp_path)
    assert proc.returncode == 2 and '--kind takes fwd, fwdbwd' in proc.stderr


def test_model_cases_switch_the_loaded_binary(monkeypatch):
    """model_kinds: each binary's calls run with the package's loader
    returning that binary, and the loader is restored after each call."""
    from semillie_mm.ops.cpu_ext import build
    seen = []

    def fake_case(batch, h, w, seed=0):
        def fn():
            seen.append((build.load(), batch))
        return fn, fn

    monkeypatch.setattr(bench_ab_binaries.harness, 'model_case', fake_case)
    before = build._module, build._tried
    a, b = object(), object()
    cases = bench_ab_binaries.model_cases([a, b], ((1, 8, 8), (3, 4, 4)))
    cases[1][0]()
    cases[0][1]()
    cases[1][1]()
    assert seen == [(b, 1), (a, 3), (b, 3)]
    assert (build._module, build._tried) == before


def test_ab_errors(tmp_path):
    """A checkout whose binary is not built, and a malformed --binaries,
    end with one line naming the problem."""
    _binary()
    proc, _ = _run(['--binaries', 'only-one.so'], tmp_path)
    assert proc.returncode == 2 and 'two paths' in proc.stderr
    fake = tmp_path / 'checkout'
    pkg = fake / 'semillie_mm' / 'ops' / 'cpu_ext'
    pkg.mkdir(parents=True)
    for d in (fake / 'semillie_mm', fake / 'semillie_mm' / 'ops', pkg):
        (d / '__init__.py').write_text('')
    (pkg / 'build.py').write_text(
        "def binary_path():\n    return '/nonexistent/ext.so'\n")
    proc, _ = _run(['--a-root', str(fake)], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'{fake}: its binary /nonexistent/ext.so is not built (cd {fake} '
        '&& python semillie_mm/ops/cpu_ext/build.py --build)')


def test_summarize_and_alternating_order():
    """The per-round ratios and their median; the order of the calls is
    reversed every other round."""
    s = bench_ab_binaries.summarize([2.0, 1.0, 4.0], [1.0, 1.5, 2.0], 10.0)
    assert s['a_best'] == 10.0 and s['a_median'] == 20.0
    assert s['b_best'] == 10.0 and s['b_median'] == 15.0
    assert s['ratio_median'] == 0.5
    assert (s['ratio_min'], s['ratio_max']) == (0.5, 1.5)
    seen = []
    calls = [lambda: seen.append('a'), lambda: seen.append('b')]
    times = bench_ab_binaries.time_ab(calls, 4)
    assert seen == ['a', 'b'] + ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert [len(t) for t in times] == [4, 4]
