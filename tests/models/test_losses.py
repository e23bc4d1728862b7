"""Tests of the Semi-LLIE losses: eq. 4 (semantic contrastive), eq. 5 (RAM
perceptual), eq. 6 (gradient magnitude), and the mmagic adversarial parts."""
from semillie_mm.models.encoders import RAMImageEncoder
from semillie_mm.models.losses import (
    GradientMagnitudeLoss,
    RAMPerceptualLoss,
    SemanticContrastiveLoss,
    gradient_magnitude,
)

import numpy as np
import pytest
import torch
import torch.nn as nn

TINY = dict(
    type='RAMImageEncoder',
    img_size=64,
    patch_size=4,
    embed_dim=16,
    depths=(1, 1, 1, 1),
    num_heads=(1, 1, 2, 2),
    window_size=4,
    proj_dim=8)


def _registry():
    from mmagic.registry import MODELS
    return MODELS


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return _registry().build(TINY)


class StubEncoder(nn.Module):
    """Fixed, known embeddings: mean colour per 2x2 quadrant, as 4 tokens."""

    def forward(self, img):
        b, c, h, w = img.shape
        q = img.view(b, c, 2, h // 2, 2, w // 2).mean(dim=(3, 5))
        return q.flatten(2).transpose(1, 2), [q]


# ----------------------------------------------------------- eq. 4 contrastive
def _np_contrastive(a, p, n, eps, reduction):
    a, p, n = (x.detach().double().numpy() for x in (a, p, n))
    if reduction == 'mean':
        return np.abs(a - p).mean() / (np.abs(a - n).mean() + eps)
    d_ap = np.abs(a - p).reshape(len(a), -1).mean(1)
    d_an = np.abs(a - n).reshape(len(a), -1).mean(1)
    r = d_ap / (d_an + eps)
    return r if reduction == 'none' else r.sum()


@pytest.mark.parametrize('reduction', ['mean', 'none', 'sum'])
def test_contrastive_matches_hand_computation_with_stub(reduction):
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.rand(3, 3, 8, 8, generator=g) for _ in range(3))
    loss = SemanticContrastiveLoss(
        encoder=StubEncoder(), loss_weight=0.5, reduction=reduction)(a, p, n)
    emb = StubEncoder()
    expected = 0.5 * _np_contrastive(emb(a)[0], emb(p)[0], emb(n)[0], 1e-7,
                                     reduction)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_contrastive_on_fixed_embeddings():
    """A case small enough to check by hand: one token, two channels."""

    class Fixed(nn.Module):

        def forward(self, img):  # embedding = the image's first pixel
            return img[:, :2, 0, 0].unsqueeze(1), []

    a = torch.zeros(1, 3, 2, 2)
    p = torch.zeros(1, 3, 2, 2)
    n = torch.zeros(1, 3, 2, 2)
    a[0, :2, 0, 0] = torch.tensor([1.0, 2.0])
    p[0, :2, 0, 0] = torch.tensor([1.5, 1.0])  # |d| = 0.5, 1.0 -> mean 0.75
    n[0, :2, 0, 0] = torch.tensor([4.0, 5.0])  # |d| = 3, 3 -> mean 3
    loss = SemanticContrastiveLoss(encoder=Fixed(), eps=0.0)(a, p, n)
    assert loss.item() == pytest.approx(0.25)


def test_contrastive_gradient_reaches_anchor_only(encoder):
    loss_fn = SemanticContrastiveLoss(encoder=encoder)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    p = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    n = torch.rand(2, 3, 48, 48, generator=g, requires_grad=True)
    loss = loss_fn(a, p, n)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert p.grad is None and n.grad is None
    assert all(q.grad is None for q in encoder.parameters())
    with torch.no_grad():
        expected = _np_contrastive(
            encoder(a)[0], encoder(p)[0], encoder(n)[0], 1e-7, 'mean')
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)


def test_contrastive_tag_logit_term():
    models = _registry()
    enc = models.build(
        dict(TINY, with_tagging_head=True,
             tagging_head=dict(num_tags=6, hidden_size=12, num_heads=2,
                               intermediate_size=16)))
    with torch.no_grad():  # the random head starts with zero tag embeddings
        enc.tagging_head.label_embed.normal_()
    loss_fn = SemanticContrastiveLoss(encoder=enc, tag_weight=1.0,
                                      loss_weight=0.5)
    g = torch.Generator().manual_seed(5)
    a = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    p, n = torch.rand(2, 2, 3, 32, 32, generator=g)
    loss = loss_fn(a, p, n)
    with torch.no_grad():
        ea, ep, en = enc(a)[0], enc(p)[0], enc(n)[0]
        ta, tp, tn = enc.tag_logits(ea), enc.tag_logits(ep), enc.tag_logits(en)
    expected = 0.5 * (_np_contrastive(ea, ep, en, 1e-7, 'mean') +
                      _np_contrastive(ta, tp, tn, 1e-7, 'mean'))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    loss.backward()
    assert a.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='with_tagging_head'):
        SemanticContrastiveLoss(encoder=models.build(TINY), tag_weight=1.0)


