"""Tests of semillie_mm.ops.selective_scan (native, numba and reference
backends).

Both CPU kernels -- 'native' (the C++ extension) and 'numba' -- are compared
with the readable PyTorch reference in float64 -- outputs, last state and the
gradients of every input -- and the reference itself with a scalar
transcription of the recurrence. The first numba run JIT-compiles its kernels
(cached on disk afterwards).
"""
import logging
import math

from semillie_mm.ops import selective_scan
from semillie_mm.ops.selective_scan import dispatch, selective_scan_reference
from semillie_mm.ops.selective_scan.backends import native
from semillie_mm.ops.selective_scan.backends import numba as cpu
from semillie_mm.ops.selective_scan.backends.numba import numba_available

import pytest
import torch
import torch.nn.functional as F

needs_numba = pytest.mark.skipif(
    not numba_available(), reason='numba is not installed')
needs_native = pytest.mark.skipif(
    not native.native_available(),
    reason='the C++ extension is not built (tools/setup_env.sh)')
#: the two CPU kernels, each tested where it can run
KERNELS = [pytest.param('native', marks=needs_native),
           pytest.param('numba', marks=needs_numba)]

INPUTS = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


def make_inputs(batch, dim, length, N, groups=None, c_groups='same',
                D=True, z=True, bias=True, dtype=torch.float64, seed=0):
    """Random scan inputs in the ranges a Mamba layer produces."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def bc_shape(G):
        return (batch, N, length) if G is None else (batch, G, N, length)

    cg = groups if c_groups == 'same' else c_groups
    x = dict(
        u=randn(batch, dim, length),
        delta=0.5 * randn(batch, dim, length),
        # S4D-real-like negative A, perturbed
        A=-(torch.arange(1, N + 1, dtype=torch.float64).repeat(dim, 1) *
            (0.5 + torch.rand(dim, N, generator=g, dtype=torch.float64))),
        B=randn(*bc_shape(groups)),
        C=randn(*bc_shape(cg)),
        D=randn(dim) if D else None,
        z=randn(batch, dim, length) if z else None,
        delta_bias=0.3 * randn(dim) if bias else None)
    return {k: (None if v is None else v.to(dtype)) for k, v in x.items()}


def scalar_scan(u, delta, A, B, C, D, z, delta_bias, softplus):
    """The recurrence written with Python scalars (independent of torch's
    broadcasting) for tiny inputs."""
    batch, dim, length = u.shape
    N = A.shape[1]
    out = torch.zeros(batch, dim, length, dtype=torch.float64)
    last = torch.zeros(batch, dim, N, dtype=torch.float64)
    for b in range(batch):
        for d in range(dim):
            Bg = B[b] if B.dim() == 3 else B[b, d // (dim // B.shape[1])]
            Cg = C[b] if C.dim() == 3 else C[b, d // (dim // C.shape[1])]
            h = [0.0] * N
            for t in range(length):
                dt = float(delta[b, d, t])
                if delta_bias is not None:
                    dt += float(delta_bias[d])
                if softplus:
                    dt = math.log1p(math.exp(dt))
                y = 0.0
                for n in range(N):
                    h[n] = (math.exp(dt * float(A[d, n])) * h[n] +
                            dt * float(Bg[n, t]) * float(u[b, d, t]))
                    y += float(Cg[n, t]) * h[n]
                if D is not None:
                    y += float(D[d]) * float(u[b, d, t])
                if z is not None:
                    zz = float(z[b, d, t])
                    y *= zz / (1.0 + math.exp(-zz))
                out[b, d, t] = y
            last[b, d] = torch.tensor(h, dtype=torch.float64)
    return out, last


def run(backend, x, softplus, grad_out=None, grad_last=None):
    """Output, last state and gradients of every given input."""
    leaves = {k: (v.clone().requires_grad_() if v is not None else None)
              for k, v in x.items()}
    out, last = selective_scan(
        **leaves, delta_softplus=softplus, return_last_state=True,
        backend=backend)
    if grad_out is None:
        return out, last, None
    loss = (out * grad_out).sum()
    if grad_last is not None:
        loss = loss + (last * grad_last).sum()
    names = [k for k in INPUTS if leaves[k] is not None]
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    return out, last, dict(zip(names, grads))


CASES = [
    # batch, dim, L, N, groups of B, groups of C, D, z, bias, softplus
    dict(batch=1, dim=4, length=1, N=3, groups=None, D=False, z=False,
         bias=False, softplus=False),
    dict(batch=2, dim=6, length=17, N=5, groups=None, D=True, z=True,
         bias=True, softplus=True),
    dict(batch=3, dim=8, length=33, N=4, groups=2, D=True, z=False,
         bias=False, softplus=False),
    dict(batch=2, dim=8, length=64, N=16, groups=4, D=True, z=True,
         bias=True, softplus=True),
    dict(batch=1, dim=4, length=129, N=2, groups=4, D=False, z=True,
         bias=False, softplus=True),
    dict(batch=2, dim=8, length=10, N=3, groups=2, c_groups=None, D=True,
         z=False, bias=True, softplus=False),
]


def case_id(c):
    return '-'.join(f'{k}{v}' for k, v in c.items())


def test_reference_matches_scalar_recurrence():
    for c in (CASES[1], CASES[2], CASES[5]):
        c = dict(c)
        softplus = c.pop('softplus')
        x = make_inputs(**dict(c, length=min(c['length'], 12)))
        out, last = selective_scan_reference(
            **x, delta_softplus=softplus, return_last_state=True)
        out_s, last_s = scalar_scan(*[x[k] for k in INPUTS], softplus)
        torch.testing.assert_close(out, out_s, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(last, last_s, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_cpu_matches_reference_float64(case, kernel):
    c = dict(case)
    softplus = c.pop('softplus')
    x = make_inputs(**c)
    g = torch.Generator().manual_seed(1)
    shape = x['u'].shape
    grad_out = torch.randn(*shape, generator=g, dtype=torch.float64)
    grad_last = torch.randn(
        shape[0], shape[1], x['A'].shape[1], generator=g, dtype=torch.float64)
    out_c, last_c, grads_c = run(kernel, x, softplus, grad_out, grad_last)
    out_r, last_r, grads_r = run('reference', x, softplus, grad_out,
                                 grad_last)
    assert out_c.dtype == torch.float64 and out_c.shape == shape
    assert last_c.shape == (shape[0], shape[1], x['A'].shape[1])
    torch.testing.assert_close(out_c, out_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last_c, last_r, rtol=1e-10, atol=1e-10)
    assert grads_c.keys() == grads_r.keys()
    for name in grads_r:
        assert grads_c[name].shape == x[name].shape, name
        torch.testing.assert_close(
            grads_c[name], grads_r[name], rtol=1e-9, atol=1e-9,
            msg=lambda m: f'gradient of {name}: {m}')


@pytest.mark.parametrize('kernel', KERNELS)
def test_cpu_without_last_state_and_many_slots(monkeypatch, kernel):
    """Gradient of ``out`` only, 72 channels per group (two blocks of
    lanes, the second one partial) and the partial dB/dC buffers forced to
    several slots per group (the race-free path used when there are more
    threads than batch x groups)."""
    monkeypatch.setattr(cpu if kernel == 'numba' else native, 'num_slots',
                        lambda *args: 3)
    x = make_inputs(1, 144, 23, 4, groups=2)
    g = torch.randn(1, 144, 23, dtype=torch.float64)
    _, _, grads_c = run(kernel, x, True, g)
    _, _, grads_r = run('reference', x, True, g)
    for name in grads_r:
        torch.testing.assert_close(grads_c[name], grads_r[name], rtol=1e-9,
                                   atol=1e-9)


@pytest.mark.parametrize('kernel', KERNELS)
def test_cpu_gradcheck(kernel):
    x = make_inputs(2, 4, 7, 3, groups=2)
    names = list(INPUTS)

    def fn(*args):
        kw = dict(zip(names, args))
        out, last = selective_scan(
            **kw, delta_softplus=True, return_last_state=True,
            backend=kernel)
        return out, last

    args = [x[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('kernel', KERNELS)
def test_cpu_no_grad_matches_grad_path(kernel):
    x = make_inputs(2, 8, 40, 4, groups=4)
    with torch.no_grad():
        out_ng, last_ng = selective_scan(
            **x, delta_softplus=True, return_last_state=True, backend=kernel)
    out_g, last_g, _ = run(kernel, x, True)
    torch.testing.assert_close(out_ng, out_g.detach(), rtol=0, atol=0)
    torch.testing.assert_close(last_ng, last_g.detach(), rtol=0, atol=0)


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('dim, groups', [(16, 4), (96, 2)])
def test_cpu_float32_close_to_float64_reference(kernel, dim, groups):
    """float32 at d_state 16: the native kernel's register-resident path
    (one partial and one full block of 16 channels per group for dim 96)."""
    x64 = make_inputs(2, dim, 300, 16, groups=groups)
    x32 = {k: (v.float() if v is not None else None) for k, v in x64.items()}
    g = torch.randn(2, dim, 300, dtype=torch.float64)
    out32, last32, grads32 = run(kernel, x32, True, g.float())
    out64, last64, grads64 = run('reference', x64, True, g)
    assert out32.dtype == torch.float32 and last32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last32.double(), last64, rtol=1e-4,
                               atol=1e-4)
    for name, g64 in grads64.items():
        assert grads32[name].dtype == torch.float32
        scale = g64.abs().max().item()
        torch.testing.assert_close(
            grads32[name].double(), g64, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_half_inputs(dtype, kernel):
    x64 = make_inputs(1, 8, 50, 4, groups=2)
    xh = {k: v.to(dtype) for k, v in x64.items()}
    out = selective_scan(**xh, delta_softplus=True, backend=kernel)
    assert out.dtype == dtype
    ref = selective_scan(
        **{k: v.double() for k, v in xh.items()},
        delta_softplus=True, backend='reference')
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)
    leaves = {k: v.clone().requires_grad_() for k, v in xh.items()}
    selective_scan(**leaves, delta_softplus=True, backend=kernel).sum(
    ).backward()
    for k, v in leaves.items():
        assert v.grad is not None and v.grad.dtype == dtype, k


@needs_numba
@needs_native
def test_numba_and_native_share_the_capped_checkpoint_interval():
    """Issue #19: the numba backend had its own, uncapped checkpoint interval
    ceil(sqrt(L)); both CPU kernels now take ``common.chunk_size`` (at most
    128 steps, the recompute buffers staying in L2). Past L = 128^2 that
    changes the number of checkpoints, never the numbers."""
    from semillie_mm.ops.selective_scan.common import chunk_size
    length = 20000  # ceil(sqrt(L)) = 142: the cap applies
    assert chunk_size(length) == 128
    assert chunk_size(1) == 1 and chunk_size(17) == 5
    x = make_inputs(1, 4, length, 2, z=False, seed=3)  # float64
    chunks, results = {}, {}
    for kernel in ('native', 'numba'):
        leaves = {k: (v.clone().requires_grad_() if v is not None else None)
                  for k, v in x.items()}
        out = selective_scan(**leaves, delta_softplus=True, backend=kernel)
        ckpt = out.grad_fn.saved_tensors[-1]
        # numba: (batch, dim, n_chunks, N); native: (batch, n_chunks, N, E)
        chunks[kernel] = ckpt.shape[2] if kernel == 'numba' else ckpt.shape[1]
        out.sum().backward()
        results[kernel] = [out.detach(), leaves['u'].grad, leaves['B'].grad]
    assert chunks == {'native': 157, 'numba': 157}  # ceil(20000 / 128)
    for a, b in zip(results['native'], results['numba']):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


@needs_numba
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_kernel_exp_and_log1p_accuracy(dtype):
    """The arithmetic exp/log1p of the kernels against float64 numpy."""
    from semillie_mm.ops.selective_scan.backends import numba_kernels as cpu_kernels

    import numpy as np
    np_dtype = np.dtype(dtype)
    eps = np.finfo(np_dtype).eps
    x = np.concatenate([np.linspace(-80, 80, 20001),
                        np.random.default_rng(0).normal(0, 5, 5000)])
    e = cpu_kernels.exp_array(x.astype(np_dtype))
    np.testing.assert_allclose(e, np.exp(x.astype(np_dtype)), rtol=3 * eps)
    assert np.isnan(cpu_kernels.exp_array(np.array([np.nan], np_dtype)))[0]
    assert cpu_kernels.exp_array(np.array([-np.inf, np.inf], np_dtype)
                                 ).tolist() == [0.0, np.inf]
    y = np.concatenate([[0.0], np.logspace(-30, 8, 5001),
                        np.linspace(0, 10, 5001)]).astype(np_dtype)
    np.testing.assert_allclose(cpu_kernels.log1p_array(y),
                               np.log1p(y.astype(np.float64)), rtol=4 * eps,
                               atol=0)


def test_reference_softplus_and_gate_semantics():
    """delta_bias is added before softplus; z gates after D."""
    x = make_inputs(1, 2, 5, 2, D=True, z=True, bias=True)
    out = selective_scan(**x, delta_softplus=True, backend='reference')
    manual = selective_scan(
        x['u'], F.softplus(x['delta'] + x['delta_bias'][:, None]), x['A'],
        x['B'], x['C'], backend='reference')
    manual = (manual + x['D'][:, None] * x['u']) * F.silu(x['z'])
    torch.testing.assert_close(out, manual)


# ---------------------------------------------------------- backend choice


class Spy:

    def __init__(self, monkeypatch):
        self.calls = []
        for mod, name in ((dispatch._numba, 'selective_scan_numba'),
                          (dispatch._native, 'selective_scan_native'),
                          (dispatch._cuda, 'selective_scan_cuda'),
                          (dispatch._reference, 'selective_scan_reference')):
            monkeypatch.setattr(mod, name, self.make(name))

    def make(self, name):

        def fn(u, *args, **kwargs):
            self.calls.append(name)
            return u

        return fn


def _kernels_here(monkeypatch, native_ok, numba_ok):
    # these tests choose what is built; falling back is what they test
    monkeypatch.delenv('SEMILLIE_REQUIRE_NATIVE', raising=False)
    monkeypatch.setattr(dispatch._native, 'native_available',
                        lambda: native_ok)
    monkeypatch.setattr(dispatch._numba, 'numba_available', lambda: numba_ok)


def test_backend_argument_and_env(monkeypatch):
    spy = Spy(monkeypatch)
    _kernels_here(monkeypatch, native_ok=False, numba_ok=True)
    x = make_inputs(1, 2, 3, 2)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    selective_scan(**x)
    selective_scan(**x, backend='reference')
    selective_scan(**x, backend='cpu')
    monkeypatch.setenv(dispatch.ENV_VAR, 'reference')
    selective_scan(**x)
    selective_scan(**x, backend='numba')  # the argument wins over the env
    monkeypatch.setenv(dispatch.ENV_VAR, 'CPU')
    selective_scan(**x)
    assert spy.calls == [
        'selective_scan_numba', 'selective_scan_reference',
        'selective_scan_numba', 'selective_scan_reference',
        'selective_scan_numba', 'selective_scan_numba'
    ]
    # with the extension built, 'auto' and 'cpu' take the C++ kernel and
    # 'numba' still forces numba
    _kernels_here(monkeypatch, native_ok=True, numba_ok=True)
    spy.calls.clear()
    monkeypatch.delenv(dispatch.ENV_VAR)
    selective_scan(**x)
    selective_scan(**x, backend='cpu')
    selective_scan(**x, backend='numba')
    selective_scan(**x, backend='native')
    monkeypatch.setenv(dispatch.ENV_VAR, 'numba')
    selective_scan(**x)
    assert spy.calls == [
        'selective_scan_native', 'selective_scan_native',
        'selective_scan_numba', 'selective_scan_native', 'selective_scan_numba'
    ]
    assert dispatch.available_backends('cpu') == ('native', 'numba',
                                                   'reference')
    monkeypatch.setenv(dispatch.ENV_VAR, 'fast')
    with pytest.raises(ValueError, match='SEMILLIE_SCAN_BACKEND'):
        selective_scan(**x)
    with pytest.raises(ValueError, match='unknown backend'):
        selective_scan(**x, backend='triton')


def test_backend_unavailable(monkeypatch):
    spy = Spy(monkeypatch)
    logged = []
    monkeypatch.setattr(dispatch, 'log_current',
                        lambda msg, level: logged.append((msg, level)))
    monkeypatch.setattr(dispatch, '_logged', set())
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    x = make_inputs(1, 2, 3, 2)
    with pytest.raises(RuntimeError, match='needs CUDA tensors'):
        selective_scan(**x, backend='cuda')
    _kernels_here(monkeypatch, native_ok=False, numba_ok=False)
    with pytest.raises(RuntimeError, match='needs numba'):
        selective_scan(**x, backend='numba')
    with pytest.raises(RuntimeError, match='needs the C\\+\\+ extension'):
        selective_scan(**x, backend='native')
    with pytest.raises(RuntimeError, match='extension .* or numba'):
        selective_scan(**x, backend='cpu')
    selective_scan(**x)  # auto without either: reference, with a warning
    assert spy.calls == ['selective_scan_reference']
    assert len(logged) == 1 and logged[0][1] == logging.WARNING
    assert '"reference"' in logged[0][0] and 'numba' in logged[0][0]
    assert dispatch.available_backends('cpu') == ('reference', )
    # without the extension, the numba fallback is logged with the reason
    _kernels_here(monkeypatch, native_ok=False, numba_ok=True)
    selective_scan(**x)
    assert spy.calls[-1] == 'selective_scan_numba'
    assert '"numba"' in logged[-1][0] and 'extension' in logged[-1][0]
    # float64 never goes to mamba-ssm's kernel
    assert 'cuda' not in dispatch.available_backends('cuda', torch.float64)


def test_choice_logged_once(monkeypatch):
    logged = []
    monkeypatch.setattr(dispatch, 'log_current',
                        lambda msg, level: logged.append(msg))
    monkeypatch.setattr(dispatch, '_logged', set())
    x = make_inputs(1, 2, 3, 2)
    for _ in range(3):
        selective_scan(**x, backend='reference')
    assert logged == [
        'selective_scan: using the "reference" backend (requested by the '
        'argument backend)'
    ]


# ------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    'change, match',
    [
        (dict(u=torch.zeros(2, 4)), 'u must be'),
        (dict(delta=torch.zeros(1, 4, 6)), 'delta must have the shape'),
        (dict(A=torch.zeros(3, 2)), 'A must be'),
        (dict(B=torch.zeros(1, 3, 5)), 'B must be'),
        (dict(C=torch.zeros(1, 3, 2, 5)), 'groups, which do not divide'),
        (dict(B=torch.zeros(4, 2)), 'constant'),
        (dict(D=torch.zeros(3)), 'D must be'),
        (dict(delta_bias=torch.zeros(4, 1)), 'delta_bias must be'),
        (dict(z=torch.zeros(1, 4, 4)), 'z must have the shape'),
    ],
    ids=lambda v: v if isinstance(v, str) else None)
def test_bad_shapes(change, match):
    x = make_inputs(1, 4, 5, 2, dtype=torch.float32)
    x.update(change)
    with pytest.raises(ValueError, match=match):
        selective_scan(**x, backend='reference')


def test_bad_dtype():
    x = make_inputs(1, 4, 5, 2)
    x['A'] = x['A'].to(torch.complex128)
    with pytest.raises(TypeError, match='real floating-point'):
        selective_scan(**x)



@pytest.mark.parametrize('kernel', KERNELS)
def test_cpu_scan_keeps_torch_thread_count(kernel):
    """numba's OpenMP layer must not change torch's intra-op threads (it
    raised them from 1 to 2 when torch's count came from OMP_NUM_THREADS
    and numba's previous count was restored)."""
    import os
    import subprocess
    import sys
    code = (
        'import torch\n'
        'from semillie_mm.ops.selective_scan import selective_scan\n'
        'before = torch.get_num_threads()\n'
        'g = torch.Generator().manual_seed(0)\n'
        'x = [torch.randn(*s, generator=g).requires_grad_() for s in '
        '((2, 8, 20), (2, 8, 20), (8, 4), (2, 2, 4, 20), (2, 2, 4, 20))]\n'
        'x[2].data = -x[2].data.abs()\n'
        f'out = selective_scan(*x, delta_softplus=True, backend="{kernel}")\n'
        'after_fwd = torch.get_num_threads()\n'
        'out.sum().backward()\n'
        'print("THREADS", before, after_fwd, torch.get_num_threads())\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stdout.splitlines() if x.startswith('THREADS')]
    assert line == ['THREADS 1 1 1'], res.stdout


@needs_native
@pytest.mark.parametrize('N', [16, 5])
def test_native_reads_strided_inputs(N):
    """u, delta, z as (batch, L, dim) buffers and B, C as (batch, G, L, N)
    buffers, seen in the interface's layouts (the kernel reads any strides),
    700 steps (several 256-step tiles and 27-step checkpoint chunks),
    float32 against the float64 reference."""
    x64 = make_inputs(2, 48, 700, N, groups=3)
    x32 = {}
    for k, v in x64.items():
        v = v.float()
        if k in ('u', 'delta', 'z'):
            v = v.transpose(1, 2).contiguous().transpose(1, 2)
            assert not v.is_contiguous()
        if k in ('B', 'C'):
            v = v.transpose(2, 3).contiguous().transpose(2, 3)
            assert not v.is_contiguous()
        x32[k] = v
    g = torch.randn(2, 48, 700, dtype=torch.float64)
    out32, last32, grads32 = run('native', x32, True, g.float())
    out64, last64, grads64 = run('reference', x64, True, g)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last32.double(), last64, rtol=1e-4,
                               atol=1e-4)
    for name, g64 in grads64.items():
        scale = g64.abs().max().item()
        torch.testing.assert_close(
            grads32[name].double(), g64, rtol=1e-3, atol=1e-4 * scale,
            msg=lambda m: f'gradient of {name}: {m}')


@needs_native
@pytest.mark.parametrize('gate', [False, True])
def test_native_streaming_outputs_match_the_cached_path(gate):
    """Outputs of 16 MiB and more are written with streaming stores
    (selective_scan.cpp, kStreamBytes): a (1, 512, 8192) float32 call with
    4 groups gives, bit for bit, what its four groups give as (1, 128, 8192)
    calls below the threshold (each channel and each group's dB/dC sums
    are computed the same way in both), forward and backward."""
    from semillie_mm.ops.cpu_ext import build
    from semillie_mm.ops.selective_scan.common import chunk_size
    mod = build.load()
    E, L, N, G = 512, 8192, 16, 4
    assert E * L * 4 >= 16 << 20 > (E // G) * L * 4
    x = make_inputs(1, E, L, N, groups=G, z=gate, dtype=torch.float32)
    x = {k: (v.detach() if v is not None else None) for k, v in x.items()}
    dout = torch.randn(1, E, L)
    K = chunk_size(L)

    def call(u, delta, A, B, C, D, z, bias, g):
        out, last, ck = mod.scan_fwd(u, delta, A, B, C, D, z, bias, True, K,
                                     True)
        grads = mod.scan_bwd(u, delta, A, B, C, D, z, bias, True, K, ck, g,
                             None, 1)
        return [out, last, ck] + list(grads)

    big = call(x['u'], x['delta'], x['A'], x['B'], x['C'], x['D'], x['z'],
               x['delta_bias'], dout)
    cpg = E // G
    parts = []
    for g in range(G):
        c = slice(g * cpg, (g + 1) * cpg)
        parts.append(call(
            x['u'][:, c].contiguous(), x['delta'][:, c].contiguous(),
            x['A'][c].contiguous(), x['B'][:, g:g + 1].contiguous(),
            x['C'][:, g:g + 1].contiguous(), x['D'][c].contiguous(),
            x['z'][:, c].contiguous() if gate else None,
            x['delta_bias'][c].contiguous(), dout[:, c].contiguous()))
    # out, last, ckpt (n_chunks, N, E), du, ddelta, dz, dA, dB, dC, dD, dbias
    cat_dims = [1, 1, 3, 1, 1, 1, 0, 1, 1, 0, 0]
    names = ['out', 'last', 'ckpt', 'du', 'ddelta', 'dz', 'dA', 'dB', 'dC',
             'dD', 'dbias']
    for i, (name, dim) in enumerate(zip(names, cat_dims)):
        if name == 'dz' and not gate:
            continue
        whole = torch.cat([p[i] for p in parts], dim)
        assert torch.equal(big[i], whole), name
