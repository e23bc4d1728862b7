"""Tests of the C++ scans' run-time kernel variants
(semillie_mm.ops.cpu_ext.variants and the extension's set_variant).

Every variant -- lanes 16 / 8, the four exp2 forms, the register-resident
d_state-16 backward, the SS2D forward's tile and prefetch distance -- is
forced in-process and compared with the PyTorch reference (fused SS2D and
the generic selective_scan, float32, d_state 16), each one restored to the
chosen variant afterwards. Also: that the settings are not ignored (some
give different bits, all give the reference's numbers), the choice from
/proc/cpuinfo on fake files, the parsing of SEMILLIE_KERNEL_VARIANT (also in
a fresh process through the loader) and the op-mix floor's checksums.
Skipped where the C++ extension is not built (tools/setup_env.sh).
"""
import itertools
import math
import os
import subprocess
import sys

from semillie_mm.ops import selective_scan
from semillie_mm.ops.cpu_ext import build as ext
from semillie_mm.ops.cpu_ext import variants
from semillie_mm.ops.selective_scan import ss2d_fused as fused
from semillie_mm.ops.selective_scan.common import chunk_size

import pytest
import torch
from test_selective_scan import make_inputs
from test_selective_scan import run as scan_run
from test_ss2d_fused import make_ss2d, run

needs_ext = pytest.mark.skipif(
    not fused.fused_available(),
    reason=f'the C++ extension is not built: {ext.unavailable_reason()}')

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.abspath(ext.__file__)


@pytest.fixture
def mod():
    """The extension; the variant in effect before the test is restored
    after it (later tests see the chosen one)."""
    m = ext.load()
    saved = variants.current(m)
    try:
        yield m
    finally:
        variants.apply(m, saved)


def with_variant(mod, **fields):
    """Set a variant (the fields not given: the binary's compiled defaults,
    ``issue10``) and check it took."""
    full = dict(variants.VARIANTS['issue10'], **fields)
    assert variants.apply(mod, full) == full
    assert variants.current(mod) == full
    return full


# --------------------------------------------------------------------------
# SS2D fused vs reference, float32, d_state 16
# --------------------------------------------------------------------------

#: (channels, H, W): 24 = a full block of 16 and a partial one of 8 (lanes
#: 8 skips the second pass there), 28 = a partial one of 12 (the second
#: pass of 4), 40 = two full and a partial one of 8; odd maps of 99 and 35
#: pixels (chunks of 10 and 7, several tiles, L no multiple of the tile)
SS2D_SHAPES = [(24, 9, 11), (28, 5, 7), (40, 5, 7)]

_ref_cache = {}


def ss2d_case(e, h, w):
    """Module, input, output gradient and the reference's output and
    gradients (computed once per shape)."""
    if (e, h, w) not in _ref_cache:
        m = make_ss2d(e, 16, 4, torch.float32)
        g = torch.Generator().manual_seed(5)
        x = torch.randn(2, e, h, w, generator=g)
        grad = torch.randn(2, e, h, w, generator=g)
        _ref_cache[(e, h, w)] = (m, x, grad, run(m, 'reference', x, grad))
    return _ref_cache[(e, h, w)]


def check_ss2d(e, h, w):
    m, x, grad, (y_r, g_r) = ss2d_case(e, h, w)
    y_f, g_f = run(m, 'fused', x, grad)
    torch.testing.assert_close(y_f, y_r, rtol=1e-3, atol=1e-4)
    names = ['x'] + [k for k, _ in m.named_parameters()]
    assert len(g_f) == len(names)
    for name, a, ref in zip(names, g_f, g_r):
        torch.testing.assert_close(a, ref, rtol=1e-3, atol=1e-4, msg=name)
    return y_f, g_f


def test_ss2d_shapes_cover_tiles_and_chunks():
    """The shapes give several chunks, L no multiple of any tile, and more
    than two tiles of 16 and 32 steps."""
    for _, h, w in SS2D_SHAPES:
        L = h * w
        assert L // chunk_size(L) >= 3
        assert all(L % t for t in variants.ALLOWED['tile'])
    assert max(h * w for _, h, w in SS2D_SHAPES) > 2 * 32


