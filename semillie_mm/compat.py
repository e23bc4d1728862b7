"""Fixes that the 2023-era OpenMMLab stack needs on today's torch and numpy.

Each fix is applied when ``semillie_mm`` is imported, is as narrow as possible, and
says why it exists. The measured facts behind them are in ``docs/install.md``.

1. ``np.bool8``: numpy 2 removed the alias; mmagic 1.2.0's ``utils/trans_utils.py``
   still uses it. We add the alias back (it is exactly ``np.bool_``) only when it is
   missing.
2. ``torch.load(weights_only=True)`` is torch's default since 2.6. MMEngine 0.10.7
   checkpoints hold more than tensors (the message hub's HistoryBuffer, numpy
   arrays and scalars), so ``load_from``, ``--resume`` and ``load_checkpoint``
   fail under the plain default. MMEngine's loader for local checkpoint files
   -- the files a user names in ``load_from``, ``--resume``,
   ``init_cfg=dict(type='Pretrained', ...)`` or a tool's CHECKPOINT argument --
   is re-registered to :func:`semillie_mm.utils.checkpoint.load_checkpoint_file`:
   still weights-only, with the few globals MMEngine's checkpoints need allowed
   (never ``builtins.getattr`` itself). Full unpickling only where the caller
   trusts the file (``--trust-checkpoint``). Every other ``torch.load`` in the
   process keeps torch's default.
3. MMEngine's PyTorch launcher calls ``torch.cuda.set_device`` unconditionally, so
   ``tools/dist_train.sh`` cannot start on a machine without CUDA. On such a machine
   (and only with the gloo backend) the process group is initialised without it.
4. Third-party deprecation warnings that importing mmagic 1.2.0 prints on every run
   (and that a user can do nothing about) are silenced where they come from; see
   :func:`filter_third_party_warnings`. Warnings raised by semillie_mm's own code,
   and every other warning of these libraries, are left alone.
5. albumentations (imported by mmagic) asks PyPI for its newest version when it
   is imported, unless ``NO_ALBUMENTATIONS_UPDATE`` is set: nothing is fetched at
   run time, so the variable is set (``setdefault``: a user's value wins) before
   mmagic is imported.
6. OpenCV decodes images of up to 2**30 pixels (a 48 KB PNG can declare
   20000 x 20000 and then take tens of GB in the enhancement path). Its cap is
   the environment variable ``OPENCV_IO_MAX_IMAGE_PIXELS``, read once when
   cv2 is loaded; nothing in this package or in numpy/torch imports cv2
   before this module, so it is set here (``setdefault``: a user's value
   wins) to ``SEMILLIE_MAX_PIXELS`` (default 100 megapixels, see
   docs/enhance.md, "Large images"). :data:`OPENCV_MAX_PIXELS` records the
   cap OpenCV uses; ``semillie_mm.apis.image_io`` checks the size from the
   file header first and relies on it only for files Pillow cannot read.
"""
import os
import sys
import warnings

#: Environment variable: the largest image, in pixels, that is decoded.
MAX_PIXELS_ENV = 'SEMILLIE_MAX_PIXELS'
#: Its default: 100 megapixels (about 5 GB of CPU memory in the tiled
#: enhancement path, docs/enhance.md "Large images").
DEFAULT_MAX_PIXELS = 100_000_000
OPENCV_MAX_PIXELS_ENV = 'OPENCV_IO_MAX_IMAGE_PIXELS'
#: OpenCV's own default cap.
OPENCV_DEFAULT_MAX_PIXELS = 1 << 30


def _positive_int(value) -> int:
    """``int(value)`` when it is a whole number > 0, else 0."""
    try:
        number = int(str(value).strip())
    except ValueError:
        return 0
    return max(number, 0)


# fix 6 (before anything imports cv2: mmcv, mmagic)
if 'cv2' not in sys.modules:
    os.environ.setdefault(
        OPENCV_MAX_PIXELS_ENV,
        str(_positive_int(os.environ.get(MAX_PIXELS_ENV, ''))
            or DEFAULT_MAX_PIXELS))
