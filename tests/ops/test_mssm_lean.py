"""MSSM / MSSB / SemiLLIENet memory-lean paths against plain references.

- training path (gradients on): the split ``fuse`` and the recomputing gate
  (``_SiLUFuse``, ``_GateOut``) must give the outputs and ALL gradients of a
  functional MSSM written here with stock autograd ops (``cat`` + 1x1 conv,
  ``chunk`` of ``in_proj``, as the module computed before);
- no-grad path (channel / pixel chunks, in-place activations and residuals):
  the same outputs as the gradient path, with chunk sizes that do not divide
  the channel or pixel counts.
Float64, small odd sizes, both ``multiscale`` orders, parameters shared; and
the training path in float32, where the SiLU / gate kernels of
``semillie_mm.ops.silu`` run, against the float64 reference.
"""
from semillie_mm.models.archs import MSSM, SemiLLIENet
from semillie_mm.models.archs.mssb import MSSB
from semillie_mm.ops import cpu_ext as ext
from semillie_mm.ops import mssm_lean as mssm_mod
from semillie_mm.ops import silu as silu_mod

import pytest
import torch
import torch.nn.functional as F

needs_ext = pytest.mark.skipif(
    not ext.available(),
    reason=f'CPU extension not built: {ext.unavailable_reason()}')


def _reference(m, x):
    """Functional MSSM: in_proj -> chunk -> dw convs -> cat -> fuse -> SS2D
    -> LayerNorm * SiLU(z) -> out_proj."""
    E = m.inner
    x0, z = F.linear(x, m.in_proj.weight).chunk(2, dim=-1)
    x0 = x0.permute(0, 3, 1, 2).contiguous()
    a = F.conv2d(x0, m.dwconv3.weight, m.dwconv3.bias, padding=1, groups=E)
    src = a if m.multiscale == 'serial' else x0
    b = F.conv2d(src, m.dwconv5.weight, m.dwconv5.bias, padding=2, groups=E)
    f = F.conv2d(torch.cat([F.silu(a), F.silu(b)], 1), m.fuse.weight,
                 m.fuse.bias)
    y = m.ss2d(f).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (E, ), m.out_norm.weight, m.out_norm.bias,
                     m.out_norm.eps) * F.silu(z)
    return F.linear(y, m.out_proj.weight)


def _randomise(module, seed):
    torch.manual_seed(seed)
    module = module.double()
    with torch.no_grad():  # random everything, not just the default init
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(mssm_mod, 'CHANNEL_CHUNK', 5)
    monkeypatch.setattr(mssm_mod, 'LOWP_CHANNEL_CHUNK', 5)
    monkeypatch.setattr(mssm_mod, 'PIXEL_CHUNK', 7)