@needs_ext
@pytest.mark.parametrize('shape', SS2D_SHAPES, ids=str)
@pytest.mark.parametrize(
    'lanes, exp, bwd16',
    list(itertools.product((8, 16), (0, 1, 2, 3), (0, 1))),
    ids=lambda v: str(v))
def test_ss2d_variant_matches_reference(mod, shape, lanes, exp, bwd16):
    with_variant(mod, lanes=lanes, exp=exp, bwd16=bwd16)
    check_ss2d(*shape)


@needs_ext
@pytest.mark.parametrize('tile', variants.ALLOWED['tile'])
@pytest.mark.parametrize('ahead, pfy', ((0, 1), (1, 0), (1, 1), (8, 0)))
def test_ss2d_tile_and_prefetch_match_reference(mod, tile, ahead, pfy):
    """Each tile and prefetch distance, with and without the output rows'
    prefetch (with lanes 8 and the magic exp2, the settings furthest from
    the defaults), on 99 pixels: 7 tiles of 16, 4 of 32 (the last partial),
    a single partial one of 64 .. 256."""
    with_variant(mod, lanes=8, exp=2, tile=tile, ahead=ahead, pfy=pfy)
    check_ss2d(24, 9, 11)


@needs_ext
def test_ss2d_tile_multiple_of_length(mod):
    """L = 64: exactly 4 / 2 / 1 tiles of 16 / 32 / 64 steps, no partial
    one (chunks of 8: a chunk starts at each tile's first step)."""
    m = make_ss2d(24, 16, 4, torch.float32)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 24, 8, 8, generator=g)
    grad = torch.randn(1, 24, 8, 8, generator=g)
    y_r, g_r = run(m, 'reference', x, grad)
    for tile in (16, 32, 64):
        with_variant(mod, tile=tile, ahead=1)
        y_f, g_f = run(m, 'fused', x, grad)
        torch.testing.assert_close(y_f, y_r, rtol=1e-3, atol=1e-4)
        for a, ref in zip(g_f, g_r):
            torch.testing.assert_close(a, ref, rtol=1e-3, atol=1e-4)


@needs_ext
@pytest.mark.parametrize('shape', SS2D_SHAPES[::2], ids=str)
@pytest.mark.parametrize(
    'lanes, ahead, bwd16', [(16, 2, 1), (8, 1, 1), (16, 8, 0), (16, 0, 1)],
    ids=lambda v: str(v))
