"""bench_precision.py in its tiny mode through the harness's child
processes (no timing is asserted: the script's figures are for an idle
machine)."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import bench_precision  # noqa: E402


def test_bench_precision_tiny(tmp_path, capsys, monkeypatch):
    if not bench_precision.native_bf16():
        pytest.skip('no native bf16 here (the script then refuses)')
    out = tmp_path / 'rows.json'
    rows = bench_precision.main(['--sizes', '24x20', '--repeat', '1',
                                 '--model', 'tiny', '--threads', '1',
                                 '--json', str(out)])
    text = capsys.readouterr().out
    assert '| input (HxW) | fp32 (s) | bf16 (s) | bf16 / fp32 |' in text
    assert len(rows) == 1 and rows[0][0] == '24x20', rows
    # printed to 3 decimals: the tiny model's 0.001 s may print as 0.000
    assert float(rows[0][1]) >= 0 and float(rows[0][2]) >= 0
    assert rows[0][3].endswith('x') and float(rows[0][4]) >= 45
    res = json.loads(out.read_text())['results'][0]
    assert res['bf16']['precision'] == 'bf16' and res['bf16']['native_bf16']
    assert res['fp32']['threads'] == 1
    assert res['fp32']['best_s'] > 0 and res['bf16']['best_s'] > 0


def test_bench_precision_refuses_emulated(monkeypatch):
    monkeypatch.setattr(bench_precision, 'native_bf16', lambda: False)
    with pytest.raises(SystemExit, match='AVX512-BF16'):
        bench_precision.main(['--sizes', '8x8', '--model', 'tiny'])


def test_bench_precision_accuracy_tiny(tmp_path, capsys):
    """``--accuracy`` on the demo config's random model: one row per demo
    val tile (built in a temporary folder, removed after) and one for the
    tiled photo, each bf16 output within the issue's 45 dB of fp32's."""
    out = tmp_path / 'acc.json'
    rows = bench_precision.main(['--accuracy', '--model', 'tiny',
                                 '--photo-size', '120x160', '--tile-size',
                                 '96', '--threads', '1', '--allow-emulated',
                                 '--json', str(out)])
    text = capsys.readouterr().out
    assert 'demo val (12 tiles): PSNR mean / min' in text
    assert len(rows) == 13 and rows[-1][:2] == ['china 120x160', '96']
    assert all(r[1] == 'whole' for r in rows[:12])
    assert all(45 <= float(r[2]) < 99 and 40 <= float(r[3]) for r in rows)
    res = json.loads(out.read_text())['accuracy']['rows']
    assert {r['bf16_ran'] for r in res} == {'bf16'}
