"""bf16 inference (semillie_mm.apis.precision, ``precision='bf16'``).

A small random-weight model (the demo config's backbone, its weights
perturbed so that the residual the network adds is far from zero) runs in
float32 and under bfloat16 autocast: the output's PSNR against float32 is
>= 45 dB (the issue's figure), tiled and untiled; SS2D's C++ kernels (fused
and generic scan) receive float32 only while the GEMMs around them run in
bfloat16; and a CPU without native bfloat16 gets a one-line notice and
float32. ``cpu_has_bf16`` is patched where the test must run on any CPU (the
numbers of emulated bfloat16 are the same).
"""
import logging
import math
import os.path as osp

from semillie_mm.apis import precision as prec
from semillie_mm.ops import cpu_ext
from semillie_mm.ops.selective_scan import ss2d_fused

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(ROOT, 'configs', 'semillie_demo.py')

needs_ext = pytest.mark.skipif(not ss2d_fused.fused_available(),
                               reason='C++ extension not built')


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double())**2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(prec, 'cpu_has_bf16', lambda flags=None: True)


@pytest.fixture(scope='module')
def inferencers():
    """(fp32, bf16) inferencers sharing one perturbed random model."""
    from semillie_mm.apis import SemiLLIEInferencer
    mp = pytest.MonkeyPatch()
    mp.setattr(prec, 'cpu_has_bf16', lambda flags=None: True)
    torch.manual_seed(0)
    fp32 = SemiLLIEInferencer(DEMO_CFG, device='cpu', show_progress=False)
    bf16 = SemiLLIEInferencer(DEMO_CFG, device='cpu', show_progress=False,
                              precision='bf16')
    mp.undo()
    with torch.no_grad():
        for p in fp32.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    bf16.model.load_state_dict(fp32.model.state_dict())
    assert (fp32.precision, bf16.precision) == ('fp32', 'bf16')
    return fp32, bf16


def _image(h=96, w=80, seed=0):
    rng = np.random.default_rng(seed)
    # smooth low-light content: a dark gradient with noise
    yy, xx = np.mgrid[0:h, 0:w]
    base = 20 + 40 * (yy / h)[..., None] * (xx / w)[..., None] * [1, .8, .6]
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(
        np.uint8)


def _forward(inf, img, **kw):
    batch = dict(packed=[(dict(), inf.pipeline(dict(img=img)))], failed=[])
    return inf.forward(batch, **kw)[0]['pred_img']


@needs_ext
@pytest.mark.parametrize('tile_size', [None, 48], ids=['whole', 'tiled'])
def test_bf16_psnr_against_fp32(inferencers, tile_size):
    fp32, bf16 = inferencers
    img = _image()
    x = torch.from_numpy(img.transpose(2, 0, 1) / 255.)
    y32 = _forward(fp32, img, tile_size=tile_size, tile_overlap=8)
    yb = _forward(bf16, img, tile_size=tile_size, tile_overlap=8)
    assert yb.dtype == torch.float32 and yb.shape == y32.shape
    # the model does change the image: the figure is not trivial
    assert (y32.double() - x).abs().mean() > 0.05
    assert not torch.equal(yb, y32)  # bfloat16 really ran
    assert psnr(yb, y32) >= 45


class _Spy:
    """Wraps the extension module: records the dtypes of the tensors each
    kernel receives."""

    def __init__(self, mod, calls):
        self._mod, self._calls = mod, calls

    def __getattr__(self, name):
        fn = getattr(self._mod, name)
        if not callable(fn):
            return fn

        def spy(*args, **kwargs):
            self._calls.append((name, {a.dtype for a in args
                                       if isinstance(a, torch.Tensor)
                                       and a.numel()}))
            return fn(*args, **kwargs)
        return spy


