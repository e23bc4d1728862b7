"""The image-to-image network inside a built model.

:func:`select_enhancement_network` asks the model: an editor with an
``enhancer(use_teacher)`` method (``SemiLLIE``: its teacher or student, the
choice its ``test_cfg.use_teacher`` makes for validation and testing), else
an mmagic ``BaseEditModel``'s ``generator``, else the model itself (a bare
generator such as ``SemiLLIENet``). :class:`PreprocessedGenerator` gives
every such network one interface: RGB in [0, 1] to RGB in [0, 1].
"""
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper


class PreprocessedGenerator(nn.Module):
    """Wrap a generator trained behind an mmagic ``DataPreprocessor``.

    The wrapper takes RGB in [0, 1], applies the preprocessor's normalisation
    (``(255 * x - mean) / std``) and channel order, runs the generator and
    undoes both, so that every network the inferencer runs has the same
    interface.

    Args:
        generator (nn.Module): The generator.
        mean (Sequence[float]): Preprocessor mean on the 0..255 scale.
        std (Sequence[float]): Preprocessor std on the 0..255 scale.
        bgr (bool): Whether the generator expects BGR channel order.
    """

    def __init__(self, generator: nn.Module, mean: Sequence[float],
                 std: Sequence[float], bgr: bool = False):
        super().__init__()
        self.generator = generator
        self.register_buffer(
            'mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
            persistent=False)
        self.register_buffer(
            'std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
            persistent=False)
        self.bgr = bgr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x`` (RGB in [0, 1]).

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [0, 1].

        Returns:
            Tensor: ``(B, 3, H, W)`` RGB, nominally in [0, 1] (not clamped).
        """
        if self.bgr:
            x = x.flip(1)
        y = self.generator((x * 255. - self.mean) / self.std)
        y = (y * self.std + self.mean) / 255.
        if self.bgr:
            y = y.flip(1)
        return y


def _unwrap(module: nn.Module) -> nn.Module:
    """Strip DDP-style model wrappers (``.module``)."""
    while is_model_wrapper(module):
        module = module.module
    return module


def _preprocessor_norm(model: nn.Module):
    """``(mean, std, bgr)`` of the model's mmagic ``DataPreprocessor`` (RGB,
    on the 0..255 scale); ``x / 255`` when it has none."""
    pre = getattr(model, 'data_preprocessor', None)
    mean, std = getattr(pre, 'mean', None), getattr(pre, 'std', None)
    order = getattr(pre, 'output_channel_order', None)
    bgr = isinstance(order, str) and order.upper() == 'BGR'
    if mean is None or std is None:
        return [0.] * 3, [255.] * 3, bgr
    mean = [float(v) for v in torch.as_tensor(mean).flatten()]
    std = [float(v) for v in torch.as_tensor(std).flatten()]
    return mean * (3 // len(mean)), std * (3 // len(std)), bgr


def select_enhancement_network(model: nn.Module,
                               use_teacher: bool = True) -> nn.Module:
    """Pick the image-to-image network out of a built model.

    - a model with an ``enhancer(use_teacher)`` method (the ``SemiLLIE``
      mean teacher): what it returns, i.e. its teacher (the EMA of the
      student, the network the paper evaluates) or its student;
    - an mmagic ``BaseEditModel``: its ``generator``;
    - anything else: the model itself (a bare generator such as
      ``SemiLLIENet``).

    When the model has an mmagic ``DataPreprocessor`` whose normalisation is
    not plain ``x / 255`` (or which feeds BGR), the network is wrapped in a
    :class:`PreprocessedGenerator`, so the result always maps RGB [0, 1] to
    RGB [0, 1].

    Args:
        model (nn.Module): The built model.
        use_teacher (bool): Ask the model's ``enhancer`` for the teacher
            (True) or the student (False).

    Returns:
        nn.Module: The enhancement network.
    """
    model = _unwrap(model)
    if callable(getattr(model, 'enhancer', None)):
        net = _unwrap(model.enhancer(use_teacher=use_teacher))
    elif isinstance(getattr(model, 'generator', None), nn.Module):
        net = _unwrap(model.generator)
    else:
        return model
    mean, std, bgr = _preprocessor_norm(model)
    if bgr or any(m != 0 for m in mean) or any(s != 255 for s in std):
        net = PreprocessedGenerator(net, mean, std, bgr=bgr)
    return net


__all__ = ['PreprocessedGenerator', 'select_enhancement_network']