# ------------------------------------------------------------ eq. 5 perceptual
def test_perceptual_zero_for_identical_and_matches_numpy(encoder):
    loss_fn = RAMPerceptualLoss(encoder=encoder, loss_weight=0.1)
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 3, 40, 40, generator=g, requires_grad=True)
    target = torch.rand(2, 3, 40, 40, generator=g)
    assert loss_fn(target, target.clone()).item() == 0.0

    loss = loss_fn(pred, target)
    with torch.no_grad():
        fp, ft = encoder(pred)[1], encoder(target)[1]
    expected = 0.1 * np.mean([
        ((fp[s].double().numpy() - ft[s].double().numpy())**2).mean()
        for s in (1, 2, 3)
    ])
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    per_sample = RAMPerceptualLoss(
        encoder=encoder, reduction='none')(pred, target)
    assert per_sample.shape == (2, )
    np.testing.assert_allclose(per_sample.mean().item() * 0.1 / 0.1,
                               loss.item(), rtol=1e-5)

    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(q.grad is None for q in encoder.parameters())


def test_perceptual_target_detached_and_stage_choice(encoder):
    pred = torch.rand(1, 3, 64, 64, requires_grad=True)
    target = torch.rand(1, 3, 64, 64, requires_grad=True)
    RAMPerceptualLoss(encoder=encoder, stages=(0, ))(pred, target).backward()
    assert target.grad is None and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='out of range'):
        RAMPerceptualLoss(encoder=encoder, stages=(4, ))


# ------------------------------------------------------------- eq. 6 gradient
def _np_grad_mag(x):
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    gy = x[:, :, 2:, 1:-1] - x[:, :, :-2, 1:-1]
    gx = x[:, :, 1:-1, 2:] - x[:, :, 1:-1, :-2]
    return np.sqrt(gx**2 + gy**2 + 1e-6)


def test_gradient_loss_matches_numpy():
    g = torch.Generator().manual_seed(4)
    pred = torch.rand(2, 3, 9, 11, generator=g, requires_grad=True)
    target = torch.rand(2, 3, 9, 11, generator=g)
    np.testing.assert_allclose(
        gradient_magnitude(target).numpy(),
        _np_grad_mag(target.numpy()),
        rtol=1e-5,
        atol=1e-6)
    loss_fn = GradientMagnitudeLoss(loss_weight=0.1)
    assert loss_fn(target, target.clone()).item() == 0.0
    loss = loss_fn(pred, target)
    expected = 0.1 * np.abs(
        _np_grad_mag(pred.detach().numpy()) -
        _np_grad_mag(target.numpy())).mean()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    none = GradientMagnitudeLoss(reduction='none')(pred, target)
    assert none.shape == pred.shape
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


# ----------------------------------------------------- registry and sharing
def test_registered_names_do_not_shadow_mmagic():
    from mmagic.models.losses import GradientLoss
    models = _registry()
    assert models.get('GradientMagnitudeLoss') is GradientMagnitudeLoss
    assert models.get('RAMPerceptualLoss') is RAMPerceptualLoss
    assert models.get('SemanticContrastiveLoss') is SemanticContrastiveLoss
    assert models.get('RAMImageEncoder') is RAMImageEncoder
    assert models.get('GradientLoss') is GradientLoss


def test_one_encoder_shared_by_both_losses():
    from mmengine.config import ConfigDict
    models = _registry()
    enc = models.build(TINY)
    scr = models.build(
        ConfigDict(type='SemanticContrastiveLoss', encoder=enc))
    per = models.build(dict(type='RAMPerceptualLoss', encoder=enc))
    assert scr.encoder is enc and per.encoder is enc
    # the way SemiLLIE passes its encoder: through default_args
    per2 = models.build(
        ConfigDict(type='RAMPerceptualLoss', loss_weight=0.1),
        default_args=dict(encoder=enc))
    assert per2.encoder is enc
    holder = nn.ModuleDict(dict(scr=scr, per=per))
    assert sum(p.numel() for p in holder.parameters()) == sum(
        p.numel() for p in enc.parameters())
    assert len(holder.state_dict()) == 0
    # built alone from a config dict
    alone = models.build(dict(type='RAMPerceptualLoss', encoder=TINY))
    assert isinstance(alone.encoder, RAMImageEncoder)
    assert alone.encoder is not enc
    with pytest.raises(ValueError, match='needs `encoder`'):
        models.build(dict(type='SemanticContrastiveLoss'))


# ------------------------------------------------- adversarial (mmagic's own)
PATCH_D = dict(
    type='PatchDiscriminator',
    in_channels=3,
    base_channels=64,
    num_conv=3,
    norm_cfg=dict(type='BN'),
    init_cfg=dict(type='normal', gain=0.02))
GAN_LOSS = dict(type='GANLoss', gan_type='vanilla', loss_weight=0.1)


def test_mmagic_patch_discriminator_and_gan_loss():
    models = _registry()
    disc = models.build(PATCH_D)
    disc.init_weights()
    gan = models.build(GAN_LOSS)
    fake = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = disc(fake)
    assert out.shape == (2, 1, 6, 6)  # 70x70 PatchGAN on a 64 input
    g_loss = gan(out, target_is_real=True, is_disc=False)
    expected = 0.1 * nn.functional.binary_cross_entropy_with_logits(
        out, torch.ones_like(out))
    torch.testing.assert_close(g_loss, expected)
    d_loss = gan(out.detach(), target_is_real=False, is_disc=True)
    expected_d = nn.functional.binary_cross_entropy_with_logits(
        out.detach(), torch.zeros_like(out))
    torch.testing.assert_close(d_loss, expected_d)  # no weight for D
    g_loss.backward()
    assert fake.grad.abs().sum() > 0
