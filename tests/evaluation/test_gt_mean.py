"""GT-mean PSNR/SSIM against a hand computation of Retinexformer's protocol."""
import math

from semillie_mm.evaluation.functional import gray_mean, gt_mean_scale
from semillie_mm.evaluation.metrics import GTMeanPSNR, GTMeanSSIM

import cv2
import numpy as np
import pytest
import torch
from mmagic.evaluation.metrics.ssim import ssim as mmagic_ssim
from mmagic.registry import METRICS


def _pair(seed=0, size=24):
    rng = np.random.default_rng(seed)
    gt = rng.integers(30, 230, (size, size, 3)).astype(np.uint8)  # RGB
    # a dark, colour-shifted output: the GT-mean factor is far from 1
    pred = np.clip(gt * np.array([0.35, 0.45, 0.3]) +
                   rng.normal(0, 4, gt.shape), 0, 255).astype(np.float32)
    return gt, pred


def _retinexformer_by_hand(gt_rgb_u8, pred_rgb):
    """Retinexformer's test_from_dataset.py --GT_mean, step by step: [0, 1]
    RGB float32 arrays, cv2 BGR2GRAY applied to them (as it does), one
    factor, clip; PSNR on floats, SSIM on img_as_ubyte (rint) of both."""
    target = gt_rgb_u8.astype(np.float32) / 255.
    restored = np.clip(pred_rgb.astype(np.float32) / 255., 0, 1)
    m_out = cv2.cvtColor(restored, cv2.COLOR_BGR2GRAY).mean()
    m_gt = cv2.cvtColor(target, cv2.COLOR_BGR2GRAY).mean()
    restored = np.clip(restored * (m_gt / m_out), 0, 1)
    mse = np.mean((target.astype(np.float64) - restored)**2)
    psnr = 10 * math.log10(1 / mse)
    u8 = np.rint(restored * 255).astype(np.uint8)  # skimage img_as_ubyte
    ssim = mmagic_ssim(gt_rgb_u8.astype(np.float64), u8.astype(np.float64),
                       input_order='HWC')
    return psnr, ssim


def _sample(gt_rgb, pred_rgb):
    """A data sample as mmagic metrics get it: C x H x W, 0..255, BGR."""
    to_bgr_chw = lambda a: torch.from_numpy(  # noqa: E731
        np.ascontiguousarray(a[..., ::-1].transpose(2, 0, 1)))
    return dict(gt_img=to_bgr_chw(gt_rgb),
                output=dict(pred_img=to_bgr_chw(pred_rgb).float()))


def test_gray_mean_weights():
    gt, _ = _pair()
    r, g, b = (gt[..., i].astype(np.float64).mean() for i in range(3))
    # Retinexformer's weighting is cv2 BGR2GRAY on RGB data
    ref = cv2.cvtColor(gt.astype(np.float32), cv2.COLOR_BGR2GRAY).mean()
    ours = gray_mean(gt, 'rgb', 'retinexformer')
    assert ours == pytest.approx(0.114 * r + 0.587 * g + 0.299 * b, rel=1e-12)
    assert ours == pytest.approx(float(ref), rel=1e-5)
    assert gray_mean(gt, 'rgb', 'bt601') == pytest.approx(
        0.299 * r + 0.587 * g + 0.114 * b, rel=1e-12)
    # the same colours in BGR order and CHW layout give the same mean
    bgr_chw = gt[..., ::-1].transpose(2, 0, 1)
    assert gray_mean(bgr_chw, 'bgr', 'retinexformer', 'CHW') == \
        pytest.approx(ours, rel=1e-12)


def test_scaled_mean_matches_gt():
    gt, pred = _pair()
    out = gt_mean_scale(pred, gt)
    k = gray_mean(gt) / gray_mean(pred)
    assert k > 2  # a real brightness correction
    np.testing.assert_allclose(
        out, np.clip(pred.astype(np.float64) * k, 0, 255), rtol=1e-12)
    if out.max() < 255:  # no clipping: the means agree exactly
        assert gray_mean(out) == pytest.approx(gray_mean(gt), rel=1e-12)
    # a black output cannot be rescaled and is returned as is
    assert not gt_mean_scale(np.zeros_like(pred), gt).any()


@pytest.mark.parametrize('seed', [0, 1])
def test_metrics_match_retinexformer_by_hand(seed):
    gt, pred = _pair(seed)
    ref_psnr, ref_ssim = _retinexformer_by_hand(gt, pred)
    psnr = METRICS.build(dict(type='GTMeanPSNR'))
    ssim = METRICS.build(dict(type='GTMeanSSIM'))
    assert isinstance(psnr, GTMeanPSNR) and isinstance(ssim, GTMeanSSIM)
    sample = _sample(gt, pred)
    psnr.process([], [sample])
    ssim.process([], [sample])
    got_psnr = psnr.compute_metrics(psnr.results)['PSNR_GTmean']
    got_ssim = ssim.compute_metrics(ssim.results)['SSIM_GTmean']
    assert got_psnr == pytest.approx(ref_psnr, abs=1e-4)
    assert got_ssim == pytest.approx(ref_ssim, abs=1e-6)
    # GT-mean removes the brightness gap: far above the plain PSNR
    plain = METRICS.build(dict(type='PSNR'))
    plain.process([], [sample])
    assert got_psnr > plain.compute_metrics(plain.results)['PSNR'] + 5


def test_weights_option_changes_the_factor():
    gt, pred = _pair(2)
    sample = _sample(gt, pred)
    args = (sample['gt_img'], sample['output']['pred_img'], None)
    a = GTMeanPSNR(weights='retinexformer').process_image(*args)
    b = GTMeanPSNR(weights='bt601').process_image(*args)
    assert a != pytest.approx(b, abs=1e-6)
    with pytest.raises(ValueError, match='weights'):
        GTMeanPSNR(weights='luma')
    with pytest.raises(ValueError, match='channel_order'):
        GTMeanSSIM(channel_order='hsv')
