"""The image-to-image network inside a built model.

:func:`select_enhancement_network` asks the model: an editor with an
``enhancer(use_teacher)`` method (``SemiLLIE``: its teacher or student, the
choice its ``test_cfg.use_teacher`` makes for validation and testing), else
an mmagic ``BaseEditModel``'s ``generator``, else the model itself (a bare
generator such as ``SemiLLIENet``). :class:`PreprocessedGenerator` gives
every such network one interface: RGB in [0, 1] to RGB in [0, 1].
:func:`load_network_weights` loads a checkpoint of the whole model, or of the
bare network, with mmengine and says which networks it leaves incomplete.
"""
import logging
import re
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint_to_model

logger = logging.getLogger(__name__)


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


def _inner(net: nn.Module) -> nn.Module:
    return net.generator if isinstance(net, PreprocessedGenerator) else net


def _names_in(net: nn.Module, model: nn.Module) -> List[str]:
    """Names (in ``model.state_dict()``) of the tensors of ``net``."""
    ids = {id(t) for t in net.state_dict(keep_vars=True).values()}
    return [k for k, t in model.state_dict(keep_vars=True).items()
            if id(t) in ids]


def load_network_weights(model: nn.Module, networks: Mapping[str, nn.Module],
                         checkpoint: dict,
                         ignored: Sequence[str] = ()) -> Dict[str, List[str]]:
    """Load a read checkpoint into a model and its enhancement networks.

    A checkpoint of the whole model (mmengine's, with ``state_dict``, or a
    plain state dict; ``module.`` prefixes stripped) goes into ``model``; one
    that shares no key with the model is taken for the bare network's and
    goes into each network. The loading is mmengine's
    ``_load_checkpoint_to_model`` (the second half of ``load_checkpoint``).

    Args:
        model (nn.Module): The built model.
        networks (Mapping[str, nn.Module]): From
            :func:`select_enhancement_network`, by name.
        checkpoint (dict): The checkpoint, read by mmengine's loader.
        ignored (Sequence[str]): Parts of the model left unbuilt: their
            checkpoint keys are not reported.

    Returns:
        dict[str, list[str]]: Per network, the names of the weights the
        checkpoint lacks (empty: complete).

    Raises:
        ValueError: No state dict in the checkpoint.
        RuntimeError: A tensor of another shape than the model's.
    """
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError('the checkpoint holds no state dict')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    nets = {name: _inner(net) for name, net in networks.items()}
    model_keys = model.state_dict().keys()
    bare = not (state.keys() & model_keys) and any(
        net is not model for net in nets.values())
    targets = {id(n): n for n in nets.values()}.values() if bare else [model]
    for target in targets:
        own = target.state_dict()
        wrong = [f'{k}: {tuple(v.shape)} in the checkpoint, '
                 f'{tuple(own[k].shape)} in the model'
                 for k, v in state.items() if k in own and getattr(
                     v, 'shape', None) is not None and v.shape != own[k].shape]
        if wrong:
            raise RuntimeError(f'size mismatch for {wrong[0]} ({len(wrong)} '
                               'tensors differ)')
        # silent: the caller reports what is missing, not every key
        _load_checkpoint_to_model(target, checkpoint, logger='silent')
    missing = {
        name: [k for k in (net.state_dict() if bare else _names_in(net, model))
               if k not in state and not k.endswith('num_batches_tracked')]
        for name, net in nets.items()}
    unexpected = [] if bare else [
        k for k in state if k not in model_keys
        and not any(k.startswith(part + '.') for part in ignored)]
    # a checkpoint that fits no network is one error later, not a warning
    if unexpected and any(not m for m in missing.values()):
        logger.warning('ignored %d checkpoint keys not in the model, e.g. '
                       '%s', len(unexpected), unexpected[:3])
    return missing


__all__ = [
    'PreprocessedGenerator', 'select_enhancement_network',
    'load_network_weights'
]
