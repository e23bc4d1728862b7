"""A full disk while writing a checkpoint leaves the previous checkpoints
and ``last_checkpoint`` loadable (issue 20, item 6)."""
import builtins
import errno
import itertools
import os
import os.path as osp

from semillie_mm.engine.hooks import AtomicCheckpointHook
from semillie_mm.utils.checkpoint import load_checkpoint_file

import pytest
import torch
from mmagic.registry import HOOKS
from mmengine.fileio import LocalBackend
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner.checkpoint import find_latest_checkpoint, save_checkpoint

HOOK = AtomicCheckpointHook
# a fresh MessageHub per runner: id() of a collected runner can be reused,
# and a reused hub would carry the earlier test's best score
_HUB_IDS = itertools.count()


def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk_full_on(monkeypatch):
    """``disk_full_on(name)``: writing a file whose name contains ``name``
    writes half its bytes, then fails with ENOSPC."""

    def arm(name):
        put, real_open = LocalBackend.put, builtins.open

        def faulty_put(self, obj, filepath):
            if name in osp.basename(str(filepath)):
                put(self, obj[:len(obj) // 2], filepath)
                raise _enospc()
            return put(self, obj, filepath)

        class HalfFile:
            def __init__(self, f):
                self.f = f

            def write(self, text):
                self.f.write(text[:len(text) // 2])
                self.f.flush()
                raise _enospc()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def __getattr__(self, attr):
                return getattr(self.f, attr)

        def faulty_open(file, mode='r', *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and 'w' in mode and \
                    name in osp.basename(str(file)):
                return HalfFile(f)
            return f

        monkeypatch.setattr(LocalBackend, 'put', faulty_put)
        monkeypatch.setattr(builtins, 'open', faulty_open)

    return arm


class _Runner:
    """What CheckpointHook uses of a runner; ``save_checkpoint`` writes the
    way ``Runner.save_checkpoint`` does (mmengine's ``save_checkpoint``)."""

    def __init__(self, work_dir):
        self.work_dir = str(work_dir)
        self.logger = MMLogger.get_current_instance()
        self.message_hub = MessageHub.get_instance(
            f'atomic_ckpt_{next(_HUB_IDS)}')
        self.epoch = 0
        self.iter = 0

    def save_checkpoint(self, out_dir, filename, file_client_args=None,
                        save_optimizer=True, save_param_scheduler=True,
                        meta=None, by_epoch=True, backend_args=None):
        state = dict(meta=meta, message_hub=self.message_hub.state_dict(),
                     state_dict=dict(w=torch.full((4096, ), self.iter,
                                                  dtype=torch.float32)))
        save_checkpoint(state, osp.join(out_dir, filename))


def _hook(**kwargs):
    return HOOKS.build(dict(type=HOOK.__name__, interval=1, by_epoch=False,
                            **kwargs))


def _train_iter(hook, runner, metrics=None):
    """One iteration of IterBasedTrainLoop: checkpoint, then validation."""
    try:
        hook.after_train_iter(runner, runner.iter)
    finally:
        runner.iter += 1
    if metrics is not None:
        hook.after_val_epoch(runner, metrics)


def _assert_clean_and_loadable(work_dir, expected_iter):
    names = os.listdir(work_dir)
    assert not [n for n in names if n.startswith('.')], names
    last = find_latest_checkpoint(str(work_dir))
    assert last == osp.join(str(work_dir), f'iter_{expected_iter}.pth')
    state = load_checkpoint_file(last, map_location='cpu')
    assert state['meta']['iter'] == expected_iter
    assert state['state_dict']['w'].shape == (4096, )
    return names


def test_disk_full_on_checkpoint_keeps_the_previous_one(tmp_path,
                                                        disk_full_on):
    runner, hook = _Runner(tmp_path), _hook(max_keep_ckpts=1)
    hook.before_train(runner)
    _train_iter(hook, runner)
    _train_iter(hook, runner)
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']
    disk_full_on('iter_3.pth')
    with pytest.raises(OSError) as err:
        _train_iter(hook, runner)
    assert err.value.errno == errno.ENOSPC
    names = _assert_clean_and_loadable(tmp_path, 2)
    assert sorted(names) == ['iter_2.pth', 'last_checkpoint']


def test_disk_full_on_last_checkpoint_keeps_it(tmp_path, disk_full_on):
    runner, hook = _Runner(tmp_path), _hook(max_keep_ckpts=1)
    hook.before_train(runner)
    _train_iter(hook, runner)
    disk_full_on('last_checkpoint')
    with pytest.raises(OSError):
        _train_iter(hook, runner)
    _assert_clean_and_loadable(tmp_path, 1)
    # the outdated checkpoint is removed only after a complete save
    assert osp.isfile(tmp_path / 'iter_1.pth')


def test_disk_full_on_best_keeps_the_previous_best(tmp_path, disk_full_on):
    runner = _Runner(tmp_path)
    hook = _hook(max_keep_ckpts=1, save_best='PSNR', rule='greater')
    hook.before_train(runner)
    _train_iter(hook, runner, dict(PSNR=10.))
    assert osp.isfile(tmp_path / 'best_PSNR_iter_1.pth')
    disk_full_on('best_PSNR')
    with pytest.raises(OSError):
        _train_iter(hook, runner, dict(PSNR=20.))
    names = os.listdir(tmp_path)
    assert not [n for n in names if n.startswith('.')], names
    best = load_checkpoint_file(str(tmp_path / 'best_PSNR_iter_1.pth'))
    assert int(best['state_dict']['w'][0]) == 1
    # iter_2.pth (written before validation) is complete
    _assert_clean_and_loadable(tmp_path, 2)


def test_replacing_best_and_outdated_checkpoints(tmp_path):
    runner = _Runner(tmp_path)
    hook = _hook(max_keep_ckpts=1, save_best='PSNR', rule='greater')
    (tmp_path / '.iter_9.pth.123.partial').write_bytes(b'half')
    hook.before_train(runner)  # a killed run's leftover is removed
    assert not osp.exists(tmp_path / '.iter_9.pth.123.partial')
    _train_iter(hook, runner, dict(PSNR=10.))
    _train_iter(hook, runner, dict(PSNR=5.))
    _train_iter(hook, runner, dict(PSNR=20.))
    assert sorted(os.listdir(tmp_path)) == [
        'best_PSNR_iter_3.pth', 'iter_3.pth', 'last_checkpoint']
    _assert_clean_and_loadable(tmp_path, 3)
    state = load_checkpoint_file(str(tmp_path / 'iter_3.pth'))
    info = state['message_hub']['runtime_info']
    assert info['best_ckpt'] == str(tmp_path / 'best_PSNR_iter_3.pth')
    assert info['keep_ckpt_ids'] == [3]


def test_the_configs_use_it():
    from mmengine.config import Config
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    for name in ('semillie_demo.py', 'semillie_visdrone.py',
                 'semillie_lsrw.py'):
        cfg = Config.fromfile(osp.join(repo, 'configs', name))
        assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'


def test_new_best_with_the_previous_best_name_is_kept(tmp_path):
    # two validations at the same iteration (epoch) name both bests alike:
    # the new file replaces the old one and is not deleted as "previous"
    runner = _Runner(tmp_path)
    hook = _hook(max_keep_ckpts=1, save_best='PSNR', rule='greater')
    hook.before_train(runner)
    _train_iter(hook, runner, dict(PSNR=10.))
    hook.after_val_epoch(runner, dict(PSNR=11.))
    assert osp.isfile(tmp_path / 'best_PSNR_iter_1.pth')
