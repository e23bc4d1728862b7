"""Checkpoints load weights-only: a pickle that runs code is refused in every
place that reads a checkpoint, and the project's own checkpoints still load.

Each malicious file below would create a marker file when unpickled in full;
the tests check the marker never appears (and that it does appear with an
explicit ``--trust-checkpoint``, which proves the file really was malicious).
"""
import os
import os.path as osp
import sys

from semillie_mm.utils.checkpoint import (
    CheckpointError,
    check_checkpoint,
    load_checkpoint_file,
    set_trust_checkpoints,
    trusted_checkpoints,
)
from semillie_mm.utils.cli import UserError

import numpy as np
import pytest
import torch
from semillie_test_config import REPO, make_dataset, write_config


class _Evil:
    """Unpickling this writes ``marker`` (what an attacker's file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("pwned")', ))


class _Getattr:
    """Unpickles as ``getattr(obj, name)``."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


def _evil_checkpoint(folder, state_dict=None):
    marker = osp.join(str(folder), 'PWNED')
    path = osp.join(str(folder), 'evil.pth')
    torch.save({'state_dict': state_dict or {'w': torch.zeros(2)},
                'meta': {'note': _Evil(marker)}}, path)
    return path, marker


@pytest.fixture(autouse=True)
def _untrusted():
    set_trust_checkpoints(False)
    yield
    set_trust_checkpoints(False)


def test_loader_refuses_code_and_trust_runs_it(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    assert check_checkpoint(path) == path  # a dict: the header check passes
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path, map_location='cpu')
    msg = str(err.value)
    assert '`exec`' in msg and '--trust-checkpoint' in msg
    assert path in msg and '\n' not in msg
    assert not osp.exists(marker)
    # the explicit switch unpickles in full: the file really runs code
    with trusted_checkpoints():
        load_checkpoint_file(path, map_location='cpu')
    assert osp.exists(marker)
    os.remove(marker)
    with trusted_checkpoints(False):  # passing the caller's False through
        with pytest.raises(CheckpointError):
            load_checkpoint_file(path)
    assert not osp.exists(marker)


def test_getattr_only_for_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer
    ok = tmp_path / 'ok.pth'
    torch.save({'m': _Getattr(HistoryBuffer, 'mean')}, ok)
    assert load_checkpoint_file(ok)['m'] == HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                      (HistoryBuffer, '__dict__'), (np.ndarray, 'tofile')):
        bad = tmp_path / 'bad.pth'
        torch.save({'m': _Getattr(obj, name)}, bad)
        with pytest.raises(CheckpointError):
            load_checkpoint_file(bad)


def test_mmengine_objects_round_trip_weights_only(tmp_path):
    """What an mmengine training checkpoint holds besides tensors."""
    from mmengine.logging import HistoryBuffer
    from torch.serialization import get_unsafe_globals_in_checkpoint
    buf = HistoryBuffer()
    for v in (1.0, 2.0, 4.5):
        buf.update(v)
    rng = np.random.RandomState(3)
    state = {
        'state_dict': {'w': torch.arange(6.).reshape(2, 3)},
        'message_hub': {'log_scalars': {'loss': buf},
                        'runtime_info': {'best': np.float64(0.25),
                                         'iters': np.int64(7)}},
        'numpy': rng.get_state(),
        'arr': np.arange(5, dtype=np.float32),
    }
    path = tmp_path / 'ck.pth'
    torch.save(state, path)
    assert 'builtins.getattr' in get_unsafe_globals_in_checkpoint(path)
    back = load_checkpoint_file(path, map_location='cpu')
    assert torch.equal(back['state_dict']['w'], state['state_dict']['w'])
    loaded = back['message_hub']['log_scalars']['loss']
    assert loaded.mean() == pytest.approx(buf.mean())
    assert loaded.statistics('max') == 4.5
    assert back['message_hub']['runtime_info']['best'] == 0.25
    assert np.array_equal(back['numpy'][1], state['numpy'][1])
    assert back['arr'].dtype == np.float32


def test_check_checkpoint_reads_only_the_header(tmp_path, monkeypatch):
    """No tensor is unpickled by the check (the load reads them once)."""
    path = tmp_path / 'big.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
    calls = []
    monkeypatch.setattr(torch, 'load',
                        lambda *a, **k: calls.append(a))
    assert check_checkpoint(path) == str(path)
    assert calls == []


