"""Export an enhancement network to ONNX, checked against PyTorch.

:func:`export_onnx` traces the network with the TorchScript ONNX exporter
(``torch.onnx.export(..., dynamo=False)``) under :func:`export_mode`: every
SS2D runs its scan in standard operators
(:mod:`semillie_mm.ops.selective_scan.backends.exportable`, one ONNX
``Loop``) and MSSM its layer-by-layer forward, so the file needs no custom
operator. The model maps ``input`` (B, 3, H, W) RGB in [0, 1] to ``output``
(same shape, not clamped); its metadata (:data:`METADATA_KEY`) marks it as a
semillie-mm model for :class:`~.onnx_runtime.OnnxRuntimeNetwork`.
:func:`check_onnx` runs ``onnx.checker`` and compares ONNX Runtime with
PyTorch. See docs/enhance.md, section "ONNX".
"""
import contextlib
import json
import os
import os.path as osp
import tempfile
import warnings
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

#: names of the model's input and output
INPUT_NAME = 'input'
OUTPUT_NAME = 'output'
#: key of the model metadata (JSON) that marks a semillie-mm model
METADATA_KEY = 'semillie_mm'
#: default opset (Loop: >= 11, Einsum: >= 12)
DEFAULT_OPSET = 17
#: size of the dummy input of a --dynamic export
DEFAULT_SHAPE = (64, 64)
#: the tolerance the export check enforces (float32)
DEFAULT_ATOL = 1e-4