@needs_ext
@pytest.mark.parametrize('backend', [None, 'native'], ids=['fused', 'scan'])
def test_scan_runs_in_float32_under_autocast(monkeypatch, backend):
    from semillie_mm.models.archs import SemiLLIENet
    from semillie_mm.ops.selective_scan import dispatch
    calls, linears = [], []
    real = cpu_ext.load()
    monkeypatch.setattr(cpu_ext, 'load', lambda: _Spy(real, calls))
    real_kernel = dispatch.kernel

    def kernel(name):  # what selective_scan() receives (unfused path)
        fn = real_kernel(name)

        def spy(*args, **kwargs):
            calls.append(('selective_scan', {a.dtype for a in args}))
            return fn(*args, **kwargs)
        return spy
    monkeypatch.setattr(dispatch, 'kernel', kernel)
    real_linear = F.linear

    def linear(x, *args, **kwargs):
        out = real_linear(x, *args, **kwargs)
        linears.append(out.dtype)
        return out
    monkeypatch.setattr(F, 'linear', linear)
    torch.manual_seed(1)
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1,
                      d_state=4, scan_backend=backend).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad(), prec.autocast_context('bf16', 'cpu'):
        y = net(x)
    kernels = ['fwd'] if backend is None else ['selective_scan', 'scan_fwd']
    for kernel in kernels:
        scans = [dtypes for name, dtypes in calls if name == kernel]
        assert scans and all(d == {torch.float32} for d in scans), calls
    assert torch.bfloat16 in linears  # the GEMMs around it: bfloat16
    assert y.dtype == torch.float32


@needs_ext
def test_fused_scan_op_under_autocast_returns_float32():
    """The op itself (not only SS2D) keeps autocast away from its
    projections (the kernel refused their bfloat16) and returns float32;
    the gradient runs too."""
    from semillie_mm.models.archs.ss2d import SS2D
    torch.manual_seed(2)
    m = SS2D(8, d_state=4, dt_rank=2)
    x = torch.randn(1, 8, 5, 6)
    ref = ss2d_fused.ss2d_scan_fused(
        x, m.x_proj_weight, m.dt_proj_weight, m.dt_proj_bias, m.A_log, m.D,
        2)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = ss2d_fused.ss2d_scan_fused(
            xb, m.x_proj_weight, m.dt_proj_weight, m.dt_proj_bias, m.A_log,
            m.D, 2)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=2e-2, atol=2e-2)
    y.sum().backward()
    assert xb.grad is not None and xb.grad.dtype == torch.bfloat16


def test_fallback_notice_without_bf16(monkeypatch, caplog):
    monkeypatch.setattr(prec, 'cpu_flags',
                        lambda path='/proc/cpuinfo': frozenset({'avx2'}))
    with caplog.at_level(logging.WARNING, logger=prec.__name__):
        assert prec.resolve_precision('bf16', 'cpu') == 'fp32'
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and '\n' not in notices[0]
    assert 'AVX512-BF16' in notices[0] and 'fp32' in notices[0]
    caplog.clear()
    assert prec.resolve_precision('fp32', 'cpu') == 'fp32'
    assert not caplog.records
    with pytest.raises(ValueError, match='precision'):
        prec.resolve_precision('fp16', 'cpu')


def test_inferencer_falls_back(monkeypatch, caplog):
    from semillie_mm.apis import SemiLLIEInferencer
    monkeypatch.setattr(prec, 'cpu_flags',
                        lambda path='/proc/cpuinfo': frozenset({'avx2'}))
    with caplog.at_level(logging.WARNING, logger=prec.__name__):
        inf = SemiLLIEInferencer(DEMO_CFG, device='cpu', show_progress=False,
                                 precision='bf16')
    assert inf.precision == 'fp32'
    assert any('running in fp32' in r.getMessage() for r in caplog.records)


def test_cpu_flags_detection(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16'
                    '\n\nprocessor\t: 1\nflags\t\t: fpu\n')
    flags = prec.cpu_flags(str(info))
    assert 'avx512_bf16' in flags and prec.cpu_has_bf16(flags)
    assert prec.cpu_has_bf16(frozenset({'amx_bf16', 'amx_tile'}))
    assert not prec.cpu_has_bf16(frozenset({'avx512f', 'avx512bw'}))
    assert prec.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_enhance_and_webui_parse_precision():
    import importlib.util
    for tool in ('enhance', 'webui'):
        spec = importlib.util.spec_from_file_location(
            f'{tool}_tool', osp.join(ROOT, 'tools', f'{tool}.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        argv = ['in', 'out'] if tool == 'enhance' else []
        assert mod.parse_args(argv).precision == 'fp32'
        assert mod.parse_args(argv + ['--precision', 'bf16']).precision == \
            'bf16'


def test_mssm_convs_channels_last_under_cpu_autocast():
    """Under CPU autocast MSSM's plain path keeps its branch channels-last
    (channels innermost: oneDNN's bfloat16 convs run channels-last and SS2D's
    fused kernel then needs no copy); in float32 it is contiguous (NCHW) as
    before; the outputs agree."""
    from semillie_mm.models.archs.mssm import MSSM
    torch.manual_seed(3)
    m = MSSM(8, d_state=4, memory_lean=False).eval()
    seen = []
    m.dwconv3.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].stride(1) == 1))
    x = torch.randn(1, 6, 7, 8)
    with torch.no_grad():
        ref = m(x)
        with prec.autocast_context('bf16', 'cpu'):
            y = m(x)
    assert seen == [False, True]
    assert psnr(y.float(), ref) > psnr(torch.zeros_like(ref), ref) + 30


