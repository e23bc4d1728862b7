from semillie_mm.models.archs import MSSM, SS2D, IlluminationEstimator, SemiLLIENet
from semillie_mm.ops.selective_scan import selective_scan_reference

import pytest
import torch
from mmagic.registry import MODELS


def tiny_net(**kw):
    cfg = dict(embed_dim=8, num_groups=1, blocks_per_group=1, d_state=4,
               drop_path=0.0)
    cfg.update(kw)
    return SemiLLIENet(**cfg).eval()


@pytest.mark.parametrize('hw', [(1, 1), (7, 5), (16, 16), (9, 20)])
def test_any_size_keeps_shape(hw):
    net = tiny_net()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_registry_builds_from_config():
    net = MODELS.build(dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                            blocks_per_group=2, d_state=4))
    assert isinstance(net, SemiLLIENet)
    assert len(net.groups) == 1 and len(net.groups[0].blocks) == 2


def test_default_configuration_size():
    net = SemiLLIENet()
    n = sum(p.numel() for p in net.parameters())
    # 2 groups x 2 blocks at C=64, lambda=2, N=16 (see docs/benchmarks.md)
    assert len(net.groups) == 2 and all(len(g.blocks) == 2 for g in net.groups)
    assert 300_000 < n < 700_000
    # drop-path spread linearly over the 4 blocks, 0 ... 0.1
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.
             for g in net.groups for b in g.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.1)


def test_parallel_and_serial_have_same_parameters_and_differ():
    torch.manual_seed(0)
    a = MSSM(8, d_state=4, multiscale='parallel')
    b = MSSM(8, d_state=4, multiscale='serial')
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 6, 5, 8)
    assert not torch.allclose(a(x), b(x))
    with pytest.raises(ValueError):
        MSSM(8, multiscale='diagonal')


def _ss2d_by_hand(m: SS2D, x):
    """Four independent reference scans, one per direction, then merged."""
    B, E, H, W = x.shape
    seqs = [x.flatten(2), x.transpose(2, 3).flatten(2)]
    seqs += [s.flip(-1) for s in seqs]
    A = -torch.exp(m.A_log).view(4, E, -1)
    outs = []
    for k, s in enumerate(seqs):
        dbl = torch.einsum('bel,ce->bcl', s, m.x_proj_weight[k])
        dt, Bm, Cm = torch.split(dbl, [m.dt_rank, m.d_state, m.d_state], 1)
        dt = torch.einsum('brl,er->bel', dt, m.dt_proj_weight[k])
        outs.append(selective_scan_reference(
            s, dt, A[k], Bm, Cm, D=m.D.view(4, E)[k],
            delta_bias=m.dt_proj_bias[k], delta_softplus=True))
    row = outs[0] + outs[2].flip(-1)
    col = outs[1] + outs[3].flip(-1)
    col = col.view(B, E, W, H).transpose(2, 3).reshape(B, E, H * W)
    return (row + col).view(B, E, H, W)


def test_ss2d_matches_four_independent_scans():
    torch.manual_seed(0)
    m = SS2D(6, d_state=3).double()
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(
        m.double()(x).double(), _ss2d_by_hand(m, x), rtol=1e-4, atol=1e-5)


def test_illumination_estimator_uses_brightness_prior():
    iem = IlluminationEstimator(3, 8, groups=4)
    assert iem.conv_in.in_channels == 4
    x = torch.rand(1, 3, 6, 6)
    assert iem(x).shape == (1, 3, 6, 6)


def test_backbone_is_residual_and_trains():
    torch.manual_seed(0)
    net = tiny_net().train()
    x = torch.rand(2, 3, 8, 8)
    gt = (x * 2).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = (net(x) - gt).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
    for name, p in net.named_parameters():
        assert p.grad is not None, name
