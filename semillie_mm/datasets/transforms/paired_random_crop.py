# Copyright (c) semillie-mm contributors. All rights reserved.
"""Random crop of the same window from an input image and its ground truth."""
from typing import Sequence, Union

import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform


@TRANSFORMS.register_module()
class PairedRandomCropWithPad(BaseTransform):
    """Crop the same random ``crop_size`` window from all images of a sample.

    Semi-LLIE trains on random 256x256 crops of the paired data (paper
    Sec. IV-A). Unlike mmagic's ``PairedRandomCrop`` (a super-resolution
    transform that needs a ``scale`` key and rejects small images), this one
    crops images of equal size and handles images smaller than the crop:
    with ``pad_mode='reflect'`` (default) they are first mirror-padded at the
    bottom/right up to the crop size (NumPy's ``'symmetric'`` mode, which
    also works when the pad is larger than the image; both images get the
    same pad, so they stay aligned); with ``pad_mode='error'`` such
    an image raises a ``ValueError`` naming its file.

    The window position is drawn with ``np.random`` (NumPy's global state),
    which mmengine seeds (``randomness=dict(seed=...)`` and its dataloader
    ``worker_init_fn``).

    Required Keys:

    - [KEYS]

    Modified Keys:

    - [KEYS]

    Added Keys:

    - crop_bbox: ``(top, left, height, width)`` in the (padded) image.

    Args:
        crop_size (int | tuple[int, int]): Output size, ``s`` or ``(h, w)``.
        keys (list[str]): Images to crop; they must have the same height and
            width. Defaults to ['img', 'gt'].
        pad_mode (str): ``'reflect'`` (pad small images by reflection) or
            ``'error'``. Defaults to 'reflect'.
    """

    def __init__(self,
                 crop_size: Union[int, Sequence[int]],
                 keys: Sequence[str] = ('img', 'gt'),
                 pad_mode: str = 'reflect') -> None:
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f'crop_size must be a positive int or (h, w), '
                             f'got {crop_size!r}.')
        if pad_mode not in ('reflect', 'error'):
            raise ValueError(
                f"pad_mode must be 'reflect' or 'error', got {pad_mode!r}.")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.pad_mode = pad_mode

    def _describe(self, results: dict) -> str:
        paths = [
            str(results[f'{k}_path']) for k in self.keys
            if f'{k}_path' in results
        ]
        return ', '.join(paths) if paths else f'keys {self.keys}'

    def transform(self, results: dict) -> dict:
        """Crop the images.

        Args:
            results (dict): Result dict with HxW(xC) arrays under ``keys``.

        Returns:
            dict: The dict with cropped arrays and ``crop_bbox``.
        """
        shapes = {k: results[k].shape[:2] for k in self.keys}
        if len(set(shapes.values())) != 1:
            raise ValueError(f'Paired images differ in size {shapes} '
                             f'({self._describe(results)}).')
        h, w = next(iter(shapes.values()))
        ch, cw = self.crop_size
        if h < ch or w < cw:
            if self.pad_mode == 'error':
                raise ValueError(
                    f'Image of size ({h}, {w}) is smaller than the crop size '
                    f'{self.crop_size}: {self._describe(results)}.')
            pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
            for k in self.keys:
                img = results[k]
                pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (img.ndim - 2)
                # 'symmetric' also works when the pad exceeds the image size
                results[k] = np.pad(img, pad, mode='symmetric')
            h, w = h + pad_h, w + pad_w
        top = np.random.randint(h - ch + 1)
        left = np.random.randint(w - cw + 1)
        for k in self.keys:
            results[k] = np.ascontiguousarray(results[k][top:top + ch,
                                                         left:left + cw])
        results['crop_bbox'] = (int(top), int(left), ch, cw)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'keys={self.keys}, pad_mode={self.pad_mode!r})')
