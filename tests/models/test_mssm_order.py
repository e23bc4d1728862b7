"""MSSM multi-scale order: 'serial' must equal the authors' MambaLowlight order.

The reference below is written independently of :class:`MSSM.forward`, from the
authors' order (5x5 depth-wise conv on the RAW 3x3 output, SiLU on each branch
afterwards), with functional ops. The SS2D stage is the module's own (it has its
own test against four independent scans in test_semillie_net.py) and keeps some
parameters in float32 like mamba-ssm, so it is shared by both sides here.
"""
from semillie_mm.models.archs import MSSM

import pytest
import torch
import torch.nn.functional as F


def _mssm_reference(m, x, order):
    """Functional MSSM; ``order`` in 'authors', 'paper', 'silu_before_5x5'."""
    E = m.dwconv3.weight.shape[0]
    xz = F.linear(x, m.in_proj.weight)
    x0, z = xz[..., :E], xz[..., E:]
    x0 = x0.permute(0, 3, 1, 2)
    a = F.conv2d(x0, m.dwconv3.weight, m.dwconv3.bias, padding=1, groups=E)
    if order == 'authors':  # MambaLowlight: 5x5 on the raw 3x3 output
        b = F.conv2d(a, m.dwconv5.weight, m.dwconv5.bias, padding=2, groups=E)
    elif order == 'paper':  # eq. 3: both convs on x0
        b = F.conv2d(x0, m.dwconv5.weight, m.dwconv5.bias, padding=2, groups=E)
    else:  # the order this package shipped before the fix
        b = F.conv2d(F.silu(a), m.dwconv5.weight, m.dwconv5.bias, padding=2,
                     groups=E)
    f = F.conv2d(torch.cat([F.silu(a), F.silu(b)], 1), m.fuse.weight,
                 m.fuse.bias)
    y = m.ss2d(f).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (E, ), m.out_norm.weight, m.out_norm.bias,
                     m.out_norm.eps) * F.silu(z)
    return F.linear(y, m.out_proj.weight)


def _random_mssm(multiscale, seed=0):
    torch.manual_seed(seed)
    m = MSSM(6, d_state=3, multiscale=multiscale,
             scan_backend='reference').double()
    with torch.no_grad():  # random everything, not just the default init
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


@pytest.mark.parametrize('hw', [(7, 5), (3, 9)])
def test_serial_matches_authors_order(hw):
    m = _random_mssm('serial')
    x = torch.randn(2, *hw, 6, dtype=torch.float64)
    with torch.no_grad():
        out = m(x)
        ref = _mssm_reference(m, x, 'authors')
        old = _mssm_reference(m, x, 'silu_before_5x5')
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    # the reference discriminates: the previously shipped order is far off
    assert (old - ref).abs().max() > 1e-4


def test_parallel_matches_paper_order():
    m = _random_mssm('parallel', seed=1)
    x = torch.randn(1, 5, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        out = m(x)
        ref = _mssm_reference(m, x, 'paper')
        authors = _mssm_reference(m, x, 'authors')
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert (authors - ref).abs().max() > 1e-4
