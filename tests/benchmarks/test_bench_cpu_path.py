"""benchmarks/bench_cpu_path.py: MAC counting, the memory watchdog, and a
dry run of a subset of its rows on tiny sizes (no timing is asserted)."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_cpu_path.py')


def _load():
    spec = importlib.util.spec_from_file_location('bench_cpu_path', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_mac_counter_conv_linear():
    """Hook counts of Conv2d (grouped, strided) and Linear against the
    operations' own FLOP count (torch's FlopCounterMode: 2 per MAC)."""
    net = nn.Sequential(
        nn.Conv2d(6, 8, 3, padding=1, groups=2),
        nn.Conv2d(8, 4, 5, stride=2, padding=2), nn.Flatten(2),
        nn.Linear(5 * 5, 7))
    x = torch.rand(2, 6, 9, 10)
    counter = bench.MacCounter(net)
    with FlopCounterMode(display=False) as fc:
        net(x)
    assert counter.macs == fc.get_total_flops() // 2
    counter.remove()
    net(x)
    assert counter.macs == fc.get_total_flops() // 2  # hooks removed


def test_mac_counter_ss2d():
    """SS2D's count = its two projections (counted by FlopCounterMode on the
    same einsums with the module's weights) + 5 MACs per scan element."""
    from semillie_mm.models.archs import SS2D
    m = SS2D(32, d_state=4)  # dt_rank 2: both einsums are matrix products
    b, h, w = 2, 5, 3
    x = torch.rand(b, 32, h, w)
    counter = bench.MacCounter(m)
    with torch.no_grad():
        m(x)
    K = m.x_proj_weight.shape[0]
    xs = torch.rand(b, K, 32, h * w)
    with FlopCounterMode(display=False) as fc:
        dbl = torch.einsum('bkel,kce->bkcl', xs, m.x_proj_weight)
        torch.einsum('bkrl,ker->bkel', dbl[:, :, :m.dt_rank],
                     m.dt_proj_weight)
    scan = 5 * K * 32 * h * w * b * m.d_state
    assert counter.macs == fc.get_total_flops() // 2 + scan


def test_count_macs_sees_every_layer_of_the_lean_paths():
    """MSSM/MSSB's no-grad paths apply layers through their weights (no
    module hooks): count_macs must still count every Conv2d/Linear once, and
    leave the lean path switched back on afterwards."""
    from semillie_mm.models.archs import SemiLLIENet, mssm
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1,
                      d_state=4).eval()
    x = torch.rand(1, 3, 12, 10)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    seen = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(id(m)))
             for m in layers]
    with torch.no_grad():
        net(x)
    lean_missing = len(layers) - len(seen)
    seen.clear()
    macs = bench.count_macs(net, x)
    assert len(seen) == len(layers)
    for h in hooks:
        h.remove()
    assert lean_missing > 0  # the lean path really hides layers from hooks
    assert not mssm.plain_path_needed(x)  # restored
    counter = bench.MacCounter(net)
    with torch.no_grad():
        net(x)
    assert 0 < counter.macs < macs  # the plain hook count would under-count
    counter.remove()


def test_watchdog_stops_a_growing_child(tmp_path):
    grow = ('import time\nx = []\nfor _ in range(40):\n'
            '    x.append(bytearray(50 * 2**20)); time.sleep(0.05)\n')
    job = bench.Job([sys.executable, '-c', grow], None, str(tmp_path),
                    str(tmp_path / 'log'), cap=300 * 2**20, reserve=0)
    res = bench.wait_all([job], interval=0.02)[0]
    assert 'stopped at' in res['stopped']
    assert 0.29 < res['peak_seen_gb'] < 1.0


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
    # the hooks counted the default model at 32x32 (about 0.73 M MACs per
    # pixel, 40 % of them in the four scans)
    assert 0.5e9 < fwd['macs'] < 1.0e9
    # the ratio printed is the measured time over MACs / sgemm rate
    ratio = data['derived']['new']['fwd']['value']
    floor = fwd['macs'] / (data['sgemm_gmacs'] * 1e9)
    assert ratio == pytest.approx(fwd['best_s'] / floor)
    assert data['sgemm_gmacs'] == max(x['gmacs'] for x in data['sgemm'])
