"""Why a Table III row wins or loses: colour, pseudo-labels, encoder features.

Reads the finished runs of ``benchmarks/ablation.py`` (same ``--out-dir``,
``--rows``, ``--seeds``, ``--iters``) and measures, for each run's final
TEACHER (what validation uses and what gives the pseudo-labels):

- **PSNR with the colour matched**: the val PSNR after each output's mean
  colour is matched to its GT's (a per-image, per-channel gain), which
  separates the global brightness and cast from structure and noise;
- **colour cast** on the TARGET val: the mean RGB of the outputs and the
  ratios G/R and B/R of those means, against the GT's (the TARGET degradation
  is a street-lamp cast: a model that keeps it has G/R and B/R below the
  GT's);
- **pseudo-label quality**: the teacher's outputs on the unpaired TARGET tiles
  (the consistency targets of the mean-teacher rows) against their clean
  versions (``unlabeled_oracle/GT``, never used by those rows): PSNR and the
  same colour ratios;
- **encoder feature distances**: the cosine distance, in the pooled embedding
  of the ImageNet encoder the semantic losses use (EfficientNet-Lite0 at
  ``--encoder-size``, 128 as in the ablation configs), between each val
  output and its GT, and between the output and its low-light input (the
  contrastive loss's negative).

The input, CLAHE and (for the features) the GT itself are reported as
references. Writes ``OUT/NAME.json`` and ``OUT/NAME.md``; each run's result is
kept in its folder (``NAME.json``) and reused while its checkpoint is
unchanged, so the command can be re-run as more runs finish.

    python benchmarks/diagnose_target.py --out-dir work_dirs/table3_v2 \
        --rows sup mt mt_scl mt_scl_rp full mt_scl_random --seeds 0 1 2 \
        --iters 1000
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:  # annotations only; numpy and torch are imported where used
    import numpy as np
    import torch

sys.path.insert(0, osp.abspath(osp.dirname(__file__)))

import ablation  # noqa: E402  (benchmarks/ablation.py)


def colour_stats(outputs: Dict[str, 'np.ndarray']) -> dict:
    """Mean RGB of a set of images and the G/R, B/R ratios of the means.

    Args:
        outputs (dict): stem -> uint8 RGB image.

    Returns:
        dict: ``mean_rgb`` (list of 3 floats, 0-255), ``g_over_r``,
        ``b_over_r``.
    """
    import numpy as np
    means = np.mean([img.reshape(-1, 3).mean(0) for img in outputs.values()],
                    axis=0)
    return dict(mean_rgb=[float(v) for v in means],
                g_over_r=float(means[1] / max(means[0], 1e-6)),
                b_over_r=float(means[2] / max(means[0], 1e-6)))


def gain_matched(outputs: Dict[str, 'np.ndarray'],
                 pairs: List[tuple]) -> Dict[str, 'np.ndarray']:
    """Each output with its mean colour matched to its GT's.

    A per-image, per-channel gain (mean of GT / mean of output), then
    clipping: what is left of the error afterwards is structure, noise and
    local colour, not the global brightness and cast that a dark input of
    unknown exposure leaves ambiguous.

    Args:
        outputs (dict): stem -> uint8 RGB image.
        pairs (list): ``(stem, low, gt)`` tuples.

    Returns:
        dict: stem -> float64 RGB image in [0, 255].
    """
    import numpy as np
    out = {}
    for stem, _, gt in pairs:
        o = outputs[stem].astype(np.float64)
        gain = gt.reshape(-1, 3).mean(0) / np.maximum(
            o.reshape(-1, 3).mean(0), 1e-6)
        out[stem] = np.clip(o * gain, 0, 255)
    return out


def mean_psnr(outputs: Dict[str, 'np.ndarray'], pairs: List[tuple]) -> float:
    """Mean PSNR (dB, RGB, 8 bits) of outputs against the pairs' GT.

    Args:
        outputs (dict): stem -> uint8 RGB image.
        pairs (list): ``(stem, low, gt)`` tuples.

    Returns:
        float: mean over the pairs.
    """
    import numpy as np
    vals = []
    for stem, _, gt in pairs:
        err = np.mean((outputs[stem].astype(np.float64) - gt) ** 2)
        vals.append(10 * np.log10(255.**2 / max(err, 1e-10)))
    return float(np.mean(vals))


class FeatureDistance:
    """Cosine distances in the pooled embedding of the ImageNet encoder.

    Args:
        img_size (int): the encoder's input size (images are resized).
    """

    def __init__(self, img_size: int = 128) -> None:
        import semillie_mm  # noqa: F401  (registers the encoder)

        from mmagic.registry import MODELS
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmagic'):
            self.enc = MODELS.build(
                dict(type='ImageNetEncoder', img_size=img_size)).eval()

    def embed(self, imgs: List['np.ndarray']) -> 'torch.Tensor':
        """L2-normalised pooled embeddings of uint8 RGB images.

        Args:
            imgs (list[np.ndarray]): HxWx3 uint8 RGB images of one size.

        Returns:
            Tensor: (N, 1280).
        """
        import numpy as np
        import torch
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            emb = self.enc(x / 255.)[0][:, 0]
        return torch.nn.functional.normalize(emb, dim=1)

    def distance(self, a: List['np.ndarray'], b: List['np.ndarray']) -> float:
        """Mean cosine distance (1 - cos) between paired images.

        Args:
            a (list[np.ndarray]): images.
            b (list[np.ndarray]): images paired with ``a``.

        Returns:
            float: mean over the pairs.
        """
        return float((1 - (self.embed(a) * self.embed(b)).sum(1)).mean())


def diagnose_run(cfg, ckpt: str, val: List[tuple], unl: List[tuple],
                 feat: FeatureDistance) -> dict:
    """The diagnostics of one finished run (its final teacher).

    Args:
        cfg (mmengine.Config): the run's config.
        ckpt (str): its final checkpoint.
        val (list): TARGET val pairs.
        unl (list): unpaired TARGET tiles with their clean versions.
        feat (FeatureDistance): the encoder.

    Returns:
        dict: ``val_colour``, ``pseudo_label_psnr``, ``pseudo_label_colour``,
        ``feat_dist_gt``, ``feat_dist_input``.
    """
    from mmagic.registry import MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    with DefaultScope.overwrite_default_scope('mmagic'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    teacher = model.teacher.module
    out_val = ablation._enhance_all(teacher, val)
    out_unl = ablation._enhance_all(teacher, unl)
    return reference_row(out_val, val, feat, out_unl, unl)


def reference_row(out_val: dict, val: List[tuple], feat: FeatureDistance,
                  out_unl: dict = None, unl: List[tuple] = None) -> dict:
    """Diagnostics of given outputs (a run's or a baseline's).

    Args:
        out_val (dict): stem -> output on the val tiles.
        val (list): TARGET val pairs.
        feat (FeatureDistance): the encoder.
        out_unl (dict, optional): stem -> output on the unpaired tiles.
        unl (list, optional): the unpaired tiles with their clean versions.

    Returns:
        dict: the diagnostics (pseudo-label entries only with ``out_unl``).
    """
    stems = [s for s, _, _ in val]
    res = dict(
        val_colour=colour_stats(out_val),
        feat_dist_gt=feat.distance([out_val[s] for s in stems],
                                   [gt for _, _, gt in val]),
        feat_dist_input=feat.distance([out_val[s] for s in stems],
                                      [low for _, low, _ in val]),
        psnr=mean_psnr(out_val, val),
        gain_matched_psnr=mean_psnr(gain_matched(out_val, val), val))
    if out_unl is not None:
        res.update(pseudo_label_psnr=mean_psnr(out_unl, unl),
                   pseudo_label_colour=colour_stats(out_unl))
    return res


def _mean_std(vals: List[float], digits: int = 3) -> str:
    import numpy as np
    if len(vals) == 1:
        return f'{vals[0]:.{digits}f}'
    return (f'{np.mean(vals):.{digits}f} ± '
            f'{np.std(vals, ddof=1):.{digits}f}')


def table(results: dict) -> str:
    """Markdown table of :func:`main`'s results (mean ± std over seeds).

    Args:
        results (dict): ``references`` and ``rows`` (row -> seed -> dict).

    Returns:
        str: the table.
    """
    head = ('| outputs | seeds | val PSNR (dB) | val PSNR, colour matched | '
            'val G/R | val B/R | feature dist. to GT | '
            'feature dist. to input | pseudo-label PSNR (dB) | '
            'pseudo-label G/R |\n|---|---:|---:|---:|---:|---:|---:|---:|'
            '---:|---:|')
    lines = [head]
    for name, r in results['references'].items():
        c = r['val_colour']
        pl = r.get('pseudo_label_psnr')
        plc = r.get('pseudo_label_colour', {}).get('g_over_r')
        lines.append(
            f'| {name} | - | {min(r["psnr"], 99):.2f} | '
            f'{min(r["gain_matched_psnr"], 99):.2f} | '
            f'{c["g_over_r"]:.3f} | {c["b_over_r"]:.3f} | '
            f'{r["feat_dist_gt"]:.3f} | {r["feat_dist_input"]:.3f} | '
            + (f'{pl:.2f}' if pl is not None else '') + ' | '
            + (f'{plc:.3f}' if plc is not None else '') + ' |')
    for row, seeds in results['rows'].items():
        rs = list(seeds.values())
        if not rs:
            continue
        get = lambda f: [f(r) for r in rs]  # noqa: E731
        lines.append(
            f'| {ablation.ROWS[row][1]} | {len(rs)} | '
            f'{_mean_std(get(lambda r: r["psnr"]), 2)} | '
            f'{_mean_std(get(lambda r: r["gain_matched_psnr"]), 2)} | '
            f'{_mean_std(get(lambda r: r["val_colour"]["g_over_r"]))} | '
            f'{_mean_std(get(lambda r: r["val_colour"]["b_over_r"]))} | '
            f'{_mean_std(get(lambda r: r["feat_dist_gt"]))} | '
            f'{_mean_std(get(lambda r: r["feat_dist_input"]))} | '
            f'{_mean_std(get(lambda r: r["pseudo_label_psnr"]))} | '
            f'{_mean_std(get(lambda r: r["pseudo_label_colour"]["g_over_r"]))}'
            ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> dict:
    """Run the diagnostics (see the module docstring).

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        dict: ``references`` and ``rows``.
    """
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out-dir', required=True)
    p.add_argument('--data-root', default='data/target_domain')
    p.add_argument('--rows', nargs='+', default=ablation.DEFAULT_ROWS)
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--iters', type=int, required=True)
    p.add_argument('--overlay', default=None)
    p.add_argument('--encoder-size', type=int, default=128)
    p.add_argument('--name', default='diagnose_target')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    import torch
    from mmengine.config import Config
    torch.set_num_threads(args.threads)
    val = ablation.load_val(args.data_root, 'val')
    unl = ablation._load_pairs(args.data_root, 'unlabeled/input',
                               'unlabeled_oracle/GT')
    feat = FeatureDistance(args.encoder_size)
    gt_val = {s: gt for s, _, gt in val}
    gt_unl = {s: gt for s, _, gt in unl}
    refs = {
        'GT':
        reference_row(gt_val, val, feat, gt_unl, unl),
        'input (identity)':
        reference_row({s: low for s, low, _ in val}, val, feat,
                      {s: low for s, low, _ in unl}, unl),
        'CLAHE':
        reference_row({s: ablation.baseline('clahe', low)
                       for s, low, _ in val}, val, feat,
                      {s: ablation.baseline('clahe', low)
                       for s, low, _ in unl}, unl),
    }
    rows = {}
    for row in args.rows:
        for seed in args.seeds:
            run = osp.join(args.out_dir, 'runs', row, f'seed{seed}')
            ckpt = osp.join(run, f'iter_{args.iters}.pth')
            if not osp.isfile(ckpt):
                print(f'[diagnose] {row} seed {seed}: no {ckpt}, skipped',
                      flush=True)
                continue
            cfg = Config.fromfile(osp.join(ablation.REPO,
                                           ablation.ROWS[row][0]))
            ablation.apply_overlay(cfg, args.overlay)
            ablation.set_iters(cfg, args.iters)
            cache = osp.join(run, f'{args.name}.json')
            key = dict(version=2, ckpt_mtime_ns=os.stat(ckpt).st_mtime_ns,
                       encoder_size=args.encoder_size,
                       data_root=args.data_root)
            res = None
            if osp.isfile(cache):  # a finished run is diagnosed once
                with open(cache, encoding='utf-8') as f:
                    cached = json.load(f)
                if cached.get('key') == key:
                    res = cached['result']
            if res is None:
                res = diagnose_run(cfg, ckpt, val, unl, feat)
                ablation._atomic_json(cache, dict(key=key, result=res))
            rows.setdefault(row, {})[seed] = res
            print(f'[diagnose] {row} seed {seed}: val G/R '
                  f'{res["val_colour"]["g_over_r"]:.3f}, feature distance '
                  f'to GT {res["feat_dist_gt"]:.3f}, pseudo-labels '
                  f'{res["pseudo_label_psnr"]:.2f} dB', flush=True)
    results = dict(iters=args.iters, encoder_size=args.encoder_size,
                   references=refs, rows=rows)
    ablation._atomic_json(osp.join(args.out_dir, f'{args.name}.json'),
                          results)
    md = table(results)
    with open(osp.join(args.out_dir, f'{args.name}.md'), 'w',
              encoding='utf-8') as f:
        f.write(md)
    print(md)
    return results


if __name__ == '__main__':
    main()
