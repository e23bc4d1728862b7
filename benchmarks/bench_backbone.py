"""SemiLLIENet on CPU: forward time and peak memory at several sizes; parameters and
FLOPs at 256x256 (mmengine's analysis tools + the selective scan counted analytically).

    python benchmarks/bench_backbone.py [--sizes 256x256 512x512 1080x1920] [--repeat 3]

Each size runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is
its own. Results: docs/benchmarks.md.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(h, w, repeat, backend):
    """Forward time (best of ``repeat``) and peak RSS for one input size."""
    import torch
    import semillie_mm  # noqa: F401
    from semillie_mm.models.archs import SemiLLIENet
    torch.manual_seed(0)
    net = SemiLLIENet(scan_backend=backend).eval()
    x = torch.rand(1, 3, h, w)
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(size=f'{h}x{w}', best_s=min(times), times=times,
                peak_rss_mb=peak_mb, threads=torch.get_num_threads())


def scan_flops(net, h, w):
    """Multiply-accumulates of the selective scans: per (batch, channel, step,
    state): exp(delta*A) and delta*B*u (3), the state update (1) and C.h (1)."""
    from semillie_mm.models.archs import SS2D
    total = 0
    for m in net.modules():
        if isinstance(m, SS2D):
            total += 5 * m.num_directions * m.channels * h * w * m.d_state
    return total


def complexity(h=256, w=256):
    """Parameters and FLOPs (mmengine's FlopAnalyzer; 1 multiply-add = 1 FLOP,
    the convention of fvcore and of the paper's table)."""
    import torch
    import semillie_mm  # noqa: F401
    from mmengine.analysis import FlopAnalyzer, parameter_count
    import semillie_mm.models.archs.ss2d as ss2d_mod
    from semillie_mm.models.archs import SemiLLIENet

    net = SemiLLIENet().eval()
    params = parameter_count(net)['']

    # the scan is a custom kernel the JIT tracer cannot see through: trace the
    # model with a traceable stand-in of the same shape and add the scan's
    # analytic count
    def stand_in(u, delta, A, B, C, D=None, **kw):
        return u * D.view(1, -1, 1)

    original = ss2d_mod.selective_scan
    ss2d_mod.selective_scan = stand_in
    try:
        analyzer = FlopAnalyzer(net, (torch.rand(1, 3, h, w), ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        rest = analyzer.total()
    finally:
        ss2d_mod.selective_scan = original
    scan = scan_flops(net, h, w)
    return dict(params=params, flops_without_scan=rest, flops_scan=scan,
                flops_total=rest + scan)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', nargs='+',
                        default=['256x256', '512x512', '1080x1920'])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--backend', default=None)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        h, w = map(int, args.child.split('x'))
        print(json.dumps(measure(h, w, args.repeat, args.backend)))
        return

    cpu = 'unknown'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    print(f'machine: {os.cpu_count()} cores, {cpu}')
    c = complexity()
    print(f"params: {c['params'] / 1e6:.3f} M; FLOPs at 256x256: "
          f"{c['flops_total'] / 1e9:.2f} G (layers {c['flops_without_scan'] / 1e9:.2f} G"
          f" + scans {c['flops_scan'] / 1e9:.2f} G)")
    print('| input (HxW) | forward, best of N (s) | peak RSS (GB) |')
    print('|---|---:|---:|')
    for size in args.sizes:
        cmd = [sys.executable, __file__, '--child', size, '--repeat',
               str(args.repeat)]
        if args.backend:
            cmd += ['--backend', args.backend]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f'| {size} | failed: {out.stderr.strip().splitlines()[-1]} | |')
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {size} | {r['best_s']:.2f} | {r['peak_rss_mb'] / 1024:.2f} |",
              flush=True)


if __name__ == '__main__':
    main()
