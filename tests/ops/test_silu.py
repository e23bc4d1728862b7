"""SiLU and its gradient from the extension (semillie_mm.ops.silu) against
float64 references: lengths that leave a vector tail, channels-last maps,
in-place outputs, extreme values, the fallbacks, MSSM's gate backward.
MSSM's lean training path in float32, where these kernels run, is checked
against the float64 reference in test_mssm_lean.py."""
import math

from semillie_mm.ops import cpu_ext as ext
from semillie_mm.ops import silu as silu_mod

import pytest
import torch
import torch.nn.functional as F

needs_ext = pytest.mark.skipif(
    not ext.available(),
    reason=f'CPU extension not built: {ext.unavailable_reason()}')


def _ref(x, d):
    """SiLU and d * SiLU'(x) in float64."""
    x64 = x.double()
    s = torch.sigmoid(x64)
    return x64 * s, d.double() * s * (1 + x64 * (1 - s))


def _inputs(shape, seed=0, scale=6.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale,
            torch.randn(shape, generator=g))


def _grad_terms(x, d):
    """|d| (sigmoid + |x sigmoid (1 - sigmoid)|) in float64: the size of
    SiLU's gradient before its terms cancel."""
    x64 = x.double()
    s = torch.sigmoid(x64)
    return d.double().abs() * (s + (x64 * s * (1 - s)).abs())


def _rel(a, b):
    return ((a.double() - b).abs() / b.abs().clamp_min(1e-30)).max().item()


@needs_ext
@pytest.mark.parametrize('n', [1, 7, 8, 15, 16, 17, 33, 40000, 100003])
def test_silu_and_grad_against_float64(n, monkeypatch):
    calls = []
    real = silu_mod.kernel_applies
    monkeypatch.setattr(silu_mod, 'kernel_applies',
                        lambda *t: calls.append(real(*t)) or calls[-1])
    x, d = _inputs((n, ), seed=n)
    s_ref, g_ref = _ref(x, d)
    s = silu_mod.silu(x)
    sg = torch.empty_like(x)
    g = silu_mod.silu_backward(x, d, silu_out=sg)
    assert calls == [True, True]
    # relative error where the value is not a cancellation's tiny rest
    big = s_ref.abs() > 1e-3
    # (measured: 6.2e-7, from rounding x log2(e) before 2^x; torch's 1.4e-7)
    assert _rel(s[big], s_ref[big]) < 1e-6
    assert torch.equal(sg, s)  # the backward's SiLU: the same bits
    # the gradient's error against the size of its terms (it cancels
    # around its root, x = -1.28, where no float32 formula is relative)
    # (measured: 1.5e-6; torch's own silu_backward 1.0e-6)
    assert (g.double() - g_ref).abs().le(2.5e-6 * _grad_terms(x, d)).all()
    torch.testing.assert_close(s.double(), s_ref, rtol=1e-6, atol=1e-7)
    # and torch's own float32 ops agree as closely
    torch.testing.assert_close(s, F.silu(x), rtol=2e-6, atol=1e-7)


@needs_ext
def test_channels_last_and_in_place():
    x, d = _inputs((2, 13, 5, 7), seed=1)
    x = x.contiguous(memory_format=torch.channels_last)
    d = d.contiguous(memory_format=torch.channels_last)
    assert silu_mod.kernel_applies(x, d)
    s_ref, g_ref = _ref(x, d)
    s = silu_mod.silu(x)
    assert s.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(s.double(), s_ref, rtol=1e-6, atol=1e-7)
    # gradient written over d, SiLU over x
    xc, dc = x.clone(), d.clone()
    out = silu_mod.silu_backward(xc, dc, grad=dc, silu_out=xc)
    assert out.data_ptr() == dc.data_ptr()
    torch.testing.assert_close(dc.double(), g_ref, rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(xc, s, rtol=0, atol=0)
    y = x.clone()
    assert silu_mod.silu(y, out=y) is y
    torch.testing.assert_close(y, s, rtol=0, atol=0)


@needs_ext
def test_extreme_values():
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 88.0, -88.0,
                      -100.0, -1000.0, 1000.0, math.inf, math.nan,
                      3.4e38, -math.inf])
    d = torch.ones_like(x)
    s = silu_mod.silu(x)
    g = silu_mod.silu_backward(x, d)
    s_ref, g_ref = _ref(x[:10], d[:10])
    torch.testing.assert_close(s[:10].double(), s_ref, rtol=1e-6, atol=1e-30)
    torch.testing.assert_close(g[:10].double(), g_ref, rtol=1e-6, atol=1e-30)
    # below exp's float range the results are zeros to 1e-35 (the exponent
    # is clamped at 2^-126), above it the identity and 1
    assert s[10] == 1000.0 and g[10] == 1.0
    # +inf: inf and a NaN gradient (torch's too); -inf gives -inf both
    # ways here, where torch gives NaN: non-finite either way
    assert s[11] == math.inf and math.isnan(g[11])
    assert math.isnan(s[12]) and math.isnan(g[12])
    assert s[13] == 3.4e38 and g[13] == 1.0
    assert abs(s[9]) < 1e-30 and abs(g[9]) < 1e-30
    assert s[14] == -math.inf and g[14] == -math.inf


def test_fallbacks_match_torch():
    x, d = _inputs((4, 6), seed=2)
    for xi, di in ((x.double(), d.double()),  # float64
                   (x.t(), d.t()),  # not contiguous
                   (x, d.t().contiguous().t())):  # strides differ
        assert not silu_mod.kernel_applies(xi, di)
        torch.testing.assert_close(silu_mod.silu(xi), F.silu(xi))
        sg = torch.empty_like(xi)
        g = silu_mod.silu_backward(xi, di, silu_out=sg)
        torch.testing.assert_close(
            g, torch.ops.aten.silu_backward(di, xi))
        torch.testing.assert_close(sg, F.silu(xi))


def test_not_recorded_by_autograd():
    x = torch.randn(9, requires_grad=True)
    assert not silu_mod.silu(x).requires_grad
    assert not silu_mod.silu_backward(x, torch.randn(9)).requires_grad


@pytest.mark.parametrize('kernel', [
    pytest.param(True, marks=needs_ext), False], ids=['kernel', 'torch'])
@pytest.mark.parametrize('n', [5, 16, 1003])
def test_gate_backward_against_float64(n, kernel, monkeypatch):
    if not kernel:
        monkeypatch.setattr(silu_mod, 'kernel_applies', lambda *t: False)
    g_ = torch.Generator().manual_seed(n)
    z, ln, dg = (torch.randn(n, generator=g_) * s for s in (4.0, 1.5, 1.0))
    s64 = torch.sigmoid(z.double())
    si = z.double() * s64
    want = dict(g=ln.double() * si, dln=dg.double() * si,
                dz=dg.double() * ln.double() * s64 *
                (1 + z.double() * (1 - s64)))
    got = {k: torch.empty_like(z) for k in want}
    silu_mod.gate_backward(z, ln, dg, g_out=got['g'], dz_out=got['dz'],
                           dln_out=got['dln'])
    for k in want:
        torch.testing.assert_close(got[k].double(), want[k], rtol=3e-6,
                                   atol=1e-6, msg=k)
    # dL/dLN over dg itself, the others skipped
    d2 = dg.clone()
    silu_mod.gate_backward(z, ln, d2, dln_out=d2)
    torch.testing.assert_close(d2, got['dln'], rtol=0, atol=0)
    only = torch.empty_like(z)
    silu_mod.gate_backward(z, ln, dg, dz_out=only)
    torch.testing.assert_close(only, got['dz'], rtol=0, atol=0)
