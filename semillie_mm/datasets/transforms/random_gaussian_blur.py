# Copyright (c) semillie-mm contributors. All rights reserved.
"""Random Gaussian blur with a random odd kernel size (strong view)."""
from typing import Sequence, Tuple

import cv2
import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform


@TRANSFORMS.register_module()
class RandomGaussianBlur(BaseTransform):
    """Blur images with a Gaussian of random kernel size and sigma.

    Part of the strong view of the unpaired images (paper Sec. IV-A; SPEC
    Sec. 3): with probability ``prob`` a kernel size is drawn from
    ``kernel_sizes`` and a sigma uniformly from ``sigma``; all ``keys`` get
    the same blur. A kernel size of 1 leaves the image unchanged. Borders are
    reflected (``cv2.BORDER_REFLECT_101``, as torchvision's ``GaussianBlur``).

    The draws use ``np.random`` (NumPy's global state), which mmengine seeds
    (``randomness=dict(seed=...)`` and the dataloader ``worker_init_fn``).

    Required Keys:

    - [KEYS]

    Modified Keys:

    - [KEYS]

    Args:
        keys (list[str]): Images (HxW or HxWxC uint8/float arrays) to blur.
        kernel_sizes (Sequence[int]): Odd kernel sizes to choose from.
            Defaults to (1, 3, 5).
        sigma (tuple[float, float]): Range of the standard deviation.
            Defaults to (0.1, 2.0).
        prob (float): Probability to blur. Defaults to 0.5.
    """

    def __init__(self,
                 keys: Sequence[str],
                 kernel_sizes: Sequence[int] = (1, 3, 5),
                 sigma: Tuple[float, float] = (0.1, 2.0),
                 prob: float = 0.5) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(
                f'kernel_sizes must be odd positive ints, got {kernel_sizes}')
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f'sigma must be 0 < low <= high, got {sigma}')
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.prob = float(prob)

    def transform(self, results: dict) -> dict:
        """Blur the images (or not).

        Args:
            results (dict): Result dict.

        Returns:
            dict: The dict with blurred images and ``blur_info``
            (``None`` when not blurred, else ``(kernel_size, sigma)``).
        """
        info = None
        if np.random.rand() < self.prob:
            ksize = int(self.kernel_sizes[np.random.randint(
                len(self.kernel_sizes))])
            sigma = float(np.random.uniform(*self.sigma))
            info = (ksize, sigma)
            if ksize > 1:
                for k in self.keys:
                    img = results[k]
                    out = cv2.GaussianBlur(
                        img, (ksize, ksize),
                        sigmaX=sigma,
                        sigmaY=sigma,
                        borderType=cv2.BORDER_REFLECT_101)
                    results[k] = out.reshape(img.shape)
        results['blur_info'] = info
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={self.keys}, '
                f'kernel_sizes={self.kernel_sizes}, sigma={self.sigma}, '
                f'prob={self.prob})')
