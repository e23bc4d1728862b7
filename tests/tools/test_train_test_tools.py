"""tools/train.py and tools/test.py end to end on CPU (the foundation issue):
one training iteration + one validation, then --resume and load_from from the
checkpoint that run wrote, then tools/test.py --out."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from semillie_test_config import REPO, make_dataset, write_config


def run_tool(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('tools')
    data = make_dataset(str(tmp / 'data'))
    cfg = write_config(str(tmp / 'cfg.py'), data, max_iters=1)
    work = str(tmp / 'work')
    log = run_tool('tools/train.py', cfg, '--work-dir', work)
    return tmp, cfg, work, log


def test_one_iteration_and_validation(first_run):
    _, _, work, log = first_run
    assert 'Iter(train) [1/1]' in log
    assert 'loss_sup' in log and 'loss_scr' in log
    assert 'Iter(val) [2/2]' in log and 'PSNR' in log
    assert osp.isfile(osp.join(work, 'iter_1.pth'))


def test_resume_continues_from_checkpoint(first_run):
    _, cfg, work, _ = first_run
    log = run_tool('tools/train.py', cfg, '--work-dir', work, '--resume',
                   '--cfg-options', 'train_cfg.max_iters=2',
                   'train_cfg.val_interval=100')
    assert 'resumed epoch: 0, iter: 1' in log
    assert 'Iter(train) [2/2]' in log
    assert 'Iter(train) [1/2]' not in log
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


def test_load_from_and_test_tool(first_run):
    tmp, cfg, work, _ = first_run
    ckpt = osp.join(work, 'iter_1.pth')
    log = run_tool('tools/train.py', cfg, '--work-dir', str(tmp / 'work2'),
                   '--cfg-options', f'load_from={ckpt}',
                   'train_cfg.val_interval=100')
    assert f'Load checkpoint from {ckpt}' in log
    out = str(tmp / 'metrics.json')
    run_tool('tools/test.py', cfg, ckpt, '--work-dir', str(tmp / 'work3'),
             '--out', out)
    with open(out) as f:
        metrics = json.load(f)
    assert any('PSNR' in k for k in metrics), metrics


# ---------------------------------------------------------------------------
# one-line user errors (semillie_mm.utils.cli): exit status 2, one line on
# stderr naming the file; checked before any model or data is built, so these
# tests run the tools' __main__ in-process (runpy) except one real subprocess.
# ---------------------------------------------------------------------------
DEMO_CFG = osp.join(REPO, 'configs', 'semillie_demo.py')


def run_main(tool, *args, monkeypatch, capsys):
    """Run ``tools/<tool>`` as ``__main__`` in this process.

    Returns:
        tuple[int, list[str]]: exit status and the lines on stderr.
    """
    import runpy
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', [tool, *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(osp.join(REPO, 'tools', tool), run_name='__main__')
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def _checkpoints(tmp_path):
    import torch
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(4096.)}, 'meta': {}}, good)
    data = good.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 3])
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    return good, cut, empty


def test_train_missing_config_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES='')
    env.pop('SEMILLIE_DEBUG', None)
    missing = str(tmp_path / 'nope.py')
    proc = subprocess.run([sys.executable, 'tools/train.py', missing],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('train.py: error: ')
    assert missing in lines[0] and 'does not exist' in lines[0]


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_broken_config(tool, tmp_path, monkeypatch, capsys):
    bad = tmp_path / 'bad.py'
    bad.write_text("_base_ = ['%s']\nmodel = dict(\n  x=1 y=2)\n" % DEMO_CFG)
    good, _, _ = _checkpoints(tmp_path)
    args = [str(bad)] + ([str(good)] if tool == 'test.py' else [])
    code, err = run_main(tool, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(bad) in err[0] and 'line 3' in err[0]


def test_train_checkpoint_errors(tmp_path, monkeypatch, capsys):
    _, cut, empty = _checkpoints(tmp_path)
    work = str(tmp_path / 'work')
    code, err = run_main('train.py', DEMO_CFG, '--work-dir', work, '--resume',
                         str(cut), monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(cut) in err[0] and 'truncated' in err[0]
    assert '--resume' in err[0] and 're-download' in err[0]
    code, err = run_main('train.py', DEMO_CFG, '--work-dir', work,
                         '--cfg-options', f'load_from={empty}',
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(empty) in err[0] and 'empty' in err[0]
    assert 'load_from' in err[0]
    assert not osp.exists(work)  # nothing built, nothing written


def test_train_missing_weights_and_bad_option(tmp_path, monkeypatch, capsys):
    ram = str(tmp_path / 'ram_swin_large_14m.pth')
    code, err = run_main(
        'train.py', DEMO_CFG, '--work-dir', str(tmp_path / 'w'),
        '--cfg-options', f'model.ram_encoder.pretrained={ram}',
        monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert ram in err[0] and 'model.ram_encoder.pretrained' in err[0]
    assert 'README' in err[0]
    code, err = run_main('train.py', DEMO_CFG, '--launcher', 'slurmm',
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert "invalid choice: 'slurmm'" in err[0] and '--help' in err[0]


def test_debug_flag_shows_the_exception(tmp_path, monkeypatch):
    import runpy

    from semillie_mm.utils.cli import UserError
    monkeypatch.setattr(sys, 'argv', [
        'train.py', str(tmp_path / 'nope.py'), '--debug'])
    with pytest.raises(UserError, match='nope.py does not exist'):
        runpy.run_path(osp.join(REPO, 'tools', 'train.py'),
                       run_name='__main__')


def test_test_tool_checkpoint_errors(tmp_path, monkeypatch, capsys):
    _, cut, _ = _checkpoints(tmp_path)
    missing = str(tmp_path / 'missing.pth')
    code, err = run_main('test.py', DEMO_CFG, missing, monkeypatch=monkeypatch,
                         capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith('test.py: error: checkpoint ')
    assert missing in err[0] and 'does not exist' in err[0]
    code, err = run_main('test.py', DEMO_CFG, str(cut),
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(cut) in err[0] and 'truncated' in err[0]


def test_test_tool_missing_fid_weights(tmp_path, monkeypatch, capsys):
    good, _, _ = _checkpoints(tmp_path)
    inception = str(tmp_path / 'pt_inception.pth')
    cfg = tmp_path / 'fid.py'
    cfg.write_text(f"_base_ = ['{DEMO_CFG}']\n"
                   f"test_evaluator = [dict(type='ReferenceFID', "
                   f"reference_dir='{tmp_path}', inception_path='{inception}')]"
                   "\n")
    code, err = run_main('test.py', str(cfg), str(good),
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert inception in err[0] and 'test_evaluator.0.inception_path' in err[0]
    assert 'docs/metrics.md' in err[0]


def test_prepare_demo_data_errors(tmp_path, monkeypatch, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    code, err = run_main('prepare_demo_data.py', '--root', str(afile),
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(afile) in err[0] and 'is a file' in err[0]
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'mine.txt').write_text('keep me')
    code, err = run_main('prepare_demo_data.py', '--root', str(other),
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert str(other) in err[0] and '--force' in err[0]
    assert (other / 'mine.txt').read_text() == 'keep me'
    code, err = run_main('prepare_demo_data.py', '--seed', 'x',
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1 and "invalid int value: 'x'" in err[0]


@pytest.mark.parametrize('args,expected', [
    (['tools/dist_train.sh', 'nope.py', '2'], 'config nope.py does not exist'),
    (['tools/dist_train.sh', DEMO_CFG, 'two'], "NUM_PROCS 'two'"),
    (['tools/dist_test.sh', DEMO_CFG, 'nope.pth', '1'],
     'checkpoint nope.pth does not exist'),
])
def test_dist_scripts_check_arguments(args, expected):
    proc = subprocess.run(['bash', *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_test_tool_missing_data_folder(tmp_path, monkeypatch, capsys):
    good, _, _ = _checkpoints(tmp_path)
    missing = str(tmp_path / 'no_data')
    code, err = run_main(
        'test.py', DEMO_CFG, str(good), '--work-dir', str(tmp_path / 'w'),
        '--cfg-options', f'test_dataloader.dataset.data_root={missing}',
        'test_dataloader.dataset.prepare=None',
        'test_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err) == 1, err
    assert missing in err[0] and 'fix the path' in err[0]
