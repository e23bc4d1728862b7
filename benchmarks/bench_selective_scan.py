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
import tempfile
import time

import harness


def worker(backend, mode, batch, dim, length, d_state, groups, dtype,
           threads=0):
    """One measurement in this (fresh) process: wall and CPU seconds of the
    call, its extra peak memory."""
    from semillie_mm.ops.selective_scan import selective_scan

    import torch
    torch.set_num_threads(threads or torch.get_num_threads())
    dtype = getattr(torch, dtype)
    grad = mode == 'fwd+bwd'

    def call(x, grad_out=None):
        out = selective_scan(**x, delta_softplus=True, backend=backend)
        if grad:
            out.backward(torch.ones_like(out) if grad_out is None else
                         grad_out)
        return out

    # warm-up on a small size: compiles (or loads) the kernels
    call(harness.scan_inputs(1, 2 * groups, 8, d_state, groups, grad, dtype))
    x = harness.scan_inputs(batch, dim, length, d_state, groups, grad, dtype)
    # the gradient arriving at the output, allocated beforehand (a network
    # hands over a dense tensor)
    grad_out = torch.randn_like(x['u']) if grad else None
    before = harness.rss_bytes()
    peak_before = harness.maxrss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    if grad:
        call(x, grad_out)
    else:
        with torch.no_grad():
            call(x)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    peak = harness.maxrss_bytes()
    return dict(seconds=seconds, cpu_seconds=cpu_seconds, rss_before=before,
                peak_before=peak_before, peak=peak,
                extra=max(0, peak - before))


def jit_worker(d_state, groups, dtype, **_):
    """Time the first forward+backward call (numba compile or cache load)."""
    from semillie_mm.ops.selective_scan import selective_scan

    import torch
    x = harness.scan_inputs(1, 2 * groups, 8, d_state, groups, True,
                            getattr(torch, dtype))
    t0 = time.perf_counter()
    selective_scan(**x, delta_softplus=True, backend='numba').sum().backward()
    return dict(seconds=time.perf_counter() - t0)


CHILDREN = dict(worker=worker, jit_worker=jit_worker)


def run_sub(name, params, env=None):
    """One child measurement; raises with the child's output on failure."""
    res = harness.run_child(__file__, name, params, env=env)
    if harness.failure(res):
        raise RuntimeError(f'{name} {params} failed:\n{res["error"]}')
    return res


def machine():
    import torch
    return (f'{os.cpu_count()} CPUs ({harness.cpu_model()}), torch '
            f'{torch.__version__}, {torch.get_num_threads()} torch threads')


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
    ext, fused = harness.fused_kernel_modules()
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


def main(argv=None):
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
    p.add_argument('--fused-kernel', action='store_true',
                   help='time the fused SS2D C++ kernel alone (per-element '
                   'ns; use e.g. --dim 128 --length 16384)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return harness.child_main(CHILDREN, args.child,
                                  json.loads(args.params))
    if args.fused_kernel:
        return fused_kernel(args)


    from semillie_mm.ops.selective_scan import available_backends
    avail = available_backends('cpu')
    shape = (f'batch {args.batch}, dim {args.dim}, L {args.length}, '
             f'N {args.d_state}, {args.groups} groups, {args.dtype}')
    print(f'Selective scan on CPU: {shape}')
    print(f'Machine: {machine()}')
    common = dict(batch=args.batch, dim=args.dim, d_state=args.d_state,
                  groups=args.groups, dtype=args.dtype, threads=args.threads)
    rows = []
    results = {}
    for backend in args.backends.split(','):
        if backend not in avail:
            print(f'(skipping {backend}: not available here)')
            continue
        for mode in ('fwd', 'fwd+bwd'):
            if backend != 'reference' or args.ref_length >= args.length:
                r = run_sub('worker', dict(backend=backend, mode=mode,
                                           length=args.length, **common))
                secs, extra, note = r['seconds'], r['extra'], 'measured'
                cpu_secs = r['cpu_seconds']
            else:
                # time and memory are linear in L: measure at two lengths
                # and extrapolate (fixed costs are not multiplied)
                l1, l2 = args.ref_length, 2 * args.ref_length
                r1, r2 = (run_sub('worker', dict(backend=backend, mode=mode,
                                                 length=n, **common))
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
            cold = run_sub('jit_worker', common, env=env)
            warm = run_sub('jit_worker', common, env=env)
        print(f'\nFirst cpu-backend call ({args.dtype}, forward+backward, '
              f'tiny input): {cold["seconds"]:.1f} s with an empty numba '
              f'cache (JIT compile), {warm["seconds"]:.2f} s in a new '
              f'process with the cache filled.')


if __name__ == '__main__':
    main()
