"""The trained model shipped inside the package (``semillie_mm/pretrained/``).

A shipped model ``NAME`` is two files in :data:`PRETRAINED_DIR`:

- ``NAME.py``: a self-contained mmengine config (no ``_base_``);
- ``NAME_teacher.pth``: the state dict of the bare enhancement network (the
  mean teacher's ``SemiLLIENet``), weights only.

``semillie_mm/pretrained/MODEL_CARD.md`` says what the model is. The files are
committed in the repository, so a fresh clone of semillie-mm has them.

:func:`shipped_model` gives the two paths; ``SemiLLIEInferencer(
model='semillie_target')``, ``tools/enhance.py INPUT OUTPUT`` and
``tools/webui.py`` without a config use it. The folder is read from the
module attribute :data:`PRETRAINED_DIR` when a function is called, so tests
point it elsewhere with ``monkeypatch.setattr(
'semillie_mm.apis.pretrained.PRETRAINED_DIR', folder)``.
"""
import logging
import os.path as osp
from typing import Optional, Tuple

from ..utils.fileio import atomic_path

#: The folder of the shipped models.
PRETRAINED_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'pretrained')
#: The model used when no config or checkpoint is given.
DEFAULT_MODEL = 'semillie_target'
#: What the shipped model is (repository-relative, for messages).
MODEL_CARD = 'semillie_mm/pretrained/MODEL_CARD.md'


def shipped_model_paths(name: str = DEFAULT_MODEL) -> Tuple[str, str]:
    """The config and weights paths of a shipped model, existing or not.

    Args:
        name (str): The model's name. Default: :data:`DEFAULT_MODEL`.

    Returns:
        tuple[str, str]: ``(PRETRAINED_DIR/NAME.py,
        PRETRAINED_DIR/NAME_teacher.pth)``.
    """
    return (osp.join(PRETRAINED_DIR, f'{name}.py'),
            osp.join(PRETRAINED_DIR, f'{name}_teacher.pth'))


def is_shipped_model(name) -> bool:
    """Whether ``name`` names a shipped model (rather than a file).

    Args:
        name: Anything given as a model.

    Returns:
        bool: True for :data:`DEFAULT_MODEL` and for a bare name (no folder,
        no extension) whose config or weights are in :data:`PRETRAINED_DIR`.
    """
    if not isinstance(name, str) or not name or osp.basename(name) != name \
            or osp.splitext(name)[1]:
        return False
    return name == DEFAULT_MODEL or any(
        osp.isfile(p) for p in shipped_model_paths(name))


def shipped_model(name: str = DEFAULT_MODEL) -> Tuple[str, str]:
    """The config and weights of a model shipped with the package.

    Args:
        name (str): The model's name. Default: :data:`DEFAULT_MODEL`.

    Returns:
        tuple[str, str]: ``(config path, weights path)``.

    Raises:
        FileNotFoundError: One of the two files is missing; the one-line
            message names it and says how to get it.
    """
    for what, path in zip(('config', 'weights'), shipped_model_paths(name)):
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'shipped model {name}: {what} file {path} does not exist; '
                'it is committed in the semillie-mm repository (a fresh '
                'clone has it), or pass CONFIG CHECKPOINT of your own model')
    return shipped_model_paths(name)


def resolve_model(model, weights: Optional[str] = None,
                  logger: Optional[logging.Logger] = None
                  ) -> Tuple[object, Optional[str], Optional[str]]:
    """What an inferencer's ``model`` / ``weights`` name.

    Args:
        model: A config (file or object) or a shipped model's name.
        weights (str, optional): A checkpoint; None takes a shipped model's.
        logger (logging.Logger, optional): Says (INFO) that a shipped model
            is used.

    Returns:
        tuple: ``(config, weights, shipped name or None)``.

    Raises:
        FileNotFoundError: A config or checkpoint file that does not exist
            (also one of a shipped model).
    """
    name = None
    if isinstance(model, str) and not osp.isfile(model) and \
            is_shipped_model(model):
        name = model
        model, shipped_weights = shipped_model(name)
        weights = shipped_weights if weights is None else weights
        if logger is not None:
            logger.info('using the shipped model %s (weights %s)', name,
                        weights)
    if isinstance(model, str) and not osp.isfile(model):
        raise FileNotFoundError(f'config file {model} does not exist')
    if weights is not None and not osp.isfile(weights):
        raise FileNotFoundError(f'checkpoint file {weights} does not exist')
    return model, weights, name


def export_teacher(ckpt: str, dest: str) -> dict:
    """Save the EMA teacher of a training checkpoint as a plain state dict.

    Args:
        ckpt (str): An mmengine checkpoint of ``SemiLLIE`` from your own
            training run, read weights-only
            (:func:`~semillie_mm.utils.checkpoint.load_checkpoint_file`;
            ``trusted_checkpoints()`` around the call for a file that needs
            more).
        dest (str): Output ``.pth``: ``{name: float32 tensor}`` of the
            generator, readable with ``torch.load(weights_only=True)``;
            written atomically.

    Returns:
        dict: ``tensors``, ``params``, ``bytes``.

    Raises:
        KeyError: The checkpoint holds no ``teacher.module.*`` tensors.
    """
    from semillie_mm.utils.checkpoint import load_checkpoint_file

    import torch
    state = load_checkpoint_file(ckpt, map_location='cpu')
    state = state.get('state_dict', state)
    prefix = 'teacher.module.'
    teacher = {k[len(prefix):]: v.float().clone() for k, v in state.items()
               if k.startswith(prefix) and torch.is_tensor(v)
               and v.is_floating_point()}
    if not teacher:
        raise KeyError(f'{ckpt}: no {prefix}* tensors (not a mean-teacher '
                       'checkpoint)')
    with atomic_path(dest) as tmp:
        torch.save(teacher, tmp)
    return dict(tensors=len(teacher),
                params=sum(v.numel() for v in teacher.values()),
                bytes=osp.getsize(dest))


def export_shipped_model(config: str,
                         ckpt: str,
                         name: str = DEFAULT_MODEL,
                         out_dir: Optional[str] = None) -> Tuple[str, str]:
    """Turn a training run into a shipped model (``NAME.py`` + weights).

    The config is written resolved (no ``_base_``; :meth:`Config.dump`), so
    the shipped folder needs nothing else; the weights are the EMA teacher's
    (:func:`export_teacher`).

    Args:
        config (str): The run's training config.
        ckpt (str): The run's checkpoint.
        name (str): The shipped model's name. Default: :data:`DEFAULT_MODEL`.
        out_dir (str, optional): Folder. Default: :data:`PRETRAINED_DIR`.

    Returns:
        tuple[str, str]: The config and weights paths written.
    """
    from mmengine.config import Config
    out_dir = out_dir or PRETRAINED_DIR
    cfg_path = osp.join(out_dir, f'{name}.py')
    w_path = osp.join(out_dir, f'{name}_teacher.pth')
    export_teacher(ckpt, w_path)
    cfg = Config.fromfile(config)
    with atomic_path(cfg_path, suffix='.tmp.py') as tmp:
        cfg.dump(tmp)
    return cfg_path, w_path


__all__ = [
    'PRETRAINED_DIR', 'DEFAULT_MODEL', 'MODEL_CARD', 'shipped_model',
    'resolve_model',
    'shipped_model_paths', 'is_shipped_model', 'export_teacher',
    'export_shipped_model'
]
