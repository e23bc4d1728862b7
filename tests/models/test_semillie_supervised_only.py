"""unsup_weight=0 (the ablation's supervised-only row): the step is the
supervised step alone, computed by hand here."""
import copy

import torch
from mmagic.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from semillie_test_utils import semi_batch, tiny_model_cfg


def _sup_model():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(
        unsup_weight=0.0, ram_encoder=None, perceptual_loss=None,
        contrastive_loss=None, discriminator=None, gan_loss=None))
    model.init_weights()
    return model


def test_supervised_only_step_equals_the_hand_computed_one():
    MessageHub.get_current_instance().update_info('iter', 50)
    model = _sup_model()
    ref = copy.deepcopy(model.generator)
    batch = semi_batch(seed=3)
    optim = OptimWrapperDict(generator=OptimWrapper(
        torch.optim.SGD(model.generator.parameters(), lr=0.1)))
    # the hook is not needed for the first step
    log = model.train_step(batch, optim)
    assert 'loss_un' not in log and 'loss_scr' not in log
    assert float(log['lambda_unsup']) == 0.0

    data = model.data_preprocessor(batch, True)
    lq, gt = data['inputs']['paired'], data['data_samples'].gt_img
    pred = ref(lq)
    loss = (pred - gt).abs().mean() + model.gradient_loss(pred, gt)
    torch.testing.assert_close(log['loss'], loss.detach())
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    with torch.no_grad():
        for p, g, q in zip(ref.parameters(), grads,
                           model.generator.parameters()):
            torch.testing.assert_close(q, p - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_supervised_only_ignores_the_unpaired_images():
    MessageHub.get_current_instance().update_info('iter', 50)
    outs = []
    for seed in (0, 1):
        model = _sup_model()
        batch = semi_batch(seed=3)
        other = semi_batch(seed=seed + 10)
        for key in ('unpaired_weak', 'unpaired_strong'):
            batch['inputs'][key] = other['inputs'][key]
        optim = OptimWrapperDict(generator=OptimWrapper(
            torch.optim.SGD(model.generator.parameters(), lr=0.1)))
        model.train_step(batch, optim)
        outs.append([p.detach().clone() for p in model.generator.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
