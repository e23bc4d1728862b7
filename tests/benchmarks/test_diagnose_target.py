"""benchmarks/diagnose_target.py: the colour ratios and PSNR it reports."""
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import diagnose_target  # noqa: E402


def test_colour_stats_of_a_cast():
    # two images of uniform colour: the mean of the per-image means
    a = np.zeros((4, 6, 3), np.uint8)
    a[...] = (200, 120, 60)
    b = np.zeros((8, 2, 3), np.uint8)
    b[...] = (100, 80, 40)
    st = diagnose_target.colour_stats(dict(a=a, b=b))
    assert np.allclose(st['mean_rgb'], [150, 100, 50])
    assert abs(st['g_over_r'] - 100 / 150) < 1e-9
    assert abs(st['b_over_r'] - 50 / 150) < 1e-9


def test_mean_psnr_against_closed_form():
    gt = np.full((5, 5, 3), 100, np.uint8)
    out = dict(x=gt + 10, y=gt.copy())
    out['y'][0, 0, 0] = 110  # one pixel off by 10: MSE 100 / 75
    ref_x = 10 * np.log10(255.**2 / 100)
    ref_y = 10 * np.log10(255.**2 / (100 / 75))
    got = diagnose_target.mean_psnr(out, [('x', None, gt), ('y', None, gt)])
    assert abs(got - (ref_x + ref_y) / 2) < 1e-9


def test_gain_matching_removes_a_global_cast_only():
    rng = np.random.default_rng(0)
    gt = rng.integers(20, 200, (16, 16, 3)).astype(np.uint8)
    cast = np.clip(np.round(gt * np.array([1.0, 0.6, 0.4])), 0,
                   255).astype(np.uint8)
    pairs = [('a', None, gt)]
    before = diagnose_target.mean_psnr(dict(a=cast), pairs)
    matched = diagnose_target.gain_matched(dict(a=cast), pairs)
    after = diagnose_target.mean_psnr(matched, pairs)
    assert before < 15 and after > 35  # only rounding is left
    # structure errors stay: a shuffled image gains nothing
    shuffled = gt.reshape(-1, 3)[rng.permutation(256)].reshape(gt.shape)
    m2 = diagnose_target.gain_matched(dict(a=shuffled), pairs)
    assert diagnose_target.mean_psnr(m2, pairs) < 20