@needs_ext
def test_depthwise_op_takes_float32_only_under_autocast(monkeypatch):
    """The depth-wise C++ op runs on float32 inputs only (bfloat16 ones go
    to F.conv2d, which autocast runs in bfloat16); under autocast a float32
    input still runs the kernel, in float32, with the same numbers."""
    from semillie_mm.ops.depthwise_conv import depthwise_conv2d
    calls = []
    real = cpu_ext.load()
    monkeypatch.setattr(cpu_ext, 'load', lambda: _Spy(real, calls))
    torch.manual_seed(4)
    x = torch.randn(1, 8, 6, 7).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, 1, 3, 3), torch.randn(8)
    ref = depthwise_conv2d(x, w, b)
    calls.clear()
    with torch.no_grad(), prec.autocast_context('bf16', 'cpu'):
        y32 = depthwise_conv2d(x, w, b)
        y16 = depthwise_conv2d(x.bfloat16(), w, b)
    # one kernel call (y32's), on float32; y16 went to F.conv2d
    assert [d for n, d in calls if n == 'dw_conv_fwd'] == [{torch.float32}]
    torch.testing.assert_close(y32, ref, rtol=0, atol=0)
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), ref, rtol=2e-2, atol=5e-2)


@needs_ext
def test_fused_scan_bf16_projections(monkeypatch):
    """``proj_dtype=torch.bfloat16`` (bf16 inference) runs the ``x_proj``
    products in bfloat16: on random data the output is within bfloat16
    rounding of the float32 one but not the same bits; on operands whose
    products and sums bfloat16 holds exactly it is float32's bits (nothing
    else changed); with gradients it is ignored (float32's bits, and the
    backward runs); SS2D under CPU bf16 autocast without gradients passes
    it."""
    from semillie_mm.models.archs.ss2d import SS2D
    torch.manual_seed(5)
    m = SS2D(16, d_state=4, dt_rank=2)
    with torch.no_grad():
        m.x_proj_weight.mul_(4)  # delta, B and C far from zero
    x = torch.randn(2, 16, 9, 7)
    args = (m.x_proj_weight, m.dt_proj_weight, m.dt_proj_bias, m.A_log, m.D,
            2)
    bf16 = dict(proj_dtype=torch.bfloat16)
    with torch.no_grad():
        ref = ss2d_fused.ss2d_scan_fused(x, *args)
        low = ss2d_fused.ss2d_scan_fused(x, *args, **bf16)
        # multiples of 1/4 in [-1, 1]: the products' sums are exact in both
        xq = torch.randint(-4, 5, x.shape) / 4
        wq = torch.randint(-4, 5, m.x_proj_weight.shape) / 4
        exact = [ss2d_fused.ss2d_scan_fused(xq, wq, *args[1:], **kw)
                 for kw in ({}, bf16)]
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    assert ((low - ref).norm() / ref.norm()).item() < 2e-2
    assert torch.equal(exact[1], exact[0])
    xg = x.clone().requires_grad_()
    y = ss2d_fused.ss2d_scan_fused(xg, *args, **bf16)
    assert torch.equal(y.detach(), ref)
    y.sum().backward()
    assert xg.grad is not None
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        via_module = m(x)
    assert torch.equal(via_module, low)
    # pixel chunks of the product (a partial last one): the same numbers
    monkeypatch.setattr(ss2d_fused, 'PROJ_CHUNK', 10)
    with torch.no_grad():
        chunked = ss2d_fused.ss2d_scan_fused(x, *args, **bf16)
    torch.testing.assert_close(chunked, low, rtol=1e-6, atol=1e-7)
