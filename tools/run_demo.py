"""The demo, end to end (README quick start, command 1).

1. builds the target-domain benchmark on first use (photos shipped inside
   scikit-image and scikit-learn; SOURCE-degraded pairs, TARGET-degraded
   unpaired images and val pairs; docs/semi_supervised.md; no download);
2. trains ``configs/semillie_demo_target.py`` (the paper-default backbone, the
   full method) on the CPU through the standard MMEngine runner (a finished
   run in the work dir is reused; an unfinished one resumes);
3. evaluates on the TARGET val pairs, with the project's metrics (PSNR, SSIM,
   LOE, NIQE), the un-enhanced input, CLAHE, the supervised-only result and
   the full method (teacher, which validation uses, and student);
4. evaluates the model shipped in the package (``semillie_mm/pretrained/``,
   trained much longer; ``semillie_mm/pretrained/MODEL_CARD.md``) on the same
   pairs, the same way (one full-image forward, clipped and rounded to uint8
   like the demo's own networks), as one more row (``--no-shipped`` leaves it
   out; when its files are missing the demo says so in one line and carries
   on without it);
5. saves the teacher's enhanced images and side-by-side pictures (input |
   CLAHE | short training (teacher) | shipped model | GT; without the shipped
   model: input | CLAHE | teacher | GT) and ``metrics.json`` (every row, the
   shipped model's config and weights paths) under ``WORK_DIR/demo_results``.

The supervised-only row is, by default, the SHIPPED result of
``benchmarks/ablation.py`` (docs/results/ablation_target.json: a smaller
model, mean over seeds; labelled as such); ``--supervised train`` trains the
supervised-only variant of the demo config with the same budget instead
(about a third of the full method's time more).

    python tools/run_demo.py [--config CFG] [--work-dir DIR] [--retrain]
        [--supervised shipped|train|none] [--no-shipped]
        [--cfg-options k=v ...]
"""
import argparse
import json
import os.path as osp
import time
from typing import Optional

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
SHIPPED = osp.join(REPO, 'docs', 'results', 'ablation_target.json')