@contextlib.contextmanager
def export_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Switch every SS2D of ``net`` to its exportable scan and every MSSM to
    its layer-by-layer forward (``memory_lean`` off); restored on exit.

    Args:
        net (nn.Module): The network.

    Yields:
        nn.Module: ``net``.
    """
    from semillie_mm.models.archs import MSSM, SS2D
    saved = []
    for m in net.modules():
        if isinstance(m, SS2D):
            saved.append((m, 'export_mode', m.export_mode))
            m.export_mode = True
        elif isinstance(m, MSSM):
            saved.append((m, 'memory_lean', m.memory_lean))
            m.memory_lean = False
    try:
        yield net
    finally:
        for m, name, value in saved:
            setattr(m, name, value)


def export_onnx(net: nn.Module,
                out_file: str,
                opset: int = DEFAULT_OPSET,
                dynamic: bool = False,
                shape: Sequence[int] = DEFAULT_SHAPE,
                metadata: Optional[Dict[str, object]] = None) -> str:
    """Write ``net`` as an ONNX model (atomically).

    Args:
        net (nn.Module): Enhancement network, RGB [0, 1] -> RGB [0, 1]
            (e.g. :meth:`SemiLLIEInferencer.get_network`); exported on the
            CPU in eval mode, in float32 (the module is moved and cast in
            place, as ``net.cpu().float().eval()`` does).
        out_file (str): The ``.onnx`` file.
        opset (int): ONNX opset (>= 12). Default: 17.
        dynamic (bool): Batch, height and width dynamic; otherwise the model
            takes ``(1, 3, *shape)`` only. Default: False.
        shape (Sequence[int]): (H, W) of the export's dummy input (the
            model's fixed size when not ``dynamic``).
        metadata (dict, optional): Added to the model's metadata under
            :data:`METADATA_KEY` (with ``dynamic``, ``shape``, ``opset``).

    Returns:
        str: ``out_file``.
    """
    if opset < 12:
        raise ValueError(f'opset {opset}: the model needs opset >= 12 '
                         '(Einsum)')
    import onnx
    net = net.cpu().float().eval()
    h, w = (int(s) for s in shape)
    dummy = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    meta = dict(metadata or {}, dynamic=bool(dynamic), opset=int(opset),
                shape=None if dynamic else [h, w])
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.onnx', dir=out_dir)
    os.close(fd)
    try:
        with export_mode(net), torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated in torch 2.14; the
            # dynamo exporter cannot express a loop of dynamic length here
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(
                net, (dummy, ), tmp, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}
                if dynamic else None,
                do_constant_folding=True)
        model = onnx.load(tmp)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save(model, tmp)
        os.replace(tmp, out_file)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)
    return out_file


def check_onnx(net: nn.Module,
               onnx_file: str,
               shapes: Sequence[Tuple[int, int]] = ((37, 53), ),
               atol: float = DEFAULT_ATOL,
               seed: int = 0) -> Dict[str, object]:
    """Check an exported model: ``onnx.checker.check_model`` and the largest
    difference between ONNX Runtime's and PyTorch's outputs (the network's
    default forward) on random inputs.

    Args:
        net (nn.Module): The network that was exported.
        onnx_file (str): The exported model.
        shapes (Sequence[tuple[int, int]]): (H, W) of the inputs; a static
            model is checked at its own size only.
        atol (float): Largest allowed absolute difference.
        seed (int): Seed of the random inputs.

    Returns:
        dict: ``max_abs_err`` per ``'HxW'`` and ``max_abs_err`` overall.

    Raises:
        AssertionError: A difference above ``atol``.
        onnx.checker.ValidationError: The model is not valid ONNX.
    """
    import onnx

    from .onnx_runtime import OnnxRuntimeNetwork
    onnx.checker.check_model(onnx_file, full_check=True)
    ort_net = OnnxRuntimeNetwork(onnx_file)
    if ort_net.static_shape is not None:
        shapes = [ort_net.static_shape]
    net = net.cpu().float().eval()
    gen = torch.Generator().manual_seed(seed)
    errors = {}
    for h, w in shapes:
        x = torch.rand(1, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = net(x).float()
        got = ort_net(x)
        errors[f'{h}x{w}'] = float((got - ref).abs().max())
    worst = max(errors.values())
    if not np.isfinite(worst) or worst > atol:
        raise AssertionError(
            f'{onnx_file}: ONNX Runtime differs from PyTorch by {worst:.3g} '
            f'(> {atol:g}) at {errors}')
    return dict(max_abs_err=worst, per_shape=errors)


def export_model_onnx(config: Optional[str],
                      checkpoint: Optional[str],
                      out_file: str,
                      network: str = 'teacher',
                      opset: int = DEFAULT_OPSET,
                      dynamic: bool = False,
                      shape: Sequence[int] = DEFAULT_SHAPE,
                      check: bool = True,
                      check_shapes: Sequence[Tuple[int, int]] = ((37, 53),
                                                                 (16, 24)),
                      atol: float = DEFAULT_ATOL) -> Dict[str, object]:
    """Build a model as the inferencer does, export its network and check
    the file (what ``tools/deployment/export_onnx.py`` runs).

    Args:
        config (str, optional): Config file, or a shipped model's name;
            None: the shipped model.
        checkpoint (str, optional): Checkpoint (None: a shipped model's).
        out_file (str): The ``.onnx`` file.
        network (str): ``'teacher'`` or ``'student'``.
        opset (int): ONNX opset.
        dynamic (bool): Dynamic batch, height and width.
        shape (Sequence[int]): (H, W) of the dummy input (a static model's
            size).
        check (bool): Run :func:`check_onnx` after the export.
        check_shapes (Sequence[tuple[int, int]]): Input sizes checked (a
            static model: its own size).
        atol (float): Tolerance of the check.

    Returns:
        dict: ``onnx_file``, ``network``, ``dynamic``, ``opset``, ``bytes``
        and, when checked, ``max_abs_err`` and ``per_shape``.
    """
    from semillie_mm.apis.inferencer import SemiLLIEInferencer
    from semillie_mm.apis.pretrained import DEFAULT_MODEL
    inferencer = SemiLLIEInferencer(
        config or DEFAULT_MODEL, checkpoint, device='cpu', network=network,
        show_progress=False)
    net = inferencer.get_network(network)
    meta = dict(network=network,
                config=osp.basename(config) if config else DEFAULT_MODEL,
                checkpoint=osp.basename(checkpoint) if checkpoint else None)
    export_onnx(net, out_file, opset=opset, dynamic=dynamic, shape=shape,
                metadata=meta)
    result = dict(onnx_file=out_file, network=network, dynamic=dynamic,
                  opset=opset, bytes=osp.getsize(out_file))
    if check:
        result.update(check_onnx(net, out_file, shapes=check_shapes,
                                 atol=atol))
    return result
