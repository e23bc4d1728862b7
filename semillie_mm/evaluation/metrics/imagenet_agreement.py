"""ImageNet top-1 / top-5 classification agreement as an mmagic metric."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmagic.evaluation.metrics.base_sample_wise_metric import BaseSampleWiseMetric
from mmagic.evaluation.metrics.metrics_utils import obtain_data
from mmagic.registry import METRICS, MODELS

from ..functional.imagenet_agreement import imagenet_topk
from .model_device import ModelDeviceMixin


@METRICS.register_module()
class ImageNetAgreement(ModelDeviceMixin, BaseSampleWiseMetric):
    """Does the enhanced image keep the ImageNet class of its ground truth?

    A semantic metric in the spirit of the paper's Table VII: a frozen
    ImageNet classifier (by default :class:`ImageNetEncoder`, EfficientNet-
    Lite0, the installable stand-in for RAM) labels each output and its GT;
    a sample scores 1 when the output's arg-max class equals the GT's
    (top-1), and for top-5 when the GT's arg-max class is among the output's
    five highest. The metric is the mean over samples, in [0, 1], higher is
    better. See :func:`semillie_mm.evaluation.functional.imagenet_agreement`.

    Images are read as mmagic's metrics read them: the prediction from
    ``output[pred_key]`` and the GT from the data sample's ``gt_key``
    (``C x H x W``, 0..255, BGR after ``DataPreprocessor.destruct``; set
    ``channel_order`` otherwise). With ``pred_key='input'`` (not in
    ``output``, so read from the data sample, where mmagic's
    ``BaseEditModel`` stores the de-normalised input) the metric scores the
    un-enhanced input instead; give it a ``prefix`` to keep both.

    The classifier is built once, on first use, from ``encoder`` (a config
    for mmagic's MODELS, or a module with ``logits``), and runs without
    gradients on ``device`` (default: the evaluated model's device).

    Args:
        encoder (dict | nn.Module, optional): The classifier. Default
            (None): ``dict(type='ImageNetEncoder')``.
        top5 (bool): Also report the top-5 agreement. Default: True.
        gt_key (str): Key of the GT image. Default: 'gt_img'.
        pred_key (str): Key of the enhanced image in ``output`` (or in the
            data sample when ``output`` lacks it). Default: 'pred_img'.
        channel_order (str): Order of the images the metric receives, 'BGR'
            (mmagic's metrics' convention) or 'RGB'. Default: 'BGR'.
        batch_size (int): Images per classifier forward. Default: 8.
        antialias (bool): Antialiased resize to the classifier's input size
            (see :func:`imagenet_topk`). Default: False (the encoder's own
            resize).
        device (str, optional): Where the classifier runs; default: the
            evaluated model's device (CPU outside a runner).
        collect_device (str): Device for collecting results across ranks.
        prefix (str, optional): Prefix of the metric names.

    Metrics:
        - ImageNetTop1Agree (float): higher is better.
        - ImageNetTop5Agree (float): higher is better (when ``top5``).
    """

    metric = 'ImageNetTop1Agree'
    metric_top5 = 'ImageNetTop5Agree'

    def __init__(self,
                 encoder: Union[dict, nn.Module, None] = None,
                 top5: bool = True,
                 gt_key: str = 'gt_img',
                 pred_key: str = 'pred_img',
                 channel_order: str = 'BGR',
                 batch_size: int = 8,
                 antialias: bool = False,
                 device: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(
            gt_key=gt_key,
            pred_key=pred_key,
            collect_device=collect_device,
            prefix=prefix)
        if channel_order.upper() not in ('BGR', 'RGB'):
            raise ValueError("channel_order must be 'BGR' or 'RGB', got "
                             f'{channel_order!r}')
        self.channel_order = channel_order.upper()
        if encoder is None:
            encoder = dict(type='ImageNetEncoder')
        if isinstance(encoder, dict):
            self.encoder_cfg = dict(encoder)
            self._encoder = None
        elif hasattr(encoder, 'logits'):
            self.encoder_cfg = None
            self._encoder = encoder
        else:
            raise TypeError('encoder must be a config dict or a module with '
                            f'a `logits` method, got {type(encoder).__name__}')
        self.top5 = top5
        self.batch_size = batch_size
        self.antialias = antialias
        self.device = device

    @property
    def encoder(self):
        """The classifier, built on first use and moved to ``device``."""
        if self._encoder is None:
            self._encoder = MODELS.build(self.encoder_cfg)
        if self.device is not None and isinstance(self._encoder, nn.Module):
            self._encoder.to(self.device)
        return self._encoder

    def _pred(self, data: dict):
        output = data.get('output', {})
        if self.pred_key in output:
            return obtain_data(output, self.pred_key)
        try:
            return obtain_data(data, self.pred_key)
        except KeyError:
            raise KeyError(
                f'ImageNetAgreement: no {self.pred_key!r} in the output '
                f'({sorted(output.keys())}) nor in the data sample '
                f'({sorted(data.keys())}).') from None

    def process(self, data_batch: Sequence[dict],
                data_samples: Sequence[dict]) -> None:
        """Classify each output and its GT; store whether they agree.

        Args:
            data_batch (Sequence[dict]): The batch (unused).
            data_samples (Sequence[dict]): Data samples as dicts, with
                ``output[pred_key]`` and ``gt_key`` (``C x H x W`` or a
                ``T x C x H x W`` stack of frames, 0..255).
        """
        preds, gts = [], []
        for data in data_samples:
            pred = torch.as_tensor(self._pred(data))
            gt = torch.as_tensor(obtain_data(data, self.gt_key))
            if pred.dim() == 3:
                pred, gt = pred[None], gt[None]
            if pred.shape[0] != gt.shape[0]:
                raise ValueError('prediction and GT have different numbers of '
                                 f'frames: {tuple(pred.shape)} vs '
                                 f'{tuple(gt.shape)}')
            preds.append(pred)
            gts.append(gt)
        # 0..255 floats -> [0, 1] (uint8 is divided by imagenet_topk)
        flat_p = [f.float() / 255 for p in preds for f in p]
        flat_g = [f.float() / 255 for g in gts for f in g]
        kw = dict(
            batch_size=self.batch_size,
            channel_order=self.channel_order.lower(),
            antialias=self.antialias)
        pred_cls = imagenet_topk(self.encoder, flat_p, k=5, **kw)
        gt_cls = imagenet_topk(self.encoder, flat_g, k=1, **kw)[:, 0]
        i = 0
        for pred in preds:
            n = pred.shape[0]  # frames of this sample: their mean
            p, g = pred_cls[i:i + n], gt_cls[i:i + n]
            result = {self.metric: float(np.mean(p[:, 0] == g))}
            if self.top5:
                result[self.metric_top5] = float(
                    np.mean((p == g[:, None]).any(1)))
            self.results.append(result)
            i += n

    def compute_metrics(self, results: List[dict]) -> dict:
        """Mean agreement over the processed samples."""
        out = {self.metric: float(np.mean([r[self.metric] for r in results]))}
        if self.top5:
            out[self.metric_top5] = float(
                np.mean([r[self.metric_top5] for r in results]))
        return out

    def evaluate(self, size: Optional[int] = None) -> dict:
        """Works with mmagic's and mmengine's evaluators (see LOE)."""
        if size is None:
            size = getattr(self, 'size', len(self.results))
        return super(BaseSampleWiseMetric, self).evaluate(size)