@pytest.mark.parametrize('multiscale', ['parallel', 'serial'])
def test_training_path_matches_reference_with_gradients(multiscale):
    m = _randomise(
        MSSM(6, d_state=3, multiscale=multiscale, scan_backend='reference'),
        seed=3)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    weight = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    outs, grads = [], []
    for fn in (m, lambda t: _reference(m, t)):
        xi = x.clone().requires_grad_()
        m.zero_grad()
        out = fn(xi)
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    names = ['x'] + [n for n, _ in m.named_parameters()]
    for name, g0, g1 in zip(names, *grads):
        torch.testing.assert_close(g0, g1, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize('multiscale', ['parallel', 'serial'])
@pytest.mark.parametrize('backend', [None, 'reference'])
def test_lean_mssm_matches_reference(multiscale, backend, small_chunks):
    m = _randomise(
        MSSM(6, d_state=3, multiscale=multiscale, scan_backend=backend),
        seed=4)
    x = torch.randn(2, 7, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        lean = m(x)
    ref = _reference(m, x)  # gradients on: stock autograd ops
    assert ref.requires_grad
    torch.testing.assert_close(lean, ref.detach(), rtol=1e-10, atol=1e-12)
    # the module-by-module path (memory_lean off; used under jit tracing,
    # FLOP counting)
    m.memory_lean = False
    with torch.no_grad():
        plain = m(x)
    torch.testing.assert_close(plain, ref.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('multiscale', ['parallel', 'serial'])
def test_lean_mssb_matches_training_path(multiscale, small_chunks):
    m = _randomise(MSSB(6, d_state=3, multiscale=multiscale), seed=5).eval()
    x = torch.randn(2, 3, 9, 6, dtype=torch.float64)
    with torch.no_grad():
        lean = m(x)
    xi = x.clone().requires_grad_()
    ref = m(xi)
    torch.testing.assert_close(lean, ref.detach(), rtol=1e-10, atol=1e-12)
    # the input is not modified by the in-place residuals
    torch.testing.assert_close(x, xi.detach(), rtol=0, atol=0)


def test_lean_network_matches_training_path(small_chunks):
    net = _randomise(
        SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=2, d_state=3,
                    iem_groups=2), seed=6).eval()
    x = torch.rand(1, 3, 7, 11, dtype=torch.float64)
    with torch.no_grad():
        lean = net(x)
    ref = net(x.clone().requires_grad_())
    torch.testing.assert_close(lean, ref.detach(), rtol=1e-10, atol=1e-12)


def test_autocast_with_grad_uses_module_path():
    """Under autocast with gradients (AMP training) MSSB runs the
    module-by-module forward: mixed dtypes work, and the output is the
    module path's without gradients (memory_lean off) too."""
    torch.manual_seed(7)
    m = MSSB(8, d_state=3, scan_backend='reference').eval()
    calls = []
    m.mssm.in_proj.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(1, 5, 6, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = m(x.clone().requires_grad_())
        m.mssm.memory_lean = False
        with torch.no_grad():
            ref = m(x)
    assert len(calls) == 2  # in_proj as a module: the plain path, twice
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out.detach(), ref, rtol=0, atol=0)
    out.float().sum().backward()
    assert all(p.grad is not None for p in m.mssm.parameters())


def _bf16_rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize('multiscale', ['parallel', 'serial'])
def test_bf16_inference_runs_the_lean_path(multiscale, small_chunks,
                                           monkeypatch):
    """CPU bfloat16 inference (autocast, no gradients) runs MSSB's and
    MSSM's lean path with its products and convs in bfloat16
    (``_conv_fuse_lowp``, the gate and out_proj): not the module path, a
    float32 output within bfloat16 rounding of float32's (the halves of
    ``fuse`` swapped or a chunk misplaced would be off by O(1)), and not
    float32's bits."""
    torch.manual_seed(8)
    m = MSSB(16, d_state=3, multiscale=multiscale,
             scan_backend='reference').eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    calls = []
    m.mssm.in_proj.register_forward_hook(lambda *a: calls.append(1))
    seen = []
    real = mssm_mod._conv_fuse_lowp

    def spy(n, w, dtype):
        seen.append(dtype)
        return real(n, w, dtype)
    x = torch.randn(2, 9, 7, 16)
    x_before = x.clone()
    with torch.no_grad():
        ref32 = m(x)
        lean32 = m.mssm(m.norm1(x))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            monkeypatch.setattr(mssm_mod, '_conv_fuse_lowp', spy)
            out = m(x)
            branch = m.mssm(m.norm1(x))
            monkeypatch.undo()
            m.mssm.memory_lean = False
            plain = m(x)  # the module path under autocast
    assert calls == [1]  # only the module path's in_proj ran as a module
    assert seen == [torch.bfloat16] * 2
    for got, want in ((out, ref32), (branch, lean32)):
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert not torch.equal(got, want)
        assert _bf16_rel_err(got, want) < 2e-2
    assert _bf16_rel_err(plain.float(), ref32) < 2e-2
    assert torch.equal(x, x_before)  # the in-place residuals spared x


def test_lean_lowp_dtype_only_for_cpu_bf16_inference():
    from semillie_mm.models.archs.mssm import lean_lowp_dtype, plain_path_needed
    x = torch.zeros(1, 2, 2, 4)
    assert lean_lowp_dtype(x) is None and not plain_path_needed(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert plain_path_needed(x)  # gradients on: AMP training
        with torch.no_grad():
            assert lean_lowp_dtype(x) == torch.bfloat16
            assert not plain_path_needed(x)
    with torch.autocast('cpu', dtype=torch.float16), torch.no_grad():
        assert lean_lowp_dtype(x) is None and plain_path_needed(x)


def test_one_pixel_input_leaves_the_weights_alone():
    """A 1x1 image on the lean no-grad path: the fuse bias was expanded to
    (1, 1, E), whose ``contiguous()`` is the parameter itself, and the
    accumulation wrote into it (every later output changed)."""
    torch.manual_seed(0)
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1,
                      d_state=4).eval()
    before = {n: p.clone() for n, p in net.named_parameters()}
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        ref = net(x)
        net(torch.rand(1, 3, 1, 1))
        again = net(x)
    for n, p in net.named_parameters():
        assert torch.equal(p, before[n]), n
    assert torch.equal(ref, again)


@needs_ext
@pytest.mark.parametrize('backend', [None, 'reference'],
                         ids=['fused', 'reference'])
def test_lean_mssm_float32_gradients_against_float64(backend, monkeypatch):
    """Both scans: the fused one's output is contiguous as (B, H, W, E)
    (_GateOut writes the LayerNorm's input gradient in place), the
    reference's is not (it goes through a copy)."""
    calls = []
    real = silu_mod.kernel_applies
    monkeypatch.setattr(silu_mod, 'kernel_applies',
                        lambda *t: calls.append(real(*t)) or calls[-1])
    torch.manual_seed(5)
    m = MSSM(8, d_state=4, scan_backend=backend)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 6, 9, 8).double()
    weight = torch.randn(2, 6, 9, 8)
    results = []
    for dtype, fn in ((torch.float32, m),
                      (torch.float64, lambda t: _reference(m, t))):
        m.to(dtype)
        m.zero_grad()
        xi = x.to(dtype).requires_grad_()
        assert xi.is_leaf
        out = fn(xi)
        (out * weight.to(dtype)).sum().backward()
        results.append([out.detach(), xi.grad] +
                       [p.grad.clone() for p in m.parameters()])
        if dtype == torch.float32:
            assert calls and all(calls)  # the kernels ran
    names = ['out', 'x'] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, *results):
        scale = b.abs().max().item()
        assert (a.double() - b).abs().max().item() < 2e-5 * scale, name
