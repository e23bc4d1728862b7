"""A non-finite loss skips the step; the teacher never averages NaN in
(issue 20, item 6)."""
import copy

import semillie_mm.engine.hooks.mean_teacher_hook as hook_module
import semillie_mm.models.editors.semillie as semillie_module
from semillie_mm.engine.hooks import MeanTeacherHook

import pytest
import torch
from mmagic.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from semillie_test_utils import semi_batch, tiny_model_cfg

# the GAN path (every loss, PatchGAN with BatchNorm) and the supervised-only
# path (unsup_weight=0, no discriminator); no lambda1 ramp, so skipping an
# iteration changes nothing but that iteration
PATHS = dict(
    gan=dict(unsup_ramp=dict(length=0, by='iter')),
    sup=dict(unsup_weight=0.0, ram_encoder=None, perceptual_loss=None,
             contrastive_loss=None, discriminator=None, gan_loss=None))


class _Runner:
    """Just what MeanTeacherHook reads from a runner."""

    def __init__(self, model):
        self.model = model
        self.iter = 0


def _setup(path, **overrides):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(**PATHS[path], **overrides))
    model.init_weights()
    wrappers = dict(generator=OptimWrapper(
        torch.optim.Adam(model.generator.parameters(), lr=1e-3)))
    if model.discriminator is not None:
        wrappers['discriminator'] = OptimWrapper(
            torch.optim.Adam(model.discriminator.parameters(), lr=1e-3))
    return model, OptimWrapperDict(**wrappers), _Runner(model)


def _step(model, optim, runner, seed, nan=False):
    batch = semi_batch(seed=seed)
    if nan:  # a NaN pixel in one low-light input: every output goes NaN
        batch['inputs']['paired'][0][0, 0, 0] = float('nan')
    MessageHub.get_current_instance().update_info('iter', runner.iter)
    log = model.train_step(batch, optim)
    MeanTeacherHook().after_train_iter(runner, runner.iter)
    runner.iter += 1
    return log


def _state(model, optim):
    return copy.deepcopy((model.state_dict(), optim.state_dict()))


def _assert_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.fixture
def warnings(monkeypatch):
    logged = []

    def fake_print_log(msg, logger=None, level=None):
        logged.append(msg)

    monkeypatch.setattr(semillie_module, 'print_log', fake_print_log)
    monkeypatch.setattr(hook_module, 'print_log', fake_print_log)
    return logged


@pytest.mark.parametrize('path', ['gan', 'sup'])
def test_nan_iteration_is_skipped_and_changes_nothing(path, warnings):
    model, optim, runner = _setup(path)
    _step(model, optim, runner, seed=0)
    _step(model, optim, runner, seed=1)
    before = _state(model, optim)
    log = _step(model, optim, runner, seed=2, nan=True)
    assert not torch.isfinite(log['loss_sup'])
    # student, teacher (and its step count), discriminator with its
    # BatchNorm statistics, optimiser states: as before the NaN iteration
    after = _state(model, optim)
    _assert_equal(after, before)
    assert all(torch.isfinite(v).all() for v in after[0].values()
               if v.is_floating_point())
    assert len(warnings) == 1
    assert warnings[0].startswith('iteration 3: non-finite ')
    assert 'loss_sup' in warnings[0] and 'skipped' in warnings[0]
    _step(model, optim, runner, seed=3)
    assert int(model.teacher.steps) == 3

    # the same run without the NaN iteration ends in the same state
    ref, ref_optim, ref_runner = _setup(path)
    for seed in (0, 1, 3):
        _step(ref, ref_optim, ref_runner, seed=seed)
    _assert_equal(_state(model, optim), _state(ref, ref_optim))


def test_nonfinite_discriminator_loss_skips_only_its_step(
        monkeypatch, warnings):
    model, optim, runner = _setup('gan')
    _step(model, optim, runner, seed=0)
    d_before = copy.deepcopy(model.discriminator.state_dict())
    g_before = copy.deepcopy(model.generator.state_dict())
    gan_loss = model.gan_loss.forward

    def inf_for_d(x, target_is_real, is_disc=False, **kwargs):
        out = gan_loss(x, target_is_real, is_disc=is_disc, **kwargs)
        return out * float('inf') if is_disc else out

    monkeypatch.setattr(model.gan_loss, 'forward', inf_for_d)
    _step(model, optim, runner, seed=1)
    _assert_equal(model.discriminator.state_dict(), d_before)
    assert any(not torch.equal(v, g_before[k])
               for k, v in model.generator.state_dict().items())
    assert int(model.teacher.steps) == 2
    assert len(warnings) == 1 and 'loss_d_' in warnings[0]
    assert 'discriminator step' in warnings[0]


def test_nonfinite_iterations_in_a_row_stop_the_run(warnings):
    model, optim, runner = _setup('sup', max_nonfinite_skips=3)
    _step(model, optim, runner, seed=0, nan=True)
    _step(model, optim, runner, seed=1, nan=True)
    _step(model, optim, runner, seed=2)  # a good step resets the count
    _step(model, optim, runner, seed=3, nan=True)
    _step(model, optim, runner, seed=4, nan=True)
    assert len(warnings) == 4 and '2 in a row' in warnings[-1]
    # the first step was skipped and the teacher updated once: no false
    # 'add MeanTeacherHook' error
    assert int(model.teacher.steps) == 1
    with pytest.raises(FloatingPointError,
                       match='3 training iterations in a row.*iteration 6'):
        _step(model, optim, runner, seed=5, nan=True)


def test_all_ranks_skip_when_one_rank_is_nonfinite(monkeypatch, warnings):
    model, optim, runner = _setup('sup')
    _step(model, optim, runner, seed=0)
    before = _state(model, optim)
    reduced = []

    def all_reduce(flag, op):  # another rank reports a NaN
        assert op == 'max' and flag.item() == 0
        reduced.append(op)
        flag.fill_(1)

    monkeypatch.setattr(semillie_module, 'is_distributed', lambda: True)
    monkeypatch.setattr(semillie_module, 'all_reduce', all_reduce)
    _step(model, optim, runner, seed=1)
    assert reduced == ['max']
    _assert_equal(_state(model, optim), before)
    assert 'a non-finite loss on another rank' in warnings[0]


def test_teacher_not_updated_from_nonfinite_student(warnings):
    model, optim, runner = _setup('sup')
    _step(model, optim, runner, seed=0)
    teacher = copy.deepcopy(model.teacher.state_dict())
    with torch.no_grad():
        next(model.generator.parameters())[0].fill_(float('inf'))
    MeanTeacherHook().after_train_iter(runner, runner.iter)
    _assert_equal(model.teacher.state_dict(), teacher)
    assert 'non-finite weights' in warnings[0]


def test_max_nonfinite_skips_is_checked():
    with pytest.raises(ValueError, match='max_nonfinite_skips'):
        MODELS.build(tiny_model_cfg(**PATHS['sup'], max_nonfinite_skips=0))
