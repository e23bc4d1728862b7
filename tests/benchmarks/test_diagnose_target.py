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
