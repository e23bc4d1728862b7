# Copyright (c) semillie-mm contributors. All rights reserved.
"""Pack one semi-supervised training sample (paired + unpaired views)."""
from typing import Sequence

import numpy as np
import torch
from mmagic.registry import TRANSFORMS
from mmagic.structures import DataSample
from mmcv.transforms import BaseTransform


def _image_to_float_tensor(img, name: str) -> torch.Tensor:
    """HxW(xC) array (or CxHxW tensor) -> float32 CxHxW tensor, values kept."""
    if isinstance(img, torch.Tensor):
        if img.ndim != 3:
            raise ValueError(f'{name}: expected a CxHxW tensor, got shape '
                             f'{tuple(img.shape)}')
        return img.to(torch.float32).contiguous()
    if not isinstance(img, np.ndarray):
        raise TypeError(f'{name}: expected a numpy image, got {type(img)}')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f'{name}: expected an HxWxC image, got shape '
                         f'{img.shape}')
    return torch.from_numpy(
        np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))


@TRANSFORMS.register_module()
class PackSemiInputs(BaseTransform):
    """Pack a sample of :class:`SemiSupervisedDataset` for ``SemiLLIE``.

    Output format (values in [0, 255], float32, RGB, CxHxW, like mmagic's
    ``PackInputs`` but always float; the model's data preprocessor divides
    by 255)::

        {'inputs': {'paired': Tensor(3, H, W),           # low-light crop
                    'unpaired_weak': Tensor(3, h, w),    # teacher's view
                    'unpaired_strong': Tensor(3, h, w)}, # student's view
         'data_samples': DataSample(gt_img=Tensor(3, H, W),
                                    metainfo=dict(img_path=..., gt_path=...,
                                                  unpaired_path=...))}

    Required Keys:

    - [PAIRED_KEY], [GT_KEY], [WEAK_KEY], [STRONG_KEY]
    - [META_KEYS] (those present are copied)

    Args:
        paired_key (str): Key of the low-light paired image. Defaults to
            'img'.
        gt_key (str): Key of its ground truth. Defaults to 'gt'.
        weak_key (str): Key of the weak view of the unpaired image.
            Defaults to 'unpaired_weak'.
        strong_key (str): Key of the strong view. Defaults to
            'unpaired_strong'.
        meta_keys (Sequence[str]): Keys copied into the metainfo when present.
            Defaults to ('img_path', 'gt_path', 'unpaired_path').
    """

    def __init__(self,
                 paired_key: str = 'img',
                 gt_key: str = 'gt',
                 weak_key: str = 'unpaired_weak',
                 strong_key: str = 'unpaired_strong',
                 meta_keys: Sequence[str] = ('img_path', 'gt_path',
                                             'unpaired_path')) -> None:
        self.paired_key = paired_key
        self.gt_key = gt_key
        self.weak_key = weak_key
        self.strong_key = strong_key
        self.meta_keys = [meta_keys] if isinstance(meta_keys,
                                                   str) else list(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack the sample.

        Args:
            results (dict): Merged result dict of the paired and unpaired
                pipelines.

        Returns:
            dict: ``inputs`` (dict of three tensors) and ``data_samples``.
        """
        missing = [
            k for k in (self.paired_key, self.gt_key, self.weak_key,
                        self.strong_key) if k not in results
        ]
        if missing:
            raise KeyError(f'PackSemiInputs: missing keys {missing}; '
                           f'available: {sorted(results)}')
        paired = _image_to_float_tensor(results[self.paired_key],
                                        self.paired_key)
        gt = _image_to_float_tensor(results[self.gt_key], self.gt_key)
        if paired.shape != gt.shape:
            raise ValueError(f'paired input {tuple(paired.shape)} and GT '
                             f'{tuple(gt.shape)} differ in shape')
        weak = _image_to_float_tensor(results[self.weak_key], self.weak_key)
        strong = _image_to_float_tensor(results[self.strong_key],
                                        self.strong_key)
        if weak.shape != strong.shape:
            raise ValueError(f'weak view {tuple(weak.shape)} and strong view '
                             f'{tuple(strong.shape)} differ in shape')
        inputs = dict(paired=paired, unpaired_weak=weak, unpaired_strong=strong)
        data_sample = DataSample()
        data_sample.set_tensor_data(dict(gt_img=gt))
        data_sample.set_metainfo(
            {k: results[k]
             for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(paired_key={self.paired_key!r}, '
                f'gt_key={self.gt_key!r}, weak_key={self.weak_key!r}, '
                f'strong_key={self.strong_key!r}, '
                f'meta_keys={self.meta_keys})')
