"""SemiLLIENet on CPU: forward time and peak memory at several sizes; parameters and
FLOPs at 256x256 (:func:`semillie_mm.utils.flops.count_flops`: mmengine's analysis
tools + the selective scans counted analytically).

    python benchmarks/bench_backbone.py [--sizes 256x256 512x512 1080x1920] [--repeat 3]

Each size runs in a fresh child process (``harness``) so that its peak resident memory
(ru_maxrss) is its own. Results: docs/benchmarks.md.
"""
import argparse
import time

import harness


def measure(h, w, repeat, backend=None):
    """Forward time (best of ``repeat``) and peak RSS for one input size."""
    import semillie_mm  # noqa: F401
    from semillie_mm.models.archs import SemiLLIENet

    import torch
    torch.manual_seed(0)
    net = SemiLLIENet(scan_backend=backend).eval()
    x = torch.rand(1, 3, h, w)
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    return dict(size=f'{h}x{w}', best_s=min(times), times=times,
                peak_rss_mb=harness.maxrss_bytes() / 2**20,
                threads=torch.get_num_threads())


def complexity(h=256, w=256):
    """Parameters and FLOPs (1 multiply-add = 1 FLOP, the convention of fvcore and
    of the paper's table), :func:`semillie_mm.utils.flops.count_flops`."""
    from semillie_mm.models.archs import SemiLLIENet
    from semillie_mm.utils.flops import count_flops

    import torch
    res = count_flops(SemiLLIENet().eval(), (torch.rand(1, 3, h, w), ))
    return dict(params=res['params'], flops_without_scan=res['flops_layers'],
                flops_scan=res['flops_scan'], flops_total=res['flops'])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', nargs='+',
                        default=['256x256', '512x512', '1080x1920'])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--backend', default=None)
    parser.add_argument('--flops-size', default='256x256',
                        help='input size of the FLOP count')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import json
        return harness.child_main(dict(measure=measure), args.child,
                                  json.loads(args.params))

    print(f'machine: {harness.machine_line()}')
    fh, fw = map(int, args.flops_size.split('x'))
    c = complexity(fh, fw)
    print(f"params: {c['params'] / 1e6:.3f} M; FLOPs at {args.flops_size}: "
          f"{c['flops_total'] / 1e9:.2f} G (layers {c['flops_without_scan'] / 1e9:.2f} G"
          f" + scans {c['flops_scan'] / 1e9:.2f} G)")
    print(harness.markdown_table(
        ['input (HxW)', 'forward, best of N (s)', 'peak RSS (GB)'], [],
        ['', 'r', 'r']))
    rows = []
    for size in args.sizes:
        h, w = map(int, size.split('x'))
        r = harness.run_child(__file__, 'measure',
                              dict(h=h, w=w, repeat=args.repeat,
                                   backend=args.backend))
        err = harness.failure(r)
        row = ([size, err, ''] if err else
               [size, f"{r['best_s']:.2f}", f"{r['peak_rss_mb'] / 1024:.2f}"])
        rows.append(row)
        print('| ' + ' | '.join(row) + ' |', flush=True)
    return rows


if __name__ == '__main__':
    main()
