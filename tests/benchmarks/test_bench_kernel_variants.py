"""bench_kernel_variants.py in its dry-run sizes, in a child process (the
caching allocator, once installed, stays for the process). No timing is
asserted: the figures are for an idle machine."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_kernel_variants.py')


def _ext_available():
    from semillie_mm.ops.cpu_ext import build
    return build.load() is not None


def _run(out, *args):
    """The script in dry-run sizes, one thread, its JSON to ``out``;
    returns (stdout, the JSON)."""
    if not _ext_available():
        pytest.skip('no C++ extension here (the script then refuses)')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--dry-run', *args, '--out', str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.parametrize('allocator', ['torch', 'cache'])
def test_bench_kernel_variants_dry_run(tmp_path, allocator):
    stdout, res = _run(tmp_path / 'v.json', '--rounds', '1', '--variants',
                       'zen5;issue10,tile=16', '--allocator', allocator)
    assert f'allocator: {allocator};' in stdout
    assert res['allocator'] == allocator
    assert res['variants']['issue10,tile=16'] == dict(
        lanes=16, exp=0, tile=16, ahead=2, bwd16=0, pfy=1, spread=0)
    got = {(r['variant'], r['case'], r['call']) for r in res['results']}
    cases = {'kernel 1x16x24', 'selective_scan 1x32x512'}
    assert got == {(v, c, k) for v in ('zen5', 'issue10,tile=16')
                   for c in cases for k in ('fwd', 'fwdbwd')}
    assert all(r['ns'] > 0 for r in res['results'])
    assert res['floor']['fwd'] > 0 and res['floor']['fwdbwd'] > 0


def test_bench_kernel_variants_paired(tmp_path):
    """``--paired``: the floor re-timed once per round and variant, each
    round's ratio kept (the table's min / median / max come from them)."""
    stdout, res = _run(tmp_path / 'p.json', '--rounds', '2', '--variants',
                       'zen5;lanes=8', '--paired')
    assert 'per-round ratios to the floor timed just before (4 floors' in \
        stdout
    assert len(res['floor_rounds']) == 4
    # only the best lane width / exp2 form of each kind is re-timed
    assert all(len(f['variants']) == 2 for f in res['floor_rounds'])
    for r in res['results']:
        assert len(r['paired']) == 2 and all(x > 0 for x in r['paired'])
        kind = 'fwd' if r['call'] == 'fwd' else 'fwdbwd'
        floors = [f[kind] for f in res['floor_rounds']]
        # each ratio is this row's time over one of the round floors
        assert any(abs(x * fl - r['ns']) / r['ns'] < 1e-9
                   for x in r['paired'] for fl in floors)
