"""Enhance users' own images: :class:`SemiLLIEInferencer`.

The inferencer follows mmdet's ``DetInferencer`` on mmengine's
``BaseInferencer``: it is built from a config (+ checkpoint), called with a
path, an array, a list of them or a folder, runs the data through the
config's ground-truth-free ``inference_pipeline`` in batches, and returns
``{'predictions': [...], 'visualization': [...]}``.

Low-level helpers kept for scripts: :func:`init_enhancer` (the network only)
and :func:`enhance_image` (one array). See docs/enhance.md.
"""
import copy
import logging
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmcv.transforms import BaseTransform
from mmengine.config import Config, ConfigDict
from mmengine.dataset import Compose
from mmengine.infer import BaseInferencer
from mmengine.registry import DefaultScope

from mmagic.registry import MODELS, TRANSFORMS
from semillie_mm.ops.cpu_cache import enable_cpu_cache
from semillie_mm.utils.cpu_threads import CPUThreadGovernor
from .image_io import (IMG_EXTENSIONS, ImageTooLargeError, adapt_to_format,
                       image_to_tensor, list_images, output_extension,
                       read_image, side_by_side, tensor_to_image,
                       write_image_atomic)
from .pretrained import DEFAULT_MODEL, is_shipped_model, shipped_model
from .tiling import (DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, _net_device,
                     check_tiling, enhance_tensor, needs_tiling)

logger = logging.getLogger(__name__)

#: The pipeline used when a config has no ``inference_pipeline``.
DEFAULT_INFERENCE_PIPELINE = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]

#: Model-config keys only the training losses use (SemiLLIE); set to None
#: when building a model to enhance.
TRAINING_ONLY_KEYS = ('ram_encoder', 'perceptual_loss', 'contrastive_loss',
                      'discriminator', 'gan_loss')
NETWORKS = ('teacher', 'student')


# --------------------------------------------------------------------------
# Inference pipeline (no ground truth)
# --------------------------------------------------------------------------
@TRANSFORMS.register_module()
class LoadImageForEnhancement(BaseTransform):
    """Load the image to enhance, from a file or an array.

    Required keys: ``img_path`` (a file, read with
    :func:`~semillie_mm.apis.image_io.read_image`: EXIF orientation applied,
    bit depth and alpha kept) or ``img`` (an RGB(A)/gray array, used as is).

    Added keys: ``img``, ``img_path`` (None for arrays), ``ori_shape``.
    """

    def transform(self, results: dict) -> dict:
        """Load the image.

        Args:
            results (dict): With ``img_path`` or ``img``.

        Returns:
            dict: ``results`` with ``img``, ``img_path`` and ``ori_shape``.
        """
        if results.get('img') is None:
            results['img'] = read_image(results['img_path'])
        else:
            results['img'] = np.asarray(results['img'])
            results.setdefault('img_path', None)
        results['ori_shape'] = tuple(results['img'].shape)
        return results


@TRANSFORMS.register_module()
class PackEnhancementInputs(BaseTransform):
    """Pack an image for the enhancement network.

    Required keys: ``img`` (RGB(A)/gray, uint8/uint16/float in [0, 1]).

    Returns a dict with ``inputs`` (``(3, H, W)`` float32 RGB in [0, 1]:
    gray replicated, alpha left out), ``layout`` (what
    :func:`~semillie_mm.apis.image_io.tensor_to_image` needs to give the
    output the input's shape, dtype and alpha), ``img`` and ``metainfo``
    (``img_path``, ``ori_shape``, ``ori_dtype``).
    """

    def transform(self, results: dict) -> dict:
        """Pack.

        Args:
            results (dict): With ``img`` (and ``img_path``, ``ori_shape``).

        Returns:
            dict: ``inputs``, ``layout``, ``img`` and ``metainfo``.
        """
        x, layout = image_to_tensor(results['img'])
        meta = dict(img_path=results.get('img_path'),
                    ori_shape=tuple(results['img'].shape),
                    ori_dtype=str(np.asarray(results['img']).dtype))
        return dict(inputs=x, layout=layout, img=results['img'],
                    metainfo=meta)


# --------------------------------------------------------------------------
# Choosing the network inside a model
# --------------------------------------------------------------------------
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
    """Strip EMA / DDP style wrappers (``.module``)."""
    while (hasattr(module, 'module') and isinstance(module.module, nn.Module)
           and type(module).__name__ in (
               'ExponentialMovingAverage', 'MomentumAnnealingEMA',
               'StochasticWeightAverage', 'BaseAveragedModel',
               'DistributedDataParallel', 'DataParallel',
               'MMDistributedDataParallel', 'MMSeparateDistributedDataParallel'
           )):
        module = module.module
    return module


