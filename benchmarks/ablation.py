"""Table III ablation on the target-domain benchmark, as one command.

    python benchmarks/ablation.py [--out-dir work_dirs/ablation] [--iters 300]
        [--seeds 0 1 2] [--rows sup mt mt_scl mt_scl_rp full] [--jobs 2]
        [--threads 1] [--nice 15]

Builds the benchmark (``semillie_mm/datasets/target_domain_data.py``) on first
use, trains every (row, seed) in its own child process (``--threads`` torch /
OpenMP / numba threads, niced, at most ``--jobs`` at a time), evaluates the
last iteration's teacher (what validation uses) and student on the TARGET val
set, and the classic baselines (identity, gamma, histogram equalisation,
CLAHE), then writes ``OUT/results.json``, ``OUT/table.md`` (mean +- std over
seeds of PSNR, SSIM, LOE, NIQE) and ``OUT/grid.jpg``. A finished run (its
``metrics.json`` with the same settings) is reused, an interrupted one resumes
from its last checkpoint, so the command can be re-run after a stop.

Metrics (the project's implementations): PSNR / SSIM (MMagic) and LOE
(``semillie_mm.evaluation.functional.loe``) per 128x128 val tile, averaged;
NIQE (MMagic, Y channel) on the two val photos stitched back from their tiles
(tiles are too small for NIQE's 96-pixel blocks). Results and the exact
commands: docs/semi_supervised.md.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:  # annotations only; numpy is imported where used
    import numpy as np

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))

#: row name -> (config, label). Table III's rows, cumulative.
ROWS: Dict[str, tuple] = {
    'sup': ('configs/ablation/target_sup.py', 'supervised only'),
    'mt': ('configs/ablation/target_mt.py',
           '+ mean teacher (L1 consistency)'),
    'mt_scl': ('configs/ablation/target_mt_scl.py',
               '+ semantic contrastive loss'),
    'mt_scl_rp': ('configs/ablation/target_mt_scl_rp.py',
                  '+ RAM perceptual loss'),
    'full': ('configs/ablation/target_full.py', 'full method (+ GAN)'),
}
DEFAULT_ROWS = list(ROWS)
#: the control of the contrastive row (--rows mt_scl_random): the same loss
#: on a randomly initialised Swin, the encoder every row used before the
#: ImageNet one
ROWS['mt_scl_random'] = ('configs/ablation/target_mt_scl_random.py',
                         '+ semantic contrastive loss, RANDOM Swin encoder '
                         '(control)')
#: Diagnostics (docs/semi_supervised.md, section 4); not Table III rows.
DIAGNOSTIC_ROWS: Dict[str, tuple] = {
    'oracle': ('configs/ablation/target_oracle.py',
               'diagnostic: supervised on the TARGET pairs (oracle)'),
    'sup_ema_fast': ('configs/ablation/target_sup_ema_fast.py',
                     'diagnostic: supervised only, teacher momentum 0.02'),
    'mt_ema_fast': ('configs/ablation/target_mt_ema_fast.py',
                    'diagnostic: + mean teacher, teacher momentum 0.02'),
    'mt_noaug': ('configs/ablation/target_mt_noaug.py',
                 'diagnostic: + mean teacher, student view = teacher view'),
}
ROWS.update(DIAGNOSTIC_ROWS)
BASELINES = ('identity', 'gamma', 'he', 'clahe')
BASELINE_LABELS = dict(
    identity='input (identity)',
    gamma='gamma 1/2.2',
    he='histogram equalisation (V of HSV)',
    clahe='CLAHE (skimage, clip 0.02)')
METRICS = ('PSNR', 'SSIM', 'LOE', 'NIQE', 'ImageNetTop1Agree')
_CLASSIFIER = []  # the ImageNet classifier of the agreement metric, built once


# --------------------------------------------------------------- config
def set_iters(cfg, iters: int) -> None:
    """Scale every iteration-dependent field of an ablation config.

    Args:
        cfg (mmengine.Config): a ``configs/ablation/target_*.py`` config.
        iters (int): training iterations.
    """
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for sched in cfg.param_scheduler:
        sched.begin, sched.end = iters // 2, iters
    cfg.model.unsup_ramp = dict(length=iters // 2, by='iter')
    cfg.default_hooks.checkpoint.interval = max(1, iters // 2)
    cfg.default_hooks.checkpoint.save_best = None


def run_settings(row: str, seed: int, args) -> dict:
    """What makes two runs the same (a finished run is reused if equal)."""
    settings = dict(row=row, config=ROWS[row][0], seed=int(seed),
                    iters=int(args.iters), data_root=args.data_root)
    if getattr(args, 'overlay', None):
        settings['overlay'] = args.overlay
    return settings


def _merge_overlay(node, overlay, path=''):
    """Merge ``overlay`` into the config node ``node`` in place.

    Dicts merge key by key; anything else replaces. A part a row switched
    off (``None``, e.g. ``discriminator=None`` of the supervised row) stays
    off: the overlay scales what a row has, it adds no component.
    """
    for key, value in overlay.items():
        here = f'{path}.{key}' if path else key
        if key in node and node[key] is None:
            continue
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _merge_overlay(node[key], value, here)
        else:
            node[key] = value


def apply_overlay(cfg, overlay_file: Optional[str]) -> Optional[str]:
    """Scale a row's config with an overlay file (``--overlay``).

    Args:
        cfg (mmengine.Config): a row's config (changed in place).
        overlay_file (str, optional): a config file whose ``overlay`` dict is
            merged (see :func:`_merge_overlay`); its ``description`` names
            the setting in the reports.

    Returns:
        str | None: the overlay's description.
    """
    if not overlay_file:
        return None
    from mmengine.config import Config
    over = Config.fromfile(overlay_file)
    if 'overlay' not in over:
        raise KeyError(f'{overlay_file}: no `overlay` dict')
    _merge_overlay(cfg, over.overlay.to_dict())
    return over.get('description')


# --------------------------------------------------------------- data
def load_val(data_root: str, split: str = 'val') -> List[tuple]:
    """``[(stem, low, gt)]`` uint8 RGB tiles of a paired split."""
    return _load_pairs(data_root, f'{split}/input', f'{split}/GT')


def stitch(tiles: Dict[str, 'np.ndarray']) -> Dict[str, 'np.ndarray']:
    """Put non-overlapping tiles ``photo_TOP_LEFT`` back into photos."""
    import numpy as np
    groups: Dict[str, list] = {}
    for stem, img in tiles.items():
        photo, top, left = stem.rsplit('_', 2)
        groups.setdefault(photo, []).append((int(top), int(left), img))
    photos = {}
    for photo, items in groups.items():
        h = max(t + im.shape[0] for t, _, im in items)
        w = max(left + im.shape[1] for _, left, im in items)
        canvas = np.zeros((h, w, 3), np.uint8)
        for t, left, im in items:
            canvas[t:t + im.shape[0], left:left + im.shape[1]] = im
        photos[photo] = canvas
    return photos


def _classifier():
    if not _CLASSIFIER:
        import torch
        from mmagic.registry import MODELS
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmagic'):
            enc = MODELS.build(dict(type='ImageNetEncoder'))
        if torch.cuda.is_available():
            enc = enc.cuda()
        _CLASSIFIER.append(enc.eval())
    return _CLASSIFIER[0]


def score(outputs: Dict[str, 'np.ndarray'], val: List[tuple]) -> dict:
    """PSNR / SSIM / LOE per tile (means), NIQE on the stitched photos and
    the ImageNet top-1 agreement with the GT (the semantic metric: the
    fraction of tiles that the ImageNet classifier, EfficientNet-Lite0 at
    224x224, puts in the same class as their GT;
    ``semillie_mm.evaluation.functional.imagenet_agreement``).

    Args:
        outputs (dict): stem -> uint8 RGB enhanced tile.
        val (list): from :func:`load_val`.

    Returns:
        dict: metric -> float.
    """
    from semillie_mm.evaluation.functional.loe import loe

    import numpy as np
    from mmagic.evaluation.metrics.niqe import niqe
    from mmagic.evaluation.metrics.psnr import psnr
    from mmagic.evaluation.metrics.ssim import ssim
    p, s, e = [], [], []
    for stem, low, gt in val:
        out = outputs[stem]
        p.append(psnr(out, gt, input_order='HWC'))
        s.append(ssim(out, gt, input_order='HWC'))
        e.append(loe(low, out, input_order='HWC'))
    photos = stitch(outputs)
    n = [float(niqe(img, crop_border=0, input_order='HWC', convert_to='y'))
         for _, img in sorted(photos.items())]
    from semillie_mm.evaluation.functional import imagenet_agreement
    agree = imagenet_agreement(_classifier(),
                               [outputs[stem] for stem, _, _ in val],
                               [gt for _, _, gt in val])
    return dict(PSNR=float(np.mean(p)), SSIM=float(np.mean(s)),
                LOE=float(np.mean(e)), NIQE=float(np.mean(n)),
                ImageNetTop1Agree=float(agree))


def baseline(name: str, low: 'np.ndarray') -> 'np.ndarray':
    """A classic enhancement of a uint8 RGB image.

    Args:
        name (str): 'identity', 'gamma' (1/2.2), 'he' (histogram equalisation
            of the V channel of HSV) or 'clahe' (skimage, clip 0.02).
        low (np.ndarray): uint8 RGB.

    Returns:
        np.ndarray: uint8 RGB.
    """
    import numpy as np
    from skimage import color, exposure
    x = low.astype(np.float64) / 255.
    if name == 'identity':
        y = x
    elif name == 'gamma':
        y = x**(1 / 2.2)
    elif name == 'he':
        hsv = color.rgb2hsv(x)
        hsv[..., 2] = exposure.equalize_hist(hsv[..., 2])
        y = color.hsv2rgb(hsv)
    elif name == 'clahe':
        y = exposure.equalize_adapthist(low, clip_limit=0.02)
    else:
        raise ValueError(f'unknown baseline {name!r}')
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


# --------------------------------------------------------------- worker
def _enhance_all(net, val) -> dict:
    import numpy as np
    import torch
    device = next(net.parameters()).device
    out = {}
    with torch.no_grad():
        for stem, low, _ in val:
            x = torch.from_numpy(low.copy()).permute(2, 0, 1)[None].float()
            y = net(x.to(device) / 255.)[0].clamp(0, 1).permute(
                1, 2, 0).cpu().numpy()
            out[stem] = np.round(y * 255).astype(np.uint8)
    return out


def _final_ckpt(work_dir: str, iters: int) -> Optional[str]:
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    return ckpt if osp.isfile(ckpt) else None


def evaluate_checkpoint(cfg, ckpt: str, data_root: str,
                        save_dir: Optional[str] = None) -> dict:
    """Teacher and student metrics on the TARGET val set (and the teacher's
    PSNR/SSIM on the SOURCE-degraded copy of the same tiles).

    Args:
        cfg (mmengine.Config): the run's config.
        ckpt (str): checkpoint path.
        data_root (str): benchmark root.
        save_dir (str, optional): where to save the teacher's val outputs.

    Returns:
        dict: ``teacher``, ``student``, ``teacher_val_source``.
    """
    import cv2
    import torch
    from mmagic.registry import MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    with DefaultScope.overwrite_default_scope('mmagic'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    if torch.cuda.is_available():  # a GPU run evaluates on the GPU
        model.cuda()
    val = load_val(data_root, 'val')
    teacher_out = _enhance_all(model.teacher.module, val)
    res = dict(
        teacher=score(teacher_out, val),
        student=score(_enhance_all(model.student, val), val))
    val_src = load_val(data_root, 'val_source')
    res['teacher_val_source'] = score(
        _enhance_all(model.teacher.module, val_src), val_src)
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        for stem, img in teacher_out.items():
            cv2.imwrite(osp.join(save_dir, f'{stem}.png'), img[..., ::-1])
    return res


def _atomic_json(path: str, obj) -> None:
    from semillie_mm.utils.fileio import atomic_write_json
    atomic_write_json(path, obj, indent=1)


def steady_iter_seconds(runner) -> Optional[float]:
    """Median time of an iteration over the second half of a training.

    ``seconds_per_iter`` divides the whole training time, start-up included;
    this is the rate once running (IterTimerHook's ``train/time``), what a
    longer run of the same setting costs per extra iteration.

    Args:
        runner (mmengine.runner.Runner): a runner after ``train()``.

    Returns:
        float | None: seconds, or None without timings.
    """
    import numpy as np
    try:
        times = np.asarray(runner.message_hub.get_scalar('train/time').data[0])
    except KeyError:
        return None
    if times.size == 0:
        return None
    return float(np.median(times[times.size // 2:]))


def worker(row: str, seed: int, args) -> None:
    """Train one (row, seed) and write its ``metrics.json`` (child
    process)."""
    import torch
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        # on a GPU the float32 matrix products run in TF32 (as cuDNN's
        # convolutions already do by default); recorded in metrics.json
        torch.backends.cuda.matmul.allow_tf32 = True
    import semillie_mm

    from mmengine.config import Config
    from mmengine.runner import Runner
    work_dir = osp.join(args.out_dir, 'runs', row, f'seed{seed}')
    cfg = Config.fromfile(osp.join(REPO, ROWS[row][0]))
    apply_overlay(cfg, args.overlay)
    set_iters(cfg, args.iters)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    for key in ('val_cfg', 'val_dataloader', 'val_evaluator', 'test_cfg',
                'test_dataloader', 'test_evaluator'):
        cfg[key] = None
    for dl in (cfg.train_dataloader.dataset.paired,
               cfg.train_dataloader.dataset.unpaired):
        dl.data_root = args.data_root
    start = time.time()
    ckpt = _final_ckpt(work_dir, args.iters)
    trained_now = ckpt is None
    steady = None
    if trained_now:
        cfg.resume = osp.isfile(osp.join(work_dir, 'last_checkpoint'))
        runner = Runner.from_cfg(cfg)
        runner.train()
        steady = steady_iter_seconds(runner)
        ckpt = _final_ckpt(work_dir, args.iters)
        if ckpt is None:
            raise RuntimeError(f'{work_dir}: training ended without '
                               f'iter_{args.iters}.pth')
    train_s = time.time() - start
    res = evaluate_checkpoint(cfg, ckpt, args.data_root,
                              osp.join(work_dir, 'val_teacher'))
    res.update(
        settings=run_settings(row, seed, args),
        train_seconds=train_s if trained_now else None,
        seconds_per_iter=train_s / args.iters if trained_now else None,
        seconds_per_iter_steady=steady,
        threads=args.threads,
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available()
        else 'cpu',
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        package=semillie_mm.__file__,
        checkpoint=ckpt)
    _atomic_json(osp.join(work_dir, 'metrics.json'), res)


def diagnose(args) -> dict:
    """Post-hoc diagnostics of finished runs (``--diagnose``).

    For each finished (row, seed): teacher and student on the TARGET val at
    the half-way checkpoint and at the end (does validation fall while
    lambda1 ramps up?), and on the unpaired TARGET images against their
    clean versions (``unlabeled_oracle/GT``): how good the consistency
    targets (the teacher's outputs) are.

    Args:
        args (argparse.Namespace): the command line.

    Returns:
        dict: ``row -> seed -> results``; also written to
        ``OUT/diagnose.json``.
    """
    import numpy as np  # noqa: F401
    from mmagic.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    val = load_val(args.data_root, 'val')
    unl = _load_pairs(args.data_root, 'unlabeled/input',
                      'unlabeled_oracle/GT')
    out = {}
    for row in args.rows:
        for seed in args.seeds:
            run = osp.join(args.out_dir, 'runs', row, f'seed{seed}')
            if not _finished(osp.join(run, 'metrics.json'),
                             run_settings(row, seed, args)):
                continue
            cfg = Config.fromfile(osp.join(REPO, ROWS[row][0]))
            apply_overlay(cfg, args.overlay)
            set_iters(cfg, args.iters)
            res = {}
            for it in (args.iters // 2, args.iters):
                ckpt = osp.join(run, f'iter_{it}.pth')
                if not osp.isfile(ckpt):
                    continue
                with DefaultScope.overwrite_default_scope('mmagic'):
                    model = MODELS.build(cfg.model)
                load_checkpoint(model, ckpt, map_location='cpu',
                                logger='silent')
                model.eval()
                for name, net in (('teacher', model.teacher.module),
                                  ('student', model.student)):
                    res[f'val_{name}_iter{it}'] = score(
                        _enhance_all(net, val), val)
                    if it == args.iters:
                        res[f'unlabeled_{name}'] = score(
                            _enhance_all(net, unl), unl)
            out.setdefault(row, {})[seed] = res
            print(f'[diagnose] {row} seed {seed}: ' + ', '.join(
                f'{k} {v["PSNR"]:.2f}' for k, v in res.items()), flush=True)
    res_all = dict(iters=args.iters, rows=out,
                   unlabeled_identity=score({s: lo for s, lo, _ in unl},
                                            unl))
    _atomic_json(osp.join(args.out_dir, 'diagnose.json'), res_all)
    return res_all


def _load_pairs(data_root: str, in_rel: str, gt_rel: str) -> List[tuple]:
    """Like :func:`load_val` for any two folders of matching tiles."""
    from semillie_mm.datasets.folder_utils import index_by_stem

    import cv2
    in_dir, gt_dir = osp.join(data_root, in_rel), osp.join(data_root, gt_rel)
    ins, gts = index_by_stem(in_dir), index_by_stem(gt_dir)
    return [(stem, cv2.imread(osp.join(in_dir, ins[stem]))[..., ::-1].copy(),
             cv2.imread(osp.join(gt_dir, gts[stem]))[..., ::-1].copy())
            for stem in sorted(ins)]


# --------------------------------------------------------------- parent
def _finished(path: str, settings: dict) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            res = json.load(f)
    except (OSError, ValueError):
        return None
    return res if res.get('settings') == settings else None


def run_all(args) -> Dict[str, Dict[int, dict]]:
    """Train what is missing (children, ``--jobs`` at a time); return
    ``row -> seed -> metrics``."""
    results: Dict[str, Dict[int, dict]] = {r: {} for r in args.rows}
    todo = []
    for seed in args.seeds:  # seed-major: all rows of seed 0 come first
        for row in args.rows:
            path = osp.join(args.out_dir, 'runs', row, f'seed{seed}',
                            'metrics.json')
            done = _finished(path, run_settings(row, seed, args))
            if done:
                results[row][seed] = done
            else:
                todo.append((row, seed, path))
    print(f'[ablation] {sum(len(v) for v in results.values())} finished '
          f'runs reused, {len(todo)} to train ({args.jobs} at a time, '
          f'{args.threads} thread(s) each)', flush=True)
    import harness  # benchmarks/harness.py (this script's folder)
    env = dict(os.environ, **harness.thread_env(args.threads))
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    running = []
    failed = []

    def reap(block: bool):
        for item in list(running):
            proc, row, seed, path, log, t0 = item
            if proc.poll() is None and not block:
                continue
            proc.wait()
            log.close()
            running.remove(item)
            done = _finished(path, run_settings(row, seed, args))
            if proc.returncode == 0 and done:
                results[row][seed] = done
                print(f'[ablation] {row} seed {seed}: teacher PSNR '
                      f'{done["teacher"]["PSNR"]:.2f} dB '
                      f'({time.time() - t0:.0f} s)', flush=True)
            else:
                failed.append((row, seed))
                print(f'[ablation] {row} seed {seed} FAILED (exit '
                      f'{proc.returncode}); log: {log.name}', flush=True)
            if block:
                return

    for row, seed, path in todo:
        while len(running) >= args.jobs:
            time.sleep(2)
            reap(False)
        run_dir = osp.dirname(path)
        os.makedirs(run_dir, exist_ok=True)
        log = open(osp.join(run_dir, 'worker.log'), 'a', encoding='utf-8')
        cmd = [
            sys.executable, osp.abspath(__file__), '--worker', row,
            str(seed), '--out-dir', args.out_dir, '--iters',
            str(args.iters), '--threads', str(args.threads), '--data-root',
            args.data_root
        ] + (['--overlay', args.overlay] if args.overlay else [])
        nice = args.nice
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=(lambda: os.nice(nice)) if nice else None)
        running.append((proc, row, seed, path, log, time.time()))
        print(f'[ablation] started {row} seed {seed}', flush=True)
    while running:
        time.sleep(2)
        reap(False)
    if failed:
        print(f'[ablation] {len(failed)} run(s) failed: {failed}',
              flush=True)
    return results


def baselines(args) -> dict:
    """Metrics of the classic baselines on the TARGET val set (cached)."""
    path = osp.join(args.out_dir, 'baselines.json')
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            cached = json.load(f)
        metrics = cached.get('metrics', {})
        if (cached.get('data_root') == args.data_root
                and set(metrics) == set(BASELINES) and all(
                    set(METRICS) <= set(v) for v in metrics.values())):
            return metrics
    val = load_val(args.data_root, 'val')
    res = {}
    for name in BASELINES:
        res[name] = score({s: baseline(name, low)
                           for s, low, _ in val}, val)
    _atomic_json(path, dict(data_root=args.data_root, metrics=res))
    return res


def _mean_std(values: List[Optional[float]]) -> tuple:
    """Mean and sample std; runs finished before a metric existed (None)
    are left out, and (None, None) comes back when none has it."""
    import numpy as np
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarise(results, base, args) -> dict:
    """Mean and sample std over seeds, per row and metric."""
    summary = {}
    for row, by_seed in results.items():
        if not by_seed:
            continue
        summary[row] = dict(seeds=sorted(by_seed))
        for which in ('teacher', 'student', 'teacher_val_source'):
            summary[row][which] = {
                m: _mean_std([r[which].get(m) for r in by_seed.values()])
                for m in METRICS
            }
        spi = [r['seconds_per_iter'] for r in by_seed.values()
               if r.get('seconds_per_iter')]
        summary[row]['seconds_per_iter'] = (
            float(sum(spi) / len(spi)) if spi else None)
        # paired by seed: the same seed draws the same data and initial
        # weights in every row, so the per-seed difference is the sharper test
        sup = results.get('sup', {})
        common = sorted(set(by_seed) & set(sup))
        if row != 'sup' and common:
            diffs = [by_seed[k]['teacher']['PSNR'] - sup[k]['teacher']['PSNR']
                     for k in common]
            summary[row]['teacher_psnr_minus_sup'] = dict(
                seeds=common, per_seed=diffs, mean_std=_mean_std(diffs))
    return dict(rows=summary, baselines=base, iters=args.iters,
                seeds=list(args.seeds), threads=args.threads)


def markdown(summary: dict) -> str:
    """The Table III-style Markdown table (teacher on the TARGET val)."""
    fmt = dict(PSNR='{:.2f}', SSIM='{:.4f}', LOE='{:.1f}', NIQE='{:.3f}',
               ImageNetTop1Agree='{:.3f}')
    lines = [
        '| method | seeds | PSNR (dB) ↑ | SSIM ↑ | LOE ↓ | NIQE ↓ | '
        'ImageNet top-1 agreement with GT ↑ | '
        'student PSNR | PSNR on SOURCE-degraded val |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
    ]
    for name in BASELINES:
        r = summary['baselines'][name]
        cells = [fmt[m].format(r[m]) for m in METRICS]
        lines.append(f'| {BASELINE_LABELS[name]} | - | ' + ' | '.join(cells) +
                     ' | | |')
    for row, s in summary['rows'].items():
        cells = []
        for m in METRICS:
            mean, std = s['teacher'][m]
            cells.append('-' if mean is None else
                         f'{fmt[m].format(mean)} ± {fmt[m].format(std)}')
        src = s['teacher_val_source']['PSNR']
        stu = s['student']['PSNR']
        lines.append(f'| {ROWS[row][1]} | {len(s["seeds"])} | ' +
                     ' | '.join(cells) + f' | {stu[0]:.2f} ± {stu[1]:.2f}'
                     f' | {src[0]:.2f} ± {src[1]:.2f} |')
    diffs = [(row, s['teacher_psnr_minus_sup'])
             for row, s in summary['rows'].items()
             if s.get('teacher_psnr_minus_sup')]
    if diffs:
        lines += ['', '| method | teacher PSNR - supervised only, per seed '
                  '(dB) | mean ± std |', '|---|---|---:|']
        for row, d in diffs:
            per = ', '.join(f'seed {k}: {v:+.2f}'
                            for k, v in zip(d['seeds'], d['per_seed']))
            lines.append(f'| {ROWS[row][1]} | {per} | '
                         f'{d["mean_std"][0]:+.2f} ± {d["mean_std"][1]:.2f} |')
    return '\n'.join(lines) + '\n'


def picture_grid(args, rows: List[str], n_tiles: int = 4) -> Optional[str]:
    """input | baselines | each row's seed-0 teacher | GT, for a few tiles."""
    import cv2
    import numpy as np
    val = load_val(args.data_root, 'val')
    # the tiles with the most detail in their ground truth (chosen from the
    # GT alone, before looking at any output), in file order
    detail = [float(gt.astype(np.float64).std()) for _, _, gt in val]
    idx = sorted(np.argsort(detail)[::-1][:n_tiles].tolist())
    seed = args.seeds[0]
    cols = [('input', None), ('gamma', None), ('CLAHE', None)]
    cols += [(r, r) for r in rows]
    cols += [('GT', None)]
    lines = []
    for i in idx:
        stem, low, gt = val[i]
        cells = []
        for label, row in cols:
            if label == 'input':
                img = low
            elif label == 'gamma':
                img = baseline('gamma', low)
            elif label == 'CLAHE':
                img = baseline('clahe', low)
            elif label == 'GT':
                img = gt
            else:
                path = osp.join(args.out_dir, 'runs', row, f'seed{seed}',
                                'val_teacher', f'{stem}.png')
                if not osp.isfile(path):
                    img = np.zeros_like(low)
                else:
                    img = cv2.imread(path)[..., ::-1]
            cells.append(np.pad(img, ((0, 2), (0, 2), (0, 0)),
                                constant_values=255))
        lines.append(np.concatenate(cells, axis=1))
    grid = np.concatenate(lines, axis=0)
    head = np.full((18, grid.shape[1], 3), 255, np.uint8)
    w = low.shape[1] + 2
    for k, (label, _) in enumerate(cols):
        cv2.putText(head, label[:14], (k * w + 3, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    grid = np.concatenate([head, grid], axis=0)
    path = osp.join(args.out_dir, f'{_prefix(args)}grid.jpg')
    from semillie_mm.utils.fileio import atomic_path
    with atomic_path(path, suffix='.tmp.jpg') as tmp:
        cv2.imwrite(tmp, grid[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), 92])
    return path


def _machine() -> str:
    """CPU model and core count."""
    import harness  # benchmarks/harness.py (this script's folder)
    return f'{harness.cpu_model()}, {os.cpu_count()} cores'


def _prefix(args) -> str:
    return f'{args.name}_' if args.name else ''


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out-dir', default='work_dirs/ablation')
    p.add_argument('--data-root', default='data/target_domain')
    p.add_argument('--rows', nargs='+', default=DEFAULT_ROWS)
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--iters', type=int, default=300)
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--nice', type=int, default=15)
    p.add_argument('--overlay', default=None,
                   help='a config file whose `overlay` dict scales every '
                   'row (model size, batch, crops; e.g. '
                   'configs/gpu/table3_paper_scale.py); a part a row '
                   'switched off stays off')
    p.add_argument('--name', default='',
                   help='prefix of the summary files (NAME_results.json, '
                   'NAME_table.md, NAME_grid.jpg), e.g. for diagnostic rows')
    p.add_argument('--diagnose', action='store_true',
                   help='only evaluate finished runs (half-way and final '
                   'checkpoints, unpaired images vs their clean versions)')
    p.add_argument('--worker', nargs=2, metavar=('ROW', 'SEED'),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    """Entry point."""
    from semillie_mm.utils.cli import UserError
    args = parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise UserError(f'unknown row(s) {unknown}; known: {list(ROWS)}')
    if args.iters < 2 or args.jobs < 1 or args.threads < 1:
        raise UserError('--iters must be >= 2, --jobs and --threads >= 1')
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args)
        return 0
    if args.diagnose:
        diagnose(args)
        return 0
    from semillie_mm.datasets.target_domain_data import prepare_target_domain_data
    os.makedirs(args.out_dir, exist_ok=True)
    prepare_target_domain_data(args.data_root)
    start = time.time()
    results = run_all(args)
    base = baselines(args)
    summary = summarise(results, base, args)
    summary['wall_seconds'] = time.time() - start
    summary['machine'] = _machine()
    summary['model'] = ('SemiLLIENet C=16, 1 group x 1 MSSB, N=8, 64x64 '
                        'crops, batch 4 paired + 4 unpaired')
    if args.overlay:
        from mmengine.config import Config
        summary['overlay'] = args.overlay
        summary['model'] = Config.fromfile(args.overlay).get(
            'description', args.overlay)
    pre = _prefix(args)
    _atomic_json(osp.join(args.out_dir, f'{pre}results.json'), summary)
    table = markdown(summary)
    from semillie_mm.utils.fileio import atomic_write_text
    atomic_write_text(osp.join(args.out_dir, f'{pre}table.md'), table)
    grid = picture_grid(args, [r for r in args.rows if results.get(r)])
    print('\n' + table)
    print(f'[ablation] results: {args.out_dir}/{pre}results.json, '
          f'{pre}table.md, {grid}')
    return 0


if __name__ == '__main__':
    from semillie_mm.utils.cli import run_cli
    run_cli(main)
