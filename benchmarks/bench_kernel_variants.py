# Copyright (c) semillie-mm contributors. All rights reserved.
"""The C++ scans' run-time kernel variants, timed against each other and
against this machine's op-mix floor, in one process.

Each variant (``semillie_mm/ops/cpu_ext/variants.py``: lane width, exp2
sequence, tile, prefetch distance) is set in turn on the loaded extension
and timed on the fused SS2D kernel (the four directions' forward, and
forward with checkpoints + backward; no projections) and on the generic
``selective_scan()`` (the 'native' backend); rounds interleave the variants
so that a change in the machine's load hits them alike, and the best round
counts. Every figure is ns per (direction, channel, step, state) element and
thread, and its ratio to the op-mix floor (``harness.opmix_floor``: the
recurrence's own arithmetic in L1, best over lane widths and exp2 forms) and
to the variant listed first.

Usage::

    python benchmarks/bench_kernel_variants.py [--quick] [--out v.json]
        [--variants "zen5;issue10"] [--rounds 5] [--allocator torch|cache]
        [--paired]
    # the AVX2 build, the proxy for AVX2-only CPUs (a binary of its own):
    SEMILLIE_CACHE=/tmp/avx2 SEMILLIE_EXT_EXTRA_CFLAGS=-march=x86-64-v3 \\
        python semillie_mm/ops/cpu_ext/build.py --build
    SEMILLIE_CACHE=/tmp/avx2 SEMILLIE_EXT_EXTRA_CFLAGS=-march=x86-64-v3 \\
        python benchmarks/bench_kernel_variants.py
Run it alone on the machine.

``--paired``: the op-mix floor's best lane width and exp2 form are timed
again in every round, just before the kernels, and each round's kernel time
is divided by that round's floor. On a shared host whose clock moves the
floor by 20 % between runs, the ratio of two bests taken minutes apart
swings with it; the per-round ratios (printed as min / median / max) say
where the kernels stand against the arithmetic at the same moment.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import harness  # noqa: E402

#: variants timed by default: the variant of AVX-512 CPUs other than a Zen
#: 4 first (the reference), the kernels' first tuning (#10), then one change
#: at a time
DEFAULT_VARIANTS = (
    'zen5', 'issue10', 'exp=0', 'exp=2', 'bwd16=0', 'pfy=1', 'spread=0',
    'lanes=8', 'tile=32', 'tile=128', 'ahead=0', 'ahead=1', 'ahead=4')

SHAPES = {
    'full': dict(kernel={'1x256x256': (1, 128, 256, 256),
                         '8x128x128': (8, 128, 128, 128)},
                 scan=(1, 512, 16384)),
    'quick': dict(kernel={'1x128x128': (1, 128, 128, 128)},
                  scan=(1, 256, 8192)),
    'dry-run': dict(kernel={'1x16x24': (1, 32, 16, 24)}, scan=(1, 32, 512)),
}


def scan_case(batch, dim, length, d_state=16, groups=4):
    """The generic selective_scan() on the native backend, fwd and
    fwd+bwd."""
    from semillie_mm.ops.selective_scan import selective_scan

    import torch
    x = harness.scan_inputs(batch, dim, length, d_state, groups, grad=True)
    g = torch.randn(batch, dim, length)

    def call():
        return selective_scan(**x, delta_softplus=True, backend='native')

    def fwd():
        with torch.no_grad():
            call()

    def fwdbwd():
        call().backward(g)

    return dict(fwd=fwd, fwdbwd=fwdbwd), batch * dim * length * d_state


def _lanes_form(floor, kind):
    """(lanes, exp2 form) of the best variant of ``kind`` in
    ``harness.opmix_floor``'s result."""
    name = min((v, k) for k, v in floor['variants'].items()
               if k.startswith(kind + '/'))[1]
    _, lanes, form = name.split('/')
    return int(lanes[len('lanes'):]), int(form[len('exp'):])