def _ablation():
    """``benchmarks/ablation.py`` of this checkout, loaded by path (a script,
    not part of the installed package): the demo scores as Table III does."""
    import importlib.util
    import sys
    name = 'semillie_benchmarks_ablation'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, 'benchmarks', 'ablation.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/semillie_demo_target.py')
    parser.add_argument('--work-dir', default=None,
                        help='default: the config\'s work_dir')
    parser.add_argument(
        '--retrain',
        action='store_true',
        help='train from scratch even if a finished run exists')
    parser.add_argument(
        '--supervised',
        choices=('shipped', 'train', 'none'),
        default='shipped',
        help='supervised-only row: the shipped ablation result (default), '
        'train it with the same budget, or leave it out')
    parser.add_argument(
        '--no-shipped',
        action='store_true',
        help='leave out the row and panel of the model shipped in the '
        'package (semillie_mm/pretrained)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _finished_checkpoint(cfg):
    """The final checkpoint of a finished run in the work dir, or None."""
    max_iters = cfg.train_cfg.get('max_iters')
    ckpt = osp.join(cfg.work_dir, f'iter_{max_iters}.pth')
    return ckpt if max_iters and osp.isfile(ckpt) else None


def train(cfg, retrain: bool) -> tuple:
    """Train (or reuse / resume); return (final checkpoint, seconds or
    None when reused)."""
    from mmengine.runner import Runner
    ckpt = None if retrain else _finished_checkpoint(cfg)
    if ckpt:
        print(f'[demo] reusing the finished run {ckpt} (--retrain to redo)')
        return ckpt, None
    if not retrain and osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        print('[demo] resuming the unfinished run in', cfg.work_dir)
        cfg.resume = True
    start = time.time()
    Runner.from_cfg(cfg).train()
    seconds = time.time() - start
    iters = cfg.train_cfg.max_iters
    print(f'[demo] training took {seconds:.0f} s '
          f'({seconds / iters:.2f} s per iteration incl. start-up)')
    ckpt = _finished_checkpoint(cfg)
    if ckpt is None:
        raise RuntimeError(f'training ended without a final checkpoint in '
                           f'{cfg.work_dir}')
    return ckpt, seconds


def supervised_variant(cfg):
    """The supervised-only variant of a demo config (same model, budget)."""
    from mmengine.config import Config
    sup = Config.fromfile(osp.join(REPO, 'configs/ablation/target_sup.py'))
    cfg = cfg.copy()
    for key in ('unsup_weight', 'ram_encoder', 'contrastive_loss',
                'perceptual_loss', 'discriminator', 'gan_loss'):
        cfg.model[key] = sup.model.get(key)
    cfg.optim_wrapper = sup.optim_wrapper
    cfg.work_dir = osp.join(cfg.work_dir, 'supervised_only')
    return cfg


def _shipped_supervised():
    """The supervised-only row of the shipped ablation result, or None."""
    if not osp.isfile(SHIPPED):
        return None
    with open(SHIPPED, encoding='utf-8') as f:
        res = json.load(f)
    row = res.get('rows', {}).get('sup')
    if not row:
        return None
    return dict(
        metrics={m: v[0]
                 for m, v in row['teacher'].items()},
        std={m: v[1]
             for m, v in row['teacher'].items()},
        note=(f'shipped result of benchmarks/ablation.py, a smaller model '
              f'than the demo\'s, so not the same budget '
              f'({res.get("model", "demo-sized model")}, '
              f'{res.get("iters")} iterations, mean of '
              f'{len(row["seeds"])} seeds, {res.get("machine", "")})'))


def load_shipped(name: Optional[str] = None) -> tuple:
    """The teacher of the model shipped in the package, built by
    ``SemiLLIEInferencer(name)`` (so the demo runs what the tools run).

    Args:
        name (str | None): The shipped model; None: ``DEFAULT_MODEL``
            (``semillie_target``).

    Returns:
        tuple[nn.Module, str, str]: The network (RGB [0, 1] to RGB [0, 1],
        eval mode, CPU), the config path and the weights path.

    Raises:
        FileNotFoundError: The shipped config or weights file is missing.
    """
    from semillie_mm.apis import SemiLLIEInferencer, pretrained
    name = name or pretrained.DEFAULT_MODEL
    cfg_path, weights = pretrained.shipped_model(name)
    inferencer = SemiLLIEInferencer(name, device='cpu', show_progress=False)
    return inferencer.get_network('teacher'), cfg_path, weights


def _missing_shipped(name: Optional[str] = None) -> str:
    """One line saying which file of the shipped model is missing."""
    from semillie_mm.apis import pretrained
    paths = pretrained.shipped_model_paths(name or pretrained.DEFAULT_MODEL)
    missing = [p for p in paths if not osp.isfile(p)]
    return (f'[demo] no shipped model ({", ".join(missing)} missing; a fresh '
            'clone of semillie-mm has it): its row and panel are left out')


def evaluate(cfg, ckpt: str, data_root: str, out_dir: str,
             shipped=None) -> dict:
    """Metrics of identity, CLAHE, student and teacher on the TARGET val.

    Also saves the teacher's outputs (``enhanced/``) and the side-by-side
    pictures (``side_by_side/``: input | CLAHE | teacher | [shipped] | GT)
    under ``out_dir``.

    Args:
        cfg (mmengine.Config): The run's config.
        ckpt (str): Its checkpoint.
        data_root (str): The benchmark root (``val/input``, ``val/GT``).
        out_dir (str): Where the pictures go.
        shipped (nn.Module | None): The shipped model's network
            (:func:`load_shipped`); given, it is scored as ``'shipped'``,
            the same way as the teacher, and shown in the pictures.

    Returns:
        dict: name -> metric -> float, for ``identity``, ``clahe``,
        ``student``, ``teacher`` and (given ``shipped``) ``shipped``.
    """
    from semillie_mm.apis import write_image_atomic

    import numpy as np
    from mmagic.registry import MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    abl = _ablation()
    _enhance_all, baseline, load_val, score = (abl._enhance_all, abl.baseline,
                                               abl.load_val, abl.score)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'mmagic')):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    val = load_val(data_root, 'val')
    outs = dict(
        identity={s: low for s, low, _ in val},
        clahe={s: baseline('clahe', low) for s, low, _ in val},
        student=_enhance_all(model.student, val),
        teacher=_enhance_all(model.teacher.module, val))
    if shipped is not None:
        outs['shipped'] = _enhance_all(shipped, val)
    panels = ['clahe', 'teacher'] + (['shipped'] if shipped is not None
                                     else [])
    for stem, low, gt in val:
        write_image_atomic(osp.join(out_dir, 'enhanced', f'{stem}.png'),
                           outs['teacher'][stem])
        sep = np.full((low.shape[0], 4, 3), 255, np.uint8)
        row = [low]
        for name in panels:
            row += [sep, outs[name][stem]]
        write_image_atomic(osp.join(out_dir, 'side_by_side', f'{stem}.png'),
                           np.concatenate(row + [sep, gt], axis=1))
    return {name: score(o, val) for name, o in outs.items()}


#: The label of the shipped model's row.
SHIPPED_LABEL = ('shipped model (semillie_mm/pretrained, longer training; '
                 'see MODEL_CARD.md)')


