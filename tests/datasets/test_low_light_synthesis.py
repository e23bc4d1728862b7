"""Tests of the physical low-light synthesis (Poisson-Gaussian model)."""
import json

from semillie_mm.datasets.transforms.low_light_synthesis import (
    DEFAULT_LOW_LIGHT_RANGES,
    LowLightSynthesis,
    sample_low_light_params,
    synthesize_low_light,
)

import numpy as np
import pytest


def _natural_like(seed=0, size=(64, 80)):
    rng = np.random.default_rng(seed)
    base = np.linspace(20, 235, size[1])[None, :, None]
    img = base + rng.normal(0, 20, size + (3, ))
    return np.clip(img, 0, 255).astype(np.uint8)


def _params(**kw):
    p = dict(exposure=0.1, gamma=2.2, shot_gain=0.0, read_std=0.0,
             noise_seed=0)
    p.update(kw)
    return p


def test_sample_params_json_and_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = sample_low_light_params(rng)
        assert json.loads(json.dumps(p)) == p
        assert isinstance(p['noise_seed'], int)
        for name, (low, high) in DEFAULT_LOW_LIGHT_RANGES.items():
            assert low <= p[name] <= high
    # same generator state -> same parameters
    a = sample_low_light_params(np.random.default_rng(5))
    b = sample_low_light_params(np.random.default_rng(5))
    assert a == b
    fixed = sample_low_light_params(
        np.random.default_rng(1), dict(exposure=0.05, gamma='srgb'))
    assert fixed['exposure'] == 0.05 and fixed['gamma'] == 'srgb'
    with pytest.raises(KeyError, match='bogus'):
        sample_low_light_params(rng, dict(bogus=(0, 1)))


def test_deterministic_from_params():
    img = _natural_like()
    rng = np.random.default_rng(3)
    for _ in range(5):
        params = sample_low_light_params(rng)
        out = synthesize_low_light(img, params)
        again = synthesize_low_light(img.copy(), json.loads(json.dumps(params)))
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert out.tobytes() == again.tobytes()
    other = dict(params, noise_seed=params['noise_seed'] + 1)
    assert not np.array_equal(synthesize_low_light(img, other), out)


def test_darker_than_input_and_monotonic_in_exposure():
    img = _natural_like(1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = synthesize_low_light(img, sample_low_light_params(rng))
        assert out.mean() < 0.7 * img.mean()
    means = [
        synthesize_low_light(img, _params(exposure=k)).mean()
        for k in (0.02, 0.05, 0.1, 0.2)
    ]
    assert means == sorted(means) and means[0] < means[-1]


@pytest.mark.parametrize('gamma', [2.2, 'srgb'])
def test_noise_free_matches_closed_form(gamma):
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    out = synthesize_low_light(img, _params(gamma=gamma, exposure=0.15))
    x = img.astype(np.float64) / 255
    if gamma == 'srgb':
        lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055)**2.4)
        y = 0.15 * lin
        ref = np.where(y <= 0.0031308, 12.92 * y, 1.055 * y**(1 / 2.4) - 0.055)
    else:
        ref = (0.15 * x**2.2)**(1 / 2.2)
    np.testing.assert_array_equal(out, np.rint(ref * 255).astype(np.uint8))


def test_noise_variance_follows_poisson_gaussian_model():
    """Output variance on a flat image = delta-method prediction of
    var(y) = shot_gain * m + read_std ** 2, and grows with both."""
    value, k, g = 160, 0.2, 2.2
    flat = np.full((128, 128, 3), value, np.uint8)
    m = k * (value / 255)**g
    slope = 255 * (1 / g) * m**(1 / g - 1)  # d out / d y at the mean

    variances = {}
    for shot_gain, read_std in [(5e-5, 0), (2e-4, 0), (8e-4, 0), (0, 1e-3),
                                (0, 2e-3), (4e-4, 1e-3)]:
        out = synthesize_low_light(
            flat,
            _params(exposure=k, gamma=g, shot_gain=shot_gain,
                    read_std=read_std, noise_seed=1)).astype(np.float64)
        predicted = slope**2 * (shot_gain * m + read_std**2) + 1 / 12
        variances[(shot_gain, read_std)] = out.var()
        assert out.var() == pytest.approx(predicted, rel=0.1)
    assert (variances[(5e-5, 0)] < variances[(2e-4, 0)] <
            variances[(8e-4, 0)])
    assert variances[(0, 1e-3)] < variances[(0, 2e-3)]


def test_channel_symmetric_and_rejects_bad_input():
    img = _natural_like(2)
    p = _params(shot_gain=0, read_std=0)
    np.testing.assert_array_equal(
        synthesize_low_light(img[..., ::-1].copy(), p),
        synthesize_low_light(img, p)[..., ::-1])
    with pytest.raises(TypeError):
        synthesize_low_light(img.astype(np.float32), p)
    with pytest.raises(KeyError, match='noise_seed'):
        synthesize_low_light(img, dict(exposure=0.1, gamma=2.2,
                                       shot_gain=0, read_std=0))


def test_transform_seeded_and_registered():
    from mmagic.registry import TRANSFORMS
    img = _natural_like(3)
    t1 = TRANSFORMS.build(dict(type='LowLightSynthesis', keys=['img'],
                               seed=7))
    t2 = LowLightSynthesis(keys=['img'], seed=7)
    r1 = t1(dict(img=img.copy()))
    r2 = t2(dict(img=img.copy()))
    np.testing.assert_array_equal(r1['img'], r2['img'])
    np.testing.assert_array_equal(
        r1['img'], synthesize_low_light(img, r1['low_light_params']))
    # the generator advances: a second call draws new parameters
    assert t1(dict(img=img.copy()))['low_light_params'] != \
        r1['low_light_params']
    # seed=None follows NumPy's global state (mmengine's seeding)
    t3 = LowLightSynthesis(keys=['img', 'gt'])
    np.random.seed(3)
    a = t3(dict(img=img.copy(), gt=img.copy()))
    np.random.seed(3)
    b = t3(dict(img=img.copy(), gt=img.copy()))
    assert a['low_light_params'] == b['low_light_params']
    np.testing.assert_array_equal(a['img'], a['gt'])  # one draw per sample
