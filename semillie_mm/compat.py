"""Fixes that the 2023-era OpenMMLab stack needs on today's torch and numpy.

Each fix is applied when ``semillie_mm`` is imported, is as narrow as possible, and
says why it exists. The measured facts behind them are in ``docs/install.md``.

1. ``np.bool8``: numpy 2 removed the alias; mmagic 1.2.0's ``utils/trans_utils.py``
   still uses it. We add the alias back (it is exactly ``np.bool_``) only when it is
   missing.
2. ``torch.load(weights_only=True)`` is torch's default since 2.6. MMEngine 0.10.7
   checkpoints hold more than tensors (the message hub's HistoryBuffer, numpy
   scalars, the config), so ``load_from``, ``--resume`` and ``load_checkpoint`` fail
   under the new default. We do NOT turn the safety off for the whole process
   (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` would): only MMEngine's loader for local
   checkpoint files -- the files a user names in ``load_from``, ``--resume``,
   ``init_cfg=dict(type='Pretrained', ...)`` or a tool's CHECKPOINT argument -- is
   re-registered to unpickle them fully. Loading a checkpoint runs code stored in
   it: only load checkpoints you trust. Every other ``torch.load`` in the process
   keeps torch's safe default.
3. MMEngine's PyTorch launcher calls ``torch.cuda.set_device`` unconditionally, so
   ``tools/dist_train.sh`` cannot start on a machine without CUDA. On such a machine
   (and only with the gloo backend) the process group is initialised without it.
"""
import os.path as osp

import numpy as np
import torch

if not hasattr(np, 'bool8'):
    np.bool8 = np.bool_  # removed in numpy 2; mmagic 1.2.0 still uses it

_PATCHED = False


def load_trusted_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint file that the user named, with full unpickling.

    Args:
        filename (str): path of the checkpoint file.
        map_location: as in :func:`torch.load`.

    Returns:
        dict | OrderedDict: the loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} does not exist')
    # mmengine checkpoints contain Python objects (HistoryBuffer, numpy types, the
    # config); weights_only=True rejects them. See the module docstring.
    return torch.load(filename, map_location=map_location, weights_only=False)


def patch_mmengine_checkpoint_loader():
    """Make MMEngine's local-file checkpoint loader work under torch >= 2.6.

    Only the loader for local paths (the ``''`` scheme of
    :class:`mmengine.runner.CheckpointLoader`) is replaced; remote schemes and
    all other ``torch.load`` calls are left as they are.
    """
    global _PATCHED
    if _PATCHED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_trusted_checkpoint, force=True)
    _PATCHED = True


def patch_mmengine_cpu_launcher():
    """Let MMEngine's ``pytorch`` launcher start gloo process groups on CPU."""
    import mmengine.dist.utils as dist_utils
    original = dist_utils._init_dist_pytorch
    if getattr(original, '_semillie_cpu', False):
        return

    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if backend == 'gloo' and init_backend == 'torch' and \
                not torch.cuda.is_available():
            # same as mmengine's, minus torch.cuda.set_device(LOCAL_RANK)
            torch.distributed.init_process_group(backend=backend, **kwargs)
            return
        original(backend, init_backend=init_backend, **kwargs)

    init_dist_pytorch._semillie_cpu = True
    dist_utils._init_dist_pytorch = init_dist_pytorch


patch_mmengine_checkpoint_loader()
patch_mmengine_cpu_launcher()
