"""Deployment: ONNX export (:mod:`.onnx_export`) and the ONNX Runtime
network the inferencer runs (:mod:`.onnx_runtime`). onnx and onnxruntime
(requirements/deployment.txt) are imported on first use only."""
from .onnx_export import check_onnx, export_mode, export_onnx
from .onnx_runtime import OnnxModelError, OnnxRuntimeNetwork

__all__ = ['export_onnx', 'check_onnx', 'export_mode', 'OnnxRuntimeNetwork',
           'OnnxModelError']
