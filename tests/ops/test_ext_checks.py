"""Argument checks of the C++ CPU extension (``csrc/``): every tensor
argument of every exported kernel refuses a tensor on another device (a
meta tensor stands in for CUDA on a CPU-only machine), a sparse tensor and
a wrong dtype with a RuntimeError that names it, and the outputs written in
place refuse expanded (self-overlapping) tensors and memory shared with an
input, instead of crashing or silently computing a wrong result (an
expanded ``y`` or ``out`` aliasing ``x`` did before these checks). A
refused call leaves its outputs untouched."""
from semillie_mm.ops import depthwise_conv as dw
from semillie_mm.ops.cpu_ext import build as ext

import pytest
import torch

needs_ext = pytest.mark.skipif(
    not ext.available(),
    reason=f'CPU extension not built: {ext.unavailable_reason()}')

B, H, W, E, N, R, K = 1, 4, 5, 16, 4, 2, 3
L = H * W
CHUNK = 4
NCHUNKS = -(-L // CHUNK)


def _dw_fwd_args():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, H, W, E, generator=g)
    return {
        'x': x,
        'w': torch.randn(K * K, E, generator=g),
        'bias': torch.randn(E, generator=g),
        'out': torch.empty_like(x)
    }


def _dw_wgrad_args():
    g = torch.Generator().manual_seed(1)
    return {
        'x': torch.randn(B, H, W, E, generator=g),
        'g': torch.randn(B, H, W, E, generator=g)
    }


def _ss2d_common(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        'u': torch.randn(B, L, E, generator=g),
        'xdbl': torch.randn(B, L, R + 2 * N, generator=g),
        'Wdt': torch.randn(E, R, generator=g),
        'bias': torch.randn(E, generator=g),
        'A': -torch.rand(E, N, generator=g) - 0.5,
        'D': torch.randn(E, generator=g)
    }


def _ss2d_fwd_args():
    a = _ss2d_common(2)
    a.update(y=torch.zeros(B, L, E), ckpt=torch.empty(B, NCHUNKS, N, E))
    return a


def _ss2d_bwd_args():
    a = _ss2d_common(3)
    ck = torch.empty(B, NCHUNKS, N, E)
    ext.load().fwd(*a.values(), torch.zeros(B, L, E), ck, H, W, 0, CHUNK)
    a.update(dy=torch.randn(B, L, E),
             ckpt=ck,
             du=torch.zeros(B, L, E),
             dxdbl=torch.zeros(1, B, L, R + 2 * N))
    return a


def _scan_common(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        'u': torch.randn(B, E, L, generator=g),
        'delta': torch.rand(B, E, L, generator=g),
        'A': -torch.rand(E, N, generator=g) - 0.5,
        'B': torch.randn(B, 1, N, L, generator=g),
        'C': torch.randn(B, 1, N, L, generator=g),
        'D': torch.randn(E, generator=g),
        'z': torch.randn(B, E, L, generator=g),
        'delta_bias': torch.randn(E, generator=g)
    }


def _scan_bwd_args():
    a = _scan_common(5)
    ck = ext.load().scan_fwd(*a.values(), True, CHUNK, True)[2]
    a.update(ckpt=ck, dout=torch.randn(B, E, L), dlast=torch.randn(B, E, N))
    return a


def _call(fn, a):
    mod = ext.load()
    if fn == 'dw_conv_fwd':
        return mod.dw_conv_fwd(a['x'], a['w'], a['bias'], a['out'], K)
    if fn == 'dw_conv_wgrad':
        return mod.dw_conv_wgrad(a['x'], a['g'], K)
    if fn == 'fwd':
        return mod.fwd(a['u'], a['xdbl'], a['Wdt'], a['bias'], a['A'], a['D'],
                       a['y'], a['ckpt'], H, W, 0, CHUNK)
    if fn == 'bwd':
        return mod.bwd(a['u'], a['xdbl'], a['Wdt'], a['bias'], a['A'], a['D'],
                       a['dy'], a['ckpt'], a['du'], a['dxdbl'], H, W, 0, CHUNK)
    if fn == 'scan_fwd':
        return mod.scan_fwd(a['u'], a['delta'], a['A'], a['B'], a['C'], a['D'],
                            a['z'], a['delta_bias'], True, CHUNK, True)
    assert fn == 'scan_bwd'
    return mod.scan_bwd(a['u'], a['delta'], a['A'], a['B'], a['C'], a['D'],
                        a['z'], a['delta_bias'], True, CHUNK, a['ckpt'],
                        a['dout'], a['dlast'], 1)


