"""Speed and memory of the RAM image encoder (Swin-L/384, random weights).

Measures what the RAM losses cost per call:

* ``fwd+bwd``: forward and backward with respect to the input image (the
  anchor / prediction branch of the losses; the encoder itself is frozen);
* ``fwd no_grad``: a forward under ``torch.no_grad`` (the positive, negative
  and ground-truth branches).

Each batch size runs in its own subprocess so that the peak memory of one does
not hide the other. On CPU the peak is the process's peak resident set size
(``ru_maxrss``: model, libraries and activations together) and the table also
gives the RSS just after the model was built, so the difference is what the
computation itself needs. On CUDA it is ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/bench_ram_encoder.py                  # batch 1 and 8, CPU
    python benchmarks/bench_ram_encoder.py --batch-sizes 1 --iters 3
    python benchmarks/bench_ram_encoder.py --warmup 0 --iters 1   # slow CPU
    python benchmarks/bench_ram_encoder.py --device cuda
"""
import argparse
import json
import os
import platform
import time

import harness


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    return harness.rss_bytes() / 2**20


def run_one(batch: int, iters: int, img_size: int, device: str,
            warmup: int = 1) -> dict:
    """Time one batch size in this process and return the measurements."""
    from semillie_mm.models.encoders import RAMImageEncoder

    import torch

    torch.manual_seed(0)
    enc = RAMImageEncoder(img_size=img_size).to(device)
    n_params = sum(p.numel() for p in enc.parameters())
    rss_model = _rss_mb()
    cuda = device.startswith('cuda')

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def fwd_bwd():
        img = torch.rand(batch, 3, img_size, img_size, device=device,
                         requires_grad=True)
        emb, feats = enc(img)
        loss = emb.square().mean() + sum(f.square().mean() for f in feats[1:])
        loss.backward()
        assert img.grad is not None

    def fwd():
        img = torch.rand(batch, 3, img_size, img_size, device=device)
        with torch.no_grad():
            enc(img)

    results = dict(batch=batch, img_size=img_size, device=device,
                   params_M=round(n_params / 1e6, 1),
                   rss_after_build_MiB=round(rss_model))
    for name, fn in (('fwd_nograd', fwd), ('fwd_bwd', fwd_bwd)):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            fn()
        sync()
        times, cpu_times = [], []
        for _ in range(iters):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        # wall-clock (best of iters) and process CPU time (all threads), the
        # latter less sensitive to other load on a shared machine
        results[f'{name}_s'] = round(min(times), 3)
        results[f'{name}_s_mean'] = round(sum(times) / len(times), 3)
        results[f'{name}_cpu_s'] = round(min(cpu_times), 3)
        if cuda:
            results[f'{name}_peak_MiB'] = round(
                torch.cuda.max_memory_allocated() / 2**20)
    if not cuda:
        # ru_maxrss is in KiB on Linux; the fwd+bwd runs last and dominates
        results['peak_rss_MiB'] = round(harness.maxrss_bytes() / 2**20)
    results['threads'] = torch.get_num_threads()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--iters', type=int, default=2,
                        help='timed iterations after one warm-up (best kept)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed calls before timing (0 on a slow CPU)')
    parser.add_argument('--img-size', type=int, default=384)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--params', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        harness.child_main(dict(run_one=run_one), args.child,
                           json.loads(args.params))
        return

    print(f'# machine: {platform.machine()}, {os.cpu_count()} CPUs, '
          f'python {platform.python_version()}')
    rows = []
    for b in args.batch_sizes:
        res = harness.run_child(__file__, 'run_one', dict(
            batch=b, iters=args.iters, img_size=args.img_size,
            device=args.device, warmup=args.warmup))
        if harness.failure(res):
            print(f'batch {b}: failed (rc {res["returncode"]})\n'
                  f'{res["error"][-2000:]}')
            continue
        res = {k: v for k, v in res.items() if k not in (
            'maxrss_gb', 'semillie_file', 'wall_s', 'rusage_maxrss_gb',
            'returncode')}
        rows.append(res)
        print(json.dumps(res))
    if rows:
        print('\n| batch | fwd no_grad: wall / CPU (s) | fwd+bwd w.r.t. input: '
              'wall / CPU (s) | peak memory (MiB) | RSS after build (MiB) |')
        print('|---|---|---|---|---|')
        for r in rows:
            peak = r.get('peak_rss_MiB', r.get('fwd_bwd_peak_MiB'))
            print(f"| {r['batch']} | {r['fwd_nograd_s']} / "
                  f"{r['fwd_nograd_cpu_s']} | {r['fwd_bwd_s']} / "
                  f"{r['fwd_bwd_cpu_s']} | {peak} | "
                  f"{r['rss_after_build_MiB']} |")


if __name__ == '__main__':
    main()
