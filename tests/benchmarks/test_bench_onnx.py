"""bench_onnx.py in its tiny mode through the harness's child processes (a
smoke test: no timing is asserted)."""
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import bench_onnx  # noqa: E402

pytest.importorskip('onnxruntime',
                    reason='requirements/deployment.txt is not installed')


def test_bench_onnx_tiny(capsys):
    rows = bench_onnx.main(['--tiny', '--sizes', '16x16', '--repeat', '1',
                            '--threads', '1'])
    out = capsys.readouterr().out
    assert 'exported' in out and '(tiny, dynamic)' in out
    assert ('| input (HxW) | PyTorch fused (s) | ORT (s) | ORT / PyTorch '
            'time |') in out
    assert len(rows) == 1 and rows[0][0] == '16x16'
    pt, ort, ratio = (float(c) for c in rows[0][1:4])  # no failure text
    assert pt > 0 and ort > 0
    # the times are printed to 3 decimals and the ratio (to 2) comes from
    # the unrounded times: it must lie within what the rounding allows
    # (at 0.004 s the printed time alone is +-12 %)
    lo = max(ort - 5e-4, 0) / (pt + 5e-4) - 5e-3
    hi = (ort + 5e-4) / max(pt - 5e-4, 1e-9) + 5e-3
    assert lo <= ratio <= hi, (pt, ort, ratio)
