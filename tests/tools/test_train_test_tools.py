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
