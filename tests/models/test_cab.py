"""CAB's channel attention: its global pool against nn.AdaptiveAvgPool2d(1)."""
from semillie_mm.models.archs.cab import CAB, ChannelAttention, GlobalAvgPool

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode


def _maps(dtype, channels_last, shape=(3, 7, 5, 9)):
    x = torch.randn(*shape, dtype=torch.float64).mul_(3).add_(0.5).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_pool_is_adaptive_avg_pool(dtype, channels_last):
    x = _maps(dtype, channels_last)
    ref = nn.AdaptiveAvgPool2d(1)(x)
    out = GlobalAvgPool()(x)
    assert out.shape == (3, 7, 1, 1) and out.dtype == dtype
    # to float rounding (the sum runs in another order); bfloat16 rounded
    # once, as the adaptive pool does
    tol = {torch.float32: 2e-7, torch.float64: 1e-15,
           torch.bfloat16: 0.0}[dtype]
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    exact = x.double().mean((2, 3), keepdim=True)
    tol = {torch.float32: 1e-6, torch.float64: 1e-14,
           torch.bfloat16: 4e-3}[dtype]
    torch.testing.assert_close(out.double(), exact, rtol=tol, atol=tol)


@pytest.mark.parametrize('channels_last', [False, True])
def test_attention_matches_adaptive_pool_forward_and_backward(channels_last):
    torch.manual_seed(0)
    ca = ChannelAttention(60, squeeze_factor=30)
    ref = ChannelAttention(60, squeeze_factor=30)
    ref.attention[0] = nn.AdaptiveAvgPool2d(1)
    ref.load_state_dict(ca.state_dict())  # the same keys: the pool has none
    x = _maps(torch.float32, channels_last, (2, 60, 11, 13))
    g = torch.randn(2, 60, 11, 13)
    outs = []
    for m in (ca, ref):
        xi = x.detach().requires_grad_()
        y = m(xi)
        y.backward(g)
        outs.append((y, xi.grad, [p.grad for p in m.parameters()]))
    (y, dx, dp), (ry, rdx, rdp) = outs
    torch.testing.assert_close(y, ry, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dx, rdx, rtol=1e-6, atol=1e-7)
    for a, b in zip(dp, rdp):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # and against float64
    ca64 = ChannelAttention(60, squeeze_factor=30).double()
    ca64.load_state_dict(ca.state_dict())
    x64 = x.double().requires_grad_()
    ca64(x64).backward(g.double())
    torch.testing.assert_close(dx.double(), x64.grad, rtol=1e-5, atol=1e-6)


class _FullMaps(TorchDispatchMode):
    """Records the ops that make a full-size 4-D channels-first map."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.made = shape, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (isinstance(out, torch.Tensor) and tuple(out.shape) == self.shape
                and out.is_contiguous()
                and not out.is_contiguous(
                    memory_format=torch.channels_last)):
            self.made.append(str(func))
        return out


def test_channels_last_backward_makes_no_channels_first_map():
    """On channels-last maps the pool's gradient is added as an expanded
    view: no full (B, C, H, W) map in the other format is made (the mean's
    backward made one, then added it across formats)."""
    torch.manual_seed(0)
    cab = CAB(30, compress_ratio=3, squeeze_factor=30)
    shape = (2, 30, 16, 16)
    x = _maps(torch.float32, True, shape).requires_grad_()
    y = cab(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    rec = _FullMaps(shape)
    with rec:
        y.backward(g)
    assert rec.made == []
    # the mean, as AdaptiveAvgPool2d takes it, would have
    rec = _FullMaps(shape)
    xm = x.detach().requires_grad_()
    with rec:
        xm.mean((2, 3), keepdim=True).sum().backward()
    assert rec.made
