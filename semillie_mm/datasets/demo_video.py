"""A test clip made from a shipped photo: a slow pan with a brightness ramp.

:func:`make_pan_clip` pans a window across a photo shipped inside
scikit-image / scikit-learn (loaded as the demo data loads its photos,
:func:`~semillie_mm.datasets.demo_data.load_demo_photo`) while the exposure
rises, and darkens every frame with the demo's low-light synthesis
(:func:`~semillie_mm.datasets.transforms.low_light_synthesis.
synthesize_low_light`: exposure, gamma, Poisson-Gaussian noise drawn anew
each frame, as a sensor does). Nothing is downloaded; the same arguments give
the same frames. Used by ``benchmarks/video_flicker.py`` and the tests.
"""
from typing import List, Tuple

import numpy as np

from .demo_data import load_demo_photo
from .transforms.low_light_synthesis import synthesize_low_light


def make_pan_clip(frames: int = 30,
                  size: Tuple[int, int] = (96, 128),
                  photo: str = 'coffee',
                  package: str = 'skimage',
                  scale: float = 0.5,
                  step: int = 2,
                  exposure: Tuple[float, float] = (0.03, 0.1),
                  gamma: float = 2.2,
                  shot_gain: float = 1e-3,
                  read_std: float = 1e-3,
                  seed: int = 0) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Make a low-light clip and its clean version.

    Args:
        frames (int): Number of frames. Default: 30.
        size (tuple[int, int]): ``(height, width)`` of a frame.
        photo (str): The photo (default ``'coffee'``, a validation photo of
            the demo data, never trained on).
        package (str): Where the photo is shipped. Default: 'skimage'.
        scale (float): The photo is first resized by this factor.
        step (int): Pan speed, pixels per frame (to the right, then down
            when the row is used up).
        exposure (tuple[float, float]): Exposure of the first and the last
            frame, ramped geometrically.
        gamma (float): Display gamma of the synthesis.
        shot_gain (float): Poisson gain of the synthesis.
        read_std (float): Read noise of the synthesis.
        seed (int): Noise seed of the first frame (frame ``t`` uses
            ``seed + t``).

    Returns:
        tuple[list[np.ndarray], list[np.ndarray]]: The dark frames and the
        clean frames, ``HxWx3`` uint8 RGB each.

    Raises:
        ValueError: The photo is too small for the window and the pan.
    """
    import cv2
    img = load_demo_photo(photo, package)
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_AREA)
    h, w = size
    span = img.shape[1] - w
    if span < 0 or img.shape[0] < h or (frames - 1) * step > \
            span * max(1, img.shape[0] - h + 1):
        raise ValueError(f'photo {photo} ({img.shape[1]}x{img.shape[0]} '
                         f'after scaling) is too small for {frames} frames '
                         f'of {w}x{h} at {step} px per frame')
    ks = np.geomspace(exposure[0], exposure[1], frames) if frames > 1 else \
        np.asarray([exposure[0]])
    dark, clean = [], []
    for t in range(frames):
        x = t * step
        y0, x0 = divmod(x, span) if span else (0, 0)
        crop = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
        clean.append(crop)
        dark.append(synthesize_low_light(crop, dict(
            exposure=float(ks[t]), gamma=gamma, shot_gain=shot_gain,
            read_std=read_std, noise_seed=seed + t)))
    return dark, clean


__all__ = ['make_pan_clip']