ARGS = {
    'dw_conv_fwd': _dw_fwd_args,
    'dw_conv_wgrad': _dw_wgrad_args,
    'fwd': _ss2d_fwd_args,
    'bwd': _ss2d_bwd_args,
    'scan_fwd': lambda: _scan_common(4),
    'scan_bwd': _scan_bwd_args,
}
# (exported function, tensor argument) for every tensor argument
CASES = [(fn, name) for fn, make in [
    ('dw_conv_fwd', ('x', 'w', 'bias', 'out')),
    ('dw_conv_wgrad', ('x', 'g')),
    ('fwd', ('u', 'xdbl', 'Wdt', 'bias', 'A', 'D', 'y', 'ckpt')),
    ('bwd', ('u', 'xdbl', 'Wdt', 'bias', 'A', 'D', 'dy', 'ckpt', 'du',
             'dxdbl')),
    ('scan_fwd', ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')),
    ('scan_bwd', ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias', 'ckpt',
                  'dout', 'dlast')),
] for name in make]


@needs_ext
@pytest.mark.parametrize('fn,name', CASES)
def test_valid_arguments_run(fn, name):
    """The baseline of the refusals below: the unchanged call works."""
    _call(fn, ARGS[fn]())


@needs_ext
@pytest.mark.parametrize('fn,name', CASES)
def test_other_device_is_refused(fn, name):
    a = ARGS[fn]()
    a[name] = a[name].to('meta')
    with pytest.raises(RuntimeError, match=rf'\b{name} must be .*CPU'):
        _call(fn, a)


@needs_ext
@pytest.mark.parametrize('fn,name', CASES)
def test_sparse_is_refused(fn, name):
    a = ARGS[fn]()
    a[name] = a[name].to_sparse()
    with pytest.raises(RuntimeError, match=rf'\b{name} must be .*CPU'):
        _call(fn, a)


@needs_ext
@pytest.mark.parametrize('fn,name', CASES)
def test_wrong_dtype_is_refused(fn, name):
    a = ARGS[fn]()
    a[name] = a[name].to(torch.int32)
    with pytest.raises(RuntimeError, match=rf'\b{name}\b.* must'):
        _call(fn, a)


@needs_ext
def test_empty_ckpt_on_another_device_is_refused():
    """ss2d fwd takes an empty ckpt for 'no checkpoints'; its device still
    has to be the CPU."""
    a = _ss2d_fwd_args()
    a['ckpt'] = torch.empty(0, device='meta')
    with pytest.raises(RuntimeError, match='ckpt must be a CPU tensor'):
        _call('fwd', a)
    a['ckpt'] = torch.empty(0)
    _call('fwd', a)


SELF_OVERLAP = 'more than one element of the written-to tensor'
SHARED = 'some elements of the input tensor and the written-to tensor'


def _shared_with(t, shape, offset):
    """A contiguous tensor of ``shape`` whose memory starts ``offset``
    elements into ``t``'s (t must be contiguous)."""
    n = 1
    for s in shape:
        n *= s
    buf = torch.empty(max(t.numel(), offset + n))
    buf[:t.numel()] = t.reshape(-1)
    return buf[:t.numel()].view(t.shape), buf[offset:offset + n].view(shape)


@needs_ext
def test_dw_conv_out_aliasing_an_input_is_refused():
    a = _dw_fwd_args()
    x0 = a['x'].clone()
    a['out'] = a['x']  # in place: rows still to be read get overwritten
    with pytest.raises(RuntimeError, match=SHARED):
        _call('dw_conv_fwd', a)
    torch.testing.assert_close(a['x'], x0, rtol=0, atol=0)
    a = _dw_fwd_args()
    a['w'], a['out'] = _shared_with(a['w'], a['x'].shape, 3)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('dw_conv_fwd', a)
    a = _dw_fwd_args()
    a['bias'], a['out'] = _shared_with(a['bias'], a['x'].shape, 0)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('dw_conv_fwd', a)
    a = _dw_fwd_args()
    a['out'] = torch.empty(B, H, W, 1).expand(B, H, W, E)
    with pytest.raises(RuntimeError, match='contiguous'):
        _call('dw_conv_fwd', a)