def _spread(values, fmt='.2f'):
    """'min / median / max' of ``values``."""
    return ' / '.join(format(x, fmt) for x in (
        min(values), statistics.median(values), max(values)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument('--quick', action='store_true')
    g.add_argument('--dry-run', action='store_true')
    p.add_argument('--variants', default=';'.join(DEFAULT_VARIANTS),
                   help='";"-separated variants (names or field=value '
                   'lists, as SEMILLIE_KERNEL_VARIANT); the first is the '
                   'reference of the ratios')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--allocator', choices=('torch', 'cache'), default='torch',
                   help="'cache': the project's caching CPU allocator, as "
                   "under the runner and the inferencer (selective_scan() "
                   "allocates its outputs per call: with torch's allocator "
                   "the row includes the page faults of fresh memory, which "
                   "on some VMs cost more than the scan)")
    p.add_argument('--paired', action='store_true',
                   help='re-time the floor in every round and give the '
                   'per-round kernel / floor ratios (min / median / max)')
    p.add_argument('--out', help='also write the results as JSON')
    args = p.parse_args(argv)
    mode = 'dry-run' if args.dry_run else 'quick' if args.quick else 'full'
    shapes = SHAPES[mode]

    from semillie_mm.ops.cpu_ext import variants as kv

    import torch
    ext, fused = harness.fused_kernel_modules()
    allocator = args.allocator
    if allocator == 'cache':
        from semillie_mm.ops.cpu_cache import enable_cpu_cache
        if not enable_cpu_cache():
            raise SystemExit('--allocator cache: the caching CPU allocator '
                             'is not available in this build')
    mod = ext.load()
    if mod is None:
        raise SystemExit(f'no C++ extension: {ext.unavailable_reason()}')
    specs = [s.strip() for s in args.variants.split(';') if s.strip()]
    chosen_name, chosen = kv.choose(
        avx512_build=bool(getattr(mod, 'avx512', True)))
    fields = {s: kv.parse(s) for s in specs}
    m = harness.machine_summary()
    print(f'# Kernel variants ({mode} sizes)\n')
    print('command: python benchmarks/bench_kernel_variants.py ' +
          ' '.join(argv if argv is not None else sys.argv[1:]))
    print(f'machine: {harness.machine_line(m)}, CPU family {m.get("family")}')
    print(f'SIMD flags: {m["flags"]}; binary: '
          f'{"AVX-512" if getattr(mod, "avx512", False) else "no AVX-512"}'
          f' ({ext.binary_path()})')
    extra = os.environ.get('SEMILLIE_EXT_EXTRA_CFLAGS')
    if extra:
        print(f'extra compile flags: {extra}')
    print(f'torch threads: {torch.get_num_threads()}; variant chosen for '
          f'this CPU: {chosen_name} {chosen}')
    print(f'allocator: {allocator}; load average before: '
          f'{os.getloadavg()[0]:.2f}', flush=True)

    floor = (harness.opmix_floor(mod, target_s=0.01, repeat=1)
             if mode == 'dry-run' else harness.opmix_floor(mod))
    print('op-mix floor, ns per element and thread: fwd '
          f'{floor["fwd"]:.3f}, bwd {floor["bwd"]:.3f}, fwd+bwd '
          f'{floor["fwdbwd"]:.3f} (best of: ' + ', '.join(
              f'{k} {v:.3f}' for k, v in floor['variants'].items()) + ')',
          flush=True)

    cases = {}
    for tag, shape in shapes['kernel'].items():
        fwd, fwdbwd, elements = harness.kernel_case(mod, fused, *shape)
        cases[f'kernel {tag}'] = (dict(fwd=fwd, fwdbwd=fwdbwd), elements)
    b, d, L = shapes['scan']
    cases[f'selective_scan {b}x{d}x{L}'] = scan_case(b, d, L)
    best = {}
    paired = {}  # (spec, case, call) -> per-round kernel / floor ratios
    floor_rounds = []
    only = {kind: _lanes_form(floor, kind) for kind in ('fwd', 'bwd')}
    for r in range(args.rounds):
        harness.log(f'round {r + 1}/{args.rounds}')
        for spec in specs:
            if args.paired:
                fl = harness.opmix_floor(
                    mod, target_s=0.01 if mode == 'dry-run' else 0.2,
                    repeat=2, only=only)
                floor_rounds.append(fl)
            kv.apply(mod, fields[spec])
            for cname, (calls, elements) in cases.items():
                for mname, f in calls.items():
                    if r == 0:
                        f()  # warm-up
                    t0 = time.perf_counter()
                    f()
                    ns = ((time.perf_counter() - t0) *
                          torch.get_num_threads() / elements * 1e9)
                    key = (spec, cname, mname)
                    best[key] = min(best.get(key, ns), ns)
                    if args.paired:
                        fk = 'fwd' if mname == 'fwd' else 'fwdbwd'
                        paired.setdefault(key, []).append(ns / fl[fk])
    kv.apply(mod)  # back to the chosen one
    header = ['variant', 'case', 'fwd ns', 'fwd / floor', 'fwd+bwd ns',
              'fwd+bwd / floor', 'fwd vs first', 'fwd+bwd vs first']
    rows = []
    ref = specs[0]
    for cname in cases:
        for spec in specs:
            f_ns = best[(spec, cname, 'fwd')]
            fb_ns = best[(spec, cname, 'fwdbwd')]
            rows.append([
                spec, cname, f'{f_ns:.3f}', f'{f_ns / floor["fwd"]:.2f}x',
                f'{fb_ns:.3f}', f'{fb_ns / floor["fwdbwd"]:.2f}x',
                f'{f_ns / best[(ref, cname, "fwd")]:.2f}',
                f'{fb_ns / best[(ref, cname, "fwdbwd")]:.2f}'
            ])
    print()
    print(harness.markdown_table(header, rows))
    if args.paired:
        print(f'\nper-round ratios to the floor timed just before '
              f'({len(floor_rounds)} floors: fwd '
              f'{_spread([f["fwd"] for f in floor_rounds], ".3f")}, fwd+bwd '
              f'{_spread([f["fwdbwd"] for f in floor_rounds], ".3f")} ns, '
              f'min / median / max; lanes and exp2 form {only}):\n')
        prow = [[spec, cname, _spread(paired[(spec, cname, 'fwd')]),
                 _spread(paired[(spec, cname, 'fwdbwd')])]
                for cname in cases for spec in specs]
        print(harness.markdown_table(
            ['variant', 'case', 'fwd / floor (min / median / max)',
             'fwd+bwd / floor (min / median / max)'], prow))
    print(f'\nload average after: {os.getloadavg()[0]:.2f}')
    if args.out:
        harness.write_json(args.out, dict(
            machine=m, mode=mode, floor=floor, chosen=[chosen_name, chosen],
            allocator=allocator,
            variants={s: fields[s] for s in specs},
            results=[dict(variant=k[0], case=k[1], call=k[2], ns=v,
                          paired=paired.get(k))
                     for k, v in best.items()],
            floor_rounds=floor_rounds))
    return best


if __name__ == '__main__':
    main()
