"""The figures of the shipped model's card (semillie_mm/pretrained/).

Scores the shipped model (or any ``--config``/``--weights`` pair of a bare
network) and CLAHE, the way ``benchmarks/ablation.py`` scores its rows (PSNR,
SSIM, LOE, NIQE, ImageNet agreement), on:

- the TARGET val of the target-domain benchmark (photo-disjoint from every
  training photo) and its SOURCE-degraded copy;
- a photo outside the benchmark: gradio's test photo ``cheetah2.jpg`` (the
  web demo's dependency ships it), whole, darkened with the TARGET and with the
  SOURCE degradation, ``--seeds`` parameter draws each (mean ± std).

    python benchmarks/eval_shipped.py [--out FILE.json]
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.dirname(__file__)))

import ablation  # noqa: E402  (benchmarks/ablation.py)


def outside_photo():
    """gradio's ``test_data/cheetah2.jpg`` as uint8 RGB (None without it)."""
    import numpy as np
    from PIL import Image
    try:
        import gradio
    except ImportError:
        return None
    path = osp.join(osp.dirname(gradio.__file__), 'test_data', 'cheetah2.jpg')
    if not osp.isfile(path):
        return None
    return np.asarray(Image.open(path).convert('RGB'))


def degraded_pairs(photo, kind: str, seeds) -> list:
    """``(name, low, gt)`` copies of a photo under one degradation.

    Args:
        photo (np.ndarray): uint8 RGB, cropped to a multiple of 8 here.
        kind (str): 'target' or 'source'.
        seeds (list[int]): one parameter draw per seed.

    Returns:
        list[tuple]: the pairs.
    """
    from semillie_mm.datasets.target_domain_data import (
        sample_target_params,
        synthesize_target_low_light,
    )
    from semillie_mm.datasets.transforms.low_light_synthesis import (
        sample_low_light_params,
        synthesize_low_light,
    )

    import numpy as np
    h, w = (photo.shape[0] // 8) * 8, (photo.shape[1] // 8) * 8
    gt = np.ascontiguousarray(photo[:h, :w])
    out = []
    for seed in seeds:
        rng = np.random.default_rng([1234, seed])
        if kind == 'target':
            low = synthesize_target_low_light(gt, sample_target_params(rng))
        else:
            low = synthesize_low_light(gt, sample_low_light_params(rng))
        out.append((f'{kind}_{seed}', low, gt))
    return out


def evaluate(net, pairs: list) -> dict:
    """Network and CLAHE scores on pairs, per pair and averaged.

    Args:
        net (nn.Module): RGB [0, 1] -> RGB [0, 1].
        pairs (list): ``(name, low, gt)``.

    Returns:
        dict: ``model`` and ``clahe``, each metric -> value.
    """
    outs = ablation._enhance_all(net, pairs)
    clahe = {s: ablation.baseline('clahe', low) for s, low, _ in pairs}
    return dict(model=_scores(outs, pairs), clahe=_scores(clahe, pairs))


def _scores(outs: dict, pairs: list) -> dict:
    import numpy as np
    from mmagic.evaluation.metrics.psnr import psnr
    from mmagic.evaluation.metrics.ssim import ssim
    p = [psnr(outs[s], gt, input_order='HWC') for s, _, gt in pairs]
    q = [ssim(outs[s], gt, input_order='HWC') for s, _, gt in pairs]
    return dict(PSNR=float(np.mean(p)), PSNR_std=float(np.std(p, ddof=1))
                if len(p) > 1 else 0.0, SSIM=float(np.mean(q)),
                mean_rgb=[float(v) for v in np.mean(
                    [outs[s].reshape(-1, 3).mean(0) for s, _, _ in pairs],
                    axis=0)])


def main(argv=None) -> dict:
    """Run the evaluation (see the module docstring).

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        dict: the results (also printed, and written to ``--out``).
    """
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--name', default=None, help='shipped model name')
    p.add_argument('--data-root', default='data/target_domain')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--out', default=None)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from semillie_mm.apis import SemiLLIEInferencer, pretrained
    from semillie_mm.datasets.target_domain_data import prepare_target_domain_data
    prepare_target_domain_data(args.data_root)
    name = args.name or pretrained.DEFAULT_MODEL
    cfg_path, weights = pretrained.shipped_model(name)
    net = SemiLLIEInferencer(name, device='cpu',
                             show_progress=False).get_network('teacher')
    res = dict(config=cfg_path, weights=weights)
    val = ablation.load_val(args.data_root, 'val')
    res['target_val'] = ablation.score(ablation._enhance_all(net, val), val)
    res['target_val_clahe'] = ablation.score(
        {s: ablation.baseline('clahe', low) for s, low, _ in val}, val)
    src = ablation.load_val(args.data_root, 'val_source')
    res['source_val'] = ablation.score(ablation._enhance_all(net, src), src)
    photo = outside_photo()
    if photo is not None:
        for kind in ('target', 'source'):
            res[f'cheetah_{kind}'] = evaluate(
                net, degraded_pairs(photo, kind, args.seeds))
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        ablation._atomic_json(args.out, res)
    return res


if __name__ == '__main__':
    main()
