"""The CPU path of SemiLLIENet against issue #10's targets, in one run.

Prints every row of the issue's table as a ratio measured in this run, for
this checkout ("new") and, side by side, an older commit of the project
("old", a git worktree), plus two peers on the same selective-scan call: the
'reference' backend and mambapy's ``pscan`` (optional,
``pip install -r requirements/benchmarks.txt``).

    python benchmarks/bench_cpu_path.py [--quick | --dry-run] [--out R.json]
        [--old-root /work/wt-old | --no-old] [--rows fwd,train,...]
        [--rounds N]

Rows (``--rows`` picks a subset): ``fwd`` (256x256 no-grad forward / "sgemm
floor" = model MACs / the machine's sgemm rate), ``train`` (forward + L1 +
backward, batch 8 x 128x128, / 3 x its floor; peak RSS), ``train_nocache``
(the same with torch's allocator), ``big`` (1920x1080 untiled forward: peak
RSS, time), ``scan`` (the selective scan of one SS2D call, the fused SS2D
kernel alone and the SS2D layer, ns per element and thread; the peers),
``loop`` / ``loop_raw`` (two concurrent small training loops, with / without
``CPUThreadGovernor``, vs one alone), ``demo`` (two concurrent
``semillie_demo.py`` trainings vs one), ``first`` (the first CPU scan in a
fresh process). Model MACs: :func:`semillie_mm.utils.flops.count_macs`.
Every measurement is a child process (``harness``; ``PYTHONPATH`` = the
variant's root); ``--quick`` and ``--dry-run`` shrink every size. How each
figure is obtained, and the results: docs/benchmarks.md, "CPU path".

``--rounds N`` times the ``fwd``, ``train`` and ``scan`` rows N times, the
two checkouts alternating (new, old; then old, new; ...): each row keeps
its fastest round, and the new / old ratio of every round is printed (min /
median / max). On a shared host whose speed moves by 10-20 % within
minutes, the ratio of two rows timed minutes apart says little; the median
of rounds timed side by side says more.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import statistics
import sys
import tempfile
import time

import harness
from harness import GiB, log, wait_all
from harness import failure as _fail

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)

# the issue's targets: (row key, comparison, value)
TARGETS = {
    'fwd': 2.5,
    'train': 2.5,
    'train_rss_gb': 4.0,
    'big_rss_gb': 6.0,
    'scan_fwd_ns': 0.35,
    'scan_fwdbwd_ns': 1.2,
    'kernel_fwd_ns': 0.35,
    'kernel_fwdbwd_ns': 1.2,
    # issue #23: per machine, as ratios to its own op-mix floor
    'scan_fwd_x': 1.5,
    'scan_fwdbwd_x': 1.5,
    'kernel_fwd_x': 1.5,
    'kernel_fwdbwd_x': 1.5,
    'scac_fwd_x': 1.5,
    'scac_fwdbwd_x': 1.5,
    'scac_fwd_ns': 0.35,
    'scac_fwdbwd_ns': 1.2,
    # the layer includes the x_proj / out_proj GEMMs and the layout copies,
    # which the forward row measures against the sgemm floor: no target
    'ss2d_fwd_ns': None,
    'ss2d_fwdbwd_ns': None,
    'loop': 2.5,
    'loop_raw': None,
    'train_nocache': None,
    'train_nocache_rss_gb': None,
    'demo': 2.5,
    'first_s': 5.0,
}

PROFILES = {
    'full':
    dict(
        fwd=(1, 256, 256),
        fwd_repeat=2,
        train=(8, 128, 128),
        train_repeat=2,
        big=(1, 1080, 1920),
        scan=dict(batch=1, dim=512, length=65536, d_state=16, groups=4),
        scan_repeat=3,
        ss2d=dict(batch=1, channels=128, h=256, w=256, d_state=16),
        kernel={
            '1x256x256': dict(batch=1, channels=128, h=256, w=256,
                              d_state=16, dt_rank=4),
            '8x128x128': dict(batch=8, channels=128, h=128, w=128,
                              d_state=16, dt_rank=4)},
        ref_length=1024,
        mambapy_length=2048,
        loop=dict(batch=2, size=64, iters=10),
        demo_iters=60,
        sgemm=4096),
    'quick':
    dict(
        fwd=(1, 128, 128),
        fwd_repeat=1,
        train=(2, 128, 128),
        train_repeat=1,
        big=(1, 270, 480),
        scan=dict(batch=1, dim=512, length=8192, d_state=16, groups=4),
        scan_repeat=2,
        ss2d=dict(batch=1, channels=128, h=64, w=128, d_state=16),
        kernel={'1x64x128': dict(batch=1, channels=128, h=64, w=128,
                                 d_state=16, dt_rank=4, repeat=1)},
        ref_length=256,
        mambapy_length=512,
        loop=dict(batch=2, size=64, iters=3),
        demo_iters=10,
        sgemm=2048),
    'dry-run':
    dict(
        fwd=(1, 32, 32),
        fwd_repeat=1,
        train=(1, 32, 32),
        train_repeat=1,
        big=(1, 32, 48),
        scan=dict(batch=1, dim=64, length=256, d_state=16, groups=4),
        scan_repeat=1,
        ss2d=dict(batch=1, channels=16, h=16, w=16, d_state=16),
        kernel={'1x16x16': dict(batch=1, channels=16, h=16, w=16,
                                d_state=16, dt_rank=1, repeat=1)},
        ref_length=128,
        mambapy_length=128,
        loop=dict(batch=2, size=16, iters=1),
        demo_iters=2,
        sgemm=256),
}
ALL_ROWS = ('fwd', 'train', 'train_nocache', 'big', 'scan', 'loop',
            'loop_raw', 'demo', 'first')


# --------------------------------------------------------------------------
# child side: one measurement per process
# --------------------------------------------------------------------------
_rss_bytes = harness.rss_bytes
_maxrss_bytes = harness.maxrss_bytes


def count_macs(net, x):
    """Model MACs of one forward of ``net`` on ``x``: those of one sample
    (:func:`semillie_mm.utils.flops.count_macs`, which traces the
    module-by-module forward: one sample keeps its memory under the measured
    step's) times the batch (every layer is per sample). None where the
    variant's package has no such function: the table then uses another
    variant's count of the same shapes."""
    try:
        from semillie_mm.utils.flops import count_macs as count
    except ImportError:  # an older commit
        return None
    return count(net, (x[:1], )) * x.shape[0]


def _import_model():
    import semillie_mm  # noqa: F401
    from semillie_mm.models.archs import SemiLLIENet

    import torch
    return torch, SemiLLIENet


def _cpu_cache(on):
    """Enable the caching CPU allocator, as the project's runner and
    inferencer do, where the variant has it: 'on', 'off' or 'absent'."""
    if not on:
        return 'off'
    try:
        from semillie_mm.ops.cpu_cache import enable_cpu_cache
    except ImportError:
        return 'absent'
    return 'on' if enable_cpu_cache() else 'absent'


def child_forward(batch, h, w, repeat, cache=True, count=True):
    """No-grad forward of the default SemiLLIENet: best time and MACs
    (``count``: counting traces the module-by-module path, whose memory is
    not the no-grad path's; the 1080p row does not count, so that its peak
    RSS is the forward's own)."""
    torch, SemiLLIENet = _import_model()
    threads0 = torch.get_num_threads()
    cache = _cpu_cache(cache)
    torch.manual_seed(0)
    net = SemiLLIENet().eval()
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 16))  # loads / compiles the kernels
    x = torch.rand(batch, 3, h, w)
    macs = count_macs(net, x) if count else None
    times = []
    rss0 = _rss_bytes()
    cpu = []
    with torch.no_grad():
        for i in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            net(x)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return dict(
        times=times,
        best_s=min(times),
        cpu_s=cpu[times.index(min(times))],
        macs=macs,
        rss_before_gb=rss0 / GiB,
        threads_before=threads0,
        threads_after=torch.get_num_threads(),
        cpu_cache=cache)


