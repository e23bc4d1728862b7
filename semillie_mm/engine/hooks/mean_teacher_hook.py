"""MeanTeacherHook: update the teacher (EMA of the student) after each step."""
import logging
from typing import Optional

import torch
from mmagic.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper


@HOOKS.register_module()
class MeanTeacherHook(Hook):
    """Update ``model.teacher`` from ``model.generator`` after every training
    iteration (i.e. after every generator step).

    The teacher is an :class:`mmengine.model.BaseAveragedModel` (by default
    ``MomentumAnnealingEMA(momentum=0.004, gamma=1)``: the student's share is
    ``max(0.004, 1 / (1 + step))``, the paper's beta = 0.996 with warm-up). It is a
    submodule of the model, so its parameters and its step counter are saved in and
    resumed from checkpoints with the rest of the model.

    The teacher is never updated from non-finite weights: not after an
    iteration whose generator step the model skipped (its
    ``skipped_generator_step`` is True: a non-finite loss), nor when a
    student parameter or buffer is NaN or infinite (a warning names the
    iteration).

    Args:
        teacher_name (str): attribute of the model holding the teacher.
        student_name (str): attribute of the model holding the student.
        interval (int): update every ``interval`` iterations. Default: 1.
    """

    priority = 'ABOVE_NORMAL'  # before checkpointing and logging hooks

    def __init__(self,
                 teacher_name: str = 'teacher',
                 student_name: str = 'generator',
                 interval: int = 1):
        self.teacher_name = teacher_name
        self.student_name = student_name
        self.interval = interval

    @staticmethod
    def _unwrap(module):
        return module.module if is_model_wrapper(module) else module

    def before_train(self, runner) -> None:
        """Check that the model has a teacher and a student."""
        model = self._unwrap(runner.model)
        for name in (self.teacher_name, self.student_name):
            if not hasattr(model, name):
                raise AttributeError(
                    f'MeanTeacherHook: the model ({type(model).__name__}) has '
                    f'no attribute {name!r}')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """EMA update of the teacher from the (unwrapped) student."""
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = self._unwrap(runner.model)
        model.mean_teacher_hook_ran = True
        if getattr(model, 'skipped_generator_step', False):
            return
        student = self._unwrap(getattr(model, self.student_name))
        if not self._all_finite(student):
            print_log(
                f'iteration {runner.iter + 1}: the student has non-finite '
                'weights; the teacher is not updated from them',
                logger='current', level=logging.WARNING)
            return
        getattr(model, self.teacher_name).update_parameters(student)

    @staticmethod
    def _all_finite(module) -> bool:
        """Whether every floating parameter and buffer of ``module`` is
        finite (one device synchronisation)."""
        tensors = [t for t in (*module.parameters(), *module.buffers())
                   if t.is_floating_point()]
        if not tensors:
            return True
        return bool(torch.stack(
            [torch.isfinite(t.detach()).all() for t in tensors]).all())
