"""Tests of the fused SS2D CPU scan (semillie_mm.ops.selective_scan.ss2d_fused).

The fused path is compared with SS2D's unfused path on the 'reference'
backend (the plain PyTorch recurrence through flipped/transposed copies) in
float64 -- output and the gradients of the input and every parameter -- on
odd, non-square and one-row / one-column maps, and checked by gradcheck.
Skipped when the C++ extension is not built (tools/setup_env.sh builds it).
"""
import os
import subprocess
import sys

from semillie_mm.models.archs.ss2d import SS2D
from semillie_mm.ops.cpu_ext import build as ext
from semillie_mm.ops.selective_scan import dispatch
from semillie_mm.ops.selective_scan import ss2d_fused as fused

import pytest
import torch

needs_ext = pytest.mark.skipif(
    not fused.fused_available(),
    reason=f'fused SS2D extension not built: {ext.unavailable_reason()}')


def make_ss2d(channels, d_state, dt_rank, dtype, seed=0):
    torch.manual_seed(seed)
    m = SS2D(channels, d_state=d_state, dt_rank=dt_rank).to(dtype)
    with torch.no_grad():  # perturb A_log and D away from their init
        m.A_log.add_(0.1 * torch.randn_like(m.A_log))
        m.D.add_(0.1 * torch.randn_like(m.D))
    return m


def run(m, backend, x, grad):
    m.scan_backend = backend
    m.zero_grad()
    xi = x.clone().requires_grad_()
    y = m(xi)
    (y * grad).sum().backward()
    grads = [xi.grad] + [p.grad.clone() for p in m.parameters()]
    return y, grads


SHAPES = [  # batch, channels, H, W, d_state, dt_rank
    (2, 8, 5, 7, 4, 2),
    (1, 24, 1, 9, 16, 2),
    (2, 40, 6, 1, 3, 1),
    (1, 16, 3, 3, 16, 1),
    (3, 20, 4, 11, 5, 3),
    # six blocks of 8 (the last partial): more than the backward's group
    # of four blocks, the partial one in the second group
    (2, 44, 5, 6, 16, 3),
    # dt_rank 10: the AVX2 backward's dt_rank sums as one tree of eight
    # rows and a zero-padded one of two
    (1, 24, 4, 5, 16, 10),
]


@needs_ext
@pytest.mark.parametrize('combined', [True, False],
                         ids=['one-product', 'per-direction'])
@pytest.mark.parametrize('shape', SHAPES, ids=str)
def test_fused_matches_reference_float64(shape, combined, monkeypatch):
    """Both ways of computing x_proj: the four directions' products as one
    buffer read in column blocks, and one direction's at a time (above
    COMBINED_BYTES)."""
    monkeypatch.setattr(fused, 'COMBINED_BYTES',
                        fused.COMBINED_BYTES if combined else 0)
    b, e, h, w, n, r = shape
    assert fused._combined(b * h * w, r + 2 * n, torch.float64) == combined
    m = make_ss2d(e, n, r, torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, e, h, w, generator=g, dtype=torch.float64)
    grad = torch.randn(b, e, h, w, generator=g, dtype=torch.float64)
    y_f, g_f = run(m, 'fused', x, grad)
    y_r, g_r = run(m, 'reference', x, grad)
    assert y_f.shape == (b, e, h, w) and y_f.dtype == torch.float64
    torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-10)
    names = ['x'] + [k for k, _ in m.named_parameters()]
    for name, a, ref in zip(names, g_f, g_r):
        torch.testing.assert_close(a, ref, rtol=1e-9, atol=1e-10, msg=name)


