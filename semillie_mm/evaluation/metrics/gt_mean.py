"""GT-mean PSNR and SSIM: mmagic's PSNR/SSIM after brightness rectification.

Opt-in (add them to ``val_evaluator``/``test_evaluator`` next to the plain
ones); they report under their own names, ``PSNR_GTmean`` and
``SSIM_GTmean``, so both protocols can be printed side by side. The protocol
(Retinexformer's ``--GT_mean``) is described in
:mod:`semillie_mm.evaluation.functional.gt_mean` and docs/metrics.md.
"""
from typing import Optional, Sequence, Union

import numpy as np
from mmagic.evaluation.metrics.psnr import PSNR
from mmagic.evaluation.metrics.ssim import SSIM
from mmagic.registry import METRICS
from mmagic.utils import to_numpy

from ..functional.gt_mean import GRAY_WEIGHTS, gt_mean_scale


class _GTMeanMixin:
    """Rescales the prediction to the GT's mean grey level before scoring."""

    def _init_gt_mean(self, weights, channel_order, round_to_uint8):
        if isinstance(weights, str) and weights not in GRAY_WEIGHTS:
            raise ValueError(f'weights must be one of {sorted(GRAY_WEIGHTS)} '
                             f'or three numbers, got {weights!r}')
        self.weights = weights
        self.round_to_uint8 = round_to_uint8
        if channel_order is not None:
            if channel_order.lower() not in ('rgb', 'bgr'):
                raise ValueError(f"channel_order must be 'rgb' or 'bgr', got "
                                 f'{channel_order!r}')
            # mmagic's metrics keep the order in self.channel_order ('BGR'
            # by default); it is also what convert_to='Y' relies on
            self.channel_order = channel_order.upper()

    def _rectify(self, gt, pred):
        gt = to_numpy(gt).astype(np.float64)
        pred = to_numpy(pred).astype(np.float64)
        pred = gt_mean_scale(
            pred,
            gt,
            channel_order=self.channel_order.lower(),
            weights=self.weights,
            input_order=self.input_order)
        if self.round_to_uint8:
            gt = np.clip(np.round(gt), 0, 255)
            pred = np.round(pred)
        return gt, pred


@METRICS.register_module()
class GTMeanPSNR(_GTMeanMixin, PSNR):
    """PSNR after scaling the output to the ground truth's mean grey level.

    Each output is multiplied by ``gray_mean(gt) / gray_mean(pred)`` (one
    factor per image, all channels) and clipped to 0..255; then mmagic's
    PSNR is computed on the floats, as Retinexformer does.

    Args:
        weights (str | sequence): grey weights: 'retinexformer' (default,
            Retinexformer's cv2 BGR2GRAY on RGB arrays: 0.114 R + 0.587 G +
            0.299 B), 'bt601' (0.299 R + 0.587 G + 0.114 B) or three
            numbers in the channel order of the data.
        channel_order (str, optional): 'rgb' or 'bgr', the order of the
            images the metric receives. None keeps mmagic's assumption
            ('BGR': mmagic's ``DataPreprocessor.destruct`` hands BGR images).
        round_to_uint8 (bool): round the rectified output to 8-bit levels
            first. Default False (Retinexformer's PSNR is on floats).
        **kwargs: mmagic :class:`PSNR` arguments (``crop_border``,
            ``convert_to``, ``gt_key``, ``pred_key``, ``prefix`` ...).

    Metrics:
        - PSNR_GTmean (float): higher is better.
    """

    metric = 'PSNR_GTmean'

    def __init__(self,
                 weights: Union[str, Sequence[float]] = 'retinexformer',
                 channel_order: Optional[str] = None,
                 round_to_uint8: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_gt_mean(weights, channel_order, round_to_uint8)

    def process_image(self, gt, pred, mask):
        """PSNR of one ``C x H x W`` pair (0..255) after rectification."""
        gt, pred = self._rectify(gt, pred)
        return super().process_image(gt, pred, mask)


@METRICS.register_module()
class GTMeanSSIM(_GTMeanMixin, SSIM):
    """SSIM after scaling the output to the ground truth's mean grey level.

    As :class:`GTMeanPSNR`, then the rectified output is rounded to 8-bit
    levels (Retinexformer's ``img_as_ubyte`` before its SSIM) and mmagic's
    SSIM (per-channel MATLAB-like SSIM, averaged) is computed.

    Args:
        weights (str | sequence): see :class:`GTMeanPSNR`.
        channel_order (str, optional): see :class:`GTMeanPSNR`.
        round_to_uint8 (bool): round before SSIM. Default True.
        **kwargs: mmagic :class:`SSIM` arguments.

    Metrics:
        - SSIM_GTmean (float): higher is better.
    """

    metric = 'SSIM_GTmean'

    def __init__(self,
                 weights: Union[str, Sequence[float]] = 'retinexformer',
                 channel_order: Optional[str] = None,
                 round_to_uint8: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_gt_mean(weights, channel_order, round_to_uint8)

    def process_image(self, gt, pred, mask):
        """SSIM of one ``C x H x W`` pair (0..255) after rectification."""
        gt, pred = self._rectify(gt, pred)
        return super().process_image(gt, pred, mask)
