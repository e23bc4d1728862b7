"""AtomicCheckpointHook: checkpoints are never left half written."""
import glob
import os
import os.path as osp
from typing import Callable, Optional

from mmagic.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from ...utils.fileio import atomic_path, atomic_write_text

#: Suffix of the temporary files checkpoints are written to first.
PARTIAL_SUFFIX = '.partial'


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` so that it is either the old file or the whole new one.

    ``write(tmp)`` writes a temporary file in the same folder
    (``.<name>.XXXXXXXX.partial``), which :func:`atomic_path` flushes to disk
    and renames to ``path``. If anything fails (a full disk:
    ``OSError(ENOSPC)``), the temporary file is deleted, ``path`` is
    untouched and the error propagates.

    Args:
        path (str): The file to write.
        write (callable): Writes the content to the path it is given.
    """
    with atomic_path(path, suffix=PARTIAL_SUFFIX) as tmp:
        write(tmp)


class _AtomicSaveRunner:
    """The runner as :class:`CheckpointHook` sees it, except that its
    ``save_checkpoint`` writes through :func:`atomic_write`."""

    def __init__(self, runner):
        self.wrapped_runner = runner

    def __getattr__(self, name):
        return getattr(self.wrapped_runner, name)

    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        runner = self.wrapped_runner
        if not is_main_process():  # Runner.save_checkpoint is master_only
            return runner.save_checkpoint(out_dir, filename, *args, **kwargs)
        atomic_write(
            osp.join(out_dir, filename),
            lambda tmp: runner.save_checkpoint(
                osp.dirname(tmp), osp.basename(tmp), *args, **kwargs))


class _DeferredRemoval:
    """A file backend whose ``remove`` / ``rmtree`` only note the path."""

    def __init__(self, backend):
        self.backend = backend
        self.removed = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, path):
        self.removed.append(path)

    def rmtree(self, path):
        self.removed.append(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` that never leaves a half-written
    checkpoint behind.

    Every checkpoint (``iter_N.pth`` / ``epoch_N.pth``, ``best_*.pth``) and
    ``last_checkpoint`` is written to a temporary file in the same folder,
    flushed to disk and renamed (:func:`atomic_write`); a failed write (a
    full disk) deletes the temporary file and propagates, leaving the
    previous checkpoints and ``last_checkpoint`` as they were. Outdated
    checkpoints (``max_keep_ckpts``) and the previous best are deleted only
    after the new checkpoint is safely written. Temporary files of a run that
    was killed while writing are deleted when training starts.

    Only local ``out_dir`` folders are handled so; with another storage
    backend the hook behaves as :class:`CheckpointHook`. The arguments are
    :class:`CheckpointHook`'s.
    """

    def _is_local(self) -> bool:
        backend = getattr(self, 'file_backend', None)
        if isinstance(backend, _DeferredRemoval):
            backend = backend.backend
        return isinstance(backend, LocalBackend)

    def before_train(self, runner) -> None:
        """Set up as :class:`CheckpointHook`; delete leftover partial files.

        Args:
            runner (Runner): The runner of the training process.
        """
        super().before_train(runner)
        if not (self._is_local() and is_main_process()):
            return
        for folder in {self.out_dir, runner.work_dir}:
            for path in glob.glob(osp.join(folder, '.*' + PARTIAL_SUFFIX)):
                os.remove(path)
                runner.logger.warning(
                    f'Removed {path}, a checkpoint left half written by an '
                    'interrupted run')

    def _remove(self, path: Optional[str]) -> None:
        if path is None or not is_main_process():
            return
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """Save checkpoint ``step`` atomically, then ``last_checkpoint``,
        then delete the checkpoint it makes outdated."""
        runner = getattr(runner, 'wrapped_runner', runner)
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        saved = (list(getattr(self, 'keep_ckpt_ids', ())), self.last_ckpt,
                 runner.message_hub.get_info('last_ckpt'))
        outdated = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            _AtomicSaveRunner(runner).save_checkpoint(
                self.out_dir,
                ckpt_filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'),
                                  self.last_ckpt, suffix=PARTIAL_SUFFIX)
        except BaseException:
            # the run's state says what is on disk
            if self.max_keep_ckpts > 0:
                self.keep_ckpt_ids.clear()
                self.keep_ckpt_ids.extend(saved[0])
                runner.message_hub.update_info('keep_ckpt_ids', saved[0])
            self.last_ckpt = saved[1]
            runner.message_hub.update_info('last_ckpt', saved[2])
            raise
        if outdated is not None:
            self._remove(self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """Save a new best checkpoint atomically; delete the previous best
        only once it is written."""
        if not self._is_local():
            return super()._save_best_checkpoint(runner, metrics)
        backend = self.file_backend
        self.file_backend = deferred = _DeferredRemoval(backend)
        try:
            super()._save_best_checkpoint(_AtomicSaveRunner(runner), metrics)
        except BaseException:
            for path in deferred.removed:
                runner.logger.warning(f'{path} is kept: the checkpoint that '
                                      'was to replace it was not written')
            raise
        finally:
            self.file_backend = backend
        current = {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                   *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in deferred.removed:
            if path not in current:
                self._remove(path)