# ---------------------------------------------------------------------------
# every entry point that reads a checkpoint
# ---------------------------------------------------------------------------
def _run_main(tool, argv, monkeypatch, capsys):
    import runpy

    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'safe_ckpt_{len(MMLogger._instance_dict)}')
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', [tool, *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(osp.join(REPO, 'tools', tool), run_name='__main__')
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('safe_ckpt')
    data = make_dataset(str(tmp / 'data'), n_train=2, n_unpaired=2, n_val=1)
    cfg = write_config(str(tmp / 'cfg.py'), data, max_iters=1)
    return tmp, cfg


@pytest.mark.parametrize('how', ['resume', 'load_from', 'test'])
def test_train_and_test_tools_refuse(how, tiny_run, tmp_path, monkeypatch,
                                     capsys):
    _, cfg = tiny_run
    path, marker = _evil_checkpoint(tmp_path)
    work = str(tmp_path / 'work')
    if how == 'resume':
        tool, argv = 'train.py', [cfg, '--work-dir', work, '--resume', path]
    elif how == 'load_from':
        tool, argv = 'train.py', [cfg, '--work-dir', work, '--cfg-options',
                                  f'load_from={path}']
    else:
        tool, argv = 'test.py', [cfg, path, '--work-dir', work]
    code, err = _run_main(tool, argv, monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert path in err[0] and '`exec`' in err[0]
    assert '--trust-checkpoint' in err[0]
    assert not osp.exists(marker)


def _tiny_model_files(folder):
    from mmagic.registry import MODELS
    cfg = osp.join(str(folder), 'tiny.py')
    with open(cfg, 'w') as f:
        f.write("default_scope = 'mmagic'\n"
                "custom_imports = dict(imports=['semillie_mm'], "
                "allow_failed_imports=False)\n"
                "model = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, "
                "blocks_per_group=1)\n")
    net = MODELS.build(dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                            blocks_per_group=1))
    return cfg, net.state_dict()


def test_enhance_webui_and_inferencer_refuse(tmp_path, monkeypatch, capsys):
    import importlib.util

    from semillie_mm.apis import SemiLLIEInferencer
    from semillie_mm.utils.cli import run_cli

    import cv2
    cfg, state = _tiny_model_files(tmp_path)
    path, marker = _evil_checkpoint(tmp_path, state)
    img = tmp_path / 'x.png'
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f'{name}_tool', osp.join(REPO, 'tools', f'{name}.py'))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        return tool

    from mmengine.logging import MMLogger
    for name, argv in (('enhance', [cfg, path, str(img),
                                    str(tmp_path / 'out')]),
                       ('webui', [cfg, path])):
        # an MMLogger made by an earlier test writes to its closed stream
        MMLogger.get_instance(f'safe_ckpt_{len(MMLogger._instance_dict)}')
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run_cli(load(name).main, argv, prog=f'{name}.py')
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1, (name, err)
        assert '`exec`' in err[0] and path in err[0], err
        assert not osp.exists(marker)
    assert not osp.exists(tmp_path / 'out')
    with pytest.raises(UserError, match='`exec`'):
        SemiLLIEInferencer(cfg, path)
    assert not osp.exists(marker)


def test_a_real_checkpoint_resumes_weights_only(tiny_run, tmp_path,
                                                monkeypatch, capsys):
    """A training checkpoint of this project (message hub, RNG state,
    optimizer) passes the weights-only load and resumes."""
    from torch.serialization import get_unsafe_globals_in_checkpoint
    _, cfg = tiny_run
    work = str(tmp_path / 'work')
    code, err = _run_main('train.py', [cfg, '--work-dir', work],
                          monkeypatch, capsys)
    assert code == 0, err
    ckpt = osp.join(work, 'iter_1.pth')
    unsafe = set(get_unsafe_globals_in_checkpoint(ckpt))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    state = load_checkpoint_file(ckpt, map_location='cpu')
    with trusted_checkpoints():
        full = load_checkpoint_file(ckpt, map_location='cpu')
    assert state['state_dict'].keys() == full['state_dict'].keys()
    for k, v in full['state_dict'].items():
        assert torch.equal(state['state_dict'][k], v), k
    assert sorted(state['message_hub']['log_scalars']) == sorted(
        full['message_hub']['log_scalars'])
    code, err = _run_main('train.py', [
        cfg, '--work-dir', work, '--resume', ckpt, '--cfg-options',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=100'],
        monkeypatch, capsys)
    assert code == 0, err
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
