"""tools/run_demo.py and benchmarks/ablation.py: user mistakes (one line,
exit status 2, nothing trained or written) and the demo end to end on a tiny
config (2 iterations) with the shipped model's row and panel."""
import contextlib
import importlib.util
import io
import json
import os
import os.path as osp

from semillie_mm.utils.cli import run_cli

import numpy as np
import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _load(rel):
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(rel))[0], osp.join(REPO, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1
    return err


def test_demo_missing_config(tmp_path, capsys):
    demo = _load('tools/run_demo.py')
    missing = str(tmp_path / 'nope.py')
    err = _run(demo.main, ['--config', missing], capsys)
    assert 'nope.py' in err


def test_demo_data_root_without_val(tmp_path, capsys):
    demo = _load('tools/run_demo.py')
    cfg = tmp_path / 'cfg.py'
    base = osp.join(REPO, 'configs', 'semillie_demo_target.py')
    cfg.write_text(f"_base_ = [{base!r}]\n"
                   f"data_root = {str(tmp_path / 'empty')!r}\n"
                   "train_dataloader = dict(dataset=dict(paired=dict("
                   "prepare=None)))\n")
    err = _run(demo.main, ['--config', str(cfg), '--work-dir',
                           str(tmp_path / 'wd')], capsys)
    assert 'val/input' in err and 'cfg.py' in err
    assert not osp.exists(tmp_path / 'wd')


def test_ablation_unknown_row(tmp_path, capsys):
    abl = _load('benchmarks/ablation.py')
    err = _run(abl.main, ['--rows', 'sup', 'typo', '--out-dir',
                          str(tmp_path / 'out')], capsys)
    assert 'typo' in err
    assert not osp.exists(tmp_path / 'out')


def test_ablation_rows_switch_parts_off():
    """Each Table III row config differs from the full one exactly in the
    documented parts."""
    from mmengine.config import Config
    abl = _load('benchmarks/ablation.py')
    m = {r: Config.fromfile(osp.join(REPO, abl.ROWS[r][0])).model
         for r in abl.DEFAULT_ROWS}
    assert abl.DEFAULT_ROWS == ['sup', 'mt', 'mt_scl', 'mt_scl_rp', 'full']
    assert m['sup'].unsup_weight == 0 and m['mt'].unsup_weight == 0.2
    on = lambda r, k: m[r].get(k) is not None  # noqa: E731
    table = dict(sup=(0, 0, 0), mt=(0, 0, 0), mt_scl=(1, 0, 0),
                 mt_scl_rp=(1, 1, 0), full=(1, 1, 1))
    for row, (scl, rp, gan) in table.items():
        assert on(row, 'contrastive_loss') == bool(scl), row
        assert on(row, 'perceptual_loss') == bool(rp), row
        assert on(row, 'discriminator') == bool(gan), row
        assert on(row, 'gan_loss') == bool(gan), row
        assert m[row].generator == m['full'].generator


def test_diagnostic_rows_differ_only_where_documented():
    from mmengine.config import Config
    abl = _load('benchmarks/ablation.py')
    cfg = {r: Config.fromfile(osp.join(REPO, abl.ROWS[r][0]))
           for r in ('sup', 'mt', 'oracle', 'mt_ema_fast', 'mt_noaug')}
    paired = cfg['oracle'].train_dataloader.dataset.paired
    assert (paired.input_dir, paired.gt_dir) == ('unlabeled/input',
                                                 'unlabeled_oracle/GT')
    assert cfg['oracle'].model == cfg['sup'].model
    assert cfg['mt_ema_fast'].model.teacher.momentum == 0.02
    assert cfg['mt'].model.teacher.momentum == 0.004
    types = [t.type for t in
             cfg['mt_noaug'].train_dataloader.dataset.unpaired.pipeline]
    assert types == ['LoadImageFromFile', 'Resize', 'CopyValues']
    assert cfg['mt_noaug'].model == cfg['mt'].model


# ---------------------------------------------------------------- the demo
# val tiles named PHOTO_TOP_LEFT (the demo stitches them back for NIQE, which
# needs a photo of at least 96 x 192): one photo of two 96 x 96 tiles
VAL_TILE = 96
VAL_STEMS = ('p_0000_0000', 'p_0000_0096')


def _demo_data(root):
    """The tiny training set of the tool tests, with val tiles as the
    demo's benchmark names them."""
    import cv2
    from semillie_test_config import make_dataset
    make_dataset(root, n_train=2, n_unpaired=2, n_val=0)
    rng = np.random.default_rng(1)
    for sub in ('val/input', 'val/GT'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for stem in VAL_STEMS:
        gt = rng.integers(40, 255, (VAL_TILE, VAL_TILE, 3), dtype=np.uint8)
        cv2.imwrite(osp.join(root, 'val/GT', f'{stem}.png'), gt)
        cv2.imwrite(osp.join(root, 'val/input', f'{stem}.png'),
                    (gt * 0.2).astype(np.uint8))
    return root


def _run_demo(demo, args):
    """Run the demo; its stdout (prints) and metrics.json."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert demo.main(args) == 0
    with open(osp.join(args[args.index('--work-dir') + 1], 'demo_results',
                       'metrics.json'), encoding='utf-8') as f:
        return out.getvalue(), json.load(f)


def _side_by_side(work_dir, stem):
    import cv2
    img = cv2.imread(osp.join(work_dir, 'demo_results', 'side_by_side',
                              f'{stem}.png'))
    return img[..., ::-1]


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """A finished demo run (2 iterations of the tiny model), with
    ``--no-shipped``: (demo module, arguments, stdout, metrics.json)."""
    from semillie_test_config import write_config
    tmp = tmp_path_factory.mktemp('demo')
    data = _demo_data(str(tmp / 'data'))
    cfg = write_config(str(tmp / 'cfg.py'), data, max_iters=2)
    args = ['--config', cfg, '--work-dir', str(tmp / 'wd'),
            '--supervised', 'none']
    demo = _load('tools/run_demo.py')
    out, res = _run_demo(demo, args + ['--no-shipped'])
    return demo, args, out, res


def test_demo_no_shipped_option(demo_run):
    demo, args, out, res = demo_run
    assert 'training took' in out
    assert 'shipped model' not in out and demo.SHIPPED_LABEL not in out
    assert res['shipped_model'] is None and 'shipped' not in res
    assert set(res) >= {'identity', 'clahe', 'student', 'teacher'}
    # input | CLAHE | teacher | GT, 4 px white between
    assert _side_by_side(args[3], VAL_STEMS[0]).shape == (
        VAL_TILE, 4 * VAL_TILE + 12, 3)


def test_demo_shipped_model_row(demo_run, tmp_path, monkeypatch):
    """The shipped row is the shipped network's full-image output, scored
    like the demo's own rows: its PSNR equals one computed here."""
    import semillie_mm.apis.pretrained as pretrained

    import cv2
    import torch
    from mmagic.evaluation.metrics.psnr import psnr
    from mmagic.registry import MODELS
    from semillie_test_utils import TINY_MODEL, write_shipped_model
    demo, args, _, _ = demo_run
    _, weights = write_shipped_model(tmp_path, seed=3)
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(tmp_path))
    out, res = _run_demo(demo, args)
    assert 'reusing the finished run' in out  # no second training
    rows = [line for line in out.splitlines()
            if line.startswith(f'| {demo.SHIPPED_LABEL}')]
    assert len(rows) == 1
    shipped = res['shipped_model']
    assert shipped['weights'] == weights
    assert osp.isfile(shipped['config'])
    assert f'{shipped["metrics"]["PSNR"]:.2f}' in rows[0]
    assert 'shipped model' in out.splitlines()[-2]  # the panels line

    # the reference: the bare network of the weights file on the val tiles
    net = MODELS.build(dict(TINY_MODEL['generator']))
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    data = osp.join(osp.dirname(args[1]), 'data')
    psnrs = []
    for stem in VAL_STEMS:
        low, gt = (cv2.imread(osp.join(data, sub, f'{stem}.png'))[..., ::-1]
                   for sub in ('val/input', 'val/GT'))
        with torch.no_grad():
            x = torch.from_numpy(low.copy()).permute(2, 0, 1)[None] / 255.
            y = net(x.float())[0].clamp(0, 1).permute(1, 2, 0).numpy()
        enhanced = np.round(y * 255).astype(np.uint8)
        psnrs.append(psnr(enhanced, gt, input_order='HWC'))
        # input | CLAHE | teacher | shipped | GT
        pic = _side_by_side(args[3], stem)
        assert pic.shape == (VAL_TILE, 5 * VAL_TILE + 16, 3)
        left = 3 * (VAL_TILE + 4)
        assert np.array_equal(pic[:, left:left + VAL_TILE], enhanced)
        assert np.array_equal(pic[:, -VAL_TILE:], gt)
    assert shipped['metrics']['PSNR'] == pytest.approx(np.mean(psnrs),
                                                       abs=1e-9)
    assert shipped['metrics']['PSNR'] != pytest.approx(
        res['teacher']['PSNR'], abs=1e-6)


def test_demo_without_shipped_model(demo_run, tmp_path, monkeypatch):
    """A missing shipped model: one line, and the demo carries on."""
    import semillie_mm.apis.pretrained as pretrained
    demo, args, _, _ = demo_run
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(tmp_path))
    out, res = _run_demo(demo, args)
    notes = [line for line in out.splitlines() if 'no shipped model' in line]
    assert len(notes) == 1
    assert 'semillie_target.py' in notes[0]
    assert demo.SHIPPED_LABEL not in out
    assert res['shipped_model'] is None
    assert 'teacher - CLAHE' in out
    assert _side_by_side(args[3], VAL_STEMS[0]).shape == (
        VAL_TILE, 4 * VAL_TILE + 12, 3)
