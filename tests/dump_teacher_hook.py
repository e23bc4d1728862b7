"""Test helper (imported by a test config): every rank writes its teacher and
student weights at the end of training, to compare ranks."""
import os.path as osp

import torch
from mmagic.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


@HOOKS.register_module()
class DumpTeacherHook(Hook):

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        state = dict(
            teacher={k: v.detach().cpu()
                     for k, v in model.teacher.state_dict().items()},
            student={k: v.detach().cpu()
                     for k, v in model.student.state_dict().items()})
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}.pt'))