def test_ss2d_spread_prefetch_matches_reference(mod, shape, lanes, ahead,
                                                bwd16):
    """The prefetches spread through the recurrence (spread = 1): with the
    register backward and without, lanes 8 (the rows of a step asked
    twice), a distance of 1, 2 and 8 tiles (past the end of the map) and
    none; the same bits as spread = 0 (a prefetch changes no number)."""
    with_variant(mod, lanes=lanes, exp=1, ahead=ahead, bwd16=bwd16,
                 tile=16, spread=0)
    y0, g0 = check_ss2d(*shape)
    with_variant(mod, lanes=lanes, exp=1, ahead=ahead, bwd16=bwd16,
                 tile=16, spread=1)
    y1, g1 = check_ss2d(*shape)
    assert torch.equal(y0, y1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


# --------------------------------------------------------------------------
# the generic selective_scan (native backend) vs reference
# --------------------------------------------------------------------------


def scan_case(dim, groups):
    """float32 inputs, output gradient and the reference's output, last
    state and gradients (computed once per shape)."""
    if (dim, groups) not in _ref_cache:
        x = make_inputs(2, dim, 300, 16, groups=groups, dtype=torch.float32,
                        seed=dim)
        g = torch.randn(2, dim, 300,
                        generator=torch.Generator().manual_seed(dim))
        _ref_cache[dim, groups] = (x, g, scan_run('reference', x, True, g))
    return _ref_cache[dim, groups]


def assert_scan_close(got, ref):
    """A native scan's (out, last, grads) against the reference's."""
    out, last, grads = got
    out_r, last_r, grads_r = ref
    torch.testing.assert_close(out, out_r, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(last, last_r, rtol=1e-3, atol=1e-4)
    for name, r in grads_r.items():
        torch.testing.assert_close(grads[name], r, rtol=1e-3, atol=1e-4,
                                   msg=name)


@needs_ext
@pytest.mark.parametrize('lanes, exp',
                         list(itertools.product((8, 16), (0, 1, 2, 3))))
def test_selective_scan_variant_matches_reference(mod, lanes, exp):
    """dim 24 in 4 groups of 6 (one partial block per group: lanes 8 runs
    one pass of 6, or with dim 40 / 2 groups a full block and one of 4),
    L = 300 (two tiles of 256 steps, the second partial; chunks of 18)."""
    with_variant(mod, lanes=lanes, exp=exp)
    for dim, groups in ((24, 4), (40, 2)):
        x32, g, ref = scan_case(dim, groups)
        assert_scan_close(scan_run('native', x32, True, g), ref)


@needs_ext
@pytest.mark.parametrize('lanes, exp, softplus, gate',
                         [(16, 0, True, False), (16, 1, True, False),
                          (16, 2, False, False), (16, 3, True, False),
                          (8, 0, True, False), (8, 1, False, False),
                          (8, 2, True, True), (8, 3, True, True)])
def test_selective_scan_register_backward(mod, lanes, exp, softplus, gate):
    """d_state 16 under bwd16 = 1: lanes 16 without the gate takes the
    fused kernel's register path (recompute16 / adjoint16, AVX-512 only);
    lanes 8, and every lane width on a build without AVX-512, the 256-bit
    register steps (recompute_step16_v8 / adjoint_step16_v8), with the gate
    too. Against the reference with a last-state gradient (the adjoints'
    start), a partial block per group (6 of 16, or a full one and 4), L =
    150 (chunks of 13, the last partial), with and without softplus; and
    not bit-identical to bwd16 = 0, so the path really runs."""
    if lanes == 16 and not mod.avx512:
        pytest.skip('lanes 16 has no register path without AVX-512')
    if gate and lanes == 16:
        pytest.skip('the gate takes the per-step path on lanes 16')
    for dim, groups in ((24, 4), (40, 2)):
        x = make_inputs(2, dim, 150, 16, groups=groups, z=gate,
                        dtype=torch.float32, seed=dim + 1)
        if not softplus:  # dt = delta + bias itself: keep it positive
            x['delta'], x['delta_bias'] = (x['delta'].abs(),
                                           x['delta_bias'].abs())
        gen = torch.Generator().manual_seed(dim)
        g = torch.randn(2, dim, 150, generator=gen)
        gl = torch.randn(2, dim, 16, generator=gen)
        ref = scan_run('reference', x, softplus, g, gl)
        grads_of = {}
        for bwd16 in (0, 1):
            with_variant(mod, lanes=lanes, exp=exp, bwd16=bwd16)
            got = scan_run('native', x, softplus, g, gl)
            assert_scan_close(got, ref)
            grads_of[bwd16] = got[2]
        assert not all(torch.equal(grads_of[0][k], grads_of[1][k])
                       for k in grads_of[0])


@needs_ext
@pytest.mark.parametrize('bwd16', (0, 1))
def test_selective_scan_spread_prefetch_matches_reference(mod, bwd16):
    """spread = 1 in the generic scan (the next block's rows listed and
    prefetched a few lines a step): partial blocks, two tiles, chunks of
    18, with the gate (dim 24) and without it on the register backward
    (dim 40 when bwd16 = 1); the same bits as spread = 0."""
    for dim, groups, gate in ((24, 4, True), (40, 2, False)):
        x = make_inputs(2, dim, 300, 16, groups=groups, z=gate,
                        dtype=torch.float32, seed=dim + 2)
        gen = torch.Generator().manual_seed(dim)
        g = torch.randn(2, dim, 300, generator=gen)
        gl = torch.randn(2, dim, 16, generator=gen)
        ref = scan_run('reference', x, True, g, gl)
        res = []
        for spread in (0, 1):
            with_variant(mod, exp=1, bwd16=bwd16, spread=spread)
            res.append(scan_run('native', x, True, g, gl))
            assert_scan_close(res[-1], ref)
        assert torch.equal(res[0][0], res[1][0])
        assert torch.equal(res[0][1], res[1][1])
        assert all(torch.equal(res[0][2][k], res[1][2][k]) for k in ref[2])


# --------------------------------------------------------------------------
# the settings are not ignored
# --------------------------------------------------------------------------


@needs_ext
def test_variants_really_differ_ss2d(mod):
    """The register backward (bwd16) changes the gradients' last bits
    against the same reference. exp2 forms 2 (magic number) and 0 compute
    the same numbers by different instructions (asserted to float32
    rounding; which form runs shows in test_exp_clamp_variant_differs_on_
    underflow and in timings). lanes 8 vs 16 and tile/ahead compute the
    same float operations in the same order: bit-identical (asserted)."""
    if not mod.avx512:
        pytest.skip('without AVX-512 exp2 forms 0 and 1 are the magic one '
                    'and lanes 16 has no register backward')
    results = {}
    for key in ((16, 0, 0), (16, 2, 0), (8, 0, 0), (16, 0, 1)):
        lanes, exp, bwd16 = key
        with_variant(mod, lanes=lanes, exp=exp, bwd16=bwd16)
        results[key] = check_ss2d(24, 9, 11)
    y0, g0 = results[(16, 0, 0)]
    y2, g2 = results[(16, 2, 0)]
    torch.testing.assert_close(y2, y0, rtol=1e-6, atol=1e-6)
    _, gb = results[(16, 0, 1)]
    assert not all(torch.equal(a, b) for a, b in zip(g0, gb))
    y8, g8 = results[(8, 0, 0)]
    assert torch.equal(y0, y8)
    assert all(torch.equal(a, b) for a, b in zip(g0, g8))
    for tile, ahead in ((16, 0), (256, 8)):
        with_variant(mod, tile=tile, ahead=ahead)
        yt, gt = check_ss2d(24, 9, 11)
        assert torch.equal(y0, yt)
        assert all(torch.equal(a, b) for a, b in zip(g0, gt))


@needs_ext
def test_exp_clamp_variant_differs_on_underflow(mod):
    """exp2 forms 0 (clamped at 2^-126) and 1 (vscalefps alone) agree
    whenever dt A log2(e) >= -126; past it form 0 keeps 2^-126 where form 1
    gives the subnormal (or zero) that the reference gives: the same
    numbers to any tolerance, different bits."""
    if not mod.avx512:
        pytest.skip('without AVX-512 exp2 forms 0 and 1 are the magic one')
    x = make_inputs(1, 16, 4, 16, dtype=torch.float32, seed=3)
    x['delta'] = torch.full_like(x['delta'], 100.0)
    x['A'] = -2 - torch.rand(16, 16)  # dt A log2(e) < -288 for every state
    x['u'][:, :, 1:] = 0  # after step 0 the states only decay
    x['z'] = x['delta_bias'] = None
    outs = {}
    for exp in (0, 1):
        with_variant(mod, exp=exp)
        outs[exp] = selective_scan(**x, backend='native')
    ref = selective_scan(**x, backend='reference')
    for exp in (0, 1):
        torch.testing.assert_close(outs[exp], ref, rtol=1e-5, atol=1e-30)
    assert not torch.equal(outs[0], outs[1])
    assert torch.equal(outs[1][:, :, 0], outs[0][:, :, 0])
    # step 1: form 0 decays by 2^-126 (y ~ 1e-38), form 1 underflows to 0
    # like the reference; by step 2 both are 0
    assert (outs[0][:, :, 1] != 0).all()
    assert (outs[0][:, :, 1].abs() < 1e-30).all()
    assert (outs[1][:, :, 1:] == 0).all() and (ref[:, :, 1:] == 0).all()


@needs_ext
@pytest.mark.parametrize('lanes', (8, 16))
def test_exp_table_form_decays(mod, lanes):
    """exp2 form 3 (the table form: x rounded to eighths, 2^(j/8) from a
    table by a lane permute, a degree-3 polynomial) against float64, one
    decay per channel: with u = (1, 0), dt = (1, dt1), B and C one-hot on
    state 0 and no D, y[1] = exp(dt1 A[:, 0]) exactly but for the scan's
    own roundings (|dt1 A| <= 1, so x = dt1 A log2(e) is rounded by at most
    1.2e-7 of 2^x). 4096 channels: every entry of the table, every
    polynomial argument. The magic form (2) to the same bound, the two not
    bit-identical (form 3 really runs), and a NaN in A stays NaN in both
    (form 3 adds the exponent as an integer to a table entry, never to the
    polynomial's NaN)."""
    dim, N = 4096, 16
    gen = torch.Generator().manual_seed(11)
    dt1 = 0.05 + 0.95 * torch.rand(dim, generator=gen)
    A = -1.0 - 15.0 * torch.rand(dim, N, generator=gen)
    A[:, 0] = -torch.rand(dim, generator=gen) / dt1  # dt1 A in (-1, 0]
    A[7, 0] = float('nan')
    u = torch.zeros(1, dim, 2)
    u[..., 0] = 1.0
    delta = torch.ones(1, dim, 2)
    delta[0, :, 1] = dt1
    B = torch.zeros(1, N, 2)
    C = torch.zeros(1, N, 2)
    B[0, 0, 0] = C[0, 0, 1] = 1.0
    want = torch.exp(dt1.double() * A[:, 0].double())
    ok = torch.ones(dim, dtype=torch.bool)
    ok[7] = False
    got = {}
    for exp in (2, 3):
        with_variant(mod, lanes=lanes, exp=exp, bwd16=1)
        y = selective_scan(u, delta, A, B, C, backend='native')[0, :, 1]
        got[exp] = y
        assert torch.isnan(y[7]), exp
        rel = (y[ok].double() / want[ok] - 1).abs().max().item()
        assert rel < 4e-7, (exp, rel)
    assert not torch.equal(got[2][ok], got[3][ok])


@needs_ext
def test_set_variant_round_trips_and_rejects(mod):
    for fields in ({'lanes': 8, 'exp': 2, 'tile': 16, 'ahead': 0,
                    'bwd16': 1, 'pfy': 0, 'spread': 1},
                   {'lanes': 16, 'exp': 1, 'tile': 256, 'ahead': 8,
                    'bwd16': 0, 'pfy': 1, 'spread': 0}):
        assert variants.apply(mod, fields) == fields
        assert list(mod.get_variant()) == [fields[k]
                                           for k in variants.FIELDS]
    before = list(mod.get_variant())
    for bad in ((4, 0, 64, 2, 0, 1, 0), (16, 4, 64, 2, 0, 1, 0),
                (16, -1, 64, 2, 0, 1, 0), (16, 0, 8, 2, 0, 1, 0),
                (16, 0, 512, 2, 0, 1, 0), (16, 0, 64, 9, 0, 1, 0),
                (16, 0, 64, -1, 0, 1, 0), (16, 0, 64, 2, 2, 1, 0),
                (16, 0, 64, 2, 0, 2, 0), (16, 0, 64, 2, 0, 1, 2)):
        with pytest.raises(RuntimeError, match='must be'):
            mod.set_variant(*bad)
        assert list(mod.get_variant()) == before  # nothing half-set


# --------------------------------------------------------------------------
# variants.py: the CPU, the table, the environment variable
# --------------------------------------------------------------------------

_FLAGS_AVX2 = 'fpu sse sse2 avx avx2 fma bmi2'
_FLAGS_512 = _FLAGS_AVX2 + ' avx512f avx512dq avx512bw avx512vl'


def cpuinfo_text(vendor, family, flags, cpus=2):
    block = (f'processor\t: {{i}}\nvendor_id\t: {vendor}\n'
             f'cpu family\t: {family}\nmodel\t\t: 17\n'
             f'model name\t: Some CPU\n')
    if flags is not None:
        block += f'flags\t\t: {flags}\n'
    return ''.join(block.format(i=i) + '\n' for i in range(cpus))


@pytest.mark.parametrize('vendor, family, flags, name', [
    ('AuthenticAMD', 25, _FLAGS_512, 'zen4'),
    ('AuthenticAMD', 26, _FLAGS_512, 'zen5'),
    ('GenuineIntel', 6, _FLAGS_512, 'zen5'),
    ('AuthenticAMD', 25, _FLAGS_AVX2, 'avx2'),  # a Zen 3 (family 25 too)
    ('GenuineIntel', 6, _FLAGS_AVX2, 'avx2'),
    ('AuthenticAMD', 25, None, 'avx2'),  # no flags line
])
def test_cpu_info_and_choose(tmp_path, vendor, family, flags, name):
    path = tmp_path / 'cpuinfo'
    path.write_text(cpuinfo_text(vendor, family, flags))
    info = variants.cpu_info(str(path))
    assert info['vendor'] == vendor and info['family'] == family
    assert info['model'] == 17
    assert info['flags'] == (set(flags.split()) if flags else set())
    assert variants.choose(info) == (name, variants.VARIANTS[name])


def test_cpu_info_first_cpu_only_and_missing_file(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(cpuinfo_text('AuthenticAMD', 25, _FLAGS_512, cpus=1) +
                    cpuinfo_text('GenuineIntel', 6, _FLAGS_AVX2, cpus=1))
    info = variants.cpu_info(str(path))
    assert info['vendor'] == 'AuthenticAMD' and 'avx512f' in info['flags']
    missing = variants.cpu_info(str(tmp_path / 'absent'))
    assert missing == dict(vendor='', family=-1, model=-1, flags=set())
    assert variants.choose(missing)[0] == 'avx2'
    garbled = tmp_path / 'garbled'
    garbled.write_text('cpu family\t: x86\n')  # not a number: unknown
    assert variants.cpu_info(str(garbled))['family'] == -1


def test_table_within_allowed():
    assert variants.DEFAULT in variants.VARIANTS
    for fields in variants.VARIANTS.values():
        assert tuple(fields) == variants.FIELDS
        for k, v in fields.items():
            assert v in variants.ALLOWED[k]


def test_parse():
    for name, fields in variants.VARIANTS.items():
        assert variants.parse(name) == fields
        assert variants.parse(f'  {name} ') == fields
    zen5 = variants.VARIANTS['zen5']
    assert variants.parse('lanes=8') == dict(zen5, lanes=8)
    assert variants.parse(' lanes = 8 , exp=2,, ') == dict(zen5, lanes=8,
                                                           exp=2)
    zen4 = variants.VARIANTS['zen4']
    assert variants.parse('tile=16,ahead=0', zen4) == dict(zen4, tile=16,
                                                           ahead=0)
    assert variants.parse('', zen4) == zen4
    # the base is copied, never changed
    assert zen4 == dict(lanes=16, exp=1, tile=64, ahead=2, bwd16=1, pfy=0,
                        spread=1)


@pytest.mark.parametrize('spec, match', [
    ('zen9', 'neither a variant'),
    ('lanes=8,turbo', 'neither a variant'),
    ('width=8', 'unknown field'),
    ('lanes=eight', 'lanes must be one of'),
    ('lanes=12', 'lanes must be one of'),
    ('exp=4', 'exp must be one of'),
    ('tile=48', 'tile must be one of'),
    ('ahead=9', 'ahead must be one of'),
    ('bwd16=2', 'bwd16 must be one of'),
    ('lanes=', 'lanes must be one of'),
])
def test_parse_rejects(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        variants.parse(spec)
    assert str(info.value).startswith(f'{variants.VARIANT_ENV}=')


def test_requested_honours_env(monkeypatch):
    monkeypatch.delenv(variants.VARIANT_ENV, raising=False)
    assert variants.requested() == variants.choose()
    monkeypatch.setenv(variants.VARIANT_ENV, '  ')
    assert variants.requested() == variants.choose()
    monkeypatch.setenv(variants.VARIANT_ENV, 'avx2')
    assert variants.requested() == ('avx2', variants.VARIANTS['avx2'])
    monkeypatch.setenv(variants.VARIANT_ENV, 'lanes=8,exp=2')
    name, fields = variants.choose()
    assert variants.requested() == (f'{name}+lanes=8,exp=2',
                                    dict(fields, lanes=8, exp=2))
    monkeypatch.setenv(variants.VARIANT_ENV, 'exp=7')
    with pytest.raises(ValueError, match=variants.VARIANT_ENV):
        variants.requested()


def _fresh_process(spec):
    """build.load() in a fresh process, build.py loaded from its file (as
    tools/setup_env.sh runs it: only torch is imported, the same load())."""
    code = ('import importlib.util, sys\n'
            f'spec = importlib.util.spec_from_file_location("b", {BUILD!r})\n'
            'build = importlib.util.module_from_spec(spec)\n'
            'spec.loader.exec_module(build)\n'
            'mod = build.load()\n'
            'print(list(mod.get_variant()))\n')
    env = dict(os.environ, SEMILLIE_KERNEL_VARIANT=spec, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@needs_ext
def test_env_variant_in_fresh_process():
    proc = _fresh_process('lanes=8,exp=2')
    assert proc.returncode == 0, proc.stderr
    # the variant of this binary: an AVX2 build (the proxy) takes avx2's
    avx512 = bool(getattr(ext.load(), 'avx512', True))
    fields = dict(variants.choose(avx512_build=avx512)[1], lanes=8, exp=2)
    assert proc.stdout.strip() == str([fields[k] for k in variants.FIELDS])
    proc = _fresh_process('lanes=8,exp=9')
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('ValueError: SEMILLIE_KERNEL_VARIANT=')
    assert 'exp must be one of' in last


# --------------------------------------------------------------------------
# the op-mix floor (benchmarks/harness.py times it; here only its numbers)
# --------------------------------------------------------------------------


@needs_ext
def test_opmix_floor_checksums():
    sums = {}
    for kind, lanes, exp in itertools.product((0, 1), (8, 16), (0, 1, 2, 3)):
        s = mod_opmix(kind, lanes, exp)
        assert math.isfinite(s) and s != 0, (kind, lanes, exp)
        sums[kind, lanes, exp] = s
    for exp in (0, 1, 2, 3):  # lanes: the same math in other vector widths
        assert sums[0, 8, exp] == pytest.approx(sums[0, 16, exp], rel=1e-5)
    for lanes in (8, 16):  # exp2 forms: the same function to float32 rounding
        for exp in (1, 2, 3):
            assert sums[0, lanes, exp] == pytest.approx(sums[0, lanes, 0],
                                                        rel=1e-4)


def mod_opmix(kind, lanes, exp, steps=64, reps=2):
    """The checksum of one thread (the floor runs on every thread)."""
    m = ext.load()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        return m.opmix_floor(kind, lanes, exp, steps, reps)
    finally:
        torch.set_num_threads(previous)


@needs_ext
@pytest.mark.parametrize('args', [
    (2, 16, 0, 64, 1), (-1, 16, 0, 64, 1), (0, 4, 0, 64, 1),
    (0, 32, 0, 64, 1), (0, 16, 4, 64, 1), (1, 16, -1, 64, 1),
    (0, 16, 0, 0, 1), (0, 16, 0, 4097, 1), (0, 16, 0, 64, 0),
])
def test_opmix_floor_rejects(args):
    with pytest.raises(RuntimeError, match='must be'):
        ext.load().opmix_floor(*args)
