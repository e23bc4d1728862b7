"""bf16 against fp32 inference on CPU (issue #23 item 3): forward time of
SemiLLIENet at 256x256 and 1920x1080 (untiled) in both precisions, as a
ratio, with the bf16 output's PSNR against the fp32 output and each run's
peak memory, all in one run.

    python benchmarks/bench_precision.py [--sizes 256x256 1080x1920]
        [--repeat 3] [--model default|shipped] [--threads N]
        [--json FILE] [--allow-emulated]

Each (size, precision) runs in a fresh child process (``harness``), so its
peak RSS is its own; the fp32 and bf16 children of one size run one after
the other, on the same random input. ``bf16`` is the inferencer's
``precision='bf16'`` (:mod:`semillie_mm.apis.precision`): torch.autocast in
bfloat16, SS2D in float32. The model is the default ``SemiLLIENet()`` (the
paper's width, random weights, as ``bench_cpu_path.py`` times it) or the
shipped one (``--model shipped``). On a CPU without AVX512-BF16 / AMX-BF16
the script stops unless ``--allow-emulated`` (then oneDNN's emulation is
timed, which says nothing about bf16 hardware). Results: docs/benchmarks.md.
"""
import argparse
import os
import os.path as osp
import shutil
import tempfile
import time

import harness

PRECISIONS = ('fp32', 'bf16')
#: the CPU flags of native bfloat16 (as semillie_mm.apis.precision, read here
#: without importing torch into the parent)
BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')


def native_bf16():
    """Whether the CPU lists AVX512-BF16 or AMX-BF16 (``lscpu``'s flags
    through :func:`harness.machine_summary`)."""
    flags = harness.machine_summary()['flags'].split()
    return any(f in flags for f in BF16_CPU_FLAGS)


def measure(h, w, precision, repeat, model, out_path):
    """Forward time (best of ``repeat``, after one warm-up) of one size in
    one precision; the output is saved to ``out_path`` (``.npy``)."""
    import semillie_mm  # noqa: F401
    from semillie_mm.apis.precision import autocast_context, cpu_has_bf16

    import numpy as np
    import torch
    torch.manual_seed(0)
    if model == 'shipped':
        from semillie_mm.apis import SemiLLIEInferencer
        net = SemiLLIEInferencer('semillie_target',
                                 show_progress=False).get_network()
    else:
        from semillie_mm.models.archs import SemiLLIENet
        kw = dict(embed_dim=8, num_groups=1, blocks_per_group=1) \
            if model == 'tiny' else {}
        net = SemiLLIENet(**kw).eval()
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    x.mul_(0.3)  # low light
    times = []
    with torch.no_grad(), autocast_context(precision, 'cpu'):
        y = net(x)  # warm-up (oneDNN primitives, the allocator)
        for _ in range(repeat):
            t = time.perf_counter()
            y = net(x)
            times.append(time.perf_counter() - t)
    np.save(out_path, y.float().clamp_(0, 1).numpy())
    return dict(size=f'{h}x{w}', precision=precision, best_s=min(times),
                times=times, threads=torch.get_num_threads(),
                native_bf16=cpu_has_bf16())


def psnr(a, b):
    """PSNR (dB) of two arrays in [0, 1]."""
    import numpy as np
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64))**2))
    return float('inf') if mse == 0 else 10 * np.log10(1 / mse)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', nargs='+',
                        default=['256x256', '1080x1920'])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--model', default='default',
                        choices=('default', 'shipped', 'tiny'),
                        help='tiny: a width-8 model, for the tests only')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads of each child (default: all)')
    parser.add_argument('--timeout', type=float, default=1800,
                        help='seconds per child')
    parser.add_argument('--reserve-gb', type=float, default=1.0,
                        help='stop a child when MemAvailable falls under it')
    parser.add_argument('--json', default=None, help='also write the rows')
    parser.add_argument('--allow-emulated', action='store_true',
                        help='run on a CPU without native bf16 too')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import json
        return harness.child_main(dict(measure=measure), args.child,
                                  json.loads(args.params))

    machine = harness.machine_summary()
    print(f'machine: {harness.machine_line(machine)}; flags: '
          f'{machine["flags"]}')
    if not native_bf16():
        if not args.allow_emulated:
            raise SystemExit('this CPU lacks AVX512-BF16 / AMX-BF16: bf16 '
                             'would be emulated (--allow-emulated runs it '
                             'anyway)')
        print('note: no native bf16 on this CPU: oneDNN emulates it')
    header = ['input (HxW)', 'fp32 (s)', 'bf16 (s)', 'bf16 / fp32',
              'PSNR bf16 vs fp32 (dB)', 'peak RSS fp32 / bf16 (GB)']
    print(harness.markdown_table(header, [], ['', 'r', 'r', 'r', 'r', 'r']))
    rows, results = [], []
    scratch = tempfile.mkdtemp(prefix='bench_precision_')
    try:
        for size in args.sizes:
            h, w = map(int, size.split('x'))
            res = {}
            for prec in PRECISIONS:
                out = osp.join(scratch, f'{size}_{prec}.npy')
                harness.log(f'{size} {prec} ...')
                res[prec] = harness.run_child(
                    __file__, 'measure',
                    dict(h=h, w=w, precision=prec, repeat=args.repeat,
                         model=args.model, out_path=out),
                    threads=args.threads, timeout=args.timeout,
                    reserve=args.reserve_gb * harness.GiB)
                res[prec]['out'] = out
            results.append(dict(size=size, **res))
            bad = [f'{p}: ' + (harness.failure(r) or r.get('stopped', ''))
                   for p, r in res.items()
                   if harness.failure(r) or 'stopped' in r]
            if bad:
                row = [size] + ['; '.join(bad)] + [''] * 4
            else:
                import numpy as np
                f32, b16 = res['fp32'], res['bf16']
                db = psnr(np.load(f32['out']), np.load(b16['out']))
                b16['psnr_db'] = db
                row = [size, f"{f32['best_s']:.3f}", f"{b16['best_s']:.3f}",
                       f"{b16['best_s'] / f32['best_s']:.2f}x", f'{db:.1f}',
                       f"{f32['maxrss_gb']:.2f} / {b16['maxrss_gb']:.2f}"]
            rows.append(row)
            print('| ' + ' | '.join(row) + ' |', flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        harness.write_json(args.json, dict(
            machine=machine, model=args.model, repeat=args.repeat,
            threads=args.threads or os.cpu_count(), results=results))
    return rows


if __name__ == '__main__':
    main()
