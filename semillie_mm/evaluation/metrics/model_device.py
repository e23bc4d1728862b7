# Copyright (c) semillie-mm contributors.
"""The ``prepare`` step shared by the metrics that run a network of their own."""
import torch.nn as nn
from mmengine.model import is_model_wrapper


class ModelDeviceMixin:
    """``prepare``: record the dataset size and, unless ``self.device`` was
    given, the evaluated model's device (its data preprocessor's), so that a
    metric's own network (Inception, the ImageNet classifier) runs where the
    model does."""

    def prepare(self, module: nn.Module, dataloader) -> None:
        """Record the dataset size and the evaluated model's device."""
        self.size = len(dataloader.dataset)
        if is_model_wrapper(module):
            module = module.module
        if self.device is None:
            pre = getattr(module, 'data_preprocessor', None)
            dev = getattr(pre, 'device', None)
            if dev is not None:
                self.device = str(dev)