#: The pixel cap of OpenCV's decoders in this process: the variable's value
#: when cv2 was loaded (when something imported cv2 before semillie_mm, the
#: value in the environment is assumed to be the one it read).
OPENCV_MAX_PIXELS = _positive_int(os.environ.get(
    OPENCV_MAX_PIXELS_ENV, '')) or OPENCV_DEFAULT_MAX_PIXELS

import numpy as np  # noqa: E402  (after the OpenCV cap above)
import torch  # noqa: E402

# fix 5 (before anything imports mmagic, and so albumentations)
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

if not hasattr(np, 'bool8'):
    np.bool8 = np.bool_  # removed in numpy 2; mmagic 1.2.0 still uses it

#: (message regex, category, module regex, why) of the filtered warnings. The
#: module is the one the warning is attributed to (``warnings`` matches it against
#: the ``__name__`` of the module at the warning's ``stacklevel``).
THIRD_PARTY_WARNINGS = (
    # mmagic 1.2.0 (models/archs/__init__.py register_diffusers_models, and
    # editors/vico/vico_utils.py) imports diffusers classes from their pre-0.26
    # module paths (diffusers.models.unet_2d_condition, .dual_transformer_2d,
    # .transformer_2d); diffusers' deprecate() warns from those shim modules.
    (r'.* is deprecated and will be removed in version', FutureWarning,
     r'diffusers\.models\.', 'mmagic 1.2.0 imports diffusers classes from '
     'their old module paths'),
)

#: Warnings that can only be told apart by who triggered them: torch attributes
#: ``torch.jit.script``'s FutureWarning to its own module (torch.jit._script), so
#: a process-wide filter would hide it for every caller, ours included. It is
#: filtered only while mmagic's model registry is imported, which is where it is
#: triggered: mmagic's register_diffusers_models() touches every diffusers pipeline,
#: audioldm2's imports transformers' VITS, whose module decorates functions with
#: ``@torch.jit.script``.
IMPORT_TIME_WARNINGS = (
    (r'`torch\.jit\.script` is deprecated', FutureWarning,
     r'torch\.jit\._script', 'transformers VITS, imported by mmagic via '
     'diffusers AudioLDM2, uses @torch.jit.script at import time'),
)


def filter_third_party_warnings():
    """Silence the known third-party deprecation warnings at their source.

    Installs one ``warnings.filterwarnings('ignore', message, category, module)``
    per entry of :data:`THIRD_PARTY_WARNINGS` (all narrow: a message, a category
    and the library module that emits it), then imports mmagic's model registry
    with the entries of :data:`IMPORT_TIME_WARNINGS` ignored for the duration of
    that import only. The filters are inserted in front of those given with
    ``-W`` or ``PYTHONWARNINGS``, so these few warnings stay silent even under
    ``-W error``; every other warning keeps the user's settings.
    """
    for message, category, module, _why in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=category, module=module)
    with warnings.catch_warnings():
        for message, category, module, _why in IMPORT_TIME_WARNINGS:
            warnings.filterwarnings(
                'ignore', message=message, category=category, module=module)
        import mmagic.models  # noqa: F401  (imports every diffusers pipeline)

_PATCHED = False


def patch_mmengine_checkpoint_loader():
    """Point MMEngine's local-file checkpoint loader at the safe loader.

    Only the loader for local paths (the ``''`` scheme of
    :class:`mmengine.runner.CheckpointLoader`) is replaced, by
    :func:`semillie_mm.utils.checkpoint.load_checkpoint_file` (weights-only
    with MMEngine's few globals allowed; full unpickling only for trusted
    files); remote schemes and all other ``torch.load`` calls are left as
    they are.
    """
    global _PATCHED
    if _PATCHED:
        return
    from semillie_mm.utils.checkpoint import load_checkpoint_file

    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_checkpoint_file, force=True)
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


filter_third_party_warnings()
patch_mmengine_checkpoint_loader()
patch_mmengine_cpu_launcher()
