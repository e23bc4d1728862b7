"""LOE (lightness order error) as an mmagic metric."""
from typing import Optional, Sequence

from mmagic.evaluation.metrics.base_sample_wise_metric import BaseSampleWiseMetric
from mmagic.evaluation.metrics.metrics_utils import obtain_data
from mmagic.registry import METRICS

from ..functional.loe import loe


@METRICS.register_module()
class LOE(BaseSampleWiseMetric):
    """Lightness order error between the low-light input and the output.

    LOE is a no-reference metric (no GT needed) but it compares the enhanced
    image with the *low-light input*, so the input must reach the metric.
    mmagic's ``BaseEditModel.forward(mode='predict')`` (and every model that
    calls its ``convert_to_datasample``) stores the de-normalised model input
    in each data sample as ``input`` (``C x H x W``, 0..255, BGR when the
    channel order is known) next to ``output.pred_img``; this metric reads
    those two keys. Models that keep the input under another key set
    ``input_key``. Channel order does not matter (lightness = max over
    channels). See :func:`semillie_mm.evaluation.functional.loe`.

    Args:
        pred_key (str): Key of the enhanced image in ``output``.
            Default: 'pred_img'.
        input_key (str): Key of the low-light input in the data sample.
            Default: 'input'.
        short_side (int): Short side of the compared lightness maps.
            Default: 50.
        collect_device (str): Device for collecting results across ranks.
        prefix (str, optional): Prefix of the metric name.

    Metrics:
        - LOE (float): lower is better.
    """

    metric = 'LOE'

    def __init__(self,
                 pred_key: str = 'pred_img',
                 input_key: str = 'input',
                 short_side: int = 50,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(
            gt_key=input_key,
            pred_key=pred_key,
            collect_device=collect_device,
            prefix=prefix)
        self.input_key = input_key
        self.short_side = short_side

    def process(self, data_batch: Sequence[dict],
                data_samples: Sequence[dict]) -> None:
        """Compute LOE of each sample.

        Args:
            data_batch (Sequence[dict]): The batch (unused).
            data_samples (Sequence[dict]): Data samples as dicts, with
                ``output`` and the low-light input under ``input_key``.
        """
        for data in data_samples:
            pred = obtain_data(data['output'], self.pred_key)
            try:
                low = obtain_data(data, self.input_key)
            except KeyError:
                raise KeyError(
                    f'LOE needs the low-light input in the data sample under '
                    f'{self.input_key!r}: mmagic BaseEditModel-style models '
                    'store it as `input` in `convert_to_datasample`; set '
                    '`input_key` if your model stores it elsewhere. '
                    f'Available keys: {sorted(data.keys())}') from None
            if pred.ndim == 4:  # a stack of frames
                result = sum(
                    self.process_image(low[i], pred[i], None)
                    for i in range(pred.shape[0])) / pred.shape[0]
            else:
                result = self.process_image(low, pred, None)
            self.results.append({self.metric: result})

    def process_image(self, low, pred, mask) -> float:
        """LOE of one ``C x H x W`` pair (values 0..255)."""
        return loe(low, pred, short_side=self.short_side, input_order='CHW')

    def evaluate(self, size: Optional[int] = None) -> dict:
        """Average over the processed samples.

        Works under mmagic's ``Evaluator`` (which calls ``prepare`` and then
        ``evaluate()``) and mmengine's (``evaluate(size)``).
        """
        if size is None:
            size = getattr(self, 'size', len(self.results))
        return super(BaseSampleWiseMetric, self).evaluate(size)
