"""User mistakes in tools/run_demo.py and benchmarks/ablation.py: one line,
exit status 2, nothing trained or written."""
import importlib.util
import os.path as osp

import pytest

from semillie_mm.utils.cli import run_cli

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
