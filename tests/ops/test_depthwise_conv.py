"""The channels-last depth-wise conv kernel (semillie_mm.ops.depthwise_conv)
against F.conv2d computed in float64: output, input, weight and bias
gradients on odd sizes, channel counts that are not a multiple of the 16
lanes, one-row / one-column maps; the fallbacks; and that the extension's
at::parallel_for really runs on torch's threads (it is serial when the
extension is built without OpenMP)."""
import os

from semillie_mm.ops import cpu_ext as ext
from semillie_mm.ops import depthwise_conv as dw

import pytest
import torch
import torch.nn.functional as F

needs_ext = pytest.mark.skipif(
    not ext.available(),
    reason=f'CPU extension not built: {ext.unavailable_reason()}')


def reference(x, w, b, g):
    """Output and gradients by F.conv2d in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    b64 = b.detach().double().requires_grad_()
    y = F.conv2d(x64, w64, b64, padding=w.shape[-1] // 2, groups=w.shape[0])
    y.backward(g.double())
    return y.detach(), x64.grad, w64.grad, b64.grad


@needs_ext
@pytest.mark.parametrize('shape,k', [
    ((2, 20, 7, 9), 3),
    ((1, 33, 1, 5), 5),
    ((2, 16, 5, 1), 7),
    ((3, 48, 6, 11), 5),
    ((1, 5, 4, 4), 3),
    # K >= 5 takes interior columns in blocks (of 6 columns on AVX2, 8 on
    # AVX-512): whole blocks, a partial one, the scalar channel tail
    ((2, 20, 5, 30), 7),
    ((1, 40, 7, 21), 5),
    ((1, 24, 3, 13), 5),
])
def test_matches_conv2d(shape, k):
    torch.manual_seed(0)
    B, C, H, W = shape
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(C, 1, k, k, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    g = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    assert dw.kernel_applies(x, w)
    y = dw.depthwise_conv2d(x, w, b)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.backward(g)
    want = reference(x, w, b, g)
    for got, ref in zip((y, x.grad, w.grad, b.grad), want):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


@needs_ext
def test_only_some_gradients():
    torch.manual_seed(1)
    x = torch.randn(2, 17, 6, 6).contiguous(memory_format=torch.channels_last)
    w = torch.randn(17, 1, 5, 5, requires_grad=True)
    y = dw.depthwise_conv2d(x, w)  # no bias, no input gradient
    g = torch.randn_like(y)
    y.backward(g)
    ref = w.detach().double().requires_grad_()
    F.conv2d(x.double(), ref, None, padding=2, groups=17).backward(g.double())
    torch.testing.assert_close(w.grad.double(), ref.grad, rtol=1e-5,
                               atol=1e-5)


def test_fallbacks_are_conv2d():
    """NCHW input, float64, an even kernel: F.conv2d itself."""
    torch.manual_seed(2)
    for x, w in ((torch.randn(1, 8, 5, 5), torch.randn(8, 1, 3, 3)),
                 (torch.randn(1, 8, 5, 5, dtype=torch.float64).contiguous(
                     memory_format=torch.channels_last),
                  torch.randn(8, 1, 3, 3, dtype=torch.float64))):
        assert not dw.kernel_applies(x, w)
        torch.testing.assert_close(
            dw.depthwise_conv2d(x, w), F.conv2d(x, w, padding=1, groups=8),
            rtol=0, atol=0)
    x = torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    assert not dw.kernel_applies(x, torch.randn(8, 1, 4, 4))
    assert not dw.kernel_applies(x, torch.randn(8, 2, 3, 3))


@needs_ext
def test_bad_shapes_are_clear_errors():
    mod = ext.load()
    x = torch.randn(1, 4, 4, 8)
    with pytest.raises(RuntimeError, match='kernel size must be 3, 5 or 7'):
        mod.dw_conv_fwd(x, torch.randn(4, 8), x.new_empty(0),
                        torch.empty_like(x), 2)
    with pytest.raises(RuntimeError, match=r'w must be .*\(K\*K, C\)'):
        mod.dw_conv_fwd(x, torch.randn(9, 7), x.new_empty(0),
                        torch.empty_like(x), 3)
    with pytest.raises(RuntimeError, match='float32 CPU'):
        mod.dw_conv_wgrad(x.double(), x.double(), 3)


@needs_ext
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='needs 2 cores')
def test_parallel_for_uses_torch_threads():
    mod = ext.load()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert mod.parallel_threads(8) == 2
        torch.set_num_threads(1)
        assert mod.parallel_threads(8) == 1
    finally:
        torch.set_num_threads(before)


@needs_ext
@pytest.mark.parametrize('multiscale', ['parallel', 'serial'])
def test_mssm_training_step_same_with_and_without_kernel(multiscale,
                                                         monkeypatch):
    """MSSM's float32 training path (channels-last branch recomputed in the
    backward) gives the same output and gradients on the kernel as on
    F.conv2d."""
    from semillie_mm.models.archs import MSSM
    torch.manual_seed(3)
    m = MSSM(12, d_state=4, multiscale=multiscale, scan_backend='reference')
    x = torch.randn(2, 9, 7, 12, requires_grad=True)
    w = torch.randn(2, 9, 7, 12)
    results = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(dw, 'kernel_applies', lambda *a: False)
        m.zero_grad()
        x.grad = None
        (m(x) * w).sum().backward()
        results.append([x.grad.clone()] +
                       [p.grad.clone() for p in m.parameters()])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
