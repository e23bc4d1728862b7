"""semillie_mm.ops.conv_wgrad: the dense conv's weight gradient by shifted
GEMMs against F.conv2d's in float64 (kernel sizes, odd maps, one-row and
one-column maps, chunks that do not divide the map), the Conv2d module's
forward and all three gradients against nn.Conv2d in both paths, where it
falls back to nn.Conv2d, and the per-shape choice (with a fake clock)."""
import itertools

from semillie_mm.ops import conv_wgrad as cw

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


def ref_wgrad(g, x, k):
    """dW of a "same" conv by autograd in float64."""
    w = torch.zeros(g.shape[1], x.shape[1], k, k, dtype=torch.float64,
                    requires_grad=True)
    F.conv2d(x.double(), w, padding=k // 2).backward(g.double())
    return w.grad


@pytest.mark.parametrize('shape,co,k,chunk,cl', [
    ((2, 5, 9, 11), 7, 3, None, True),
    ((2, 5, 9, 11), 7, 3, 13, False),
    ((1, 4, 1, 6), 3, 3, 5, True),
    ((3, 6, 7, 1), 2, 5, 4, False),
    ((1, 3, 8, 8), 4, 7, 17, True),
    ((2, 8, 4, 5), 8, 5, 1000, False),
])
def test_weight_grad_matches_conv2d(shape, co, k, chunk, cl):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    g = torch.randn(shape[0], co, *shape[2:])
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    got = cw.conv_weight_grad(g, x, k, chunk=chunk)
    assert got.shape == (co, shape[1], k, k) and got.dtype == torch.float32
    assert got.is_contiguous()
    torch.testing.assert_close(got.double(), ref_wgrad(g, x, k), rtol=1e-5,
                               atol=1e-5)


def test_weight_grad_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    g = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    got = cw.conv_weight_grad(g, x, 3, chunk=9)
    torch.testing.assert_close(got, ref_wgrad(g, x, 3), rtol=1e-12,
                               atol=1e-12)


def test_weight_grad_bad_arguments():
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(ValueError, match='odd'):
        cw.conv_weight_grad(torch.randn(1, 3, 5, 5), x, 4)
    with pytest.raises(ValueError, match='does not match'):
        cw.conv_weight_grad(torch.randn(1, 3, 4, 5), x, 3)


def pair(ci, co, k, bias=True, dtype=torch.float32, **kw):
    torch.manual_seed(2)
    ours = cw.Conv2d(ci, co, k, bias=bias, **kw).to(dtype)
    ref = nn.Conv2d(ci, co, k, bias=bias, **kw).to(dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def run_both(ours, ref, x):
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    g = torch.randn_like(y2)
    y1.backward(g)
    y2.backward(g)
    return (y1, x1.grad, ours.weight.grad,
            ours.bias.grad if ours.bias is not None else None), (
                y2, x2.grad, ref.weight.grad,
                ref.bias.grad if ref.bias is not None else None)


@pytest.mark.parametrize('mode,k,bias,dtype,cl', [
    (m, k, b, d, c) for (m, k, b, d), c in zip(
        itertools.product(('gemm', 'onednn'), (3, 5), (True, False),
                          (torch.float32, torch.float64)),
        itertools.cycle((True, False)))
])
def test_module_matches_nn_conv2d(monkeypatch, mode, k, bias, dtype, cl):
    monkeypatch.setenv(cw.ENV, mode)
    ours, ref = pair(6, 5, k, bias=bias, dtype=dtype, padding=k // 2)
    x = torch.randn(2, 6, 7, 9, dtype=dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    got, want = run_both(ours, ref, x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_module_takes_the_function_path(monkeypatch):
    """The training forward goes through the autograd function (so the
    tests above compare it, not nn.Conv2d with itself)."""
    monkeypatch.setenv(cw.ENV, 'gemm')
    ours, _ = pair(3, 4, 3, padding=1)
    y = ours(torch.randn(1, 3, 5, 5, requires_grad=True))
    assert type(y.grad_fn).__name__ == '_ConvGemmWgradFnBackward'
    calls = []
    real = cw.conv_weight_grad
    monkeypatch.setattr(cw, 'conv_weight_grad',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    y.sum().backward()
    assert calls == [1]


def test_only_some_gradients(monkeypatch):
    monkeypatch.setenv(cw.ENV, 'gemm')
    ours, ref = pair(4, 3, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)
    # the input without gradient, the bias frozen
    ours.bias.requires_grad_(False)
    ref.bias.requires_grad_(False)
    ours(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert ours.bias.grad is None
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('kw', [
    dict(kernel_size=3, padding=1, stride=2),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding=2, dilation=2),
    dict(kernel_size=3, padding=0),
    dict(kernel_size=1),
    dict(kernel_size=(3, 5), padding=(1, 2)),
    dict(kernel_size=3, padding=1, padding_mode='reflect'),
])
def test_falls_back_where_it_does_not_apply(monkeypatch, kw):
    monkeypatch.setenv(cw.ENV, 'gemm')
    ours = cw.Conv2d(4, 4, **kw)
    y = ours(torch.randn(1, 4, 8, 8, requires_grad=True))
    assert type(y.grad_fn).__name__ != '_ConvGemmWgradFnBackward'


def test_falls_back_without_grad_frozen_or_low_precision(monkeypatch):
    monkeypatch.setenv(cw.ENV, 'gemm')
    ours = cw.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        assert ours(x).grad_fn is None
    ours.weight.requires_grad_(False)
    y = ours(x.requires_grad_())
    assert type(y.grad_fn).__name__ != '_ConvGemmWgradFnBackward'
    ours.weight.requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = ours(x)
    assert type(y.grad_fn).__name__ != '_ConvGemmWgradFnBackward'
    monkeypatch.setenv(cw.ENV, 'onednn')
    y = ours(x)
    assert type(y.grad_fn).__name__ != '_ConvGemmWgradFnBackward'


def test_state_dict_is_nn_conv2d():
    ours, ref = pair(3, 2, 3, padding=1)
    assert isinstance(ours, nn.Conv2d)
    assert list(ours.state_dict()) == list(ref.state_dict())
    nn.Conv2d(3, 2, 3, padding=1).load_state_dict(ours.state_dict())


def test_mode_from_environment(monkeypatch):
    monkeypatch.delenv(cw.ENV, raising=False)
    assert cw.mode() == 'auto'
    monkeypatch.setenv(cw.ENV, ' GEMM ')
    assert cw.mode() == 'gemm'
    monkeypatch.setenv(cw.ENV, 'fast')
    with pytest.raises(ValueError, match=cw.ENV):
        cw.mode()


def test_auto_times_both_once_per_shape(monkeypatch):
    monkeypatch.setenv(cw.ENV, 'auto')
    monkeypatch.setattr(cw, '_CHOICE', {})
    ran = []
    # oneDNN's path takes 5 fake seconds, the GEMMs' 2
    now = [0.0]
    monkeypatch.setattr(
        cw, 'conv_weight_grad',
        lambda *a, **k: ran.append('gemm') or now.__setitem__(0, now[0] + 2))
    monkeypatch.setattr(
        cw, 'onednn_weight_grad',
        lambda *a, **k: ran.append('onednn') or now.__setitem__(0, now[0] + 5))
    g, x = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    w = torch.randn(2, 3, 3, 3)
    assert cw.choose(g, x, w, 1, clock=lambda: now[0], rounds=3) == 'gemm'
    assert sorted(ran) == ['gemm'] * 3 + ['onednn'] * 3
    assert ran[:2] == ['gemm', 'onednn'] and ran[2:4] == ['onednn', 'gemm']
    # decided: no more timing for this shape
    assert cw.choose(g, x, w, 1, clock=lambda: now[0]) == 'gemm'
    assert len(ran) == 6
    # another shape is timed on its own, and oneDNN can win
    monkeypatch.setattr(
        cw, 'conv_weight_grad',
        lambda *a, **k: ran.append('gemm') or now.__setitem__(0, now[0] + 9))
    g2, x2 = torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)
    assert cw.choose(g2, x2, w, 1, clock=lambda: now[0]) == 'onednn'
    assert len(ran) == 10


def test_model_uses_it():
    from semillie_mm.models.archs import SemiLLIENet
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1)
    kinds = {type(m) for n, m in net.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
             and m.groups == 1}
    assert kinds == {cw.Conv2d}


def test_auto_is_untimed_under_deterministic_algorithms(monkeypatch):
    monkeypatch.setenv(cw.ENV, 'auto')
    monkeypatch.setattr(cw, '_CHOICE', {})
    monkeypatch.setattr(torch, 'are_deterministic_algorithms_enabled',
                        lambda: True)

    def no_clock():
        raise AssertionError('timed under deterministic algorithms')

    g, x = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    assert cw.choose(g, x, torch.randn(2, 3, 3, 3), 1,
                     clock=no_clock) == 'gemm'
    assert cw._CHOICE == {}
