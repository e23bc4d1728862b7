"""FID between the enhanced outputs and a folder of normal-light images."""
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmagic.evaluation.metrics.base_sample_wise_metric import BaseSampleWiseMetric
from mmagic.evaluation.metrics.metrics_utils import obtain_data
from mmagic.registry import METRICS

from ..functional.fid import (
    InceptionFeatureExtractor,
    fid_from_features,
    folder_statistics,
    inception_missing_message,
)
from .model_device import ModelDeviceMixin


@METRICS.register_module()
class ReferenceFID(ModelDeviceMixin, BaseSampleWiseMetric):
    """FID of the enhanced outputs against a reference folder.

    Unlike mmagic's ``FrechetInceptionDistance`` (which compares generated
    images with the *dataset's* real images and may download its network),
    the reference distribution here is a folder of normal-light images given
    by ``reference_dir`` (for VisDrone: the day-time GT images, see
    docs/metrics.md), and the Inception weights come from a local file. It
    needs no GT for the evaluated set, so it works on unpaired test sets.

    Inputs reach the metric as mmagic's ``output.pred_img`` (``C x H x W``,
    0..255, BGR after ``DataPreprocessor.destruct``; set ``channel_order`` if
    your model yields RGB).

    Args:
        reference_dir (str): Folder of reference (normal-light) images,
            searched recursively.
        inception_path (str): Local Inception file:
            ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid) or
            ``inception-2015-12-05.pt`` (StyleGAN2-ADA TorchScript).
        inception_style (str): 'auto', 'pytorch-fid' or 'StyleGAN'.
        reference_cache (str, optional): ``.npz`` file caching the reference
            statistics (read if it exists, written otherwise).
        pred_key (str): Key of the enhanced image. Default: 'pred_img'.
        channel_order (str): Channel order of ``pred_img``. Default: 'BGR'.
        batch_size (int): Images per Inception forward. Default: 16.
        device (str, optional): Where Inception runs; default: the model's
            device.
        collect_device (str): Device for collecting results across ranks.
        prefix (str, optional): Prefix of the metric name.

    Metrics:
        - FID (float): lower is better.
    """

    metric = 'FID'

    def __init__(self,
                 reference_dir: str,
                 inception_path: Optional[str] = None,
                 inception_style: str = 'auto',
                 reference_cache: Optional[str] = None,
                 pred_key: str = 'pred_img',
                 channel_order: str = 'BGR',
                 batch_size: int = 16,
                 device: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 _extractor: Optional[nn.Module] = None) -> None:
        super().__init__(
            pred_key=pred_key, collect_device=collect_device, prefix=prefix)
        import os.path as osp
        if _extractor is None and (inception_path is None
                                   or not osp.isfile(
                                       osp.expanduser(inception_path))):
            raise FileNotFoundError(inception_missing_message(inception_path))
        self.reference_dir = reference_dir
        self.inception_path = inception_path
        self.inception_style = inception_style
        self.reference_cache = reference_cache
        assert channel_order.upper() in ('BGR', 'RGB')
        self.pred_channel_order = channel_order.upper()
        self.batch_size = batch_size
        self.device = device
        self._extractor = _extractor
        self._ref_stats = None

    @property
    def extractor(self) -> nn.Module:
        """The Inception feature extractor, loaded on first use."""
        if self._extractor is None:
            self._extractor = InceptionFeatureExtractor(
                self.inception_path, style=self.inception_style)
        if self.device is not None:
            self._extractor.to(self.device)
        return self._extractor

    def process(self, data_batch: Sequence[dict],
                data_samples: Sequence[dict]) -> None:
        """Extract the Inception features of each output.

        Args:
            data_batch (Sequence[dict]): The batch (unused).
            data_samples (Sequence[dict]): Data samples as dicts.
        """
        imgs = []
        for data in data_samples:
            pred = obtain_data(data['output'], self.pred_key)
            pred = torch.as_tensor(pred).float()
            if pred.ndim == 4:
                imgs += list(pred)
            else:
                imgs.append(pred)
        if self.pred_channel_order == 'BGR':
            imgs = [img.flip(0) for img in imgs]
        i = 0
        while i < len(imgs):
            j = i + 1
            while (j < len(imgs) and j - i < self.batch_size
                   and imgs[j].shape == imgs[i].shape):
                j += 1
            feats = self.extractor(torch.stack(imgs[i:j]))
            self.results += [f.numpy() for f in feats]
            i = j

    def reference_statistics(self):
        """Mean and covariance of the reference folder (cached)."""
        if self._ref_stats is None:
            mu, cov, _ = folder_statistics(
                self.extractor, self.reference_dir, self.batch_size,
                self.reference_cache)
            self._ref_stats = (mu, cov)
        return self._ref_stats

    def compute_metrics(self, results: List[np.ndarray]) -> dict:
        """FID of the collected features against the reference."""
        feats = np.stack(results).astype(np.float64)
        mu, cov = self.reference_statistics()
        return {self.metric: fid_from_features(feats, mu, cov)}

    def evaluate(self, size: Optional[int] = None) -> dict:
        """Works with mmagic's and mmengine's evaluators (see LOE)."""
        if size is None:
            size = getattr(self, 'size', len(self.results))
        return super(BaseSampleWiseMetric, self).evaluate(size)
