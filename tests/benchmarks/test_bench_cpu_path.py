"""benchmarks/bench_cpu_path.py: a dry run of a subset of its rows on tiny
sizes (no timing is asserted). Its MAC count is
``semillie_mm.utils.flops.count_macs`` (tests/utils/test_flops.py), its child
processes and memory watchdog are ``benchmarks/harness.py``'s
(test_harness.py)."""
import importlib.util
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_cpu_path.py')
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))  # its ``import harness``


def _load():
    spec = importlib.util.spec_from_file_location('bench_cpu_path', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_extrapolate():
    r1, r2 = dict(s=1.0), dict(s=1.5)
    assert bench.extrapolate(r1, r2, 100, 200, 1000, 's') == 7.5


def test_dry_run(tmp_path, capsys):
    """The forward row end to end on tiny sizes (3 child processes)."""
    out = tmp_path / 'r.json'
    res = bench.main(['--dry-run', '--no-old', '--rows', 'fwd', '--peers',
                      '', '--out', str(out)])
    text = capsys.readouterr().out
    assert '"sgemm floor"' in text and 'SIMD flags' in text
    assert 'scan fwd+bwd' not in text  # rows not asked for are not shown
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(res, default=str))
    fwd = data['variants']['new']['fwd']
    assert fwd['returncode'] == 0
    assert fwd['semillie_file'] == osp.join(ROOT, 'semillie_mm',
                                            '__init__.py')
    # count_macs counted the default model at 32x32 (about 0.73 M MACs per
    # pixel, 40 % of them in the four scans)
    assert 0.5e9 < fwd['macs'] < 1.0e9
    # the ratio printed is the measured time over MACs / sgemm rate
    ratio = data['derived']['new']['fwd']['value']
    floor = fwd['macs'] / (data['sgemm_gmacs'] * 1e9)
    assert ratio == pytest.approx(fwd['best_s'] / floor)
    assert data['sgemm_gmacs'] == max(x['gmacs'] for x in data['sgemm'])


def test_old_commit_without_count_macs_takes_another_count():
    """A variant whose package has no utils.flops.count_macs (an older
    commit) is measured against the other variant's count of the row."""
    results = dict(variants=dict(
        new=dict(fwd=dict(macs=10, best_s=1.0, cpu_s=1.0)),
        old=dict(fwd=dict(macs=None, best_s=2.0, cpu_s=3.0),
                 train=dict(error='exit 1: boom'))))
    bench.share_macs(results)
    old = results['variants']['old']
    assert old['fwd']['macs'] == 10 and old['fwd']['macs_from'] == 'new'
    assert 'macs' not in old['train']  # a failed row stays failed
    d = bench.derive(old, rate=10.0, cpu_rate=10.0)
    assert d['fwd'][0] == 2.0
    assert d['fwd'][1].endswith('= 3.0x; MACs counted by new)')
    assert bench.derive(results['variants']['new'], 10.0, 10.0)['fwd'][1] \
        .endswith('= 1.0x)')


def test_scan_rows_as_ratios_to_the_opmix_floor():
    """The scan rows (torch's allocator and the caching one) and the fused
    kernel's, each as CPU ns per element over the floor of its pass."""
    def call(seconds, cpu_seconds):
        return dict(seconds=seconds, cpu_seconds=cpu_seconds, threads=2,
                    elements=10 ** 9, extra_gb=0.0, cpu_cache='on')
    res = {'scan_fwd': call(0.2, 0.4), 'scan_fwd+bwd': call(1.0, 2.0),
           'scac_fwd': call(0.1, 0.2), 'scac_fwd+bwd': call(0.3, 0.6),
           'kernel_1x8x8': dict(
               elements=10 ** 9, threads=2,
               fwd=dict(seconds=0.1, cpu_seconds=0.25),
               **{'fwd+bwd': dict(seconds=0.4, cpu_seconds=0.9)})}
    d = bench.derive(res, 10.0, 10.0,
                     opmix=dict(fwd=0.1, bwd=0.3, fwdbwd=0.4))
    assert d['scan_fwd_ns'][0] == pytest.approx(0.4)
    assert d['scan_fwd_x'][0] == pytest.approx(4.0)
    assert d['scan_fwdbwd_x'][0] == pytest.approx(5.0)
    assert d['scac_fwd_x'][0] == pytest.approx(2.0)
    assert d['scac_fwdbwd_x'][0] == pytest.approx(1.5)
    assert d['scac_fwdbwd_x'][1] == '0.60 / 0.400 ns = 1.50x'
    assert d['kernel_fwd_x'][0] == pytest.approx(2.5)
    assert d['kernel_fwdbwd_x'][0] == pytest.approx(2.25)
    labels = [k for k, _, _ in bench.ROW_LABELS]
    assert labels.index('scan_fwdbwd_x') < labels.index('scac_fwd_x') < \
        labels.index('kernel_fwd_x')
    assert bench.TARGETS['scac_fwd_x'] == bench.TARGETS['scac_fwdbwd_x'] \
        == 1.5