def _find_teacher(model: nn.Module) -> Optional[nn.Module]:
    for name in ('teacher', 'teacher_generator', 'generator_ema'):
        cand = getattr(model, name, None)
        if isinstance(cand, nn.Module):
            return _unwrap(cand)
    return None


def select_enhancement_network(model: nn.Module,
                               use_teacher: bool = True) -> nn.Module:
    """Pick the image-to-image network out of a built model.

    - a SemiLLIE mean-teacher model: its teacher (``use_teacher=True``; the
      EMA of the student, the network the paper evaluates) or its student
      ``generator``;
    - an mmagic ``BaseEditModel``: its ``generator``;
    - anything else: the model itself (a bare generator such as
      ``SemiLLIENet``).

    When the model has an mmagic ``DataPreprocessor`` whose normalisation is
    not plain ``x / 255`` (or which feeds BGR), the network is wrapped in a
    :class:`PreprocessedGenerator`, so the result always maps RGB [0, 1] to
    RGB [0, 1].

    Args:
        model (nn.Module): The built model.
        use_teacher (bool): Prefer the teacher when there is one.

    Returns:
        nn.Module: The enhancement network.
    """
    model = _unwrap(model)
    net = _find_teacher(model) if use_teacher else None
    if net is None:
        cand = getattr(model, 'generator', None)
        if isinstance(cand, nn.Module):
            net = _unwrap(cand)
    if net is None:
        return model

    pre = getattr(model, 'data_preprocessor', None)
    mean = getattr(pre, 'mean', None)
    std = getattr(pre, 'std', None)
    order = getattr(pre, 'output_channel_order', None)
    bgr = isinstance(order, str) and order.upper() == 'BGR'
    if mean is None or std is None:
        mean_l, std_l = [0., 0., 0.], [255., 255., 255.]
    else:
        mean_l = [float(v) for v in torch.as_tensor(mean).flatten()]
        std_l = [float(v) for v in torch.as_tensor(std).flatten()]
        if len(mean_l) == 1:
            mean_l = mean_l * 3
        if len(std_l) == 1:
            std_l = std_l * 3
    if bgr or any(m != 0 for m in mean_l) or any(s != 255 for s in std_l):
        net = PreprocessedGenerator(net, mean_l, std_l, bgr=bgr)
    return net


def _state_of(net: nn.Module, model: nn.Module) -> List[str]:
    """Names (in ``model.state_dict()``) of the tensors of ``net``."""
    ids = {id(t) for t in net.state_dict(keep_vars=True).values()}
    return [k for k, t in model.state_dict(keep_vars=True).items()
            if id(t) in ids]


# --------------------------------------------------------------------------
# Inputs and where their outputs go
# --------------------------------------------------------------------------
class OutputConflictError(ValueError):
    """Outputs that would overwrite an input, or each other."""


