"""RNGStateHook: save the random state with every checkpoint, restore it on resume."""
import random
from typing import Optional

import numpy as np
import torch
from mmagic.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue with the random state of the interrupted run.

    MMEngine restores weights, optimizers, schedulers and counters and replays the
    data loader up to the resumed iteration, but not the random state of the main
    process, which drop-path (stochastic depth) draws from. This hook stores the
    Python, numpy, torch (and CUDA) generator states in each checkpoint and puts
    them back just before the first iteration after resuming (after MMEngine's
    data-loader replay, which itself draws from the torch generator).

    Exactness needs the data pipeline to run in worker processes
    (``num_workers >= 1``, ``persistent_workers=True``): MMEngine seeds them from the
    config's seed, so the replay reproduces the same samples. With
    ``num_workers=0`` the transforms share the main process's generators.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None

    @staticmethod
    def _capture() -> dict:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _restore(state: dict):
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the generator states of the main process."""
        checkpoint['rng_state'] = self._capture()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state for the first iteration after resuming."""
        if runner._resume and 'rng_state' in checkpoint:
            self._pending = checkpoint['rng_state']

    def before_train_iter(self, runner, batch_idx: int, data_batch=None):
        """Restore the saved state once, after the data-loader replay."""
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None