def test_best_floor_of_start_and_end():
    """The floor timed at the start and again at the end: each kind's best
    counts (fwd and bwd apart), the runs are kept, and a third measurement
    folds into an earlier result."""
    start = dict(fwd=0.10, bwd=0.30, fwdbwd=0.40, threads=2)
    end = dict(fwd=0.12, bwd=0.25, fwdbwd=0.37, threads=2)
    f = bench.best_floor(start, end)
    assert (f['fwd'], f['bwd']) == (0.10, 0.25)
    assert f['fwdbwd'] == pytest.approx(0.35)
    assert f['runs'] == [start, end] and f['threads'] == 2
    g = bench.best_floor(f, dict(fwd=0.09, bwd=0.40, fwdbwd=0.49))
    assert (g['fwd'], g['bwd'], len(g['runs'])) == (0.09, 0.25, 3)


def test_rounds_keep_the_fastest_and_give_per_round_ratios():
    """--rounds: each row keeps its fastest round (the kernel row by the sum
    of its two passes) with every round's times; the ratios pair the rounds
    of the two checkouts pass by pass; failed rows are kept as they came."""
    def kernel(f, fb):
        return {'fwd': dict(seconds=f), 'fwd+bwd': dict(seconds=fb)}
    new = [dict(fwd=dict(best_s=2.0, macs=1), kernel_a=kernel(1.0, 3.0),
                train=dict(error='exit 1')),
           dict(fwd=dict(best_s=1.5, macs=2), kernel_a=kernel(1.2, 2.5),
                train=dict(error='exit 2'))]
    old = [dict(fwd=dict(best_s=4.0), kernel_a=kernel(2.0, 3.0)),
           dict(fwd=dict(best_s=1.0), kernel_a=kernel(1.0, 5.0))]
    merged = bench.merge_rounds(new)
    assert merged['fwd']['best_s'] == 1.5 and merged['fwd']['macs'] == 2
    assert merged['fwd']['round_times'] == [{'': 2.0}, {'': 1.5}]
    assert merged['kernel_a']['fwd']['seconds'] == 1.2  # 3.7 < 4.0
    assert merged['train'] == dict(error='exit 2')
    assert bench.row_times(dict(seconds=0.5, extra_gb=1.0)) == {'': 0.5}
    assert bench.row_times(dict(absent='no kernel')) == {}
    ratios = bench.round_ratios(new, old)
    assert ratios == {'fwd': [0.5, 1.5], 'kernel_a fwd': [0.5, 1.2],
                      'kernel_a fwd+bwd': [1.0, 0.5]}


def test_dry_run_rounds(tmp_path):
    """Two rounds of the forward row (one checkout: no ratios)."""
    res = bench.main(['--dry-run', '--no-old', '--rows', 'fwd', '--peers',
                      '', '--rounds', '2'])
    fwd = res['variants']['new']['fwd']
    assert len(fwd['round_times']) == 2
    assert fwd['best_s'] == min(t[''] for t in fwd['round_times'])
    assert 'round_ratios' not in res
