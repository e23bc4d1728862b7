"""GT-mean brightness rectification (the "GT-mean" test protocol).

Many low-light enhancement papers (KinD, LLFlow, Retinexformer, diffusion
models) also report PSNR/SSIM after rescaling each output so that its mean
grey level equals that of its ground truth; this removes the global
brightness mismatch, which the ground truth of paired sets (LOL, LSRW) leaves
undetermined. Retinexformer's ``Enhancement/test_from_dataset.py --GT_mean``
does, **per image**:

1. ``restored`` = network output clamped to [0, 1] (float32, RGB order, as
   its ``utils.load_img`` converts cv2's BGR to RGB);
2. ``m_out = cvtColor(restored, COLOR_BGR2GRAY).mean()`` and the same for the
   target: ONE scalar grey-level mean per image (not per channel). Because
   the arrays are RGB but the conversion is BGR2GRAY, the weights land as
   ``0.114 R + 0.587 G + 0.299 B`` (R and B weights swapped with respect to
   BT.601's ``0.299 R + 0.587 G + 0.114 B``);
3. ``restored = clip(restored * m_gt / m_out, 0, 1)`` -- every channel scaled
   by the same factor;
4. PSNR on these floats (``10 log10(1 / MSE)``, no rounding) and SSIM (the
   MATLAB-like per-channel mean of cv2-filtered maps) on
   ``img_as_ubyte`` of both images, i.e. rounded to 8 bits.

:func:`gt_mean_scale` reproduces steps 2-3 on the 0..255 scale; the default
``weights='retinexformer'`` is Retinexformer's exact (swapped) weighting and
``weights='bt601'`` the textbook one. Both differ only in the factor; the
difference in PSNR is usually in the second decimal.
"""
from typing import Sequence, Union

import numpy as np

#: grey weights per colour as the two conventions apply them
GRAY_WEIGHTS = {
    # Retinexformer: cv2 COLOR_BGR2GRAY applied to RGB arrays
    'retinexformer': {'R': 0.114, 'G': 0.587, 'B': 0.299},
    # ITU-R BT.601 luma, what COLOR_RGB2GRAY does on RGB arrays
    'bt601': {'R': 0.299, 'G': 0.587, 'B': 0.114},
}


def gray_mean(img: np.ndarray,
              channel_order: str = 'rgb',
              weights: Union[str, Sequence[float]] = 'retinexformer',
              input_order: str = 'HWC') -> float:
    """Mean grey level of an image.

    Args:
        img (np.ndarray): ``H x W x C`` (or ``C x H x W``) image, any scale.
        channel_order (str): 'rgb' or 'bgr', the order of the 3 channels.
        weights (str | sequence): 'retinexformer', 'bt601', or three weights
            in ``channel_order``. A single-channel image is its own grey.
        input_order (str): 'HWC' or 'CHW'.

    Returns:
        float: the mean of the weighted sum of the channels.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return float(img.mean())
    if input_order.upper() == 'CHW':
        img = np.moveaxis(img, 0, -1)
    if img.shape[-1] == 1:
        return float(img.mean())
    if img.shape[-1] != 3:
        raise ValueError(f'expected 1 or 3 channels, got {img.shape}')
    if isinstance(weights, str):
        per_colour = GRAY_WEIGHTS[weights]
        w = [per_colour[c] for c in channel_order.upper()]
    else:
        w = [float(v) for v in weights]
    # mean of a weighted sum == weighted sum of the channel means
    return float(sum(wi * img[..., i].mean() for i, wi in enumerate(w)))


def gt_mean_scale(pred: np.ndarray,
                  gt: np.ndarray,
                  channel_order: str = 'rgb',
                  weights: Union[str, Sequence[float]] = 'retinexformer',
                  input_order: str = 'HWC',
                  max_value: float = 255.) -> np.ndarray:
    """Scale ``pred`` so that its mean grey level equals ``gt``'s.

    Args:
        pred (np.ndarray): The output, values in ``[0, max_value]``.
        gt (np.ndarray): The ground truth, same shape and scale.
        channel_order (str): 'rgb' or 'bgr'.
        weights (str | sequence): see :func:`gray_mean`.
        input_order (str): 'HWC' or 'CHW'.
        max_value (float): the clipping bound (255 for 8-bit scale).

    Returns:
        np.ndarray: ``clip(pred * gray_mean(gt) / gray_mean(pred), 0,
        max_value)`` as float64. A black ``pred`` (mean 0) is returned
        unscaled: no factor can brighten it.
    """
    pred = np.asarray(pred, dtype=np.float64)
    m_pred = gray_mean(pred, channel_order, weights, input_order)
    m_gt = gray_mean(gt, channel_order, weights, input_order)
    if m_pred <= 0:
        return np.clip(pred, 0, max_value)
    return np.clip(pred * (m_gt / m_pred), 0, max_value)
