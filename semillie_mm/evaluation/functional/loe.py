"""Lightness order error (LOE) of Wang et al., "Naturalness preserved
enhancement algorithm for non-uniform illumination images", TIP 2013.

Definition used here (docs/metrics.md, SPEC section 5):

1. lightness ``L = max(R, G, B)`` of the low-light input and of the enhanced
   image, on the 0..255 scale (both images are first rounded/clipped to
   8-bit values, as they would be when saved);
2. both lightness maps are resized with MATLAB-like bicubic ``imresize``
   (mmagic's :class:`MATLABLikeResize`, antialiased) so that the short side
   is 50 pixels: ``r = 50 / min(H, W)``, size ``(round(H * r), round(W * r))``;
   the result is rounded and clipped to 0..255 as MATLAB does for ``uint8``;
3. for each pixel ``p`` of the small maps,
   ``RD(p) = #{q : (L(q) >= L(p)) xor (L_e(q) >= L_e(p))}``;
4. ``LOE = mean(RD)``. Lower is better; 0 means the lightness order of the
   input is fully preserved.
"""
from typing import Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_hwc_uint8_scale(img: ArrayLike, input_order: str) -> np.ndarray:
    """Convert an image to a float64 HxWxC array rounded/clipped to 0..255."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f'LOE expects a 2-D or 3-D image, got shape '
                         f'{img.shape}.')
    if input_order.upper() == 'CHW':
        img = img.transpose(1, 2, 0)
    elif input_order.upper() != 'HWC':
        raise ValueError(f'input_order must be "HWC" or "CHW", got '
                         f'{input_order!r}.')
    return np.clip(np.round(img.astype(np.float64)), 0, 255)


def loe_downsampled_size(height: int, width: int,
                         short_side: int = 50) -> Tuple[int, int]:
    """Size of the lightness maps LOE compares.

    Args:
        height (int): Image height.
        width (int): Image width.
        short_side (int): Target length of the short side. Default: 50.

    Returns:
        tuple[int, int]: ``(round(height * r), round(width * r))`` with
        ``r = short_side / min(height, width)`` (MATLAB ``round``, i.e. half
        away from zero).
    """
    r = short_side / min(height, width)
    # MATLAB's round: half away from zero (python's round is half-to-even).
    return (max(1, int(np.floor(height * r + 0.5))),
            max(1, int(np.floor(width * r + 0.5))))


def loe_lightness_maps(low: ArrayLike,
                       enhanced: ArrayLike,
                       short_side: int = 50,
                       input_order: str = 'HWC'
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Lightness maps (max over channels) of both images at LOE resolution.

    Args:
        low (np.ndarray | Tensor): Low-light input, values in 0..255.
        enhanced (np.ndarray | Tensor): Enhanced image, same size, 0..255.
        short_side (int): Short side of the compared maps. Default: 50.
        input_order (str): ``'HWC'`` or ``'CHW'``. Default: ``'HWC'``.

    Returns:
        tuple[np.ndarray, np.ndarray]: The two float64 maps (integer valued).
    """
    low = _to_hwc_uint8_scale(low, input_order)
    enhanced = _to_hwc_uint8_scale(enhanced, input_order)
    if low.shape[:2] != enhanced.shape[:2]:
        raise ValueError('LOE needs images of the same size, got '
                         f'{low.shape[:2]} and {enhanced.shape[:2]}.')
    light = low.max(axis=2)
    light_e = enhanced.max(axis=2)
    out_size = loe_downsampled_size(*light.shape, short_side=short_side)
    if out_size != light.shape:
        # MATLAB-like bicubic imresize (antialiased when shrinking), reused
        # from mmagic. Imported here to keep `import semillie_mm` cheap.
        from mmagic.datasets.transforms import MATLABLikeResize
        resize = MATLABLikeResize(keys=[], output_shape=out_size)
        light = resize._resize(light)[..., 0]
        light_e = resize._resize(light_e)[..., 0]
        light = np.clip(np.round(light), 0, 255)
        light_e = np.clip(np.round(light_e), 0, 255)
    return light, light_e


def loe_from_lightness(light: np.ndarray,
                       light_e: np.ndarray,
                       chunk_size: int = 1024) -> float:
    """LOE of two lightness maps that are already at the compared size.

    Vectorised: the pairwise comparisons are done with broadcasting, in
    chunks of ``chunk_size`` reference pixels so that memory stays below
    ``chunk_size * N`` booleans (N = number of pixels).

    Args:
        light (np.ndarray): Lightness of the input, 2-D.
        light_e (np.ndarray): Lightness of the enhanced image, same shape.
        chunk_size (int): Reference pixels compared per chunk. Default: 1024.

    Returns:
        float: Mean over pixels of the number of order flips.
    """
    a = np.asarray(light, dtype=np.float64).ravel()
    b = np.asarray(light_e, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError('lightness maps differ in size: '
                         f'{np.shape(light)} vs {np.shape(light_e)}.')
    total = 0
    for start in range(0, a.size, chunk_size):
        ref_a = a[start:start + chunk_size, None]
        ref_b = b[start:start + chunk_size, None]
        flips = (a[None, :] >= ref_a) != (b[None, :] >= ref_b)
        total += int(flips.sum())
    return total / a.size


def loe(low: ArrayLike,
        enhanced: ArrayLike,
        short_side: int = 50,
        input_order: str = 'HWC') -> float:
    """Lightness order error between a low-light input and its enhancement.

    Args:
        low (np.ndarray | Tensor): Low-light input, HxWx3 (or HxW), 0..255.
        enhanced (np.ndarray | Tensor): Enhanced image, same size, 0..255.
        short_side (int): Short side of the compared lightness maps.
            Default: 50 (Wang et al. 2013).
        input_order (str): ``'HWC'`` or ``'CHW'``. Default: ``'HWC'``.

    Returns:
        float: LOE (lower is better). Channel order (RGB/BGR) does not matter:
        lightness is the maximum over the channels.
    """
    light, light_e = loe_lightness_maps(low, enhanced, short_side,
                                        input_order)
    return loe_from_lightness(light, light_e)
