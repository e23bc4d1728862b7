# Copyright (c) semillie-mm contributors. All rights reserved.
"""Random conversion to grayscale of images under given keys (strong view)."""
from typing import Sequence

import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform


@TRANSFORMS.register_module()
class RandomGrayscaleKeys(BaseTransform):
    """Convert images to 3-channel grayscale with a probability.

    Part of the strong view of the unpaired images (paper Sec. IV-A;
    RandomGrayscale p = 0.2 in the authors' code). mmcv's ``RandomGrayscale``
    only works on ``results['img']``; this one works on any ``keys`` (the
    strong view lives under its own key) and keeps the channel count, like
    torchvision's ``RandomGrayscale``: ``L = 0.299 R + 0.587 G + 0.114 B``
    (ITU-R 601-2, the weights of PIL's ``convert('L')``), repeated over the
    three channels.

    The draw uses ``np.random`` (NumPy's global state), which mmengine seeds.

    Required Keys:

    - [KEYS]

    Modified Keys:

    - [KEYS]

    Args:
        keys (list[str]): HxWx3 images to convert.
        prob (float): Probability of the conversion. Defaults to 0.2.
        channel_order (str): ``'rgb'`` or ``'bgr'``. Defaults to 'rgb'.
    """

    def __init__(self,
                 keys: Sequence[str],
                 prob: float = 0.2,
                 channel_order: str = 'rgb') -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if channel_order not in ('rgb', 'bgr'):
            raise ValueError(
                f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.prob = float(prob)
        self.channel_order = channel_order

    def _to_gray(self, img: np.ndarray) -> np.ndarray:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float64)
        if self.channel_order == 'bgr':
            weights = weights[::-1]
        lum = img[..., :3].astype(np.float64) @ weights
        if np.issubdtype(img.dtype, np.integer):
            lum = np.clip(np.rint(lum), np.iinfo(img.dtype).min,
                          np.iinfo(img.dtype).max)
        gray = np.repeat(lum[..., None], img.shape[-1], axis=-1)
        return gray.astype(img.dtype)

    def transform(self, results: dict) -> dict:
        """Convert the images (or not).

        Args:
            results (dict): Result dict.

        Returns:
            dict: The dict with converted images and ``grayscale`` (bool).
        """
        gray = bool(np.random.rand() < self.prob)
        if gray:
            for k in self.keys:
                results[k] = self._to_gray(results[k])
        results['grayscale'] = gray
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={self.keys}, '
                f'prob={self.prob}, channel_order={self.channel_order!r})')
