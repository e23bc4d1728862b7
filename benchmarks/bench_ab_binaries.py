# Copyright (c) semillie-mm contributors. All rights reserved.
"""Two builds of the C++ extension timed against each other in one process,
on the fused SS2D kernel, the plain selective scan or the whole model, with
the order alternating from round to round.

``bench_cpu_path.py --old-root`` times the old checkout after the new one,
each in child processes; a change of a few per cent then drowns in the
machine's drift (on a shared 2-core VM the same kernel moved by 5-8 %
between the two halves of one run). Here both binaries are loaded into one
process (``importlib``, each under its own module name) and called in
turns: round r runs A then B, round r + 1 B then A, so that drift and
position hit both alike. Each figure is ns per (direction, channel, step,
state) element and thread (``harness.kernel_case``: four directions, no
projections; kinds ``scan_fwd`` / ``scan_fwdbwd``: ``harness.scan_case``,
the extension's ``scan_fwd`` / ``scan_bwd`` on one SS2D-shaped call,
per (channel, step, state) element; kinds ``model_fwd`` / ``model_train``:
``harness.model_case``, the default SemiLLIENet's 256x256 no-grad forward
and its training step on 8 x 128x128, in seconds, the package's loader
pointed at A's or B's binary before each call); the verdict is the median
over rounds of the per-round ratio B / A, with its range.

Both binaries are one process's libraries: what they export binds to
the first loaded (the allocator's functions run A's copy). The kernels
have internal linkage and run each binary's own code, and since session
16 so do the kernel-variant object and ``opmix_floor`` (hidden): B's floor
is B's own. A binary B from before then exports both, so with an A that
exports them too the two shared one variant object (harmless: both get
the same variant) and B's floor ran A's code.

The binaries come from checkouts (``--a-root`` / ``--b-root``: each
checkout's own ``build.py`` names the binary its sources and flags give,
which must have been built) or are named directly (``--binaries A,B``).
Both get the kernel variant this checkout's ``variants.py`` chooses for the
CPU (or ``--variant``), so a change of the kernel's code is timed, not a
change of variant.

Usage::

    git worktree add /work/wt-old <commit>
    (cd /work/wt-old && python semillie_mm/ops/cpu_ext/build.py --build)
    python benchmarks/bench_ab_binaries.py --a-root /work/wt-old [--rounds 16]
        [--kind fwd,fwdbwd] [--out ab.json]
Run it alone on the machine.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import harness  # noqa: E402

SHAPES = {
    'full': {'1x256x256': (1, 128, 256, 256),
             '8x128x128': (8, 128, 128, 128)},
    'quick': {'1x128x128': (1, 128, 128, 128)},
    'dry-run': {'1x16x24': (1, 32, 16, 24)},
}
#: the plain selective scan's problems (batch, dim, length, d_state,
#: groups): one SS2D call of the 256x256 map as bench_cpu_path's ``scan``
#: row has it, shorter in quick and dry-run modes
SCAN_SHAPES = {
    'full': {'1x512x65536': (1, 512, 65536, 16, 4)},
    'quick': {'1x512x16384': (1, 512, 16384, 16, 4)},
    'dry-run': {'1x32x300': (1, 32, 300, 16, 4)},
}
#: the model's problems: forward (batch, h, w), training step (batch, h, w)
MODEL_SHAPES = {
    'full': {'256x256 / 8x128x128': ((1, 256, 256), (8, 128, 128))},
    'quick': {'128x128 / 4x64x64': ((1, 128, 128), (4, 64, 64))},
    'dry-run': {'32x32 / 2x16x16': ((1, 32, 32), (2, 16, 16))},
}
KINDS = ('fwd', 'fwdbwd', 'scan_fwd', 'scan_fwdbwd', 'model_fwd',
         'model_train')


def model_cases(mods, shape):
    """The model's two calls with each binary (``harness.model_case``;
    the package's loader switched to the binary around each call).

    Returns:
        list: per binary (fwd, train, 1.0): the figures are seconds.
    """
    from semillie_mm.ops.cpu_ext import build
    fwd, _ = harness.model_case(*shape[0])
    _, train = harness.model_case(*shape[1])

    def on(mod, fn):
        def call():
            saved = build._module, build._tried
            build._module, build._tried = mod, True
            try:
                fn()
            finally:
                build._module, build._tried = saved
        return call

    return [(on(m, fwd), on(m, train), 1.0) for m in mods]

#: printed by a child with a checkout on its path: the binary that
#: checkout's sources and this environment's flags give (both layouts)
_LOCATE = r"""
try:
    from semillie_mm.ops.cpu_ext import build as ext