def child_train(batch, h, w, repeat, cache=True):
    """Forward + L1 loss + backward in train mode: best time and MACs."""
    torch, SemiLLIENet = _import_model()
    threads0 = torch.get_num_threads()
    cache = _cpu_cache(cache)
    torch.manual_seed(0)
    net = SemiLLIENet().train()
    net(torch.rand(1, 3, 16, 16)).abs().mean().backward()  # warm-up
    net.zero_grad(set_to_none=True)
    x = torch.rand(batch, 3, h, w)
    target = torch.rand(batch, 3, h, w)
    macs = count_macs(net, x)
    times, cpu = [], []
    rss0 = _rss_bytes()
    for i in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        loss = (net(x) - target).abs().mean()
        loss.backward()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        net.zero_grad(set_to_none=True)
        del loss
    return dict(
        times=times,
        best_s=min(times),
        cpu_s=cpu[times.index(min(times))],
        macs=macs,
        rss_before_gb=rss0 / GiB,
        threads_before=threads0,
        threads_after=torch.get_num_threads(),
        cpu_cache=cache)


def scan_mambapy(u, delta, A, B, C, D, delta_bias, delta_softplus=True):
    """The selective scan computed with mambapy's parallel scan ``pscan``
    (the way mambapy's own Mamba block calls it: the (batch, L, dim, N)
    decays and inputs are materialised, then scanned).

    Args: as :func:`semillie_mm.ops.selective_scan` (no z).

    Returns:
        Tensor: (batch, dim, L).
    """
    import torch.nn.functional as F
    from mambapy.pscan import pscan
    b, d, l = u.shape  # noqa: E741  (mambapy's names)
    g = B.shape[1]
    dt = delta + delta_bias.view(1, -1, 1)
    if delta_softplus:
        dt = F.softplus(dt)
    dt = dt.transpose(1, 2)  # (b, l, d)
    # (b, g, n, l) -> (b, l, d, n): channel c uses group c // (d // g)
    Bx = B.permute(0, 3, 1, 2).repeat_interleave(d // g, dim=2)
    Cx = C.permute(0, 3, 1, 2).repeat_interleave(d // g, dim=2)
    dA = (dt.unsqueeze(-1) * A).exp()  # (b, l, d, n)
    dBu = (dt * u.transpose(1, 2)).unsqueeze(-1) * Bx
    hs = pscan(dA, dBu)  # (b, l, d, n)
    y = (hs * Cx).sum(-1) + u.transpose(1, 2) * D
    return y.transpose(1, 2)


def child_scan(backend, mode, batch, dim, length, d_state, groups,
               cache=False, repeat=1):
    """A selective-scan call: wall and CPU seconds (the best of ``repeat``
    calls), extra peak memory (``cache``: with the caching CPU allocator, as
    under the project's runner and inferencer)."""
    import torch
    cache = _cpu_cache(cache)
    from semillie_mm.ops.selective_scan import selective_scan
    threads0 = torch.get_num_threads()
    grad = mode == 'fwd+bwd'

    def call(x, grad_out=None):
        if backend == 'mambapy':
            out = scan_mambapy(**x, delta_softplus=True)
        else:
            out = selective_scan(
                **x, delta_softplus=True,
                backend=None if backend == 'auto' else backend)
        if grad:
            out.backward(torch.ones_like(out) if grad_out is None else
                         grad_out)
        return out

    small = harness.scan_inputs(1, 2 * groups, 8, d_state, groups, grad)
    if grad:
        call(small)
    else:
        with torch.no_grad():
            call(small)
    x = harness.scan_inputs(batch, dim, length, d_state, groups, grad)
    grad_out = torch.randn_like(x['u']) if grad else None
    rss0 = _rss_bytes()
    best = None
    for _ in range(repeat):  # the best of `repeat` calls, as in a loop
        for v in x.values():
            v.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        if grad:
            call(x, grad_out)
        else:
            with torch.no_grad():
                call(x)
        r = (time.perf_counter() - t0, time.process_time() - c0)
        best = r if best is None or r[0] < best[0] else best
    return dict(
        seconds=best[0],
        cpu_seconds=best[1],
        repeat=repeat,
        extra_gb=max(0, _maxrss_bytes() - rss0) / GiB,
        elements=batch * dim * length * d_state,
        threads_before=threads0,
        threads=torch.get_num_threads(),
        cpu_cache=cache)


def child_ss2d(mode, batch, channels, h, w, d_state):
    """One SS2D layer (projections + the four-direction scan, the path the
    model takes by default): wall and CPU seconds, extra peak memory."""
    torch, _ = _import_model()
    from semillie_mm.models.archs import SS2D
    threads0 = torch.get_num_threads()
    grad = mode == 'fwd+bwd'
    torch.manual_seed(0)
    m = SS2D(channels, d_state=d_state)

    def call(x):
        if not grad:
            with torch.no_grad():
                return m(x)
        out = m(x)
        out.backward(torch.randn_like(out))
        return out

    call(torch.randn(1, channels, 8, 8, requires_grad=grad))  # warm-up
    x = torch.randn(batch, channels, h, w, requires_grad=grad)
    rss0 = _rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    call(x)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    return dict(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        extra_gb=max(0, _maxrss_bytes() - rss0) / GiB,
        elements=batch * m.num_directions * channels * h * w * d_state,
        threads_before=threads0,
        threads=torch.get_num_threads())


def child_kernel(batch, channels, h, w, d_state, dt_rank, repeat=3):
    """The fused SS2D scan kernel alone (the C++ extension's per-direction
    forward, and forward with checkpoints + backward, all four directions;
    no projections): best wall and its CPU seconds per pass."""
    torch, _ = _import_model()
    try:
        ext, fused = harness.fused_kernel_modules()
    except ImportError:
        return dict(absent='no fused kernel in this commit')
    mod = ext.load()
    if mod is None:
        return dict(absent=f'extension not built: {ext.unavailable_reason()}')
    fwd, fwdbwd, elements = harness.kernel_case(mod, fused, batch, channels,
                                                h, w, d_state, dt_rank)
    out = dict(elements=elements, threads=torch.get_num_threads())
    for name, f in (('fwd', fwd), ('fwd+bwd', fwdbwd)):
        f()  # warm-up
        best = None
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            r = (time.perf_counter() - t0, time.process_time() - c0)
            best = r if best is None or r[0] < best[0] else best
        out[name] = dict(seconds=best[0], cpu_seconds=best[1])
    return out


def child_check_peer(batch, dim, length, d_state, groups):
    """Max abs difference of mambapy's scan against the reference backend
    (forward and the input gradients), on a small size."""
    from semillie_mm.ops.selective_scan import selective_scan

    import torch
    outs = []
    for which in ('reference', 'mambapy'):
        x = harness.scan_inputs(batch, dim, length, d_state, groups, True)
        x = {k: v.detach().double().requires_grad_() for k, v in x.items()}
        if which == 'mambapy':
            out = scan_mambapy(**x)
        else:
            out = selective_scan(**x, delta_softplus=True,
                                 backend='reference')
        out.backward(torch.linspace(-1, 1, out.numel(),
                                    dtype=out.dtype).view_as(out))
        outs.append([out.detach()] + [x[k].grad for k in ('u', 'delta', 'B')])
    diff = max(float((a - b).abs().max()) for a, b in zip(*outs))
    scale = max(float(a.abs().max()) for a in outs[0])
    return dict(max_abs_diff=diff, scale=scale)


def child_loop(batch, size, iters, ready, go, governor=False):
    """A small training loop; waits for ``go`` (a file) after a warm-up
    iteration so that concurrent copies time the same interval. With
    ``governor`` every step starts with ``CPUThreadGovernor.update()`` (the
    call ``CPUThreadsHook`` makes in the runner), where the variant has it."""
    torch, SemiLLIENet = _import_model()
    threads0 = torch.get_num_threads()
    gov = None
    if governor:
        try:
            from semillie_mm.utils.cpu_threads import CPUThreadGovernor
        except ImportError:
            governor = 'absent'
        else:
            gov = CPUThreadGovernor()
    torch.manual_seed(0)
    net = SemiLLIENet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size)
    target = torch.rand(batch, 3, size, size)

    def step():
        if gov is not None:
            gov.update()
        opt.zero_grad(set_to_none=True)
        (net(x) - target).abs().mean().backward()
        opt.step()

    step()
    open(ready, 'w').close()
    deadline = time.time() + 1800
    while not osp.exists(go):
        if time.time() > deadline:
            raise RuntimeError('no go signal')
        time.sleep(0.01)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    seconds = time.perf_counter() - t
    return dict(
        seconds=seconds,
        per_iter_s=seconds / iters,
        threads_before=threads0,
        threads_after=torch.get_num_threads(),
        governor=governor)


def child_first(d_state=16, groups=4):
    """Import time, the first scan of an SS2D layer (fwd + bwd, tiny map,
    the model's default path), then the first plain ``selective_scan`` call
    (fwd + bwd, tiny, default CPU backend) in the same fresh process."""
    t0 = time.perf_counter()
    from semillie_mm.models.archs import SS2D
    from semillie_mm.ops.selective_scan import selective_scan

    import torch
    t_import = time.perf_counter() - t0
    torch.manual_seed(0)
    m = SS2D(16, d_state=d_state)
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    t = time.perf_counter()
    m(x).sum().backward()
    first = time.perf_counter() - t
    t = time.perf_counter()
    m(x).sum().backward()
    second = time.perf_counter() - t
    s = harness.scan_inputs(1, 2 * groups, 64, d_state, groups, True)
    t = time.perf_counter()
    selective_scan(**s, delta_softplus=True).sum().backward()
    first_plain = time.perf_counter() - t
    return dict(
        import_s=t_import,
        first_s=first,
        second_s=second,
        first_plain_scan_s=first_plain,
        threads=torch.get_num_threads())


def child_demo_prep(root):
    from semillie_mm.datasets.demo_data import prepare_demo_data
    prepare_demo_data(root)
    return dict(root=root)


def child_opmix():
    """The scan's op-mix floor (harness.opmix_floor) in this checkout's
    binary."""
    _import_model()
    out = harness.opmix_floor()
    try:
        from semillie_mm.ops.cpu_ext import build, variants
        mod = build.load()
        out['variant'] = list(variants.requested(
            bool(getattr(mod, 'avx512', True))))
    except ImportError:  # a checkout before the run-time variants
        pass
    return out


CHILDREN = dict(
    sgemm=harness.sgemm,
    opmix=child_opmix,
    forward=child_forward,
    train=child_train,
    scan=child_scan,
    ss2d=child_ss2d,
    kernel=child_kernel,
    check_peer=child_check_peer,
    loop=child_loop,
    first=child_first,
    demo_prep=child_demo_prep)


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------
class Runner:
    """Starts children of this script (or any command) for one variant.

    Args:
        name (str): 'new' or 'old'.
        root (str): the variant's repository root (on PYTHONPATH).
        scratch (str): folder for logs and work dirs.
        cap (float): RSS cap in bytes; reserve: MemAvailable floor.
        extra_env (dict): more environment variables.
    """

    def __init__(self, name, root, scratch, cap, reserve, extra_env=None):
        self.name, self.root = name, osp.abspath(root)
        self.scratch = scratch
        self.cap, self.reserve = cap, reserve
        self.env = dict(os.environ)
        self.env.pop('PYTHONPATH', None)
        self.env['PYTHONPATH'] = self.root
        self.env.update(extra_env or {})
        self.count = 0

    def start(self, child, params=None, cmd=None, cwd=None, env=None):
        self.count += 1
        tag = f'{self.name}-{self.count:02d}-{child}'
        if cmd is None:
            cmd = harness.child_command(__file__, child, params)
        e = dict(self.env)
        e.update(env or {})
        return harness.Job(cmd, e, cwd or self.root,
                           osp.join(self.scratch, tag + '.log'), self.cap,
                           self.reserve)

    def check(self, res):
        """Stop the benchmark if a child imported semillie_mm from
        anywhere but this variant's root."""
        got = res.get('semillie_file')
        want = osp.join(self.root, 'semillie_mm', '__init__.py')
        if got and osp.realpath(got) != osp.realpath(want):
            raise SystemExit(
                f'{self.name}: semillie_mm imported from {got}, not {want} '
                '(PYTHONPATH does not win over the installed package)')
        return res

    def run(self, child, params=None, **kw):
        return self.check(wait_all([self.start(child, params, **kw)])[0])


def extrapolate(r1, r2, l1, l2, length, key):
    """Proportional to L from the longer measurement (time and memory of
    the peers are linear in L with a negligible constant; on a shared
    machine the slope between two noisy points is not reliable). ``r1`` at
    ``l1`` is kept for the record only."""
    return r2[key] * length / l2


def measure_variant(run, prof, rows, out, scan_backend='auto'):
    """All rows for one variant (a Runner); results go into ``out``."""
    if 'first' in rows:
        log(f'[{run.name}] first scan in a fresh process')
        out['first'] = run.run('first')
        out['first_again'] = run.run('first')
    if 'fwd' in rows:
        b, h, w = prof['fwd']
        log(f'[{run.name}] forward {b}x{h}x{w}')
        out['fwd'] = run.run('forward', dict(batch=b, h=h, w=w,
                                             repeat=prof['fwd_repeat']))
    if 'train' in rows:
        b, h, w = prof['train']
        log(f'[{run.name}] training step {b}x{h}x{w}')
        out['train'] = run.run('train', dict(batch=b, h=h, w=w,
                                             repeat=prof['train_repeat']))
    if 'train_nocache' in rows:
        b, h, w = prof['train']
        log(f'[{run.name}] training step {b}x{h}x{w}, torch\'s allocator')
        out['train_nocache'] = run.run(
            'train', dict(batch=b, h=h, w=w, repeat=prof['train_repeat'],
                          cache=False))
    if 'big' in rows:
        b, h, w = prof['big']
        log(f'[{run.name}] untiled forward {b}x{h}x{w} (RSS cap '
            f'{run.cap / GiB:.1f} GB)')
        out['big'] = run.run('forward', dict(batch=b, h=h, w=w, repeat=1,
                                             count=False))
    if 'scan' in rows:
        for mode in ('fwd', 'fwd+bwd'):
            log(f'[{run.name}] scan {mode} ({scan_backend})')
            out[f'scan_{mode}'] = run.run(
                'scan', dict(backend=scan_backend, mode=mode,
                             repeat=prof['scan_repeat'], **prof['scan']))
            log(f'[{run.name}] scan {mode} ({scan_backend}), with the '
                'caching allocator')
            out[f'scac_{mode}'] = run.run(
                'scan', dict(backend=scan_backend, mode=mode, cache=True,
                             repeat=prof['scan_repeat'], **prof['scan']))
            log(f'[{run.name}] SS2D layer {mode}')
            out[f'ss2d_{mode}'] = run.run('ss2d',
                                          dict(mode=mode, **prof['ss2d']))
        for tag, shape in prof['kernel'].items():
            log(f'[{run.name}] fused kernel alone, {tag}')
            out[f'kernel_{tag}'] = run.run('kernel', shape)
    if 'loop' in rows:
        out['loop_solo'] = run_loops(run, prof, 1, True)[0]
        out['loop_pair'] = run_loops(run, prof, 2, True)
    if 'loop_raw' in rows:
        out['loop_raw_solo'] = run_loops(run, prof, 1, False)[0]
        out['loop_raw_pair'] = run_loops(run, prof, 2, False)
    if 'demo' in rows:
        out.update(run_demo(run, prof))


#: rows that --rounds interleaves (the timed ones of minutes at most)
ROUND_ROWS = ('fwd', 'train', 'scan')


def row_times(res):
    """The wall times a row's child reports: ``{'': s}`` for the model and
    scan rows, ``{'fwd': s, 'fwd+bwd': s}`` for the fused kernel's; ``{}``
    for a failed or absent row."""
    if not isinstance(res, dict):
        return {}
    for key in ('best_s', 'seconds'):
        if isinstance(res.get(key), (int, float)):
            return {'': float(res[key])}
    return {k: float(res[k]['seconds']) for k in ('fwd', 'fwd+bwd')
            if isinstance(res.get(k), dict) and 'seconds' in res[k]}


def merge_rounds(rounds):
    """One result per row from the interleaved rounds of one checkout: the
    round with the least wall time (summed over the row's passes), as it
    came, with ``round_times`` (each round's :func:`row_times`); a row no
    round timed keeps the last round's result.

    Args:
        rounds (list[dict]): per round, the row results.

    Returns:
        dict: the row results.
    """
    out = {}
    for key in rounds[0]:
        got = [r[key] for r in rounds if key in r]
        times = [row_times(v) for v in got]
        timed = [(sum(t.values()), i) for i, t in enumerate(times) if t]
        if timed:
            out[key] = dict(got[min(timed)[1]], round_times=times)
        else:  # failed or absent in every round: the last, as it came
            out[key] = got[-1]
    return out


def round_ratios(new_rounds, old_rounds):
    """Per row and pass, the new / old wall-time ratios of rounds that
    measured both.

    Args:
        new_rounds, old_rounds (list[dict]): per round, each checkout's
            row results.

    Returns:
        dict: ``{'row' or 'row fwd+bwd': [ratio per round]}``.
    """
    out = {}
    for new, old in zip(new_rounds, old_rounds):
        for key in new:
            tn, to = row_times(new[key]), row_times(old.get(key))
            for part, t in tn.items():
                if to.get(part):
                    name = f'{key} {part}'.strip()
                    out.setdefault(name, []).append(t / to[part])
    return out


def run_loops(run, prof, copies, governor):
    log(f'[{run.name}] training loop x{copies}'
        f'{" (CPUThreadGovernor)" if governor else ""}')
    tag = f'{run.name}-loop{copies}-{time.time_ns()}'
    go = osp.join(run.scratch, tag + '.go')
    readies = [osp.join(run.scratch, f'{tag}.{i}.ready')
               for i in range(copies)]
    jobs = [
        run.start('loop',
                  dict(ready=r, go=go, governor=governor, **prof['loop']))
        for r in readies
    ]

    def release():
        if not osp.exists(go) and all(osp.exists(r) for r in readies):
            open(go, 'w').close()
        # a failed copy must not keep the others waiting
        if not osp.exists(go) and any(j.status is not None for j in jobs):
            open(go, 'w').close()

    return wait_all(jobs, on_poll=release)


def run_demo(run, prof):
    """Solo and two concurrent tools/train.py runs of the demo config."""
    res = {}
    cwd = osp.join(run.scratch, f'demo-{run.name}')
    os.makedirs(cwd, exist_ok=True)
    log(f'[{run.name}] demo data')
    prep = run.run('demo_prep', dict(root=osp.join(cwd, 'data', 'demo')))
    if 'error' in prep:
        return dict(demo_solo=prep, demo_pair=[prep, prep])
    iters = prof['demo_iters']

    def cmd(i):
        return [
            sys.executable,
            osp.join(run.root, 'tools', 'train.py'),
            osp.join(run.root, 'configs', 'semillie_demo.py'), '--work-dir',
            osp.join(cwd, f'work_{time.time_ns()}_{i}'), '--cfg-options',
            f'train_cfg.max_iters={iters}'
        ]

    log(f'[{run.name}] demo training x1 ({iters} iterations)')
    res['demo_solo'] = run.run('train.py', cmd=cmd(0), cwd=cwd)
    log(f'[{run.name}] demo training x2 ({iters} iterations)')
    jobs = [run.start('train.py', cmd=cmd(i), cwd=cwd) for i in (1, 2)]
    res['demo_pair'] = wait_all(jobs)
    return res


def measure_peers(run, prof, peers, out):
    """Reference and mambapy on the scan call, at shorter lengths,
    extrapolated in proportion to the full length."""
    shape = dict(prof['scan'])
    length = shape.pop('length')
    for peer in peers:
        l1 = prof['ref_length'] if peer == 'reference' else \
            prof['mambapy_length']
        l2 = 2 * l1
        if peer == 'mambapy':
            chk = run.run('check_peer', dict(batch=1, dim=8, length=32,
                                             d_state=4, groups=2))
            out['mambapy_check'] = chk
            if 'error' in chk:
                log(f'(mambapy not usable: {chk["error"].splitlines()[-1]})')
                out['mambapy_missing'] = chk['error'].splitlines()[-1]
                continue
        for mode in ('fwd', 'fwd+bwd'):
            if l1 >= length:
                log(f'[peer {peer}] scan {mode} L={length}')
                r = run.run('scan', dict(backend=peer, mode=mode,
                                         length=length,
                                         repeat=prof['scan_repeat'],
                                         **shape))
                r['note'] = 'measured'
            else:
                log(f'[peer {peer}] scan {mode} L={l1}, {l2}')
                r1, r2 = (run.run('scan', dict(backend=peer, mode=mode,
                                               length=n,
                                               repeat=prof['scan_repeat'],
                                               **shape))
                          for n in (l1, l2))
                if 'error' in r1 or 'error' in r2:
                    r = r1 if 'error' in r1 else r2
                else:
                    r = dict(r2)
                    for key in ('seconds', 'cpu_seconds', 'extra_gb'):
                        r[key] = extrapolate(r1, r2, l1, l2, length, key)
                    r['elements'] = r2['elements'] * length // l2
                    r['note'] = (
                        f'extrapolated in proportion to L from L={l2}; '
                        f'measured at L={l1} '
                        f'({r1["seconds"]:.2f} s, {r1["extra_gb"]:.2f} GB) '
                        f'and L={l2} ({r2["seconds"]:.2f} s, '
                        f'{r2["extra_gb"]:.2f} GB)')
                    r['measured'] = [r1, r2]
            out[f'scan_{mode}'] = r


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------
def _macs_note(r):
    return (f'; MACs counted by {r["macs_from"]}' if r.get('macs_from')
            else '')


def share_macs(results):
    """A variant whose package cannot count MACs (an older commit) takes
    another variant's count of the same row (same model, same shapes)."""
    variants = results['variants']
    for key in ('fwd', 'train', 'train_nocache'):
        counted = {n: v[key]['macs'] for n, v in variants.items()
                   if v.get(key, {}).get('macs')}
        for n, v in variants.items():
            r = v.get(key)
            if r and counted and not r.get('macs') and not _fail(r) and \
                    'stopped' not in r:
                src = next(iter(counted))
                r['macs'], r['macs_from'] = counted[src], src


def _gb(gib):
    """A peak RSS in GiB as (value in GB = 1e9 bytes, the targets' unit,
    text with both)."""
    gb = gib * GiB / 1e9
    return gb, f'{gib:.2f} GiB = {gb:.2f} GB'


def best_floor(*floors):
    """The op-mix floor as the best (lowest) of several measurements of
    ``harness.opmix_floor``, each kind on its own; ``runs`` keeps them.

    Args:
        *floors (dict): results of the ``opmix`` child (``fwd``, ``bwd``,
            ...), or an earlier result of this function.

    Returns:
        dict: ``fwd``, ``bwd``, ``fwdbwd`` (the two bests' sum), the first
        floor's other fields, and ``runs``.
    """
    runs = [r for f in floors for r in f.get('runs', [f])]
    out = dict(floors[0], runs=runs)
    out['fwd'] = min(r['fwd'] for r in runs)
    out['bwd'] = min(r['bwd'] for r in runs)
    out['fwdbwd'] = out['fwd'] + out['bwd']
    return out


def derive(res, rate, cpu_rate, opmix=None):
    """The table's figures of one variant from its raw results.

    The timing rows' values (compared with the targets) are wall-clock
    ratios, except the per-element scan rows, which are per thread: CPU
    seconds of the process / elements. Every text also gives the other
    reading: on a machine shared with other jobs the wall time includes
    waiting for a core, the CPU time does not (it includes spin-waiting of
    the thread pool).

    Args:
        res (dict): raw results of :func:`measure_variant`.
        rate (float): sgemm rate, MACs per second (wall).
        cpu_rate (float): sgemm MACs per CPU second (all threads).
        opmix (dict, optional): the op-mix floor (``harness.opmix_floor``):
            adds the scan and kernel rows as ratios to it.

    Returns:
        dict: key -> (value or None, text).
    """
    d = {}
    r = res.get('fwd')
    err = _fail(r)
    if err:
        d['fwd'] = (None, err)
    elif r:
        floor = r['macs'] / rate
        ratio = r['best_s'] / floor
        cpu_ratio = r['cpu_s'] / (r['macs'] / cpu_rate)
        d['fwd'] = (ratio, f'{r["best_s"]:.2f} s / {floor:.2f} s = '
                    f'{ratio:.1f}x (CPU time: {r["cpu_s"]:.2f} s = '
                    f'{cpu_ratio:.1f}x{_macs_note(r)})')
    for key, rss_key in (('train', 'train_rss_gb'),
                         ('train_nocache', 'train_nocache_rss_gb')):
        r = res.get(key)
        err = _fail(r)
        if err:
            d[key] = (None, err)
            d[rss_key] = (None, err)
        elif r:
            floor = 3 * r['macs'] / rate
            ratio = r['best_s'] / floor
            cpu_ratio = r['cpu_s'] / (3 * r['macs'] / cpu_rate)
            note = _macs_note(r)
            if key == 'train' and r.get('cpu_cache') != 'on':
                note = '; without the caching allocator (not in this commit)'
            d[key] = (ratio, f'{r["best_s"]:.1f} s / {floor:.2f} s = '
                      f'{ratio:.1f}x (CPU time: {r["cpu_s"]:.1f} s = '
                      f'{cpu_ratio:.1f}x{note})')
            d[rss_key] = _gb(r['rusage_maxrss_gb'])
    r = res.get('big')
    err = _fail(r)
    if err:
        d['big_rss_gb'] = (None, err)
    elif r:
        if 'stopped' in r:
            d['big_rss_gb'] = (float('inf'),
                               f'> {r["peak_seen_gb"]:.1f} GB ({r["stopped"]})')
        else:
            v, text = _gb(r['rusage_maxrss_gb'])
            d['big_rss_gb'] = (v, f'{text}, {r["best_s"]:.1f} s')
    for mode, key in (('fwd', 'scan_fwd_ns'), ('fwd+bwd', 'scan_fwdbwd_ns'),
                      ('fwd', 'scac_fwd_ns'), ('fwd+bwd', 'scac_fwdbwd_ns'),
                      ('fwd', 'ss2d_fwd_ns'), ('fwd+bwd', 'ss2d_fwdbwd_ns')):
        r = res.get(f'{key[:4]}_{mode}')
        err = _fail(r)
        if err:
            d[key] = (None, err)
        elif r and r.get('cpu_cache') == 'absent':
            d[key] = (None, 'no caching allocator in this commit')
        elif r:
            ns = r['seconds'] * r['threads'] / r['elements'] * 1e9
            cpu_ns = r['cpu_seconds'] / r['elements'] * 1e9
            d[key] = (cpu_ns, f'{cpu_ns:.2f} ns (CPU time; wall x '
                      f'threads: {r["seconds"]:.2f} s x {r["threads"]} = '
                      f'{ns:.2f} ns; +{r["extra_gb"]:.2f} GB)')
    kernels = [(k[len('kernel_'):], v) for k, v in res.items()
               if k.startswith('kernel_')]
    for mode, key in (('fwd', 'kernel_fwd_ns'),
                      ('fwd+bwd', 'kernel_fwdbwd_ns')):
        vals, texts = [], []
        for tag, r in kernels:
            err = _fail(r)
            if err or 'absent' in r:
                texts.append(f'{tag}: {err or r["absent"]}')
                continue
            m = r[mode]
            cpu_ns = m['cpu_seconds'] / r['elements'] * 1e9
            ns = m['seconds'] * r['threads'] / r['elements'] * 1e9
            vals.append(cpu_ns)
            texts.append(f'{tag}: {cpu_ns:.2f} ns (wall x threads {ns:.2f})')
        if texts:
            d[key] = (max(vals) if vals else None, '; '.join(texts))
    if opmix and 'fwd' in opmix:
        for key, fk in (('scan_fwd', 'fwd'), ('scan_fwdbwd', 'fwdbwd'),
                        ('scac_fwd', 'fwd'), ('scac_fwdbwd', 'fwdbwd'),
                        ('kernel_fwd', 'fwd'), ('kernel_fwdbwd', 'fwdbwd')):
            v = d.get(key + '_ns')
            if v is None or v[0] is None:
                continue
            x = v[0] / opmix[fk]
            d[key + '_x'] = (x, f'{v[0]:.2f} / {opmix[fk]:.3f} ns = '
                             f'{x:.2f}x')
    for key, solo_k, pair_k, field in (('loop', 'loop_solo', 'loop_pair',
                                        'per_iter_s'),
                                       ('loop_raw', 'loop_raw_solo',
                                        'loop_raw_pair', 'per_iter_s'),
                                       ('demo', 'demo_solo', 'demo_pair',
                                        'wall_s')):
        solo, pair = res.get(solo_k), res.get(pair_k)
        if solo is None or pair is None:
            continue
        err = _fail(solo) or next(filter(None, map(_fail, pair)), None)
        if err:
            d[key] = (None, err)
            continue
        ratios = [p[field] / solo[field] for p in pair]
        unit = 's/iteration' if key.startswith('loop') else 's'
        note = ''
        if key == 'loop' and solo.get('governor') == 'absent':
            note = '; this commit has no CPUThreadGovernor: plain loop'
        d[key] = (max(ratios), ' / '.join(f'{x:.2f}x' for x in ratios) +
                  f' ({" & ".join(f"{p[field]:.2f}" for p in pair)} vs '
                  f'{solo[field]:.2f} {unit}{note})')
    r = res.get('first')
    err = _fail(r)
    if err:
        d['first_s'] = (None, err)
    elif r:
        again = res.get('first_again') or {}
        note = (f'; {again["first_s"]:.2f} s in the next process'
                if 'first_s' in again else '')
        d['first_s'] = (r['first_s'], f'{r["first_s"]:.1f} s (import '
                        f'{r["import_s"]:.1f} s; then the first plain '
                        f'selective_scan {r["first_plain_scan_s"]:.1f} s'
                        f'{note})')
    return d


ROW_LABELS = [
    ('fwd', '{fwd} forward / "sgemm floor" (MACs / sgemm rate)', '<= 2.5x'),
    ('train', 'forward+backward, batch {train} / (3 x its forward floor)',
     '<= 2.5x'),
    ('train_rss_gb', 'peak RSS of that training step', '<= 4 GB'),
    ('train_nocache', 'the same step with torch\'s own allocator (no '
     'CPUMemoryCacheHook)', '(none)'),
    ('train_nocache_rss_gb', 'its peak RSS', '(none)'),
    ('big_rss_gb', '{big} untiled forward (no_grad): peak RSS, time',
     '<= 6 GB'),
    ('scan_fwd_ns', 'selective_scan call (dim {sdim}, L {slen}, N {sn}; '
     'default CPU backend; torch\'s allocator, as in a plain script) fwd, '
     'ns per (channel, step, state) element and thread', '<= 0.35'),
    ('scan_fwdbwd_ns', 'scan fwd+bwd, ns per element and thread', '<= 1.2'),
    ('scac_fwd_ns', 'the same call with the caching CPU allocator (as under '
     'the runner and the inferencer), fwd', '<= 0.35'),
    ('scac_fwdbwd_ns', 'with the caching allocator, fwd+bwd', '<= 1.2'),
    ('kernel_fwd_ns', 'fused SS2D scan kernel alone (the model\'s CPU scan:'
     ' 4 directions, E=128, N=16, no projections), fwd, CPU ns per element '
     'and thread (the worse of the shapes)', '<= 0.35'),
    ('kernel_fwdbwd_ns', 'the kernel, fwd (with checkpoints) + bwd',
     '<= 1.2'),
    ('scan_fwd_x', 'the selective_scan call, fwd / this machine\'s op-mix '
     'floor (the recurrence alone in L1, opmix_floor.cpp)', '<= 1.5x'),
    ('scan_fwdbwd_x', 'its fwd+bwd / the op-mix floor (fwd + bwd)',
     '<= 1.5x'),
    ('scac_fwd_x', 'the call with the caching allocator (no page faults of '
     'fresh outputs), fwd / the op-mix floor', '<= 1.5x'),
    ('scac_fwdbwd_x', 'with the caching allocator, fwd+bwd / the op-mix '
     'floor', '<= 1.5x'),
    ('kernel_fwd_x', 'the fused SS2D kernel, fwd / the op-mix floor',
     '<= 1.5x'),
    ('kernel_fwdbwd_x', 'the kernel, fwd+bwd / the op-mix floor', '<= 1.5x'),
    ('ss2d_fwd_ns', 'SS2D layer {ss2d} (projections + 4-direction scan), '
     'fwd, ns per (direction, channel, step, state) and thread', '(none)'),
    ('ss2d_fwdbwd_ns', 'SS2D layer, fwd+bwd, ns per element and thread',
     '(none)'),
    ('loop', 'two concurrent small training loops (batch {loop}; '
     'CPUThreadGovernor.update() per step, as CPUThreadsHook does), each vs '
     'solo', '<= 2.5x'),
    ('loop_raw', 'the same two loops without the governor (a plain torch '
     'loop), each vs solo', '(none)'),
    ('demo', 'two concurrent semillie_demo.py trainings ({demo} iterations),'
     ' each vs solo', '<= 2.5x'),
    ('first_s', 'first CPU scan in a fresh process (s)', '<= 5 s'),
]


def _fmt_shape(t):
    b, h, w = t
    return f'{b} x {h}x{w}' if b > 1 else f'{h}x{w}'


def table(results, prof, rate, cpu_rate):
    names = [n for n in ('new', 'old') if n in results['variants']]
    derived = {n: derive(results['variants'][n], rate, cpu_rate,
                         results.get('opmix'))
               for n in names}
    fill = dict(fwd=_fmt_shape(prof['fwd']),
                train=_fmt_shape(prof['train']),
                big=f'{prof["big"][2]}x{prof["big"][1]}',
                ss2d=f'E={prof["ss2d"]["channels"]}, {prof["ss2d"]["h"]}x'
                f'{prof["ss2d"]["w"]}',
                sdim=prof['scan']['dim'], slen=prof['scan']['length'],
                sn=prof['scan']['d_state'],
                loop=f'{prof["loop"]["batch"]}, {prof["loop"]["size"]}x'
                f'{prof["loop"]["size"]}',
                demo=prof['demo_iters'])
    heads = [f'{n} ({results["commits"][n]})' for n in names]
    met_of = names[0] if names else '-'
    rows = []
    for key, label, target in ROW_LABELS:
        if not any(key in derived[n] for n in names):
            continue
        cells = [derived[n].get(key, (None, '-'))[1] for n in names]
        v = derived[names[0]].get(key, (None, ''))[0] if names else None
        goal = TARGETS.get(key)
        met = ('-' if v is None or goal is None else
               ('yes' if v <= goal else 'no'))
        rows.append([label.format(**fill), target] + cells + [met])
    return harness.markdown_table(
        ['figure', 'target'] + heads + [f'met ({met_of})'], rows), derived


def peer_table(results, rate):
    table = []
    rows = []
    for n in ('new', 'old'):
        if n in results['variants']:
            rows.append((f'{n} ({results["commits"][n]}), default CPU backend',
                         results['variants'][n]))
    for p, res in results.get('peers', {}).items():
        rows.append((p, res))
    for name, res in rows:
        cells, mems, notes = [], [], []
        for mode in ('fwd', 'fwd+bwd'):
            r = res.get(f'scan_{mode}')
            if r is None or _fail(r) or 'stopped' in r:
                cells.append(_fail(r) or 'not run')
                mems.append('-')
                continue
            ns = r['seconds'] * r['threads'] / r['elements'] * 1e9
            cpu_ns = r['cpu_seconds'] / r['elements'] * 1e9
            cells.append(f'{cpu_ns:.2f} (wall x threads {ns:.2f})')
            mems.append(f'{r["extra_gb"]:.2f}')
            if r.get('note', 'measured') != 'measured':
                notes.append(f'{mode}: {r["note"]}')
        if 'mambapy_missing' in res:
            notes.append(res['mambapy_missing'])
        if 'mambapy_check' in res and 'max_abs_diff' in res['mambapy_check']:
            c = res['mambapy_check']
            notes.append(f'max abs diff vs reference (float64, small) '
                         f'{c["max_abs_diff"]:.1e} of {c["scale"]:.1e}')
        table.append([name, cells[0], cells[1], ' / '.join(mems),
                      '; '.join(notes) or 'measured'])
    return harness.markdown_table(
        ['scan backend', 'fwd: CPU ns/element', 'fwd+bwd: CPU ns/element',
         'fwd / fwd+bwd extra peak memory (GB)', 'note'], table)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument('--quick', action='store_true',
                   help='smaller sizes (minutes)')
    g.add_argument('--dry-run', action='store_true',
                   help='tiny sizes: checks that every measurement runs')
    p.add_argument('--rows', default=','.join(ALL_ROWS),
                   help=f'subset of {",".join(ALL_ROWS)}')
    p.add_argument('--new-root', default=ROOT,
                   help='repository measured as "new" (default: this one)')
    p.add_argument('--old-root', default=osp.join(osp.dirname(ROOT),
                                                  'wt-old'),
                   help='git worktree of the old commit (e.g. git worktree '
                   'add /work/wt-old bc62985)')
    p.add_argument('--no-old', action='store_true')
    p.add_argument('--no-new', action='store_true',
                   help='measure only the old commit (and the peers)')
    p.add_argument('--peers', default='reference,mambapy')
    p.add_argument('--rss-cap-gb', type=float, default=20.0,
                   help='stop a child whose RSS passes this')
    p.add_argument('--reserve-gb', type=float, default=1.0,
                   help='stop a child when the machine has less available')
    p.add_argument('--rounds', type=int, default=1,
                   help='rounds of the fwd, train and scan rows, the '
                   'checkouts alternating in each (new, old, then old, '
                   'new): each row keeps its fastest round, and the '
                   'per-round new / old ratios are printed; on a noisy '
                   'host the ratio of two rows timed minutes apart is not')
    p.add_argument('--out', help='also write the results as JSON')
    p.add_argument('--keep-scratch', action='store_true')
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return harness.child_main(CHILDREN, args.child,
                                  json.loads(args.params))

    rows = [r for r in args.rows.split(',') if r]
    if args.rounds < 1:
        p.error(f'--rounds must be at least 1, got {args.rounds}')
    bad = [r for r in rows if r not in ALL_ROWS]
    if bad:
        p.error(f'unknown rows {bad}; choose from {",".join(ALL_ROWS)}')
    mode = 'dry-run' if args.dry_run else 'quick' if args.quick else 'full'
    prof = PROFILES[mode]
    peers = [x for x in args.peers.split(',') if x] if 'scan' in rows else []
    variants = {} if args.no_new else {'new': args.new_root}
    if args.no_new and args.no_old:
        p.error('--no-new and --no-old leave nothing to measure')
    if not args.no_old:
        if not osp.isdir(osp.join(args.old_root, 'semillie_mm')):
            p.error(f'{args.old_root}: no semillie_mm checkout there (git '
                    'worktree add <dir> <commit>, or --no-old)')
        variants['old'] = args.old_root

    m = harness.machine_summary()
    load0 = os.getloadavg()
    cmdline = ' '.join([osp.relpath(sys.executable, os.getcwd())
                        if sys.executable.startswith(os.getcwd()) else
                        sys.executable, 'benchmarks/bench_cpu_path.py'] +
                       (argv if argv is not None else sys.argv[1:]))
    print(f'# CPU path benchmark ({mode} sizes)\n')
    print(f'command: {cmdline}')
    print(f'machine: {harness.machine_line(m)}')
    print(f'SIMD flags: {m["flags"]}')
    print(f'load average before (1/5/15 min): '
          f'{" ".join(f"{x:.2f}" for x in load0)}', flush=True)

    scratch = tempfile.mkdtemp(prefix='bench_cpu_path_')
    cap, reserve = args.rss_cap_gb * GiB, args.reserve_gb * GiB
    results = dict(mode=mode, command=cmdline, machine=m, load_before=load0,
                   profile=prof, rows=rows, variants={}, commits={},
                   peers={}, sgemm=[])
    try:
        runners = {}
        numba_cold = tempfile.mkdtemp(prefix='numba_cold_', dir=scratch)
        for name, root in variants.items():
            # the old commit's set-up did not compile the numba kernels:
            # its children share one numba cache, empty at its first scan
            extra = dict(NUMBA_CACHE_DIR=numba_cold) if name == 'old' else {}
            runners[name] = Runner(name, root, scratch, cap, reserve, extra)
            results['commits'][name] = harness.git_describe(root)
        print('variants: ' + '; '.join(
            f'{n} = {results["commits"][n]} at {variants[n]}'
            for n in runners))
        for name, root in variants.items():
            missing = harness.ext_missing(root)
            if missing and args.dry_run:
                print(f'warning: {name} checkout ({root}): {missing}')
            elif missing:  # its rows would time the numba fallback
                raise SystemExit(f'{name} checkout ({root}): {missing}')
        base = next(iter(runners.values()))
        log('sgemm')
        results['sgemm'].append(base.run('sgemm', dict(n=prof['sgemm'])))
        s0 = results['sgemm'][0]
        if 'error' in s0:
            raise SystemExit(f'the sgemm child failed: {s0["error"]}')
        print(f'torch {s0["torch"]}, {s0["threads"]} torch threads',
              flush=True)
        if any(r in rows for r in ('scan', )):
            log('op-mix floor')
            floor = base.run('opmix')
            if 'fwd' in floor:
                results['opmix'] = floor
                print(f'op-mix floor (ns per element and thread, best of '
                      f'{len(floor["variants"]) // 2} variants): fwd '
                      f'{floor["fwd"]:.3f}, bwd {floor["bwd"]:.3f}, fwd+bwd '
                      f'{floor["fwdbwd"]:.3f}; kernel variant of the '
                      f'new checkout: {floor.get("variant", "-")}',
                      flush=True)
            else:
                print(f'op-mix floor: not measured '
                      f'({floor.get("absent") or floor.get("error")})')
        inter = ([r for r in rows if r in ROUND_ROWS]
                 if args.rounds > 1 else [])
        for name, run in runners.items():
            res = results['variants'].setdefault(name, {})
            measure_variant(run, prof, [r for r in rows if r not in inter],
                            res)
        if inter:
            per = {name: [] for name in runners}
            for i in range(args.rounds):
                log(f'round {i + 1}/{args.rounds}')
                order = list(runners.items())
                for name, run in (order if i % 2 == 0 else order[::-1]):
                    per[name].append({})
                    measure_variant(run, prof, inter, per[name][-1])
            for name in runners:
                results['variants'][name].update(merge_rounds(per[name]))
            if 'new' in per and 'old' in per:
                results['round_ratios'] = round_ratios(per['new'],
                                                       per['old'])
        for peer in peers:
            measure_peers(base, prof, [peer],
                          results['peers'].setdefault(peer, {}))
        log('sgemm (again)')
        results['sgemm'].append(base.run('sgemm', dict(n=prof['sgemm'])))
        if 'opmix' in results:
            # the floor moves with the host's clock (20 % between runs on a
            # shared Zen 5): timed again at the end, the best of the two
            # counts, as for sgemm
            log('op-mix floor (again)')
            again = base.run('opmix')
            if 'fwd' in again:
                results['opmix'] = best_floor(results['opmix'], again)
                print('op-mix floor at the end: fwd '
                      f'{again["fwd"]:.3f}, bwd {again["bwd"]:.3f}, fwd+bwd '
                      f'{again["fwdbwd"]:.3f} ns; the ratios use the best of '
                      'start and end', flush=True)
    finally:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    share_macs(results)
    rates = [s['gmacs'] for s in results['sgemm'] if 'gmacs' in s]
    if not rates:
        raise SystemExit('sgemm measurement failed: '
                         f'{results["sgemm"][0].get("error")}')
    rate = max(rates) * 1e9
    results['sgemm_gmacs'] = max(rates)
    cpu_rate = max(s['gmacs_per_cpu_s'] for s in results['sgemm']
                   if 'gmacs' in s) * 1e9
    results['sgemm_gmacs_per_cpu_s'] = cpu_rate / 1e9
    results['load_after'] = os.getloadavg()
    n = prof['sgemm']
    print(f'sgemm {n}^3 float32: ' +
          ', '.join(f'{r:.1f}' for r in rates) +
          f' GMAC/s (start, end) with {results["sgemm"][0]["threads"]} '
          f'threads; the floor uses the best; {cpu_rate / 1e9:.1f} GMAC '
          'per CPU second (the CPU-time ratios)')
    fwd_macs = results['variants'][base.name].get('fwd', {}).get('macs')
    if fwd_macs:
        print(f'model MACs at {_fmt_shape(prof["fwd"])} '
              f'(utils.flops.count_macs): {fwd_macs / 1e9:.2f} G')
    print()
    if args.out:  # the raw results first: a failure below loses nothing
        harness.write_json(args.out, results)
    text, derived = table(results, prof, rate, cpu_rate)
    results['derived'] = {
        n: {k: dict(value=v, text=t) for k, (v, t) in d.items()}
        for n, d in derived.items()
    }
    print(text)
    if results.get('round_ratios'):
        print(f'\nnew / old wall time per round ({args.rounds} rounds, the '
              'checkouts alternating; min / median / max):')
        for key, v in results['round_ratios'].items():
            print(f'- {key}: {min(v):.3f} / {statistics.median(v):.3f} / '
                  f'{max(v):.3f}')
    if peers:
        print()
        print(peer_table(results, rate))
    print(f'\nload average after (1/5/15 min): '
          f'{" ".join(f"{x:.2f}" for x in results["load_after"])} '
          '(a shared machine: other jobs inflate the wall times)')
    if args.out:
        harness.write_json(args.out, results)
    return results


if __name__ == '__main__':
    main()
