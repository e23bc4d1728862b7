"""ONNX Runtime (CPU) against our PyTorch path (SS2D's fused C++ scan) on the
same network, as ratios measured in one run.

    python benchmarks/bench_onnx.py [--sizes 256x256 1080x1920] [--repeat 3]
        [--threads N] [--tiny]

The network (``SemiLLIENet()``, random weights, or a tiny one with
``--tiny``) is exported once with ``--dynamic``
(:func:`semillie_mm.deployment.export_onnx`) in a child process; then every
size runs in a fresh child per path, so that each peak resident memory is its
own: PyTorch (the default forward: fused C++ scan, memory-lean MSSM) and
ONNX Runtime (:class:`semillie_mm.deployment.OnnxRuntimeNetwork`). Both go
through the inferencer's tiling (:func:`semillie_mm.apis.tiling.
enhance_tensor`, 512 / 64: a 1080p image runs as 15 tiles), as
``tools/enhance.py`` runs them. Reported: best of ``--repeat`` wall times,
peak RSS, and ``ORT / PyTorch`` ratios. Results: docs/enhance.md, "ONNX".
"""
import argparse
import json
import os.path as osp
import shutil
import tempfile
import time

import harness

TINY = dict(embed_dim=8, num_groups=1, blocks_per_group=1, d_state=4)


def _net(tiny):
    import semillie_mm  # noqa: F401
    from semillie_mm.models.archs import SemiLLIENet

    import torch
    torch.manual_seed(0)
    return SemiLLIENet(**(TINY if tiny else {})).eval()


def export(path, tiny):
    """Export the network (dynamic H/W) to ``path``."""
    from semillie_mm.deployment import export_onnx
    export_onnx(_net(tiny), path, dynamic=True)
    return dict(bytes=osp.getsize(path))


def measure(path, h, w, repeat, tiny, threads):
    """Best wall time of ``repeat`` tiled enhancements of one (1, 3, h, w)
    image, on ONNX Runtime (``path``) or PyTorch (``path`` None)."""
    from semillie_mm.apis.tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, enhance_tensor

    import torch
    if path:
        from semillie_mm.deployment import OnnxRuntimeNetwork
        net = OnnxRuntimeNetwork(path, num_threads=threads)
    else:
        net = _net(tiny)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t = time.perf_counter()
            enhance_tensor(net, x, DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP)
            times.append(time.perf_counter() - t)
    return dict(best_s=min(times), times=times,
                peak_rss_mb=harness.maxrss_bytes() / 2**20)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', nargs='+', default=['256x256', '1080x1920'])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None,
                        help='threads of both paths (default: all cores)')
    parser.add_argument('--tiny', action='store_true',
                        help='a tiny network (a smoke test of the script)')
    parser.add_argument('--json', default=None, help='also write the rows')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return harness.child_main(dict(export=export, measure=measure),
                                  args.child, json.loads(args.params))

    print(f'machine: {harness.machine_line()}')
    tmp = tempfile.mkdtemp(prefix='bench_onnx_')
    path = osp.join(tmp, 'semillie.onnx')
    kw = dict(threads=args.threads) if args.threads else {}
    try:
        r = harness.run_child(__file__, 'export',
                              dict(path=path, tiny=args.tiny), **kw)
        err = harness.failure(r)
        if err:
            print(f'export {err}')
            return []
        print(f"exported {r['bytes'] / 1e6:.2f} MB "
              f"({'tiny' if args.tiny else 'SemiLLIENet()'}, dynamic)")
        header = ['input (HxW)', 'PyTorch fused (s)', 'ORT (s)',
                  'ORT / PyTorch time', 'PyTorch peak RSS (GB)',
                  'ORT peak RSS (GB)']
        rows = []
        for size in args.sizes:
            h, w = map(int, size.split('x'))
            res = [harness.run_child(
                __file__, 'measure',
                dict(path=p, h=h, w=w, repeat=args.repeat, tiny=args.tiny,
                     threads=args.threads), **kw) for p in (None, path)]
            errs = [harness.failure(x) for x in res]
            if any(errs) or any('stopped' in x for x in res):
                why = [e or x.get('stopped') for e, x in zip(errs, res)]
                rows.append([size, str(why[0]), str(why[1]), '', '', ''])
                continue
            pt, ort = res
            rows.append([size, f"{pt['best_s']:.3f}", f"{ort['best_s']:.3f}",
                         f"{ort['best_s'] / pt['best_s']:.2f}",
                         f"{pt['peak_rss_mb'] / 1024:.2f}",
                         f"{ort['peak_rss_mb'] / 1024:.2f}"])
        print(harness.markdown_table(header, rows,
                                     ['', 'r', 'r', 'r', 'r', 'r']))
        if args.json:
            harness.write_json(args.json, dict(
                machine=harness.machine_summary(), header=header, rows=rows))
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
