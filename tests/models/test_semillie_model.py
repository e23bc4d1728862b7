"""train_step of the mean-teacher model (issue 6, part 8)."""
import copy
import math

from semillie_mm.engine.hooks import MeanTeacherHook
from semillie_mm.models.editors import unsupervised_weight

import pytest
import torch
from mmagic.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from semillie_test_utils import semi_batch, tiny_model_cfg


def build(**overrides):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(**overrides))
    model.init_weights()
    return model


def optims(model, lr_g=1e-3, lr_d=1e-3, sgd=False):
    opt = torch.optim.SGD if sgd else torch.optim.Adam
    wrappers = dict(generator=OptimWrapper(opt(model.generator.parameters(), lr=lr_g)))
    if model.discriminator is not None:
        wrappers['discriminator'] = OptimWrapper(
            opt(model.discriminator.parameters(), lr=lr_d))
    return OptimWrapperDict(**wrappers)


class _Runner:
    """Just what MeanTeacherHook reads from a runner."""

    def __init__(self, model):
        self.model = model
        self.iter = 0


def step(model, optim, runner, hook, seed=0):
    out = model.train_step(semi_batch(seed=seed), optim)
    hook.after_train_iter(runner, runner.iter)
    runner.iter += 1
    return out


def test_ramp_formula():
    assert unsupervised_weight(0, 0.2, 200) == pytest.approx(0.2 * math.exp(-5))
    assert unsupervised_weight(100, 0.2, 200) == pytest.approx(0.2 * math.exp(-1.25))
    assert unsupervised_weight(200, 0.2, 200) == 0.2
    assert unsupervised_weight(5, 0.2, 0) == 0.2


def test_every_loss_term_logged_and_finite():
    model = build()
    MessageHub.get_current_instance().update_info('iter', 3)
    hook, runner = MeanTeacherHook(), _Runner(model)
    log = step(model, optims(model), runner, hook)
    for key in ('loss_sup', 'loss_ramper', 'loss_grad', 'loss_un', 'loss_scr',
                'loss_adv', 'loss_d_fake', 'loss_d_real', 'loss'):
        assert key in log, key
        assert torch.isfinite(torch.as_tensor(log[key])), key
    assert float(log['lambda_unsup']) == pytest.approx(
        unsupervised_weight(3, 0.2, 10))


def test_contrastive_term_alone_moves_the_student():
    # everything but L_scr switched off: any student change comes from it
    model = build(
        pixel_loss=dict(type='L1Loss', loss_weight=0.0),
        perceptual_loss=None,
        gradient_loss=None,
        consistency_loss=dict(type='L1Loss', loss_weight=0.0),
        discriminator=None,
        gan_loss=None,
        unsup_ramp=dict(length=0, by='iter'))
    before = copy.deepcopy(model.generator.state_dict())
    grads = {}
    def keep(name):
        def hook(g):
            grads[name] = g.abs().sum()
        return hook

    for name, p in model.generator.named_parameters():
        p.register_hook(keep(name))
    step(model, optims(model, sgd=True), _Runner(model), MeanTeacherHook())
    assert sum(float(g) for g in grads.values()) > 0
    changed = [k for k, v in model.generator.state_dict().items()
               if not torch.equal(v, before[k])]
    assert changed
    # the frozen encoder got nothing
    assert all(p.grad is None for p in model.ram_encoder.parameters())


def test_teacher_is_the_ema_of_the_student():
    model = build()
    hook, runner, optim = MeanTeacherHook(), _Runner(model), optims(model)
    expected = None
    for k in range(4):
        step(model, optim, runner, hook, seed=k)
        student = {n: p.detach().clone()
                   for n, p in model.generator.named_parameters()}
        if expected is None:  # first update copies the student
            expected = student
        else:
            m = max(0.004, 1.0 / (1 + k))
            expected = {n: (1 - m) * expected[n] + m * student[n]
                        for n in expected}
    teacher = dict(model.teacher.module.named_parameters())
    for n, v in expected.items():
        torch.testing.assert_close(teacher[n], v, rtol=1e-5, atol=1e-6)
    assert int(model.teacher.steps) == 4
    assert not model.teacher.module.training
    assert all(not p.requires_grad for p in model.teacher.parameters())


def test_discriminator_is_updated_only_by_its_own_step():
    model = build()
    model.train()
    lr = 0.5
    optim = optims(model, lr_g=1e-3, lr_d=lr, sgd=True)
    data = semi_batch(seed=3)

    # expected D update: one SGD step on the D loss alone, evaluated with the
    # student output of this iteration (computed before the G update)
    ref = copy.deepcopy(model)
    ref.train()
    prep = ref.data_preprocessor(copy.deepcopy(data), True)
    with torch.no_grad():
        pred = ref.generator(prep['inputs']['paired'])
    gt = prep['data_samples'].gt_img
    # the G step runs D once in train mode (BatchNorm running stats only)
    with torch.no_grad():
        ref.discriminator(pred)
    loss_d = 0.5 * ref.gan_loss(ref.discriminator(pred), False, is_disc=True) \
        + 0.5 * ref.gan_loss(ref.discriminator(gt), True, is_disc=True)
    loss_d.backward()
    expected = {n: p.detach() - lr * p.grad
                for n, p in ref.discriminator.named_parameters()}

    model.train_step(data, optim)
    for n, p in model.discriminator.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-4, atol=1e-5)


def test_missing_hook_is_reported():
    model = build()
    optim = optims(model)
    model.train_step(semi_batch(), optim)
    with pytest.raises(RuntimeError, match='MeanTeacherHook'):
        model.train_step(semi_batch(), optim)


def test_checkpoint_leaves_out_the_frozen_encoder():
    model = build()
    keys = model.state_dict().keys()
    assert not [k for k in keys if 'encoder' in k]
    assert any(k.startswith('teacher.') for k in keys)
    assert 'teacher.steps' in keys
    # and loads back strictly
    other = build()
    other.load_state_dict(model.state_dict(), strict=True)


def test_validation_uses_the_teacher_by_default():
    model = build()
    model.eval()
    with torch.no_grad():
        for p in model.teacher.module.parameters():
            p.add_(0.05)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        out_t = model(x, mode='tensor')
        model.test_cfg = dict(use_teacher=False)
        out_s = model(x, mode='tensor')
    torch.testing.assert_close(out_t, model.teacher.module(x))
    torch.testing.assert_close(out_s, model.generator(x))
    assert not torch.allclose(out_t, out_s)
