"""bench_backbone.py and bench_selective_scan.py on tiny sizes through the
harness's child processes (no timing is asserted)."""
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import bench_backbone  # noqa: E402
import bench_selective_scan  # noqa: E402


def test_bench_backbone_tiny(capsys):
    from semillie_mm.models.archs import SemiLLIENet
    from semillie_mm.utils.flops import count_flops
    rows = bench_backbone.main(['--sizes', '16x16', '--repeat', '1',
                                '--flops-size', '32x32'])
    out = capsys.readouterr().out
    assert len(rows) == 1 and rows[0][0] == '16x16'
    # s (printed to 2 decimals: 0.02 here, may print as 0.00), GB
    assert float(rows[0][1]) >= 0 and float(rows[0][2]) > 0.1
    assert '| input (HxW) | forward, best of N (s) | peak RSS (GB) |' in out
    # the FLOPs line is utils.flops' count
    ref = count_flops(SemiLLIENet(), (torch.rand(1, 3, 32, 32), ))
    assert (f"FLOPs at 32x32: {ref['flops'] / 1e9:.2f} G (layers "
            f"{ref['flops_layers'] / 1e9:.2f} G") in out


def test_bench_selective_scan_tiny(capsys):
    bench_selective_scan.main(['--dim', '8', '--length', '64',
                               '--ref-length', '16', '--backends',
                               'native,reference', '--skip-jit'])
    out = capsys.readouterr().out
    table = [ln for ln in out.splitlines() if ln.startswith('| ')]
    assert table[0].startswith('| backend | pass | wall time (s)')
    assert [ln.split(' | ')[:2] for ln in table[1:]] == [
        ['| native', 'fwd'], ['| native', 'fwd+bwd'], ['| reference', 'fwd'],
        ['| reference', 'fwd+bwd']]
    assert 'extrapolated linearly from L=16' in table[3]
