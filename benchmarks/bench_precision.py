"""bf16 against fp32 inference on CPU (issue #23 item 3): forward time of
SemiLLIENet at 256x256 and 1920x1080 (untiled) in both precisions, as a
ratio, with the bf16 output's PSNR against the fp32 output and each run's
peak memory, all in one run.

    python benchmarks/bench_precision.py [--sizes 256x256 1080x1920]
        [--repeat 3] [--model default|shipped] [--threads N]
        [--allocator cache|torch] [--json FILE] [--allow-emulated]

Each (size, precision) runs in a fresh child process (``harness``), so its
peak RSS is its own; the fp32 and bf16 children of one size run one after
the other, on the same random input. ``bf16`` is the inferencer's
``precision='bf16'`` (:mod:`semillie_mm.apis.precision`): torch.autocast in
bfloat16, SS2D in float32. The model is the default ``SemiLLIENet()`` (the
paper's width, random weights, as ``bench_cpu_path.py`` times it) or the
shipped one (``--model shipped``). On a CPU without AVX512-BF16 / AMX-BF16
the script stops unless ``--allow-emulated`` (then oneDNN's emulation is
timed, which says nothing about bf16 hardware). ``--allocator cache`` (the
default) runs each child with the project's caching CPU allocator, as
``tools/enhance.py`` does (``cpu_tuning=True``); ``torch`` with torch's own,
where every large temporary is page-faulted in afresh. Results:
docs/benchmarks.md.
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


def measure(h, w, precision, repeat, model, out_path, allocator='cache'):
    """Forward time (best of ``repeat``, after one warm-up) of one size in
    one precision; the output is saved to ``out_path`` (``.npy``)."""
    import semillie_mm  # noqa: F401
    from semillie_mm.apis.precision import autocast_context, cpu_has_bf16
    from semillie_mm.ops.cpu_cache import enable_cpu_cache

    import numpy as np
    import torch
    if allocator == 'cache' and not enable_cpu_cache():
        allocator = 'torch (the caching allocator is not available)'
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
                native_bf16=cpu_has_bf16(), allocator=allocator)


def accuracy(model, tile_size, photo_size):
    """bf16 output against fp32 through the inferencer (``forward``, the
    model's own pipeline), on the demo val tiles (built into a temporary
    folder by ``prepare_demo_data``) and on sklearn's ``china.jpg`` resized
    to ``photo_size`` (H, W) with synthetic low light (seed 0), tiled by
    ``tile_size``: PSNR over the float outputs in [0, 1] and over their
    uint8 roundings, per image."""
    import glob

    import semillie_mm  # noqa: F401
    from semillie_mm.apis import SemiLLIEInferencer
    from semillie_mm.apis import precision as prec
    from semillie_mm.datasets import prepare_demo_data
    from semillie_mm.datasets.demo_data import load_demo_photo
    from semillie_mm.datasets.transforms.low_light_synthesis import (
        sample_low_light_params,
        synthesize_low_light,
    )
    from semillie_mm.ops.cpu_cache import enable_cpu_cache

    import cv2
    import mmcv
    import numpy as np
    import torch
    enable_cpu_cache()
    torch.manual_seed(0)
    if model == 'tiny':  # the tests: a small random model, bf16 forced
        prec.cpu_has_bf16 = lambda flags=None: True
        cfg = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                       'configs', 'semillie_demo.py')
    else:
        cfg = 'semillie_target'
    infs = {p: SemiLLIEInferencer(cfg, device='cpu', show_progress=False,
                                  precision=p) for p in PRECISIONS}
    if model == 'tiny':
        infs['bf16'].model.load_state_dict(infs['fp32'].model.state_dict())
    scratch = tempfile.mkdtemp(prefix='bench_precision_demo_')
    try:
        root = osp.join(scratch, 'demo')
        prepare_demo_data(root=root)
        files = sorted(glob.glob(osp.join(root, 'val', 'input', '*.png')))
        images = [(osp.basename(f), mmcv.imread(f, channel_order='rgb'),
                   None) for f in files]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    photo = load_demo_photo('china', 'sklearn')
    photo = cv2.resize(photo, photo_size[::-1], interpolation=cv2.INTER_AREA)
    low = synthesize_low_light(
        photo, sample_low_light_params(np.random.default_rng(0)))
    images.append((f'china {photo_size[0]}x{photo_size[1]}',
                   low, tile_size))
    rows = []
    for name, img, tile in images:
        outs = {}
        for p, inf in infs.items():
            batch = dict(packed=[(dict(), inf.pipeline(dict(img=img)))],
                         failed=[])
            with torch.no_grad():
                outs[p] = inf.forward(batch, tile_size=tile)[0][
                    'pred_img'].float().clamp(0, 1).numpy()
        u8 = {p: np.round(o * 255) / 255 for p, o in outs.items()}
        rows.append(dict(image=name, tile=tile,
                         psnr_db=psnr(outs['bf16'], outs['fp32']),
                         psnr_8bit_db=psnr(u8['bf16'], u8['fp32']),
                         bf16_ran=infs['bf16'].precision))
    return dict(rows=rows)


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
    parser.add_argument('--allocator', choices=('cache', 'torch'),
                        default='cache',
                        help="cache: the caching CPU allocator, as "
                        "tools/enhance.py runs (default); torch: torch's")
    parser.add_argument('--json', default=None, help='also write the rows')
    parser.add_argument('--allow-emulated', action='store_true',
                        help='run on a CPU without native bf16 too')
    parser.add_argument('--accuracy', action='store_true',
                        help='instead of the timings: bf16 against fp32 '
                        'PSNR on the demo val tiles and a photo, through '
                        'the inferencer (the shipped model unless --model '
                        'tiny)')
    parser.add_argument('--photo-size', default='1080x1920',
                        help='HxW of the --accuracy photo')
    parser.add_argument('--tile-size', type=int, default=512,
                        help="the --accuracy photo's tiles")
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import json
        return harness.child_main(dict(measure=measure, accuracy=accuracy),
                                  args.child,
                                  json.loads(args.params))

    machine = harness.machine_summary()
    print(f'machine: {harness.machine_line(machine)}; allocator: '
          f'{args.allocator}; flags: '
          f'{machine["flags"]}')
    if not native_bf16():
        if not args.allow_emulated:
            raise SystemExit('this CPU lacks AVX512-BF16 / AMX-BF16: bf16 '
                             'would be emulated (--allow-emulated runs it '
                             'anyway)')
        print('note: no native bf16 on this CPU: oneDNN emulates it')
    if args.accuracy:
        return _main_accuracy(args, machine)
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
                         model=args.model, out_path=out,
                         allocator=args.allocator),
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


def _main_accuracy(args, machine):
    """``--accuracy``: one child, one row per image and a summary line."""
    h, w = map(int, args.photo_size.split('x'))
    res = harness.run_child(
        __file__, 'accuracy',
        dict(model='tiny' if args.model == 'tiny' else 'shipped',
             tile_size=args.tile_size, photo_size=(h, w)),
        threads=args.threads, timeout=args.timeout,
        reserve=args.reserve_gb * harness.GiB)
    if harness.failure(res) or 'stopped' in res:
        raise SystemExit('accuracy: ' + (harness.failure(res)
                                         or res.get('stopped', '')))
    header = ['image', 'tiles', 'PSNR bf16 vs fp32 (dB)', 'PSNR 8-bit (dB)']
    rows = [[r['image'], str(r['tile'] or 'whole'), f"{r['psnr_db']:.1f}",
             f"{r['psnr_8bit_db']:.1f}"] for r in res['rows']]
    print(harness.markdown_table(header, rows, ['', '', 'r', 'r']))
    val = [r for r in res['rows'] if r['tile'] is None]
    if val:
        print(f"demo val ({len(val)} tiles): PSNR mean / min "
              f"{sum(r['psnr_db'] for r in val) / len(val):.1f} / "
              f"{min(r['psnr_db'] for r in val):.1f} dB, 8-bit "
              f"{sum(r['psnr_8bit_db'] for r in val) / len(val):.1f} / "
              f"{min(r['psnr_8bit_db'] for r in val):.1f} dB")
    if args.json:
        harness.write_json(args.json, dict(machine=machine, accuracy=res))
    return rows


if __name__ == '__main__':
    main()