def list_inputs(inputs) -> Tuple[List[dict], List[str]]:
    """Inputs -> a list of ``dict(img_path=...)`` / ``dict(img=...)``.

    A folder is searched recursively for ``IMG_EXTENSIONS`` files
    (:func:`~semillie_mm.apis.image_io.list_images`: other files and
    dot-files are ignored); each item remembers its name relative to the
    folder, or its base name for a file (``rel``; None for arrays).

    Args:
        inputs (str | os.PathLike | np.ndarray | dict | list): An image
            file, a folder, an array, a dict of pipeline inputs, or a list
            of these.

    Returns:
        tuple[list[dict], list[str]]: The items, and the ignored files.

    Raises:
        TypeError: An input of another type.
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(inputs, (str, np.ndarray)) or hasattr(
            inputs, '__fspath__'):
        inputs = [inputs]
    items, ignored = [], []
    for item in inputs:
        if isinstance(item, np.ndarray):
            items.append(dict(img=item, rel=None))
            continue
        if isinstance(item, dict):
            items.append(dict(item))
            continue
        if not isinstance(item, str) and not hasattr(item, '__fspath__'):
            raise TypeError(f'inputs must be image paths, folders or '
                            f'numpy arrays, got {type(item).__name__}')
        item = os.fspath(item)
        if osp.isdir(item):
            images, skipped = list_images(item)
            ignored += skipped
            items += [dict(img_path=p, rel=osp.relpath(p, item))
                      for p in images]
        elif osp.isfile(item):
            items.append(dict(img_path=item, rel=osp.basename(item)))
        else:
            raise FileNotFoundError(f'input {item} does not exist')
    return items, ignored


def output_name(rel: str, ext: Optional[str] = None) -> str:
    """The output name of an input (relative to the output folder).

    Args:
        rel (str): The input's name relative to its folder.
        ext (str, optional): The output extension (``'.png'``); None keeps
            the input's.

    Returns:
        str: ``rel`` with ``ext``.
    """
    return osp.splitext(rel)[0] + ext if ext else rel


def _listed(names: Sequence[str], limit: int = 3) -> str:
    more = len(names) - limit
    return '; '.join(names[:limit]) + (f'; and {more} more' if more > 0
                                       else '')


def check_output_plan(pairs: Sequence[Tuple[Optional[str], str]]) -> None:
    """Refuse a run that would destroy an input or one of its own outputs.

    Two checks, made before any image is read:

    - two inputs mapping to one output path (e.g. ``a.png`` and ``a.jpg``
      written with ``ext='.png'``): the second would replace the first;
    - an output that already exists and is one of the inputs: the same file
      by device and inode, as :func:`os.path.samefile` compares, so symbolic
      links (an output folder that is a link to the input folder) and hard
      links are caught, not only equal paths.

    Args:
        pairs (Sequence[tuple[str | None, str]]): ``(input file or None for
            an array, output path)`` per image.

    Raises:
        OutputConflictError: One line naming the files (three of each kind
            at most) and the fix.
    """
    by_dst: Dict[str, List[str]] = {}
    for src, dst in pairs:
        key = osp.normcase(osp.abspath(dst))
        by_dst.setdefault(key, []).append(src or 'an array')
    clashes = [f'{" and ".join(srcs)} -> {dst}'
               for dst, srcs in by_dst.items() if len(srcs) > 1]
    if clashes:
        raise OutputConflictError(
            f'{len(clashes)} output file(s) would be written from more than '
            f'one input, the last overwriting the others: {_listed(clashes)}'
            '; rename the inputs or choose another output extension')
    inputs = {}
    for src, _ in pairs:
        if src:
            try:
                st = os.stat(src)
            except OSError:
                continue  # reported as unreadable when it is read
            inputs[(st.st_dev, st.st_ino)] = src
    same = []
    for _, dst in pairs:
        try:
            st = os.stat(dst)
        except OSError:
            continue  # not there yet: nothing to destroy
        src = inputs.get((st.st_dev, st.st_ino))
        if src is not None:
            same.append(f'{dst} is {src}')
    if same:
        raise OutputConflictError(
            f'{len(same)} output file(s) would overwrite an input (the same '
            f'file, through a link or the same folder): {_listed(same)}; '
            'choose another output folder')


# --------------------------------------------------------------------------
# The inferencer
# --------------------------------------------------------------------------
class SemiLLIEInferencer(BaseInferencer):
    """Low-light enhancement inferencer (mmdet ``DetInferencer`` style).

    Example::

        from semillie_mm.apis import SemiLLIEInferencer
        inferencer = SemiLLIEInferencer('configs/semillie_visdrone.py',
                                        'work_dirs/semillie/best.pth')
        result = inferencer('night.jpg', return_vis=True)
        enhanced = result['predictions'][0]      # HxWx3 uint8 RGB
        picture = result['visualization'][0]     # input | output
        inferencer('night_photos/', out_dir='enhanced/', batch_size=4)
        # the model shipped in the package (semillie_mm/pretrained/)
        inferencer = SemiLLIEInferencer('semillie_target')

    Args:
        model (str | dict | Config, optional): Config file or object, or the
            name of a model shipped in the package (``'semillie_target'``,
            see :mod:`~semillie_mm.apis.pretrained`; a name that is not an
            existing file): its config, and its weights unless ``weights``
            is given. A config's ``model`` may be a SemiLLIE mean-teacher
            model, an mmagic ``BaseEditModel`` (anything with a
            ``generator``) or a bare generator. None reads the config stored
            in ``weights`` (an mmengine checkpoint saved by the Runner).
        weights (str, optional): Checkpoint of the *whole model* of the
            config (mmengine checkpoint with ``state_dict``, or a plain state
            dict; a state dict of the bare network also works). None keeps
            the initial (random) weights, with a warning;
            :attr:`weights_loaded` is then False.
        device (str, optional): Where the network runs; None picks mmengine's
            ``get_device()`` (CUDA when available).
        network (str): ``'teacher'`` (default: the mean teacher, what the
            paper evaluates) or ``'student'``. Models without a teacher use
            their generator for both.
        scope (str): Registry scope the model is built in. Default 'mmagic'.
        show_progress (bool): Progress bar while inferring. Default: True.

    Attributes:
        model (nn.Module): The built model (training-only parts such as the
            RAM encoder and the discriminator are not built).
        has_teacher (bool): Whether the model has a separate teacher.
        weights_loaded (bool): Whether a checkpoint was loaded.
        shipped_model (str | None): The name of the shipped model used, if
            ``model`` named one.
        last_results (dict): The result of the latest call, filled image by
            image: after an exception (KeyboardInterrupt included) it lists
            what was written until then.
    """

    preprocess_kwargs: set = {'on_error'}
    forward_kwargs: set = {'tile_size', 'tile_overlap', 'network'}
    visualize_kwargs: set = {'return_vis', 'vis_out_dir'}
    postprocess_kwargs: set = {'return_datasamples', 'return_preds',
                               'out_dir', 'ext'}

    def __init__(self,
                 model: Union[str, dict, Config, ConfigDict, None] = None,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 network: str = 'teacher',
                 scope: Optional[str] = 'mmagic',
                 show_progress: bool = True) -> None:
        if network not in NETWORKS:
            raise ValueError(f'network must be one of {NETWORKS}, got '
                             f'{network!r}')
        self.shipped_model = None
        if isinstance(model, str) and not osp.isfile(model) and \
                is_shipped_model(model):
            self.shipped_model = model
            model, shipped_weights = shipped_model(model)
            weights = shipped_weights if weights is None else weights
            logger.info('using the shipped model %s (weights %s)',
                        self.shipped_model, weights)
        if isinstance(model, str) and not osp.isfile(model):
            raise FileNotFoundError(f'config file {model} does not exist')
        if weights is not None and not osp.isfile(weights):
            raise FileNotFoundError(f'checkpoint file {weights} does not '
                                    'exist')
        import semillie_mm  # noqa: F401  (registers the modules)
        from mmagic.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        self.network = network
        self.num_predicted_imgs = 0
        self.last_results: dict = {}
        self._networks: Dict[str, nn.Module] = {}
        self._missing: Dict[str, List[str]] = {}
        self._governor: Optional[CPUThreadGovernor] = None
        super().__init__(model=model, weights=weights, device=device,
                         scope=scope, show_progress=show_progress)
        self.get_network(network)  # fails now if its weights are missing

    @classmethod
    def from_shipped(cls, name: str = DEFAULT_MODEL,
                     **kwargs) -> 'SemiLLIEInferencer':
        """The inferencer of a model shipped in the package.

        Args:
            name (str): The shipped model. Default: ``'semillie_target'``.
            **kwargs: The other arguments of :class:`SemiLLIEInferencer`
                (``device``, ``network``, ...).

        Returns:
            SemiLLIEInferencer: ``SemiLLIEInferencer(model=name, **kwargs)``.

        Raises:
            FileNotFoundError: Its config or weights file is missing.
        """
        shipped_model(name)  # a clear error for any name
        return cls(model=name, **kwargs)

    # ---- building -------------------------------------------------------
    def _init_model(self, cfg, weights: Optional[str],
                    device: str = 'cpu') -> nn.Module:
        """Build the model, load the weights, pick the networks.

        Args:
            cfg (Config | ConfigDict): The config (empty: read from
                ``weights``).
            weights (str, optional): The checkpoint.
            device (str): Where the model goes.

        Returns:
            nn.Module: The model, in eval mode, on ``device``.
        """
        from mmengine.runner.checkpoint import CheckpointLoader
        checkpoint = None
        if weights is not None:
            # mmengine's local loader (made to work under torch >= 2.6 by
            # semillie_mm.compat): only load checkpoints you trust.
            checkpoint = CheckpointLoader.load_checkpoint(
                weights, map_location='cpu')
        if not cfg:
            cfg_string = None
            if isinstance(checkpoint, dict):
                cfg_string = checkpoint.get('message_hub', {}).get(
                    'runtime_info', {}).get('cfg') or checkpoint.get(
                        'meta', {}).get('cfg')
            if not cfg_string:
                raise ValueError(f'no config given and checkpoint {weights} '
                                 'holds none: pass the config file')
            cfg.update(Config.fromstring(cfg_string, '.py')._cfg_dict)
        if 'model' not in cfg:
            raise KeyError('the config has no `model` entry')
        model_cfg = copy.deepcopy(cfg.model)
        # Parts used only by the training losses (the RAM encoder needs its
        # own weights file, the discriminator) are not built to enhance.
        dropped = [k for k in TRAINING_ONLY_KEYS
                   if model_cfg.get(k) is not None]
        for k in dropped:
            model_cfg[k] = None
        if model_cfg.get('pretrained') is not None:
            del model_cfg['pretrained']
        scope = cfg.get('default_scope', None) or self.scope or 'mmagic'
        with DefaultScope.overwrite_default_scope(scope):
            model = MODELS.build(model_cfg)
        model.cfg = cfg
        self.has_teacher = _find_teacher(_unwrap(model)) is not None
        for name in NETWORKS:
            self._networks[name] = select_enhancement_network(
                model, use_teacher=name == 'teacher')
        self.weights_loaded = checkpoint is not None
        if checkpoint is not None:
            self._load_weights(model, checkpoint, weights, dropped)
        else:
            logger.warning('no checkpoint given: the weights are random, '
                           'the outputs mean nothing')
        model.to(device)
        model.eval()
        for net in self._networks.values():
            net.to(device)
            net.eval()
        return model

    def _load_weights(self, model: nn.Module, checkpoint, path: str,
                      dropped: Sequence[str]) -> None:
        """Load a checkpoint; note which networks lack weights."""
        state = checkpoint.get('state_dict', checkpoint) if isinstance(
            checkpoint, dict) else checkpoint
        if not isinstance(state, dict):
            raise ValueError(f'{path} holds no state dict')
        state = {(k[7:] if k.startswith('module.') else k): v
                 for k, v in state.items()}
        model_keys = set(model.state_dict().keys())
        if not (model_keys & set(state)) and any(
                _unwrap_pre(n) is not model for n in self._networks.values()):
            # a checkpoint of the bare network: load it into each network
            for name, net in self._networks.items():
                missing, _ = _unwrap_pre(net).load_state_dict(state,
                                                             strict=False)
                self._missing[name] = list(missing)
            return
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = set(missing)
        for name, net in self._networks.items():
            self._missing[name] = [k for k in _state_of(net, model)
                                   if k in missing]
        unexpected = [k for k in unexpected
                      if not any(k.startswith(d + '.') for d in dropped)]
        # a checkpoint that fits no network is reported by one error later
        # (get_network / check_inference_model), not by a warning first
        fits = any(not m for m in self._missing.values())
        if unexpected and fits:
            logger.warning('ignored %d checkpoint keys not in the model, '
                           'e.g. %s', len(unexpected), unexpected[:3])

    def get_network(self, network: Optional[str] = None) -> nn.Module:
        """The enhancement network (RGB [0, 1] -> RGB [0, 1]).

        Args:
            network (str, optional): ``'teacher'`` or ``'student'``; default
                the one given at construction.

        Returns:
            nn.Module: The network, in eval mode.

        Raises:
            ValueError: Unknown name.
            KeyError: The checkpoint lacks weights of that network.
        """
        network = network or self.network
        if network not in NETWORKS:
            raise ValueError(f'network must be one of {NETWORKS}, got '
                             f'{network!r}')
        missing = self._missing.get(network)
        if missing:
            raise KeyError(f'the checkpoint lacks weights of the {network} '
                           f'network: {missing[:5]} ({len(missing)} '
                           'missing)')
        return self._networks[network]

    def _init_pipeline(self, cfg) -> Compose:
        """The config's ``inference_pipeline`` (default:
        :data:`DEFAULT_INFERENCE_PIPELINE`), built from mmagic's
        ``TRANSFORMS``."""
        pipeline_cfg = cfg.get('inference_pipeline',
                               None) or DEFAULT_INFERENCE_PIPELINE
        with DefaultScope.overwrite_default_scope('mmagic'):
            transforms = [TRANSFORMS.build(copy.deepcopy(t))
                          for t in pipeline_cfg]
        return Compose(transforms)

    def _init_collate(self, cfg):
        """Batches are lists of packed images (they may differ in size)."""
        return list

    def _init_visualizer(self, cfg):
        """The ``input | output`` pictures are made by :meth:`visualize`;
        no mmengine visualizer (nor its vis backends) is built."""
        return None

    # ---- inputs ---------------------------------------------------------
    def _inputs_to_list(self, inputs) -> list:
        """Inputs -> a list of ``dict(img_path=...)`` / ``dict(img=...)``
        (:func:`list_inputs`; the ignored files are added to
        ``self._ignored``)."""
        items, ignored = list_inputs(inputs)
        self._ignored += ignored
        return items

    def preprocess(self, inputs: list, batch_size: int = 1,
                   on_error: str = 'raise'):
        """Run the pipeline on the inputs, in batches.

        Args:
            inputs (list): From :meth:`_inputs_to_list`.
            batch_size (int): Images per batch.
            on_error (str): ``'raise'`` (default) or ``'skip'``: an
                unreadable input is then logged, listed in the result's
                ``skipped`` and left out.

        Yields:
            list[dict]: Batches of ``(item, packed)`` pairs.
        """
        batch = []
        for item in inputs:
            try:
                packed = self.pipeline(
                    {k: v for k, v in item.items() if k != 'rel'})
            except Exception as e:  # noqa: BLE001
                name = item.get('img_path') or 'array input'
                reason = str(e)
                if item.get('img_path') and not isinstance(
                        e, ImageTooLargeError):
                    reason = f'unreadable: {e}'
                if on_error != 'skip':
                    raise ValueError(f'{name}: {reason}') from e
                logger.warning('skipped %s: %s', name, reason)
                self._skipped.append(dict(path=name, reason=reason))
                continue
            batch.append((item, packed))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # ---- running --------------------------------------------------------
    @torch.no_grad()
    def forward(self, batch: list, tile_size: Optional[int] = None,
                tile_overlap: int = DEFAULT_TILE_OVERLAP,
                network: Optional[str] = None) -> List[dict]:
        """Enhance one batch.

        Images of one size that need no tiling are stacked and run at once;
        the others run one by one, tiled when larger than ``tile_size``
        (:func:`~semillie_mm.apis.tiling.enhance_tensor`).

        Args:
            batch (list): ``(item, packed)`` pairs from :meth:`preprocess`.
            tile_size (int, optional): Tile side; None or 0: no tiling.
            tile_overlap (int): Tile overlap.
            network (str, optional): ``'teacher'`` / ``'student'``.

        Returns:
            list[dict]: Per image ``pred_img`` (``(3, H, W)`` float32 RGB in
            [0, 1], clamped) and ``output`` (the enhanced image laid out as
            the input: shape, dtype, gray, alpha).
        """
        net = self.get_network(network)
        device = _net_device(net)
        update = self._cpu_runtime(device)
        if update is not None:
            update()
        xs = [packed['inputs'] for _, packed in batch]
        shapes = {tuple(x.shape) for x in xs}
        if len(xs) > 1 and len(shapes) == 1 and not needs_tiling(
                xs[0].shape[1], xs[0].shape[2], tile_size):
            ys = list(net(torch.stack(xs).to(device)).float().cpu())
        else:
            # the image stays on the CPU; tiles go to the device one by one
            ys = [enhance_tensor(net, x[None], tile_size, tile_overlap,
                                 before_tile=update)[0] for x in xs]
        preds = []
        for (_, packed), y in zip(batch, ys):
            # in place: a fresh output (an identity network's view of its
            # input is in [0, 1] already)
            y = y.clamp_(0, 1)
            preds.append(dict(pred_img=y,
                              output=tensor_to_image(y, packed['layout'])))
        return preds

    def _cpu_runtime(self, device: torch.device):
        """The governor's ``update`` on the CPU (torch's thread count follows
        the cores other jobs leave free, between images and tiles), else
        None. The first call on the CPU also enables the caching allocator
        (:mod:`semillie_mm.ops.cpu_cache`)."""
        if device.type != 'cpu':
            return None
        if self._governor is None:
            self._governor = CPUThreadGovernor()
            # large tensors of the next image reuse this one's blocks
            enable_cpu_cache()
        return self._governor.update if self._governor.enabled else None

    def visualize(self, batch: list, preds: List[dict],
                  return_vis: bool = False,
                  vis_out_dir: str = '') -> Optional[List[np.ndarray]]:
        """The ``input | output`` pictures (``Hx(2W)x3`` uint8 RGB).

        Args:
            batch (list): ``(item, packed)`` pairs.
            preds (list[dict]): From :meth:`forward`.
            return_vis (bool): Return the pictures.
            vis_out_dir (str): Also write them there as PNG (names as under
                ``out_dir``).

        Returns:
            list[np.ndarray] | None: The pictures, or None when neither is
            asked for.
        """
        if not return_vis and not vis_out_dir:
            return None
        vis = []
        for (item, packed), pred in zip(batch, preds):
            pic = side_by_side(packed['img'], pred['output'])
            if vis_out_dir:
                name = osp.splitext(self._out_name(item))[0] + '.png'
                write_image_atomic(osp.join(vis_out_dir, name), pic)
            vis.append(pic)
        return vis if return_vis else None

    def _out_name(self, item: dict, ext: Optional[str] = None) -> str:
        rel = item.get('rel')
        if rel is None:
            if 'name' not in item:
                item['name'] = f'{self.num_predicted_imgs:08d}.png'
                self.num_predicted_imgs += 1
            rel = item['name']
        return output_name(rel, ext)

    def save_prediction(self, pred: dict, path: str) -> List[str]:
        """Write one enhanced image (atomically), adapted to the format.

        Args:
            pred (dict): From :meth:`forward` (its ``output``), or the array.
            path (str): Destination; its extension chooses the format.

        Returns:
            list[str]: Notes on what the format could not hold.
        """
        out = pred['output'] if isinstance(pred, dict) else pred
        out, notes = adapt_to_format(out, osp.splitext(path)[1])
        write_image_atomic(path, out)
        return notes

    def postprocess(self, preds: List[dict], visualization,
                    return_datasamples: bool = False,
                    return_preds: bool = True, out_dir: str = '',
                    ext: Optional[str] = None, batch: list = (),
                    on_error: str = 'raise',
                    results: Optional[dict] = None) -> dict:
        """Pack (and write) one batch's results.

        Args:
            preds (list[dict]): From :meth:`forward`.
            visualization (list | None): From :meth:`visualize`.
            return_datasamples (bool): Predictions as mmagic ``DataSample``
                (``pred_img``: ``(3, H, W)`` float on mmagic's 0..255 scale;
                metainfo ``img_path``, ``ori_shape``, ``ori_dtype``, and
                ``output_path`` when written) instead of arrays.
            return_preds (bool): Keep the predictions (False saves memory on
                large folders written to ``out_dir``).
            out_dir (str): Write each enhanced image under it: the input's
                name (relative to the input folder) or ``NNNNNNNN.png`` for
                arrays.
            ext (str, optional): Output extension; default the input's.
            batch (list): The ``(item, packed)`` pairs.
            on_error (str): ``'skip'`` logs and lists a failed write instead
                of raising.
            results (dict, optional): Add to this dict (with the keys
                below), image by image, instead of a new one: what was
                written before an exception (e.g. KeyboardInterrupt) stays
                listed in it.

        Returns:
            dict: ``predictions``, ``visualization``, ``outputs``, ``notes``
            (``results`` when given).
        """
        from mmagic.structures import DataSample
        res = results if results is not None else dict(
            predictions=[], visualization=[], outputs=[], notes=[])
        res['visualization'] += visualization or []
        for (item, packed), pred in zip(batch, preds):
            meta = dict(packed['metainfo'])
            if out_dir:
                dst = osp.join(out_dir, self._out_name(item, ext))
                src = item.get('img_path')
                try:
                    # the real files, not the paths: links are followed
                    if src and osp.exists(dst) and osp.samefile(src, dst):
                        raise OutputConflictError(
                            f'output {dst} is the input {src}')
                    notes = self.save_prediction(pred, dst)
                except Exception as e:  # noqa: BLE001
                    if on_error != 'skip':
                        raise
                    logger.warning('skipped %s: %s', src, e)
                    self._skipped.append(dict(path=src, reason=str(e)))
                    continue
                res['outputs'].append(dst)
                res['notes'] += [dict(path=src or dst, note=n) for n in notes]
                meta['output_path'] = dst
            if return_preds:
                if return_datasamples:
                    ds = DataSample(metainfo=meta)
                    ds.pred_img = pred['pred_img'] * 255.
                    res['predictions'].append(ds)
                else:
                    res['predictions'].append(pred['output'])
        return res

    def __call__(self,
                 inputs,
                 batch_size: int = 1,
                 tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 network: Optional[str] = None,
                 return_vis: bool = False,
                 return_datasamples: bool = False,
                 return_preds: bool = True,
                 out_dir: str = '',
                 ext: Optional[str] = None,
                 vis_out_dir: str = '',
                 on_error: str = 'raise',
                 skip_existing: bool = False) -> dict:
        """Enhance images.

        Args:
            inputs (str | np.ndarray | list): An image file, a folder
                (recursive; non-image files ignored), an RGB(A)/gray array
                (uint8, uint16 or float in [0, 1]) or a list of these.
            batch_size (int): Images per forward pass (images of one size
                that need no tiling are stacked). Default: 1.
            tile_size (int, optional): Images larger than this are processed
                in overlapping tiles; None or 0 runs them whole. Default 512.
            tile_overlap (int): Tile overlap. Default: 64.
            network (str, optional): ``'teacher'`` / ``'student'``; default
                the constructor's.
            return_vis (bool): Also return the ``input | output`` pictures.
            return_datasamples (bool): Predictions as mmagic ``DataSample``.
            return_preds (bool): Return the predictions (set False when
                writing a large folder to ``out_dir``).
            out_dir (str): Write the enhanced images there (atomically),
                keeping names relative to an input folder.
            ext (str, optional): Extension of written images (e.g.
                ``'.png'``); default each input's. What the format cannot hold
                is dropped and reported in ``notes``.
            vis_out_dir (str): Write the ``input | output`` pictures there.
            on_error (str): ``'raise'`` (default) or ``'skip'`` (log, list in
                ``skipped`` and go on) for unreadable inputs (images over
                ``SEMILLIE_MAX_PIXELS`` included) and failed writes.
            skip_existing (bool): With ``out_dir``, leave out the inputs
                whose output file exists (listed in ``existing``): a run
                interrupted earlier resumes where it stopped. Default: False
                (overwrite them).

        Returns:
            dict: ``predictions`` (enhanced images, same shape and dtype as
            each input, or DataSamples), ``visualization`` (pictures, when
            ``return_vis``), ``outputs`` and ``notes`` (written files and
            format notes), ``skipped`` (``{'path', 'reason'}``), ``ignored``
            (non-image files and dot-files of input folders) and
            ``existing`` (outputs kept by ``skip_existing``). The same dict
            is :attr:`last_results`, filled image by image.

        Raises:
            OutputConflictError: With ``out_dir``, before any image is read:
                two inputs map to one output, or an existing output is one
                of the inputs (:func:`check_output_plan`).
        """
        check_tiling(tile_size, tile_overlap)
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"on_error must be 'raise' or 'skip', got "
                             f'{on_error!r}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        ext = output_extension(ext)
        self._skipped, self._ignored = [], []
        results = dict(predictions=[], visualization=[], outputs=[],
                       notes=[], skipped=self._skipped,
                       ignored=self._ignored, existing=[])
        self.last_results = results
        items = self._inputs_to_list(inputs)
        if out_dir:
            dsts = [osp.join(out_dir, self._out_name(item, ext))
                    for item in items]
            check_output_plan([(item.get('img_path'), dst)
                               for item, dst in zip(items, dsts)])
            if skip_existing:
                results['existing'] = [d for d in dsts if osp.exists(d)]
                items = [item for item, d in zip(items, dsts)
                         if not osp.exists(d)]
                if results['existing']:
                    logger.info('%d outputs exist already, kept (their '
                                'inputs are not enhanced again)',
                                len(results['existing']))
        batches = self.preprocess(items, batch_size=batch_size,
                                  on_error=on_error)
        if self.show_progress:
            from rich.progress import track
            batches = track(batches, description='Enhancing',
                            total=math.ceil(len(items) / batch_size))
        for batch in batches:
            preds = self.forward(batch, tile_size=tile_size,
                                 tile_overlap=tile_overlap, network=network)
            vis = self.visualize(batch, preds, return_vis=return_vis,
                                 vis_out_dir=vis_out_dir)
            self.postprocess(
                preds, vis, return_datasamples=return_datasamples,
                return_preds=return_preds, out_dir=out_dir, ext=ext,
                batch=batch, on_error=on_error, results=results)
        return results


def _unwrap_pre(net: nn.Module) -> nn.Module:
    return net.generator if isinstance(net, PreprocessedGenerator) else net


# --------------------------------------------------------------------------
# Low-level helpers
# --------------------------------------------------------------------------
def init_enhancer(config,
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  use_teacher: bool = True) -> nn.Module:
    """Build the config's model, load a checkpoint, return the network.

    The same building and loading as :class:`SemiLLIEInferencer`.

    Args:
        config (str | mmengine.Config | dict): Config file or object.
        checkpoint (str, optional): Checkpoint of the whole model (or of the
            bare network). None keeps the initial weights.
        device (str | torch.device): Where the network runs. Default: 'cpu'.
        use_teacher (bool): For mean-teacher models, return the teacher
            (default) rather than the student.

    Returns:
        nn.Module: The network, in eval mode, on ``device``; it maps
        ``(B, 3, H, W)`` RGB in [0, 1] to the same shape.
    """
    inferencer = SemiLLIEInferencer(
        config, checkpoint, device=str(device),
        network='teacher' if use_teacher else 'student', show_progress=False)
    return inferencer.get_network()


def enhance_image(net: nn.Module,
                  img: np.ndarray,
                  tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                  tile_overlap: int = DEFAULT_TILE_OVERLAP,
                  device: Union[str, torch.device, None] = None) -> np.ndarray:
    """Enhance one image array with a network.

    Args:
        net (nn.Module): Network from :func:`init_enhancer` (or
            :meth:`SemiLLIEInferencer.get_network`).
        img (np.ndarray): ``HxW`` / ``HxWx1`` grayscale, ``HxWx3`` RGB or
            ``HxWx4`` RGBA; ``uint8``, ``uint16`` or float in [0, 1].
        tile_size (int, optional): Tile side for large images; None or 0 runs
            the whole image at once. Default: 512.
        tile_overlap (int): Tile overlap. Default: 64.
        device (str | torch.device, optional): Where to run; default: the
            network's device (the network is moved if they differ).

    Returns:
        np.ndarray: The enhanced image, same shape and dtype as ``img``.
        Grayscale stays grayscale (ITU-R BT.601 luma of the enhanced RGB);
        the alpha channel of RGBA is copied unchanged.
    """
    x, layout = image_to_tensor(img)
    if device is not None:
        net.to(torch.device(device))
    y = enhance_tensor(net, x[None], tile_size, tile_overlap)[0]
    return tensor_to_image(y, layout)


__all__ = [
    'SemiLLIEInferencer', 'LoadImageForEnhancement', 'PackEnhancementInputs',
    'PreprocessedGenerator', 'select_enhancement_network', 'init_enhancer',
    'enhance_image', 'DEFAULT_INFERENCE_PIPELINE', 'IMG_EXTENSIONS',
    'OutputConflictError', 'list_inputs', 'output_name', 'check_output_plan'
]