@needs_ext
@pytest.mark.parametrize('e, h, w', [(32, 9, 10), (24, 13, 17), (88, 7, 9)])
def test_fused_matches_reference_float32_and_channels_last(e, h, w):
    """float32 at d_state 16 (the register path of the forward): full
    blocks of 16 channels, and a partial one (24 channels) over 221 pixels
    (four 64-step tiles, the prefetch ahead of them, 15-step chunks); 88
    channels: six blocks, more than the backward's group of four, the
    partial one in the second group."""
    m = make_ss2d(e, 16, 4, torch.float32)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, e, h, w, generator=g)
    grad = torch.randn(2, e, h, w, generator=g)
    y_r, g_r = run(m, 'reference', x, grad)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        y_f, g_f = run(m, 'fused', xin, grad)
        assert y_f.dtype == torch.float32
        torch.testing.assert_close(y_f, y_r, rtol=1e-4, atol=1e-4)
        for a, ref in zip(g_f, g_r):
            torch.testing.assert_close(a, ref, rtol=1e-3, atol=1e-4)


@needs_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('n', [16, 4])
def test_kernel_write_mode(n, dtype):
    """With accumulate=False the forward writes y (whatever it held: NaN
    here) instead of adding to it, with the same numbers and checkpoints;
    every direction, the register path (d_state 16) and the generic one,
    a partial block of channels."""
    mod = ext.load()
    B, H, W, E, R = 2, 7, 9, 24, 3
    L, X = H * W, R + 2 * n
    K = fused.chunk_size(L)
    g = torch.Generator().manual_seed(5)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(dtype)

    u, xdbl = rnd(B, L, E), rnd(B, L, X, scale=0.5)
    Wdt, bias = rnd(E, R, scale=0.3), rnd(E, scale=0.3)
    A = (-torch.rand(E, n, generator=g) - 0.5).to(dtype)
    D = rnd(E)
    nck = -(-L // K)
    for k in range(4):
        y0 = torch.full((B, L, E), float('nan'), dtype=dtype)
        y1 = rnd(B, L, E)
        y1_before = y1.clone()
        ck0 = torch.empty(B, nck, n, E, dtype=dtype)
        ck1 = torch.empty(B, nck, n, E, dtype=dtype)
        mod.fwd(u, xdbl, Wdt, bias, A, D, y0, ck0, H, W, k, K,
                accumulate=False)
        mod.fwd(u, xdbl, Wdt, bias, A, D, y1, ck1, H, W, k, K)
        assert torch.isfinite(y0).all()
        assert y0.abs().max() > 0.1
        torch.testing.assert_close(y1, y1_before + y0, rtol=0, atol=0)
        assert torch.equal(ck0, ck1)


@needs_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('n', [16, 4])
def test_kernel_reads_and_writes_column_blocks(n, dtype):
    """xdbl and dxdbl as column blocks of wider (batch, L, 3 X) buffers (how
    SS2DScanFusedFn passes the four directions' one product): the same
    bits as with contiguous ones, forward and backward, every direction,
    and the backward writes its block only."""
    mod = ext.load()
    B, H, W, E, R = 2, 6, 5, 24, 3
    L, X = H * W, R + 2 * n
    K = fused.chunk_size(L)
    g = torch.Generator().manual_seed(8)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(dtype)

    u, wide = rnd(B, L, E), rnd(B, L, 3 * X, scale=0.5)
    xs = wide[:, :, X:2 * X]  # row stride 3 X
    xc = xs.contiguous()
    Wdt, bias = rnd(E, R, scale=0.3), rnd(E, scale=0.3)
    A = (-torch.rand(E, n, generator=g) - 0.5).to(dtype)
    D, dy = rnd(E), rnd(B, L, E)
    nck = -(-L // K)
    for k in range(4):
        out = []
        for xd in (xs, xc):
            y = torch.empty(B, L, E, dtype=dtype)
            ck = torch.empty(B, nck, n, E, dtype=dtype)
            mod.fwd(u, xd, Wdt, bias, A, D, y, ck, H, W, k, K,
                    accumulate=False)
            out.append((y, ck))
        assert torch.equal(out[0][0], out[1][0])
        assert torch.equal(out[0][1], out[1][1])
        ck = out[0][1]
        dwide = torch.full((1, B, L, 3 * X), float('nan'), dtype=dtype)
        dxc = torch.empty(1, B, L, X, dtype=dtype)
        du_s, du_c = torch.zeros(B, L, E, dtype=dtype), torch.zeros(
            B, L, E, dtype=dtype)
        got = mod.bwd(u, xs, Wdt, bias, A, D, dy, ck, du_s,
                      dwide[..., 2 * X:], H, W, k, K)
        want = mod.bwd(u, xc, Wdt, bias, A, D, dy, ck, du_c, dxc, H, W, k,
                       K)
        assert torch.equal(dwide[..., 2 * X:], dxc)
        assert torch.isnan(dwide[..., :2 * X]).all()
        assert torch.equal(du_s, du_c)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match='xdbl must have channel stride 1'):
        mod.fwd(u, wide[:, :, ::3], Wdt, bias, A, D,
                torch.empty(B, L, E, dtype=dtype), ck, H, W, 0, K)
    with pytest.raises(RuntimeError, match='dxdbl must have element stride'):
        mod.bwd(u, xc, Wdt, bias, A, D, dy, ck, du_c,
                torch.empty(1, B, L, 3 * X, dtype=dtype)[..., ::3], H, W, 0,
                K)


@needs_ext
def test_backward_slots_give_the_same_result():
    """Batch 1 on 2 threads uses 2 partial dxdbl buffers; 1 thread uses 1."""
    m = make_ss2d(48, 4, 2, torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 48, 5, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(1, 48, 5, 6, generator=g, dtype=torch.float64)
    assert fused.num_slots(1, 48, torch.float64, 2) == 2
    assert fused.num_slots(8, 48, torch.float64, 2) == 1
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, g1 = run(m, 'fused', x, grad)
        torch.set_num_threads(2)
        y2, g2 = run(m, 'fused', x, grad)
    finally:
        torch.set_num_threads(previous)
    y_r, g_r = run(m, 'reference', x, grad)
    for y in (y1, y2):
        torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10)
    for a, b, r in zip(g1, g2, g_r):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(b, r, rtol=1e-9, atol=1e-10)


@needs_ext
def test_gradcheck_float64():
    torch.manual_seed(0)
    E, N, R = 3, 2, 1
    for (H, W) in ((3, 2), (1, 3)):
        x = torch.randn(1, E, H, W, dtype=torch.float64, requires_grad=True)
        params = [
            (0.5 * torch.randn(4, R + 2 * N, E, dtype=torch.float64)),
            (0.5 * torch.randn(4, E, R, dtype=torch.float64)),
            (0.3 * torch.randn(4, E, dtype=torch.float64)),
            (0.3 * torch.randn(4 * E, N, dtype=torch.float64)),
            torch.randn(4 * E, dtype=torch.float64),
        ]
        params = [p.requires_grad_() for p in params]
        assert torch.autograd.gradcheck(
            lambda *a: fused.ss2d_scan_fused(*a, R), [x] + params,
            eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_ext
def test_no_grad_keeps_no_checkpoints_and_matches():
    m = make_ss2d(16, 4, 1, torch.float64)
    x = torch.randn(1, 16, 4, 5, dtype=torch.float64)
    m.scan_backend = 'fused'
    with torch.no_grad():
        y = m(x)
    m.scan_backend = 'reference'
    with torch.no_grad():
        y_r = m(x)
    assert not y.requires_grad
    torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10)


@needs_ext
def test_thread_count_unchanged():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        m = make_ss2d(16, 4, 1, torch.float32)
        m.scan_backend = 'fused'
        m(torch.randn(2, 16, 5, 5, requires_grad=True)).sum().backward()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


@needs_ext
def test_bad_inputs():
    m = make_ss2d(8, 4, 1, torch.float32)
    m.scan_backend = 'fused'
    with pytest.raises(ValueError, match='must be'):
        m(torch.randn(1, 7, 3, 3))
    p = [m.x_proj_weight, m.dt_proj_weight, m.dt_proj_bias, m.A_log, m.D]
    with pytest.raises(ValueError, match='x_proj_weight'):
        fused.ss2d_scan_fused(torch.randn(1, 8, 3, 3), p[0][:, :-1], *p[1:],
                              1)
    with pytest.raises(ValueError, match='x must be'):
        fused.ss2d_scan_fused(torch.randn(8, 3, 3), *p, 1)
    with pytest.raises(TypeError, match='floating'):
        fused.ss2d_scan_fused(torch.ones(1, 8, 3, 3, dtype=torch.int64),
                              *p, 1)


def test_without_extension_falls_back(monkeypatch):
    """No binary: 'auto' runs the unfused path, 'fused' is a clear error."""
    monkeypatch.delenv(ext.REQUIRE_ENV, raising=False)
    monkeypatch.setattr(ext, '_tried', True)
    monkeypatch.setattr(ext, '_module', None)
    monkeypatch.setattr(ext, '_error', 'not built (test)')
    monkeypatch.setattr(dispatch, 'FUSED_BY_DEFAULT', True)
    m = make_ss2d(8, 4, 1, torch.float64)
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    m.scan_backend = None
    monkeypatch.setenv('SEMILLIE_SCAN_BACKEND', 'reference')
    y_ref = m(x)
    monkeypatch.delenv('SEMILLIE_SCAN_BACKEND')
    torch.testing.assert_close(m(x), y_ref, rtol=1e-10, atol=1e-10)
    m.scan_backend = 'fused'
    with pytest.raises(RuntimeError, match='not built'):
        m(x)


def test_cache_key_names_torch_source_and_cpu(monkeypatch):
    key = ext.cache_key()
    monkeypatch.setattr(torch, '__version__', torch.__version__ + '.other')
    assert ext.cache_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(ext, '_cpu_signature', lambda: 'x86_64|other|sse2')
    assert ext.cache_key() != key
    assert ext.binary_path().startswith(ext.cache_root())


@needs_ext
def test_fresh_process_loads_cached_binary_without_compiling():
    """A new process imports the binary built by set-up from the cache and
    runs it; the build machinery is never imported (build.py is loaded by
    path so that the heavy package import stays out of this test)."""
    code = (
        'import importlib.util, sys, torch\n'
        'spec = importlib.util.spec_from_file_location(\n'
        f'    "ext", {ext.__file__!r})\n'
        'ext = importlib.util.module_from_spec(spec)\n'
        'spec.loader.exec_module(ext)\n'
        'mod = ext.load()\n'
        'assert mod is not None, ext.unavailable_reason()\n'
        'print("PATH", mod.__file__)\n'
        'u = torch.randn(1, 4, 16); xdbl = torch.randn(1, 4, 5)\n'
        'y = torch.zeros(1, 4, 16)\n'
        'mod.fwd(u, xdbl, torch.randn(16, 1), torch.zeros(16),\n'
        '        -torch.ones(16, 2), torch.ones(16), y, torch.empty(0),\n'
        '        2, 2, 1, 2)\n'
        'print("FINITE", bool(torch.isfinite(y).all()))\n'
        'print("COMPILER", "cpp_extension" in " ".join(sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(' ', 1) for line in out.stdout.splitlines()
                 if line.startswith(('PATH ', 'FINITE ', 'COMPILER ')))
    assert os.path.samefile(lines['PATH'], ext.binary_path())
    assert lines['FINITE'] == 'True'
    # the build machinery (torch.utils.cpp_extension) was never imported
    assert lines['COMPILER'] == 'False'


def _no_extension(monkeypatch):
    monkeypatch.setattr(ext, '_tried', True)
    monkeypatch.setattr(ext, '_module', None)
    monkeypatch.setattr(ext, '_error', 'no compiled binary at /x (test)')
    monkeypatch.setattr(dispatch, 'FUSED_BY_DEFAULT', True)
    monkeypatch.setattr(dispatch, '_logged', set())
    monkeypatch.delenv('SEMILLIE_SCAN_BACKEND', raising=False)


def test_fallback_is_loud_and_forbidden_on_request(monkeypatch):
    """Issue #24: falling back names the reason, the cost and the build
    command at WARNING; SEMILLIE_REQUIRE_NATIVE=1 turns it into an error,
    for SS2D and for a plain selective_scan call."""
    import logging

    from semillie_mm.ops.selective_scan import selective_scan
    _no_extension(monkeypatch)
    monkeypatch.delenv(ext.REQUIRE_ENV, raising=False)
    emitted = []
    monkeypatch.setattr(dispatch, 'log_current',
                        lambda msg, level: emitted.append((msg, level)))
    m = make_ss2d(8, 4, 1, torch.float32)
    x = torch.randn(1, 8, 3, 4)
    m(x)
    warned = [msg for msg, level in emitted
              if level == logging.WARNING and 'SS2D' in msg]
    assert warned, emitted
    msg = warned[0]
    for part in ('no compiled binary at /x (test)', '2-3x slower',
                 '2x memory', 'cpu_ext/build.py --build'):
        assert part in msg
    monkeypatch.setenv(ext.REQUIRE_ENV, '1')
    with pytest.raises(RuntimeError, match='SEMILLIE_REQUIRE_NATIVE=1'):
        m(x)
    u = torch.randn(1, 4, 6)
    args = (u, torch.rand(1, 4, 6), -torch.rand(4, 2), torch.randn(1, 2, 6),
            torch.randn(1, 2, 6))
    with pytest.raises(RuntimeError, match='2-3x slower'):
        selective_scan(*args)
    monkeypatch.setenv(ext.REQUIRE_ENV, '0')
    assert torch.isfinite(selective_scan(*args)).all()
    # an explicit choice is no fallback: allowed under the requirement
    monkeypatch.setenv(ext.REQUIRE_ENV, '1')
    assert torch.isfinite(selective_scan(*args, backend='reference')).all()


def test_cache_key_has_no_environment_path(monkeypatch, tmp_path):
    """Issue #24: the key depends on what makes a binary fit, not on the
    path torch is reached by (a symlinked or moved environment)."""
    key = ext.cache_key()
    torch_dir = os.path.dirname(torch.__file__)
    link = tmp_path / 'linked_site'
    os.symlink(os.path.dirname(torch_dir), link)
    monkeypatch.setattr(torch, '__file__',
                        str(link / 'torch' / '__init__.py'))
    assert ext.cache_key() == key
    monkeypatch.undo()
    monkeypatch.setattr(ext, '_ldflags', lambda: ['-fopenmp'])
    assert ext.cache_key() != key  # another OpenMP runtime is another binary


@needs_ext
def test_symlinked_environment_finds_the_binary(tmp_path):
    """A fresh process whose torch (and this package) are imported through
    a symbolic link to site-packages loads the binary set-up built and runs
    SS2D on it (the fused kernel), without compiling."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    link = tmp_path / 'site_link'
    os.symlink(site, link)
    code = (
        'import sys\n'
        f'sys.path.insert(0, {str(link)!r})\n'
        'import torch\n'
        f'assert torch.__file__.startswith({str(link)!r}), torch.__file__\n'
        'import importlib.util\n'
        'spec = importlib.util.spec_from_file_location(\n'
        f'    "ext", {ext.__file__!r})\n'
        'ext = importlib.util.module_from_spec(spec)\n'
        'spec.loader.exec_module(ext)\n'
        'print("KEY", ext.cache_key())\n'
        'print("LOADED", ext.load() is not None, ext.unavailable_reason())\n')
    env = dict(os.environ)
    env.pop(ext.REQUIRE_ENV, None)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(' ', 1) for line in out.stdout.splitlines()
                 if line.startswith(('KEY ', 'LOADED ')))
    assert lines['KEY'] == ext.cache_key()
    assert lines['LOADED'].startswith('True')
