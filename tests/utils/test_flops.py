"""Parameters and FLOPs (MACs) with the selective scans counted."""
import os.path as osp
import runpy
import sys

from semillie_mm.models.archs import SS2D
from semillie_mm.ops import selective_scan
from semillie_mm.utils.flops import count_flops, count_macs, scan_macs

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


class TinyNet(nn.Module):
    """conv 3->4 (3x3), a per-pixel linear 4->6, one selective scan."""

    def __init__(self, n_state=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 6)
        self.A_log = nn.Parameter(torch.zeros(6, n_state))
        self.D = nn.Parameter(torch.ones(6))

    def forward(self, x):
        y = self.fc(self.conv(x).permute(0, 2, 3, 1))  # (B, H, W, 6)
        u = y.flatten(1, 2).transpose(1, 2).contiguous()  # (B, 6, L)
        b = u[:, :3].contiguous()
        return selective_scan(u, u, -torch.exp(self.A_log), b, b, D=self.D,
                              z=u, delta_softplus=True)


def test_scan_formula():
    assert scan_macs((2, 8, 100), (8, 16)) == 2 * 8 * 100 * (5 * 16 + 1)
    assert scan_macs((1, 4, 10), (4, 2), has_d=False, has_z=True) == \
        4 * 10 * 11
    assert scan_macs((1, 4, 10), (4, 2), has_d=False) == 4 * 10 * 10


@pytest.mark.parametrize('h,w', [(5, 7), (8, 4)])
def test_tiny_net_hand_count(h, w):
    net = TinyNet()
    res = count_flops(net, (torch.rand(1, 3, h, w), ))
    conv = 4 * 3 * 3 * 3 * h * w  # Cout * Cin * k * k per output pixel
    fc = h * w * 4 * 6
    scan = 6 * h * w * (5 * 3 + 1 + 1)  # D and z given
    assert res['flops_scan'] == scan
    assert res['flops_layers'] == conv + fc
    assert res['flops'] == conv + fc + scan
    assert res['scan_calls'] == 1
    assert res['params'] == (4 * 27 + 4) + (24 + 6) + 6 * 3 + 6
    assert net.training  # mode restored


def test_ss2d_counts_scan_and_projections_for_any_size():
    m = SS2D(channels=8, d_state=4)
    counts = {}
    for h, w in ((6, 6), (6, 12), (9, 12)):
        res = count_flops(m, (torch.rand(2, 8, h, w), ))
        L, K, E, N, R = h * w, 4, 8, 4, m.dt_rank
        proj = 2 * K * E * L * (R + 2 * N) + 2 * K * R * L * E  # einsums
        assert res['flops_scan'] == scan_macs((2, K * E, L), (K * E, N))
        assert res['flops_layers'] == proj
        counts[(h, w)] = res['flops_scan']
    # linear in the number of pixels: doubles with W, x1.5 with H
    assert counts[(6, 12)] == 2 * counts[(6, 6)]
    assert counts[(9, 12)] * 2 == 3 * counts[(6, 12)]


def test_tiny_net_products_only():
    """count_macs: the conv, the linear layer and the scan's recurrence
    (5 N per element), not its skip D nor its gate z."""
    res = count_flops(TinyNet(), (torch.rand(1, 3, 5, 7), ))
    assert count_macs(TinyNet(), (torch.rand(1, 3, 5, 7), )) == \
        res['flops_layers'] + 6 * 5 * 7 * 5 * 3
    assert res['by_operator']['selective_scan_skip'] == 6 * 5 * 7 * 2


def test_count_macs_conv_linear():
    """Conv2d (grouped, strided) and Linear against the operations' own
    FLOP count (torch's FlopCounterMode: 2 per MAC)."""
    net = nn.Sequential(
        nn.Conv2d(6, 8, 3, padding=1, groups=2),
        nn.Conv2d(8, 4, 5, stride=2, padding=2), nn.Flatten(2),
        nn.Linear(5 * 5, 7))
    x = torch.rand(2, 6, 9, 10)
    with FlopCounterMode(display=False) as fc:
        net(x)
    assert count_macs(net, (x, )) == fc.get_total_flops() // 2


def test_count_macs_ss2d():
    """SS2D = its two projections (counted by FlopCounterMode on the same
    einsums with the module's weights) + 5 MACs per scan element."""
    m = SS2D(32, d_state=4)  # dt_rank 2: both einsums are matrix products
    b, h, w = 2, 5, 3
    K = m.x_proj_weight.shape[0]
    xs = torch.rand(b, K, 32, h * w)
    with FlopCounterMode(display=False) as fc:
        dbl = torch.einsum('bkel,kce->bkcl', xs, m.x_proj_weight)
        torch.einsum('bkrl,ker->bkel', dbl[:, :, :m.dt_rank],
                     m.dt_proj_weight)
    scan = 5 * K * 32 * h * w * b * m.d_state
    assert count_macs(m, (torch.rand(b, 32, h, w), )) == \
        fc.get_total_flops() // 2 + scan


@pytest.mark.parametrize('kwargs,shape,old', [
    (dict(embed_dim=8, num_groups=1, blocks_per_group=1, d_state=4),
     (1, 3, 12, 10), 708496),
    ({}, (1, 3, 32, 32), 748684288),
])
def test_count_macs_of_the_network_as_the_benchmark_counted(
        kwargs, shape, old):
    """The figure benchmarks/bench_cpu_path.py's forward hooks gave (its
    ``MacCounter`` with the module-by-module path forced, commit f6dde77),
    although MSSM/MSSB's no-grad paths apply layers through their weights,
    where module hooks do not fire."""
    from semillie_mm.models.archs import SemiLLIENet
    net = SemiLLIENet(**kwargs).eval()
    x = torch.rand(*shape)
    assert count_macs(net, (x, )) == old
    assert not net.training
    # afterwards the no-grad forward takes the lean path again, which
    # hides layers from module hooks
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    seen = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(id(m)))
             for m in layers]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert 0 < len(seen) < len(layers)


def test_get_flops_tool(monkeypatch, capsys):
    tool = osp.join(REPO, 'tools', 'analysis_tools', 'get_flops.py')
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', [
        'get_flops.py', osp.join(REPO, 'configs', 'semillie_demo.py'),
        '--shape', '16', '24'])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(tool, run_name='__main__')
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert 'input shape: (1, 3, 16, 24)' in out
    # demo backbone: one MSSB, SS2D of 2 * 16 channels, N = 8
    scan = scan_macs((1, 4 * 32, 16 * 24), (4 * 32, 8))
    assert f'selective scans (analytic, 1 calls): {scan / 1e6:.3f} M' in out
    assert 'parameters: 17.788 K' in out
    monkeypatch.setattr(sys, 'argv', ['get_flops.py', 'missing.py'])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(tool, run_name='__main__')
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and 'missing.py' in err[0]
