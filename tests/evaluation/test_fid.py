"""FID against a reference folder: random-weight Inception, direct scipy check."""
import os.path as osp

from semillie_mm.evaluation.functional import (
    InceptionFeatureExtractor,
    extract_features,
    feature_statistics,
    fid_folders,
    folder_statistics,
    frechet_distance,
)
from semillie_mm.evaluation.functional.fid import PT_INCEPTION_FILE, blocks_to_pt_inception

import numpy as np
import pytest
import torch
from scipy import linalg

SIZE = 80  # the smallest input Inception-v3 accepts is 75x75


FEAT_DIMS = 8


class FirstFeatures(torch.nn.Module):
    """The first FEAT_DIMS of the 2048 Inception features: FID's matrix
    functions on 2048 x 2048 take tens of seconds on a loaded 2-core CI
    machine; on 64 dims they are instant and test the same code."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return [self.net(x)[0].flatten(1)[:, :FEAT_DIMS]]


@pytest.fixture(scope='module')
def random_inception():
    from mmagic.evaluation.functional import InceptionV3
    torch.manual_seed(0)
    # random weights, no resize to 299 (small images keep the test fast)
    net = InceptionV3([3], resize_input=False, normalize_input=True,
                      load_fid_inception=False)
    return FirstFeatures(net.eval()).eval()


def _images(seed, n, bright):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, SIZE, SIZE, 3))
    return [(img * bright).astype(np.uint8) for img in base]


def _write(folder, imgs):
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(imgs):
        cv2.imwrite(str(folder / f'{i:03d}.png'), img[..., ::-1])


def _direct_fid(f1, f2):
    """FID as pytorch-fid writes it: scipy's sqrtm of the product."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2)**2).sum() + np.trace(c1) + np.trace(c2) -
                 2 * np.trace(covmean))


def test_frechet_distance_matches_direct_scipy():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    f2 = rng.normal(0.3, 1.2, size=(300, 32)) @ rng.normal(size=(32, 32))
    mu1, c1 = feature_statistics(f1)
    mu2, c2 = feature_statistics(f2)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(
        _direct_fid(f1, f2), rel=1e-6)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_with_singular_covariances():
    # fewer samples than dimensions, as with a few hundred test images
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(6, 300)), rng.normal(0.5, 2, size=(9, 300))
    mu1, c1 = feature_statistics(f1)
    mu2, c2 = feature_statistics(f2)
    d12 = frechet_distance(mu1, c1, mu2, c2)
    assert np.isfinite(d12) and d12 > 0
    assert d12 == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-6)
    # zero up to rounding relative to the size of the traces
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(
        0, abs=1e-5 * np.trace(c1))


def test_fid_folders_equals_fid_of_direct_features(tmp_path, random_inception):
    ext = InceptionFeatureExtractor(network=random_inception)
    enh, ref = _images(1, 12, 1.0), _images(2, 14, 0.6)
    _write(tmp_path / 'enh', enh)
    _write(tmp_path / 'ref' / 'sub', ref)  # searched recursively

    def direct(imgs):
        x = torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2)).float()
        with torch.no_grad():
            return random_inception(x / 255.)[0].flatten(1).double().numpy()

    f_enh, f_ref = direct(enh), direct(ref)
    assert f_enh.shape == (12, FEAT_DIMS)
    np.testing.assert_allclose(extract_features(ext, enh, batch_size=4),
                               f_enh, rtol=1e-5, atol=1e-6)
    mu, cov, n = folder_statistics(ext, str(tmp_path / 'ref'),
                                   cache_file=str(tmp_path / 'ref.npz'))
    assert n == 14
    np.testing.assert_allclose(mu, f_ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(f_ref, rowvar=False), rtol=1e-4,
                               atol=1e-6)
    # cached statistics are read back
    mu2, cov2, n2 = folder_statistics(ext, 'does-not-matter',
                                      cache_file=str(tmp_path / 'ref.npz'))
    assert n2 == 14 and np.array_equal(mu2, mu)

    value = fid_folders(str(tmp_path / 'enh'), str(tmp_path / 'ref'),
                        extractor=ext)
    m1, c1 = feature_statistics(f_enh)
    m2, c2 = feature_statistics(f_ref)
    expected = frechet_distance(m1, c1, m2, c2)
    assert value == pytest.approx(expected, rel=1e-4)
    # and equals a direct scipy computation on the same features
    assert value == pytest.approx(_direct_fid(f_enh, f_ref), rel=1e-4)


