"""Benchmark of semillie_mm.ops.selective_scan on CPU.

Times the forward and forward+backward of every available CPU backend at the
size of the SS2D call of a 256x256 image (batch 1, 4 directions x 128
channels = dim 512, L = 65536, N = 16, B/C in 4 groups, D, delta_bias,
delta_softplus=True, as in the Semi-LLIE backbone), and the extra peak memory
of each measurement, with wall time and process CPU time (user + system,
all threads; less sensitive to other load on the machine). Every
measurement runs in a fresh subprocess: its
memory figure is the peak resident set size (``ru_maxrss``) during the
measured call minus the resident set size just before it (inputs already
allocated, kernels already compiled by a small warm-up call).

The 'reference' backend (a Python loop over L) is timed at the shorter
lengths ``--ref-length`` and twice that, and its time and memory are
extrapolated linearly to L (both are linear in L); the table says so. The
JIT compile time of the 'numba' backend
is measured in a subprocess with an empty numba cache directory.

Usage::

    python benchmarks/bench_selective_scan.py            # full size
    python benchmarks/bench_selective_scan.py --fused-kernel --dim 128 \
        --length 16384                                   # SS2D C++ kernel
    python benchmarks/bench_selective_scan.py --length 4096 --ref-length 512
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes():
    """Current resident set size of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def maxrss_bytes():
    """Peak resident set size of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_inputs(batch, dim, length, d_state, groups, dtype, grad):
    """Inputs shaped and scaled like SS2D's call (A = -(1..N), dt bias from
    the Mamba dt init)."""
    import math

    import torch
    g = torch.Generator().manual_seed(0)
    dt = torch.exp(
        torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) +
        math.log(1e-3)).clamp(min=1e-4)
    x = dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=0.1 * torch.randn(batch, dim, length, generator=g),
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1),
        B=torch.randn(batch, groups, d_state, length, generator=g),
        C=torch.randn(batch, groups, d_state, length, generator=g),
        D=torch.ones(dim),
        delta_bias=dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
    return {
        k: v.to(dtype).requires_grad_(grad)
        for k, v in x.items()
    }


def worker(args):
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch
    from semillie_mm.ops.selective_scan import selective_scan
    torch.set_num_threads(args.threads or torch.get_num_threads())
    dtype = getattr(torch, args.dtype)
    grad = args.mode == 'fwd+bwd'

    def call(x, grad_out=None):
        out = selective_scan(
            **x, delta_softplus=True, backend=args.backend)
        if grad:
            out.backward(torch.ones_like(out) if grad_out is None else
                         grad_out)
        return out

    # warm-up on a small size: compiles (or loads) the kernels
    call(make_inputs(1, 2 * args.groups, 8, args.d_state, args.groups, dtype,
                     grad))
    x = make_inputs(args.batch, args.dim, args.length, args.d_state,
                    args.groups, dtype, grad)
    # the gradient arriving at the output, allocated beforehand (a network
    # hands over a dense tensor)
    grad_out = torch.randn_like(x['u']) if grad else None
    before = rss_bytes()
    peak_before = maxrss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    if grad:
        call(x, grad_out)
    else:
        with torch.no_grad():
            call(x)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    peak = maxrss_bytes()
    print(json.dumps(dict(seconds=seconds, cpu_seconds=cpu_seconds,
                          rss_before=before,
                          peak_before=peak_before, peak=peak,
                          extra=max(0, peak - before))))


def jit_worker(args):
    """Time the first forward+backward call (numba compile or cache load)."""
    import torch
    from semillie_mm.ops.selective_scan import selective_scan
    dtype = getattr(torch, args.dtype)
    x = make_inputs(1, 2 * args.groups, 8, args.d_state, args.groups, dtype,
                    True)
    t0 = time.perf_counter()
    selective_scan(**x, delta_softplus=True, backend='numba').sum().backward()
    print(json.dumps(dict(seconds=time.perf_counter() - t0)))


def run_sub(extra_args, env=None):
    cmd = [sys.executable, os.path.abspath(__file__)] + extra_args
    res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{res.stderr[-3000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine():
    model = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    import torch
    return (f'{os.cpu_count()} CPUs ({model}), torch {torch.__version__}, '
            f'{torch.get_num_threads()} torch threads')


def fused_kernel(args):
    """Per-element cost of the fused SS2D kernel (C++ extension) alone.

    One SS2D direction at a time on an SS2D-shaped input (``--batch``,
    E = ``--dim`` channels, an H x W map with H * W = ``--length``, N =
    ``--d-state``, dt_rank 4), on ``--threads`` threads (default 1). Prints
    wall and process-CPU nanoseconds per (channel, step, state) element and
    thread for the forward (no checkpoints), the forward that stores the
    backward's checkpoints, and the backward, per direction and averaged.
    """
    import math

    import torch
    from semillie_mm.ops import cpu_ext as ext
    from semillie_mm.ops.selective_scan import ss2d_fused as fused
    mod = ext.load()
    if mod is None:
        print(f'fused kernel not available: {ext.unavailable_reason()}')
        return 1
    torch.set_num_threads(args.threads or 1)
    threads = torch.get_num_threads()
    side = math.isqrt(args.length)
    H, W = side, args.length // side
    nb, E, N, R = args.batch, args.dim, args.d_state, 4
    L = H * W
    g = torch.Generator().manual_seed(0)
    u = torch.randn(nb, L, E, generator=g)
    xdbl = 0.3 * torch.randn(nb, L, R + 2 * N, generator=g)
    Wdt = 0.3 * torch.randn(E, R, generator=g)
    dt = torch.exp(torch.rand(E, generator=g) * (math.log(0.1) - math.log(
        1e-3)) + math.log(1e-3))
    bias = dt + torch.log(-torch.expm1(-dt))
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1)
    D = torch.ones(E)
    y = torch.zeros(nb, L, E)
    K = fused.chunk_size(L)
    ckpt = torch.empty(nb, -(-L // K), N, E)
    none = torch.empty(0)
    dy = torch.randn(nb, L, E, generator=g)
    du = torch.zeros(nb, L, E)
    S = fused.num_slots(nb, E, torch.float32, threads)
    dxp = torch.empty(S, nb, L, R + 2 * N)
    elements = nb * E * L * N

    def timed(fn, repeats=3):
        best_wall, best_cpu = float('inf'), float('inf')
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            fn()
            best_wall = min(best_wall, time.perf_counter() - w)
            best_cpu = min(best_cpu, time.process_time() - c)
        return (best_wall * threads * 1e9 / elements,
                best_cpu * 1e9 / elements)

    print(f'Fused SS2D kernel: batch {nb}, E {E}, {H}x{W}, N {N}, '
          f'dt_rank {R}, float32, {threads} thread(s)')
    print(f'Machine: {machine()}')
    print('| direction | fwd | fwd + checkpoints | bwd | fwd+ckpt + bwd |')
    print('|---|---|---|---|---|')
    sums = [0.0] * 6
    for d in range(4):
        args_d = (u, xdbl, Wdt, bias, A, D)
        mod.fwd(*args_d, y, none, H, W, d, K)  # warm caches
        f = timed(lambda: mod.fwd(*args_d, y, none, H, W, d, K))
        fc = timed(lambda: mod.fwd(*args_d, y, ckpt, H, W, d, K))
        b = timed(lambda: mod.bwd(*args_d, dy, ckpt, du, dxp, H, W, d, K),
                  2)
        vals = f + fc + b
        sums = [a + v / 4 for a, v in zip(sums, vals)]
        print(f'| {d} | {f[0]:.3f} ({f[1]:.3f}) | {fc[0]:.3f} ({fc[1]:.3f}) '
              f'| {b[0]:.3f} ({b[1]:.3f}) | {fc[0] + b[0]:.3f} '
              f'({fc[1] + b[1]:.3f}) |')
    print(f'| mean | {sums[0]:.3f} ({sums[1]:.3f}) | {sums[2]:.3f} '
          f'({sums[3]:.3f}) | {sums[4]:.3f} ({sums[5]:.3f}) | '
          f'{sums[2] + sums[4]:.3f} ({sums[3] + sums[5]:.3f}) |')
    print('(ns per channel x step x state element and thread: wall-clock, '
          'process CPU time in parentheses)')
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--dim', type=int, default=512)
    p.add_argument('--length', type=int, default=65536)
    p.add_argument('--d-state', type=int, default=16)
    p.add_argument('--groups', type=int, default=4)
    p.add_argument('--dtype', default='float32')
    p.add_argument('--ref-length', type=int, default=1024,
                   help='the reference backend is timed at this L and twice '
                   'it, then extrapolated')
    p.add_argument('--backends', default='native,numba,reference')
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--skip-jit', action='store_true')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--jit-worker', action='store_true',
                   help=argparse.SUPPRESS)
    p.add_argument('--backend', help=argparse.SUPPRESS)
    p.add_argument('--mode', help=argparse.SUPPRESS)
    p.add_argument('--fused-kernel', action='store_true',
                   help='time the fused SS2D C++ kernel alone (per-element '
                   'ns; use e.g. --dim 128 --length 16384)')
    args = p.parse_args()
    if args.fused_kernel:
        return fused_kernel(args)
    if args.worker:
        return worker(args)
    if args.jit_worker:
        return jit_worker(args)

    from semillie_mm.ops.selective_scan import available_backends
    import torch
    avail = available_backends('cpu')
    shape = (f'batch {args.batch}, dim {args.dim}, L {args.length}, '
             f'N {args.d_state}, {args.groups} groups, {args.dtype}')
    print(f'Selective scan on CPU: {shape}')
    print(f'Machine: {machine()}')
    common = ['--batch', str(args.batch), '--dim', str(args.dim),
              '--d-state', str(args.d_state), '--groups', str(args.groups),
              '--dtype', args.dtype, '--threads', str(args.threads)]
    rows = []
    results = {}
    for backend in args.backends.split(','):
        if backend not in avail:
            print(f'(skipping {backend}: not available here)')
            continue
        for mode in ('fwd', 'fwd+bwd'):
            if backend != 'reference' or args.ref_length >= args.length:
                r = run_sub(['--worker', '--backend', backend, '--mode', mode,
                             '--length', str(args.length)] + common)
                secs, extra, note = r['seconds'], r['extra'], 'measured'
                cpu_secs = r['cpu_seconds']
            else:
                # time and memory are linear in L: measure at two lengths
                # and extrapolate (fixed costs are not multiplied)
                l1, l2 = args.ref_length, 2 * args.ref_length
                r1, r2 = (run_sub(['--worker', '--backend', backend, '--mode',
                                   mode, '--length', str(n)] + common)
                          for n in (l1, l2))

                def extrapolate(key):
                    slope = (r2[key] - r1[key]) / (l2 - l1)
                    # a non-positive slope (noise, fixed costs only)
                    # extrapolates to the value at l2
                    return r2[key] + max(slope, 0.0) * (args.length - l2)

                secs, extra = extrapolate('seconds'), extrapolate('extra')
                cpu_secs = extrapolate('cpu_seconds')
                note = (f'extrapolated linearly from L={l1} '
                        f'({r1["seconds"]:.2f} s, '
                        f'{r1["extra"] / 2**20:.0f} MiB) and L={l2} '
                        f'({r2["seconds"]:.2f} s, '
                        f'{r2["extra"] / 2**20:.0f} MiB)')
            results[(backend, mode)] = (secs, cpu_secs)
            rows.append((backend, mode, secs, cpu_secs, extra / 2**20, note))
            print(f'  {backend:9s} {mode:8s} {secs:9.2f} s '
                  f'(CPU {cpu_secs:.2f} s) {extra / 2**20:9.1f} MiB  '
                  f'({note})', flush=True)
    base_inputs = 4 * args.batch * args.length * (
        3 * args.dim + 2 * args.groups * args.d_state) / 2**20
    print()
    print('| backend | pass | wall time (s) | CPU time (s) | extra peak '
          'memory (MiB) | speed-up vs reference (wall / CPU) | note |')
    print('|---|---|---:|---:|---:|---:|---|')
    for backend, mode, secs, cpu_secs, mib, note in rows:
        ref = results.get(('reference', mode))
        speed = (f'{ref[0] / secs:.1f}x / {ref[1] / cpu_secs:.1f}x'
                 if ref else '-')
        print(f'| {backend} | {mode} | {secs:.2f} | {cpu_secs:.2f} | '
              f'{mib:.0f} | {speed} | {note} |')
    print(f'\n(u, delta, out and their gradients are '
          f'{4 * args.batch * args.dim * args.length / 2**20:.0f} MiB each '
          f'in float32; all inputs together ~{base_inputs:.0f} MiB.)')
    if not args.skip_jit and 'cpu' in avail:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            cold = run_sub(['--jit-worker'] + common, env=env)
            warm = run_sub(['--jit-worker'] + common, env=env)
        print(f'\nFirst cpu-backend call ({args.dtype}, forward+backward, '
              f'tiny input): {cold["seconds"]:.1f} s with an empty numba '
              f'cache (JIT compile), {warm["seconds"]:.2f} s in a new '
              f'process with the cache filled.')


if __name__ == '__main__':
    main()