except ImportError:
    from semillie_mm.ops.selective_scan import ext
print(ext.binary_path())
"""


def binary_of(root):
    """The extension binary of a checkout, as its own build script names it.

    Args:
        root (str): the checkout.

    Returns:
        str: path of the binary.

    Raises:
        SystemExit: it names no binary, or the binary is not built.
    """
    env = dict(os.environ, PYTHONPATH=osp.abspath(root))
    with tempfile.TemporaryDirectory() as cwd:  # not this checkout's package
        proc = subprocess.run([sys.executable, '-c', _LOCATE], cwd=cwd,
                              env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f'{root}: its build script names no binary: '
                         f'{proc.stderr.strip().splitlines()[-1:]}')
    path = proc.stdout.strip().splitlines()[-1]
    if not osp.isfile(path):
        raise SystemExit(
            f'{root}: its binary {path} is not built (cd {root} && python '
            'semillie_mm/ops/cpu_ext/build.py --build)')
    return path


def load_binary(path):
    """Load an extension binary under its own module name.

    Args:
        path (str): the binary (``<name>.<abi>.so``).

    Returns:
        module: the loaded extension.
    """
    name = osp.basename(path).split('.')[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def apply_variant(mod, spec):
    """Set the kernel variant on a loaded binary.

    Args:
        mod: the extension; spec (str | None): a variant as
            ``SEMILLIE_KERNEL_VARIANT`` takes it, None = the CPU's choice.

    Returns:
        dict | str: the fields in effect, or why none could be set (a
        binary from before the run-time variants).
    """
    from semillie_mm.ops.cpu_ext import variants
    if not hasattr(mod, 'set_variant'):
        return 'compiled defaults (the binary has no run-time variants)'
    fields = variants.parse(spec) if spec else None
    return variants.apply(mod, fields)


def time_ab(calls, rounds):
    """Time callables in turns, the order reversed every other round.

    Args:
        calls (list[callable]): one per binary, each timed call whole.
        rounds (int): rounds.

    Returns:
        list[list[float]]: seconds per round, one list per callable.
    """
    for c in calls:  # warm-up
        c()
    times = [[] for _ in calls]
    for r in range(rounds):
        order = range(len(calls))
        for i in (order if r % 2 == 0 else reversed(order)):
            t = time.perf_counter()
            calls[i]()
            times[i].append(time.perf_counter() - t)
    return times


def summarize(times_a, times_b, scale):
    """Best and median of each and the per-round ratios B / A.

    Args:
        times_a, times_b (list[float]): seconds per round.
        scale (float): ns per element and thread per second of a call.

    Returns:
        dict: a_best, a_median, b_best, b_median (ns), ratio_median,
        ratio_min, ratio_max.
    """
    ratios = [b / a for a, b in zip(times_a, times_b)]
    return dict(a_best=min(times_a) * scale,
                a_median=statistics.median(times_a) * scale,
                b_best=min(times_b) * scale,
                b_median=statistics.median(times_b) * scale,
                ratio_median=statistics.median(ratios),
                ratio_min=min(ratios), ratio_max=max(ratios))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument('--quick', action='store_true')
    g.add_argument('--dry-run', action='store_true')
    p.add_argument('--a-root', help='checkout of binary A (the reference)')
    p.add_argument('--b-root', default=ROOT,
                   help='checkout of binary B (default: this one)')
    p.add_argument('--binaries', help='"A,B": the two binaries by path '
                   '(instead of --a-root / --b-root)')
    p.add_argument('--variant', help='kernel variant for both (default: '
                   "this checkout's choice for the CPU)")
    p.add_argument('--kind', default='fwd,fwdbwd',
                   help='of the fused kernel: fwd (no checkpoints), fwdbwd '
                   '(forward with checkpoints + backward); of the plain '
                   'scan: scan_fwd, scan_fwdbwd; of the model: model_fwd, '
                   'model_train (comma-separated)')
    p.add_argument('--rounds', type=int, default=12)
    p.add_argument('--out', help='also write the results as JSON')
    args = p.parse_args(argv)
    mode = 'dry-run' if args.dry_run else 'quick' if args.quick else 'full'
    kinds = [k for k in args.kind.split(',') if k]
    if not kinds or any(k not in KINDS for k in kinds):
        p.error(f'--kind takes {", ".join(KINDS)}, got {args.kind!r}')
    if args.binaries:
        paths = args.binaries.split(',')
        if len(paths) != 2:
            p.error('--binaries takes two paths: "A,B"')
        labels = paths
    else:
        if not args.a_root:
            p.error('give --a-root (and --b-root) or --binaries')
        paths = [binary_of(args.a_root), binary_of(args.b_root)]
        labels = [f'{args.a_root} ({harness.git_describe(args.a_root)})',
                  f'{args.b_root} ({harness.git_describe(args.b_root)})']
    import torch
    _, fused = harness.fused_kernel_modules()
    mods = [load_binary(path) for path in paths]
    cache = 'off'
    if any(k.startswith(('scan', 'model')) for k in kinds):
        # the plain scan allocates its outputs per call: without the
        # caching allocator (the runner's and inferencer's) its times are
        # mostly page faults. B's binary installs it (this checkout's may
        # not be built for its current sources)
        from semillie_mm.ops.cpu_cache import default_limit_mb
        cache = 'absent'
        if hasattr(mods[1], 'cpu_cache_install'):
            mods[1].cpu_cache_install(default_limit_mb() << 20)
            cache = 'on' if mods[1].cpu_cache_stats()[1] else 'absent'
    variant = [apply_variant(m, args.variant) for m in mods]
    machine = harness.machine_summary()
    print(f"{harness.machine_line(machine)}; CPU family "
          f"{machine.get('family', '?')}")
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'{args.rounds} rounds, the order alternating; mode {mode}; '
          f'caching CPU allocator {cache}')
    for tag, label, path, v in zip('AB', labels, paths, variant):
        print(f'{tag}: {label}\n   {path}\n   variant: {v}')
    # B's op-mix floor, for the figures as ratios to it (issue #23's
    # measure); quick and short in a dry run
    floor = harness.opmix_floor(mods[1], target_s=0.02 if mode == 'dry-run'
                                else 0.2)
    if 'fwd' in floor:
        print(f"op-mix floor of B: fwd {floor['fwd']:.3f} ns, fwd+bwd "
              f"{floor['fwdbwd']:.3f} ns per element and thread")
    results, rows = [], []
    groups = [(SHAPES[mode], [k for k in kinds if k in ('fwd', 'fwdbwd')],
               lambda shape: [harness.kernel_case(m, fused, *shape)
                              for m in mods]),
              (SCAN_SHAPES[mode], [k for k in kinds if k.startswith('scan')],
               lambda shape: [harness.scan_case(m, *shape) for m in mods]),
              (MODEL_SHAPES[mode],
               [k for k in kinds if k.startswith('model')],
               lambda shape: model_cases(mods, shape))]
    for shapes, group_kinds, make in groups:
        if not group_kinds:
            continue
        for name, shape in shapes.items():
            cases = make(shape)
            el = cases[0][2]
            # ns per element and thread; the model's figures in seconds
            scale = 1.0 if group_kinds[0].startswith('model') else \
                torch.get_num_threads() / el * 1e9
            for kind in group_kinds:
                calls = [c[1] if kind.endswith(('fwdbwd', 'train')) else c[0]
                         for c in cases]
                times = time_ab(calls, args.rounds)
                s = summarize(times[0], times[1], scale)
                fk = 'fwdbwd' if kind.endswith('fwdbwd') else 'fwd'
                if fk in floor and not kind.startswith('model'):
                    s['b_best_floor_x'] = s['b_best'] / floor[fk]
                results.append(dict(case=name, kind=kind, **s))
                rows.append([
                    name, kind, f"{s['a_best']:.3f} / {s['a_median']:.3f}",
                    f"{s['b_best']:.3f} / {s['b_median']:.3f}",
                    f"**{s['ratio_median']:.3f}**",
                    f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f}",
                    f"{s['b_best_floor_x']:.2f}x" if 'b_best_floor_x' in s
                    else '-'])
                print(f'{name} {kind}: B / A {s["ratio_median"]:.3f}',
                      flush=True)
    print()
    print(harness.markdown_table(
        ['case', 'pass', 'A: best / median (ns; model: s)',
         'B: best / median (ns; model: s)', 'B / A, median of rounds',
         'range',
         'B best / op-mix floor'],
        rows))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(mode=mode, rounds=args.rounds,
                           machine=machine,
                           binaries=dict(A=paths[0], B=paths[1]),
                           labels=dict(A=labels[0], B=labels[1]),
                           variant=dict(A=variant[0], B=variant[1]),
                           cpu_cache=cache, opmix_floor=floor,
                           results=results), f, indent=1, default=str)
    return results


if __name__ == '__main__':
    main()