def _table(results: dict, sup: Optional[dict],
           shipped: Optional[dict] = None) -> str:
    """The Markdown table the demo prints.

    Args:
        results (dict): name -> metrics, from :func:`evaluate`.
        sup (dict | None): The supervised-only row.
        shipped (dict | None): The shipped model's row (``metrics``).

    Returns:
        str: The table and its footnote.
    """
    fmt = dict(PSNR='{:.2f}', SSIM='{:.4f}', LOE='{:.1f}', NIQE='{:.3f}')
    lines = ['| TARGET val | PSNR (dB) | SSIM | LOE | NIQE |',
             '|---|---:|---:|---:|---:|']

    def row(label, metrics, std=None):
        cells = []
        for m in ('PSNR', 'SSIM', 'LOE', 'NIQE'):
            c = fmt[m].format(metrics[m])
            if std:
                c += ' ± ' + fmt[m].format(std[m])
            cells.append(c)
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')

    row('input (no enhancement)', results['identity'])
    row('CLAHE (skimage, clip 0.02)', results['clahe'])
    if sup:
        row('supervised only' + ('' if sup.get('trained') else ' *'),
            sup['metrics'], sup.get('std'))
    row('Semi-LLIE full method, student', results['student'])
    row('Semi-LLIE full method, teacher', results['teacher'])
    if shipped:
        row(SHIPPED_LABEL + ' †', shipped['metrics'])
    text = '\n'.join(lines)
    if sup and not sup.get('trained'):
        text += f'\n* {sup["note"]}'
    if shipped:
        text += f'\n† {shipped["note"]}'
    return text


def main(argv=None):
    """Entry point."""
    args = parse_args(argv)
    wall_start = time.time()
    import semillie_mm  # noqa: F401
    from semillie_mm.datasets.folder_utils import maybe_prepare
    from semillie_mm.utils.checks import load_config
    from semillie_mm.utils.cli import UserError
    from semillie_mm.utils.fileio import atomic_write_json
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    data_root = cfg.get('data_root', 'data/target_domain')
    paired = cfg.train_dataloader.dataset.paired
    maybe_prepare(data_root, paired.get('prepare'))
    if not osp.isdir(osp.join(data_root, 'val', 'input')):
        raise UserError(f'{args.config}: data_root {data_root} has no '
                        'val/input folder (the demo evaluates on val pairs)')
    enc = cfg.model.get('ram_encoder') or {}
    what = dict(ImageNetEncoder='an ImageNet-trained EfficientNet-Lite0 '
                '(RAM weights cannot ship with the demo)',
                RAMImageEncoder='RAMImageEncoder' + (
                    '' if enc.get('pretrained') else
                    ' with RANDOM weights (RAM weights cannot ship)'))
    print(f'[demo] data in {data_root}; the RAM losses use '
          f'{what.get(enc.get("type"), enc.get("type") or "no encoder")}')
    # the demo evaluates below; skip the runner's own end-of-training val
    for key in ('val_cfg', 'val_dataloader', 'val_evaluator'):
        cfg[key] = None
    ckpt, seconds = train(cfg, args.retrain)
    out_dir = osp.join(cfg.work_dir, 'demo_results')
    shipped_net = shipped = None
    if not args.no_shipped:
        try:
            shipped_net, shipped_cfg, shipped_weights = load_shipped()
        except FileNotFoundError:
            print(_missing_shipped())
        else:
            print(f'[demo] also evaluating the shipped model '
                  f'({shipped_weights})')
    results = evaluate(cfg, ckpt, data_root, out_dir, shipped=shipped_net)
    if shipped_net is not None:
        from semillie_mm.apis.pretrained import DEFAULT_MODEL, MODEL_CARD
        shipped = dict(
            metrics=results.pop('shipped'),
            name=DEFAULT_MODEL,
            config=shipped_cfg,
            weights=shipped_weights,
            note=f'the model shipped in the package ({shipped_weights}): '
            f'not the demo\'s budget, model or training recipe (a different '
            f'and much longer training); {MODEL_CARD} says what it is')

    sup = None
    if args.supervised == 'train':
        sup_cfg = supervised_variant(cfg)
        sup_ckpt, _ = train(sup_cfg, args.retrain)
        sup_res = evaluate(sup_cfg, sup_ckpt, data_root,
                           osp.join(sup_cfg.work_dir, 'demo_results'))
        sup = dict(metrics=sup_res['teacher'], trained=True,
                   note='same model and budget, trained here')
    elif args.supervised == 'shipped':
        sup = _shipped_supervised()
        if sup is None:
            print(f'[demo] no shipped supervised-only result at {SHIPPED}; '
                  'use --supervised train')
    results.update(
        checkpoint=ckpt,
        train_seconds=seconds,
        supervised_only=sup,
        shipped_model=shipped,
        gain_over_clahe_dB=results['teacher']['PSNR'] -
        results['clahe']['PSNR'])
    atomic_write_json(osp.join(out_dir, 'metrics.json'), results, indent=2)
    print('\n' + _table(results, sup, shipped))
    print(f'\nteacher - CLAHE: {results["gain_over_clahe_dB"]:+.2f} dB PSNR')
    panels = ' | '.join(['input', 'CLAHE', 'short training (teacher)'] +
                        (['shipped model'] if shipped else []) + ['GT'])
    print(f'enhanced images (teacher) and side-by-side pictures '
          f'({panels}): {out_dir}')
    wall = time.time() - wall_start
    print(f'[demo] wall time {wall // 60:.0f} min {wall % 60:.0f} s '
          '(training and evaluation; set-up excluded)')
    return 0


if __name__ == '__main__':
    from semillie_mm.utils.cli import run_cli
    run_cli(main)