@needs_ext
def test_ss2d_fwd_outputs_that_overlap_are_refused():
    good = _ss2d_fwd_args()
    _call('fwd', good)
    # y expanded along L: every pixel accumulates into the same row (this
    # ran and returned a wrong y before)
    a = _ss2d_fwd_args()
    a['y'] = torch.zeros(B, 1, E).expand(B, L, E)
    with pytest.raises(RuntimeError, match=SELF_OVERLAP):
        _call('fwd', a)
    assert not a['y'].any()
    a = _ss2d_fwd_args()
    a['y'] = a['u']  # y += scan(u) in place
    with pytest.raises(RuntimeError, match=SHARED):
        _call('fwd', a)
    torch.testing.assert_close(a['u'], _ss2d_fwd_args()['u'], rtol=0, atol=0)
    a = _ss2d_fwd_args()
    a['xdbl'], a['ckpt'] = _shared_with(a['xdbl'], (B, NCHUNKS, N, E), 8)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('fwd', a)
    a = _ss2d_fwd_args()
    a['y'], a['ckpt'] = _shared_with(a['y'], (B, NCHUNKS, N, E), 0)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('fwd', a)
    # the refused calls wrote nothing; a clean one still gives the result
    a = _ss2d_fwd_args()
    _call('fwd', a)
    torch.testing.assert_close(a['y'], good['y'], rtol=0, atol=0)


@needs_ext
def test_ss2d_bwd_outputs_that_overlap_are_refused():
    a = _ss2d_bwd_args()
    a['du'] = torch.zeros(B, 1, E).expand(B, L, E)
    with pytest.raises(RuntimeError, match=SELF_OVERLAP):
        _call('bwd', a)
    a = _ss2d_bwd_args()
    a['du'] = a['dy']
    with pytest.raises(RuntimeError, match=SHARED):
        _call('bwd', a)
    a = _ss2d_bwd_args()
    a['xdbl'], a['dxdbl'] = _shared_with(a['xdbl'], (1, B, L, R + 2 * N), 0)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('bwd', a)
    a = _ss2d_bwd_args()
    a['du'], a['dxdbl'] = _shared_with(a['du'], (1, B, L, R + 2 * N), 4)
    with pytest.raises(RuntimeError, match=SHARED):
        _call('bwd', a)


@needs_ext
def test_depthwise_conv2d_weight_on_another_device():
    """Through the Python wrapper: a CPU input with a weight elsewhere is a
    clean error, not a read of a null pointer."""
    x = torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 1, 3, 3, device='meta')
    with pytest.raises(RuntimeError, match='CPU'):
        dw.depthwise_conv2d(x, w)


def test_extra_flags_get_a_key_of_their_own(monkeypatch):
    """tools/asan_tests.sh builds an instrumented binary through
    SEMILLIE_EXT_EXTRA_CFLAGS / _LDFLAGS: a key of its own, and the default
    key unchanged when they are unset or empty."""
    monkeypatch.delenv(ext.EXTRA_CFLAGS_ENV, raising=False)
    monkeypatch.delenv(ext.EXTRA_LDFLAGS_ENV, raising=False)
    key = ext.cache_key()
    monkeypatch.setenv(ext.EXTRA_CFLAGS_ENV, '')
    monkeypatch.setenv(ext.EXTRA_LDFLAGS_ENV, ' ')
    assert ext.cache_key() == key
    monkeypatch.setenv(ext.EXTRA_CFLAGS_ENV, '-fsanitize=address -g')
    asan = ext.cache_key()
    assert asan != key
    assert ext._extra_flags(
        ext.EXTRA_CFLAGS_ENV) == ['-fsanitize=address', '-g']
    monkeypatch.setenv(ext.EXTRA_LDFLAGS_ENV, '-fsanitize=address')
    assert ext.cache_key() not in (key, asan)
