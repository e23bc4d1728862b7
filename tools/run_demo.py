"""The embedded demo, end to end (README quick start, command 1).

1. builds the demo data on first use (photos shipped inside scikit-image and
   scikit-learn, darkened by the documented low-light synthesis; no download);
2. trains ``configs/semillie_demo.py`` on the CPU through the standard MMEngine
   runner (a finished run in the work dir is reused; an unfinished one resumes);
3. evaluates PSNR / SSIM on the demo's val pairs for the un-enhanced input
   (identity), the student and the teacher, and saves the enhanced images and
   side-by-side pictures (input | output | GT) under ``WORK_DIR/demo_results``.

    python tools/run_demo.py [--work-dir DIR] [--retrain] [--cfg-options k=v ...]
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import semillie_mm  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402

from mmagic.evaluation.metrics.psnr import psnr  # noqa: E402
from mmagic.evaluation.metrics.ssim import ssim  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402
from semillie_mm.datasets.demo_data import prepare_demo_data  # noqa: E402
from semillie_mm.datasets.folder_utils import index_by_stem  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/semillie_demo.py')
    parser.add_argument('--work-dir', default='work_dirs/semillie_demo')
    parser.add_argument(
        '--retrain',
        action='store_true',
        help='train from scratch even if a finished run exists')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IOError(f'cannot read image {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _write_rgb(path: str, img: np.ndarray):
    """Write atomically: a temp file in the same folder, then rename."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    root, ext = osp.splitext(path)
    tmp = f'{root}.tmp{ext}'
    if not cv2.imwrite(tmp, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise IOError(f'cannot write {path}')
    os.replace(tmp, path)


def _finished_checkpoint(cfg: Config):
    """The final checkpoint of a finished run in the work dir, or None."""
    marker = osp.join(cfg.work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker, encoding='utf-8') as f:
        ckpt = f.read().strip()
    max_iters = cfg.train_cfg.get('max_iters')
    if osp.isfile(ckpt) and max_iters and \
            osp.basename(ckpt) == f'iter_{max_iters}.pth':
        return ckpt
    return None


def train(cfg: Config, retrain: bool) -> str:
    """Train (or reuse / resume) and return the final checkpoint path."""
    ckpt = None if retrain else _finished_checkpoint(cfg)
    if ckpt:
        print(f'[demo] reusing the finished run {ckpt} (--retrain to redo)')
        return ckpt
    if not retrain and osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        print('[demo] resuming the unfinished run in', cfg.work_dir)
        cfg.resume = True
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    print(f'[demo] training took {time.time() - start:.0f} s')
    ckpt = _finished_checkpoint(cfg)
    if ckpt is None:
        raise RuntimeError(f'training ended without a final checkpoint in '
                           f'{cfg.work_dir}')
    return ckpt


@torch.no_grad()
def evaluate(cfg: Config, ckpt: str, data_root: str, out_dir: str) -> dict:
    """PSNR/SSIM of identity, student and teacher on the val pairs."""
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'mmagic')):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    nets = dict(student=model.student, teacher=model.teacher.module)
    in_dir = osp.join(data_root, 'val', 'input')
    gt_dir = osp.join(data_root, 'val', 'GT')
    inputs, gts = index_by_stem(in_dir), index_by_stem(gt_dir)
    scores = {k: dict(PSNR=[], SSIM=[]) for k in ('identity', *nets)}
    for stem in sorted(inputs):
        low = _read_rgb(osp.join(in_dir, inputs[stem]))
        gt = _read_rgb(osp.join(gt_dir, gts[stem]))
        x = torch.from_numpy(low).permute(2, 0, 1)[None].float() / 255.
        outs = dict(identity=low)
        for name, net in nets.items():
            y = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            outs[name] = np.round(y * 255).astype(np.uint8)
        for name, img in outs.items():
            scores[name]['PSNR'].append(psnr(img, gt, input_order='HWC'))
            scores[name]['SSIM'].append(ssim(img, gt, input_order='HWC'))
        _write_rgb(osp.join(out_dir, 'enhanced', f'{stem}.png'),
                   outs['teacher'])
        sep = np.full((low.shape[0], 4, 3), 255, np.uint8)
        _write_rgb(
            osp.join(out_dir, 'side_by_side', f'{stem}.png'),
            np.concatenate([low, sep, outs['teacher'], sep, gt], axis=1))
    return {
        name: {k: float(np.mean(v))
               for k, v in s.items()}
        for name, s in scores.items()
    }


def main(argv=None):
    """Entry point."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    data_root = cfg.get('data_root', 'data/demo')
    prepare_demo_data(data_root)
    print(f'[demo] data in {data_root}; RAM losses use a small randomly '
          'initialised Swin (RAM weights cannot ship with the demo)')
    ckpt = train(cfg, args.retrain)
    out_dir = osp.join(cfg.work_dir, 'demo_results')
    results = evaluate(cfg, ckpt, data_root, out_dir)
    results['checkpoint'] = ckpt
    gain = results['teacher']['PSNR'] - results['identity']['PSNR']
    results['teacher_gain_over_identity_dB'] = gain
    tmp = osp.join(out_dir, 'metrics.json.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, osp.join(out_dir, 'metrics.json'))

    print('\n| val (demo)             |  PSNR (dB) |  SSIM  |')
    print('|------------------------|-----------:|-------:|')
    for name, label in (('identity', 'input (no enhancement)'),
                        ('student', 'Semi-LLIE student'),
                        ('teacher', 'Semi-LLIE teacher')):
        r = results[name]
        print(f'| {label:<22} | {r["PSNR"]:10.2f} | {r["SSIM"]:.4f} |')
    print(f'\nteacher - identity: {gain:+.2f} dB PSNR')
    print(f'enhanced images and side-by-side pictures (input | output | GT): '
          f'{out_dir}')


if __name__ == '__main__':
    main()