def test_reference_fid_metric(tmp_path, random_inception):
    from mmagic.registry import METRICS
    ext = InceptionFeatureExtractor(network=random_inception)
    enh, ref = _images(3, 5, 1.0), _images(4, 6, 0.5)
    _write(tmp_path / 'ref', ref)
    metric = METRICS.build(
        dict(type='ReferenceFID', reference_dir=str(tmp_path / 'ref'),
             _extractor=ext, batch_size=2))
    # mmagic hands the metric BGR C x H x W tensors in 0..255
    samples = [
        dict(output=dict(pred_img=torch.from_numpy(
            img[..., ::-1].transpose(2, 0, 1).copy()).float())) for img in enh
    ]
    metric.process(None, samples[:3])
    metric.process(None, samples[3:])
    value = metric.evaluate(5)['FID']
    _write(tmp_path / 'enh', enh)
    assert value == pytest.approx(
        fid_folders(str(tmp_path / 'enh'), str(tmp_path / 'ref'),
                    extractor=ext), rel=1e-4)


def test_inception_file_loading(tmp_path):
    """A state dict in pytorch-fid's layout (torchvision Inception names, as in
    pt_inception-2015-12-05-6726825d.pth) gives the features of that network."""
    import torch.nn.functional as F
    from mmagic.evaluation.functional.fid_inception import fid_inception_v3
    torch.manual_seed(1)
    tv = fid_inception_v3(load_ckpt=False).eval()
    sd = tv.state_dict()
    assert 'fc.weight' in sd and 'Mixed_7c.branch_pool.conv.weight' in sd
    path = tmp_path / PT_INCEPTION_FILE
    torch.save(sd, path)
    ext = InceptionFeatureExtractor(str(path))
    assert ext.style == 'pytorch-fid'
    x = torch.rand(2, 3, 90, 110) * 255
    with torch.no_grad():
        y = F.interpolate(x / 255, size=(299, 299), mode='bilinear',
                          align_corners=False) * 2 - 1
        for name in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3'):
            y = getattr(tv, name)(y)
        y = F.max_pool2d(y, 3, 2)
        y = tv.Conv2d_4a_3x3(tv.Conv2d_3b_1x1(y))
        y = F.max_pool2d(y, 3, 2)
        for name in ('Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a',
                     'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e',
                     'Mixed_7a', 'Mixed_7b', 'Mixed_7c'):
            y = getattr(tv, name)(y)
        ref = y.mean((2, 3)).double()
    torch.testing.assert_close(ext(x), ref, rtol=1e-4, atol=1e-5)
    # the inverse mapping used to write such files round-trips
    assert set(blocks_to_pt_inception(ext.net.state_dict())) == {
        k for k in sd if not k.startswith('fc.')}


def test_missing_inception_file_error(tmp_path):
    from mmagic.registry import METRICS
    missing = str(tmp_path / PT_INCEPTION_FILE)
    with pytest.raises(FileNotFoundError) as err:
        InceptionFeatureExtractor(missing)
    msg = str(err.value)
    assert missing in msg and PT_INCEPTION_FILE in msg and 'https://' in msg
    with pytest.raises(FileNotFoundError, match='inception_path'):
        METRICS.build(dict(type='ReferenceFID', reference_dir=str(tmp_path),
                           inception_path=missing))
    assert not osp.exists(missing)
