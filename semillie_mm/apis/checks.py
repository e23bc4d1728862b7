"""User-facing checks shared by the inference tools (one-line errors).

``tools/enhance.py``, ``tools/webui.py`` and ``tools/detection_study.py``
build their inferencer with :func:`build_inferencer_checked`, so that a
missing or broken config or checkpoint, or a checkpoint of another model,
ends in one :class:`~semillie_mm.utils.cli.UserError` line; without a config
they use the model shipped in the package (:func:`shipped_model_checked`).
"""
from typing import Optional, Tuple

from semillie_mm.utils.checks import check_checkpoint, load_config
from semillie_mm.utils.cli import UserError

from .pretrained import DEFAULT_MODEL, shipped_model


def check_device(device: str, flag: str = '--device') -> None:
    """Check a ``--device`` value.

    Args:
        device (str): ``cpu``, ``cuda`` or ``cuda:N``.
        flag (str): The option's name, for the message.

    Raises:
        UserError: Another value, or CUDA asked for where there is none.
    """
    if device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise UserError(f'{flag} {device}: CUDA is not available on '
                            'this machine; use --device cpu')
        index = device.partition(':')[2]
        if index and (not index.isdigit()
                      or int(index) >= torch.cuda.device_count()):
            raise UserError(f'{flag} {device}: this machine has '
                            f'{torch.cuda.device_count()} CUDA device(s)')
    elif device != 'cpu':
        raise UserError(f'{flag} {device}: use cpu, cuda or cuda:N')


def build_inferencer_checked(config: str,
                             checkpoint: Optional[str],
                             device: str = 'cpu',
                             network: str = 'teacher',
                             show_progress: bool = True,
                             precision: str = 'fp32'):
    """Check the files and build a :class:`SemiLLIEInferencer`.

    Args:
        config (str): Config file.
        checkpoint (str, optional): Checkpoint file (None: random weights).
        device (str): Device.
        network (str): ``'teacher'`` or ``'student'``.
        show_progress (bool): Progress bar.
        precision (str): ``'fp32'`` or ``'bf16'`` (see
            :mod:`.precision`).

    Returns:
        SemiLLIEInferencer: The inferencer.

    Raises:
        UserError: Missing, unreadable or broken config or checkpoint, a
            config without a model, or a checkpoint that does not fit it.
    """
    cfg = load_config(config)
    if 'model' not in cfg:
        raise UserError(f'config {config} has no `model`; pass a model '
                        'config such as configs/semillie_visdrone.py')
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    from .inferencer import SemiLLIEInferencer
    try:
        return SemiLLIEInferencer(cfg, checkpoint, device=device,
                                  network=network,
                                  show_progress=show_progress,
                                  precision=precision)
    except (KeyError, RuntimeError) as err:
        # weights of the network missing / tensors of other shapes
        msg = str(err).strip('\'"').splitlines()[0][:300]
        raise UserError(f'checkpoint {checkpoint} does not fit the model of '
                        f'{config} ({msg}); pass the checkpoint trained with '
                        'this config') from err


def build_onnx_inferencer_checked(onnx_model: str,
                                  device: str = 'cpu',
                                  network: str = 'teacher',
                                  show_progress: bool = True):
    """Build a :class:`SemiLLIEInferencer` on the ``'onnxruntime'``
    backend.

    Args:
        onnx_model (str): A model from ``tools/deployment/export_onnx.py``.
        device (str): Must be ``'cpu'``.
        network (str): The network it must hold.
        show_progress (bool): Progress bar.

    Returns:
        SemiLLIEInferencer: The inferencer.

    Raises:
        UserError: Not on the CPU, a missing file, an .onnx file that is
            not a semillie-mm model (or holds the other network), or a
            static model (it takes one input size only).
    """
    if device != 'cpu':
        raise UserError(f'--device {device}: an ONNX model runs on the CPU '
                        '(ONNX Runtime); use --device cpu')
    from semillie_mm.deployment import OnnxModelError

    from .inferencer import SemiLLIEInferencer
    try:
        inferencer = SemiLLIEInferencer(
            backend='onnxruntime', onnx_model=onnx_model, network=network,
            show_progress=show_progress)
    except OnnxModelError as err:
        raise UserError(str(err)) from err
    static = inferencer.get_network().static_shape
    if static is not None:
        raise UserError(f'{onnx_model} was exported for {static[0]}x'
                        f'{static[1]} inputs only; export it with --dynamic '
                        'to enhance images of any size')
    return inferencer


def shipped_model_checked(name: str = DEFAULT_MODEL) -> Tuple[str, str]:
    """The config and weights of a shipped model, or a one-line error.

    Args:
        name (str): The shipped model. Default: ``'semillie_target'``.

    Returns:
        tuple[str, str]: ``(config path, weights path)``.

    Raises:
        UserError: One of its files is missing (the message names it and
            says how to get it).
    """
    try:
        return shipped_model(name)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
