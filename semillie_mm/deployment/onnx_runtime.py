"""Run an exported model with ONNX Runtime like the PyTorch network.

:class:`OnnxRuntimeNetwork` wraps an ``onnxruntime.InferenceSession`` in an
``nn.Module`` whose ``forward`` maps a ``(B, 3, H, W)`` float tensor to the
enhanced tensor, so that the inferencer's batching and tiling
(:mod:`semillie_mm.apis.tiling`) run it unchanged. Only models written by
:func:`~.onnx_export.export_onnx` are accepted (their metadata says so); any
other file is an :class:`OnnxModelError` with a one-line message.
"""
import json
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .onnx_export import INPUT_NAME, METADATA_KEY, OUTPUT_NAME


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable or not a semillie-mm model."""


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxModelError(
            'the onnxruntime backend needs onnxruntime: pip install -r '
            'requirements/deployment.txt') from err
    return onnxruntime


class OnnxRuntimeNetwork(nn.Module):
    """An exported enhancement network run by ONNX Runtime (CPU).

    Args:
        onnx_file (str): A model from :func:`~.onnx_export.export_onnx`.
        num_threads (int, optional): ONNX Runtime's intra-op threads;
            None: its default (all cores).

    Attributes:
        metadata (dict): What the export recorded (``network``, ``config``,
            ``dynamic``, ``shape``, ``opset``).
        network (str | None): ``'teacher'`` or ``'student'`` when known.
        static_shape (tuple[int, int] | None): (H, W) of a static model.

    Raises:
        OnnxModelError: The file is missing, is not ONNX, or is not a
            semillie-mm model.
    """

    def __init__(self, onnx_file: str, num_threads: Optional[int] = None):
        super().__init__()
        if not osp.isfile(onnx_file):
            raise OnnxModelError(f'ONNX model {onnx_file} does not exist')
        ort = _import_onnxruntime()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # no warnings about Loop subgraph names
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(
                onnx_file, sess_options=opts,
                providers=['CPUExecutionProvider'])
        except Exception as err:  # noqa: BLE001  (onnxruntime's own types)
            msg = str(err).strip().splitlines()[0][:200] if str(err) else \
                type(err).__name__
            raise OnnxModelError(f'{onnx_file} is not a readable ONNX model '
                                 f'({msg})') from err
        self.onnx_file = onnx_file
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names = ([i.name for i in inputs], [o.name for o in outputs])
        if METADATA_KEY not in meta or names != ([INPUT_NAME],
                                                 [OUTPUT_NAME]):
            raise OnnxModelError(
                f'{onnx_file} is not a semillie-mm model (inputs '
                f'{names[0]}, outputs {names[1]}; expected one input '
                f'{INPUT_NAME!r} (B, 3, H, W) from '
                'tools/deployment/export_onnx.py)')
        try:
            self.metadata = json.loads(meta[METADATA_KEY])
        except ValueError as err:
            raise OnnxModelError(f'{onnx_file}: unreadable semillie-mm '
                                 'metadata') from err
        self.network = self.metadata.get('network')
        shape = inputs[0].shape
        self.static_shape: Optional[Tuple[int, int]] = None
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            self.static_shape = (shape[2], shape[3])
        self.static_batch = shape[0] if isinstance(shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x``.

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [0, 1] (any float dtype, on
                the CPU).

        Returns:
            Tensor: ``(B, 3, H, W)`` float32 on the CPU (not clamped).

        Raises:
            ValueError: A static model given another size.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'expected a (B, 3, H, W) tensor, got shape '
                             f'{tuple(x.shape)}')
        size = tuple(x.shape[2:])
        if self.static_shape is not None and size != self.static_shape:
            raise ValueError(
                f'{self.onnx_file} was exported for {self.static_shape[0]}x'
                f'{self.static_shape[1]} inputs only, got {size[0]}x{size[1]}'
                ': export with --dynamic (or pass tiles of that size)')
        arr = x.detach().cpu().float().numpy()
        if self.static_batch is not None and x.shape[0] != self.static_batch:
            parts = [self._run(arr[i:i + 1]) for i in range(arr.shape[0])]
            return torch.from_numpy(np.concatenate(parts))
        return torch.from_numpy(self._run(arr))

    def _run(self, arr: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME],
                                {INPUT_NAME: np.ascontiguousarray(arr)})[0]

    def extra_repr(self) -> str:
        return f'{self.onnx_file!r}, network={self.network!r}'
