"""Enhance users' own images: :class:`SemiLLIEInferencer`.

Built like mmagic's image restoration inferencers on mmengine's
``BaseInferencer``, plus tiling and folders. The pieces live where they
belong: the ground-truth-free ``inference_pipeline`` in
:mod:`semillie_mm.datasets.transforms.enhancement_inputs`, the network the
editor's ``enhancer()`` picks in :mod:`.enhancement_network`, tiling in
:mod:`.tiling`, the output paths in :mod:`.output_plan`, the opt-in CPU
tuning in :mod:`.cpu_tuning`. See docs/enhance.md.
"""
import copy
import itertools
import logging
import math
import os.path as osp
from typing import Dict, List, Optional, Union

from semillie_mm.utils.checkpoint import trust_enabled, trusted_checkpoints

import numpy as np
import torch
import torch.nn as nn
from mmagic.registry import MODELS, TRANSFORMS
from mmengine.config import Config, ConfigDict
from mmengine.dataset import Compose
from mmengine.infer import BaseInferencer
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint

from .cpu_tuning import cpu_tuning as cpu_tuning_context
from .enhancement_network import (
    PreprocessedGenerator,
    _inner,
    load_network_weights,
    select_enhancement_network,
)
from .image_io import (
    ImageTooLargeError,
    adapt_to_format,
    output_extension,
    side_by_side,
    tensor_to_image,
    write_image_atomic,
)
from .output_plan import OutputConflictError, list_inputs, output_name, plan_outputs
from .precision import in_precision, resolve_precision
from .pretrained import DEFAULT_MODEL, resolve_model, shipped_model
from .tiling import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    _net_device,
    check_tiling,
    enhance_image,
    enhance_tensor,
    needs_tiling,
)
from .video import GainSmoother, enhance_videos, plan_video_outputs, split_video_inputs

logger = logging.getLogger(__name__)

#: The pipeline used when a config has no ``inference_pipeline``.
DEFAULT_INFERENCE_PIPELINE = [
    dict(type='LoadImageForEnhancement'),
    dict(type='PackEnhancementInputs'),
]
#: Model-config keys only the training losses use (SemiLLIE): not built.
TRAINING_ONLY_KEYS = ('ram_encoder', 'perceptual_loss', 'contrastive_loss',
                      'discriminator', 'gan_loss')
NETWORKS = ('teacher', 'student')
BACKENDS = ('pytorch', 'onnxruntime')


class SemiLLIEInferencer(BaseInferencer):
    """Low-light enhancement inferencer.

    Example::

        inferencer = SemiLLIEInferencer('configs/semillie_visdrone.py',
                                        'work_dirs/semillie/best.pth')
        result = inferencer('night.jpg', return_vis=True)
        enhanced = result['predictions'][0]      # HxWx3 uint8 RGB
        inferencer('night_photos/', out_dir='enhanced/', batch_size=4)
        inferencer = SemiLLIEInferencer('semillie_target')  # shipped model

    Each stage takes the keyword-only arguments its ``*_kwargs`` set names;
    ``batch_size``, ``skip_existing``, ``cpu_tuning``, ``results`` and
    ``temporal_smoothing`` (videos) are used by :meth:`__call__` itself.

    Args:
        model (str | dict | Config, optional): Config file or object, or the
            name of a model shipped in the package (``'semillie_target'``,
            see :mod:`~semillie_mm.apis.pretrained`): its config, and its
            weights unless ``weights`` is given. A config's ``model`` may be
            a SemiLLIE mean-teacher model, an mmagic ``BaseEditModel`` or a
            bare generator. None reads the config stored in ``weights``.
        weights (str, optional): Checkpoint of the whole model (mmengine
            checkpoint or plain state dict) or of the bare network. None
            keeps random weights, with a warning.
        device (str, optional): Default: mmengine's ``get_device()``.
        network (str): ``'teacher'`` (default; what the paper evaluates) or
            ``'student'``, asked of the editor's ``enhancer()``. Models
            without a teacher use their generator for both.
        scope (str): Registry scope of the model. Default: 'mmagic'.
        show_progress (bool): Progress bar while inferring. Default: True.
        trust_checkpoint (bool): Unpickle ``weights`` in full and allow a
            config stored in it (Python code) to run. Default: False: the
            checkpoint is read weights-only
            (:mod:`semillie_mm.utils.checkpoint`) and a config must be
            given.
        backend (str): ``'pytorch'`` (default) or ``'onnxruntime'``: run
            ``onnx_model``, a file from ``tools/deployment/export_onnx.py``,
            on the CPU with ONNX Runtime (same pipeline, tiling and
            outputs; ``model`` then only supplies an optional
            ``inference_pipeline``). See docs/enhance.md, section "ONNX".
        onnx_model (str, optional): The ``.onnx`` file of the
            ``'onnxruntime'`` backend.
        precision (str): ``'fp32'`` (default) or ``'bf16'``: the forward
            under bfloat16 autocast, SS2D's scan in float32
            (:mod:`.precision`); where the device lacks native bfloat16
            (CPU: AVX512-BF16 / AMX-BF16) a one-line notice and float32.

    Attributes:
        model (nn.Module): The built model (no training-only parts such as
            the RAM encoder and the discriminator).
        has_teacher (bool): Whether the model has a separate teacher.
        weights_loaded (bool): Whether a checkpoint was loaded.
        shipped_model (str | None): The shipped model's name, if used.
        precision (str): The precision that runs (``'fp32'`` after a
            fallback).
    """

    preprocess_kwargs: set = set()
    forward_kwargs: set = {'tile_size', 'tile_overlap', 'network'}
    visualize_kwargs: set = {'return_vis', 'vis_out_dir'}
    postprocess_kwargs: set = {'return_datasamples', 'return_preds',
                               'out_dir', 'ext', 'on_error'}

    def __init__(self,
                 model: Union[str, dict, Config, ConfigDict, None] = None,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 network: str = 'teacher',
                 scope: Optional[str] = 'mmagic',
                 show_progress: bool = True,
                 trust_checkpoint: bool = False,
                 backend: str = 'pytorch',
                 onnx_model: Optional[str] = None,
                 precision: str = 'fp32') -> None:
        if network not in NETWORKS:
            raise ValueError(f'network must be one of {NETWORKS}, got '
                             f'{network!r}')
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got '
                             f'{backend!r}')
        self._onnx_model = onnx_model if backend == 'onnxruntime' else None
        if backend == 'onnxruntime':
            if not onnx_model:
                raise ValueError("backend='onnxruntime' needs onnx_model")
            if (device or 'cpu') != 'cpu':
                raise ValueError(f'backend onnxruntime runs on the CPU, got '
                                 f'device {device!r}')
            model, device = {} if model is None else model, 'cpu'
        model, weights, self.shipped_model = resolve_model(
            model, weights, logger)
        import semillie_mm  # noqa: F401  (registers the modules)

        from mmagic.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        self.network = network
        # names of arrays written to out_dir: 00000000.png, ... across calls
        self._array_names = itertools.count()
        with trusted_checkpoints(trust_checkpoint):
            super().__init__(model=model, weights=weights, device=device,
                             scope=scope, show_progress=show_progress)
        self.get_network(network)  # fails now if its weights are missing
        self.precision = resolve_precision(
            precision, _net_device(self.get_network(network)))

    @classmethod
    def from_shipped(cls, name: str = DEFAULT_MODEL,
                     **kwargs) -> 'SemiLLIEInferencer':
        """``SemiLLIEInferencer(model=name, **kwargs)``; a clear
        FileNotFoundError when a file of that shipped model is missing."""
        shipped_model(name)
        return cls(model=name, **kwargs)

    def _init_model(self, cfg, weights: Optional[str],
                    device: str = 'cpu') -> nn.Module:
        """Build the model without its training-only parts, load the
        checkpoint (read once: the config may come from it) and pick the
        networks; the model is returned in eval mode on ``device``."""
        if self._onnx_model is not None:
            return self._init_onnx_network()
        checkpoint = None
        if weights is not None:  # mmengine's loaders (semillie_mm.compat)
            checkpoint = _load_checkpoint(weights, map_location='cpu',
                                          logger='current')
        if not cfg:
            meta = checkpoint if isinstance(checkpoint, dict) else {}
            text = meta.get('message_hub', {}).get('runtime_info', {}).get(
                'cfg') or meta.get('meta', {}).get('cfg')
            if not text:
                raise ValueError(f'no config given and checkpoint {weights} '
                                 'holds none: pass the config file')
            if not trust_enabled():
                # a config is Python code: run one from a file only if the
                # caller trusts that file
                raise ValueError(
                    f'no config given: checkpoint {weights} holds one, but a '
                    'config is code; pass the config file, or '
                    'trust_checkpoint=True (--trust-checkpoint) if you trust '
                    'the checkpoint')
            cfg.update(Config.fromstring(text, '.py')._cfg_dict)
        if 'model' not in cfg:
            raise KeyError('the config has no `model` entry')
        model_cfg = copy.deepcopy(cfg.model)
        dropped = [k for k in TRAINING_ONLY_KEYS
                   if model_cfg.get(k) is not None]
        model_cfg.update(dict.fromkeys(dropped))
        model_cfg.pop('pretrained', None)
        with DefaultScope.overwrite_default_scope(
                cfg.get('default_scope', None) or self.scope or 'mmagic'):
            model = MODELS.build(model_cfg)
        model.cfg = cfg
        self._networks = {name: select_enhancement_network(
            model, use_teacher=name == 'teacher') for name in NETWORKS}
        self.has_teacher = _inner(self._networks['teacher']) is not _inner(
            self._networks['student'])
        self.weights_loaded = checkpoint is not None
        self._missing: Dict[str, List[str]] = {}
        if checkpoint is not None:
            self._missing = load_network_weights(model, self._networks,
                                                 checkpoint, dropped)
        else:
            logger.warning('no checkpoint given: the weights are random, '
                           'the outputs mean nothing')
        for module in (model, *self._networks.values()):
            module.to(device).eval()
        return model

    def _init_onnx_network(self) -> nn.Module:
        """The ``'onnxruntime'`` backend's network: the ONNX model in an
        :class:`~semillie_mm.deployment.OnnxRuntimeNetwork`, under the name
        of the network it was exported from."""
        from semillie_mm.deployment import OnnxModelError, OnnxRuntimeNetwork
        net = OnnxRuntimeNetwork(self._onnx_model)
        name = net.network or self.network
        if name != self.network:
            raise OnnxModelError(
                f'{self._onnx_model} holds the {name} network, not the '
                f'{self.network}: pass network={name!r}'
                + (' (--student)' if name == 'student' else
                   ' (without --student)'))
        self._networks = {name: net}
        self.has_teacher, self.weights_loaded = False, True
        self._missing = {}
        return net

    def get_network(self, network: Optional[str] = None) -> nn.Module:
        """The enhancement network (RGB [0, 1] -> RGB [0, 1]), in eval mode.

        Args:
            network (str, optional): ``'teacher'`` or ``'student'``; default
                the one given at construction.

        Raises:
            ValueError: Unknown name.
            KeyError: The checkpoint lacks weights of that network.
        """
        network = network or self.network
        if network not in NETWORKS:
            raise ValueError(f'network must be one of {NETWORKS}, got '
                             f'{network!r}')
        if network not in self._networks:  # an ONNX model holds one
            raise ValueError(f'the ONNX model {self._onnx_model} holds the '
                             f'{next(iter(self._networks))} network only')
        missing = self._missing.get(network)
        if missing:
            raise KeyError(f'the checkpoint lacks weights of the {network} '
                           f'network: {missing[:5]} ({len(missing)} '
                           'missing)')
        return self._networks[network]

    def _init_pipeline(self, cfg) -> Compose:
        """The config's ``inference_pipeline`` (or the default one)."""
        pipeline = cfg.get('inference_pipeline',
                           None) or DEFAULT_INFERENCE_PIPELINE
        with DefaultScope.overwrite_default_scope('mmagic'):
            return Compose([TRANSFORMS.build(copy.deepcopy(t))
                            for t in pipeline])

    def _init_collate(self, cfg):
        """Batches are lists (their images may differ in size)."""
        return list

    def _init_visualizer(self, cfg):
        """:meth:`visualize` draws the pictures; no mmengine visualizer."""
        return None

    def preprocess(self, inputs: List[dict], batch_size: int = 1):
        """Run the pipeline on the items of :func:`list_inputs`, in batches.

        Yields:
            dict: ``packed``: ``(item, packed)`` pairs; ``failed``: ``(item,
            reason, error)`` of unreadable inputs (:meth:`postprocess` raises
            or skips them, as ``on_error`` says), each closing its batch.
        """
        batch = dict(packed=[], failed=[])
        for item in inputs:
            try:
                batch['packed'].append((item, self.pipeline(
                    {k: v for k, v in item.items() if k != 'rel'})))
            except Exception as e:  # noqa: BLE001
                reason = str(e) if not item.get('img_path') or isinstance(
                    e, ImageTooLargeError) else f'unreadable: {e}'
                batch['failed'].append((item, reason, e))
            if batch['failed'] or len(batch['packed']) == batch_size:
                yield batch
                batch = dict(packed=[], failed=[])
        if batch['packed']:
            yield batch

    @torch.no_grad()
    @in_precision
    def forward(self, batch: dict, before_tile=None, *,
                tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                tile_overlap: int = DEFAULT_TILE_OVERLAP,
                network: Optional[str] = None) -> List[dict]:
        """Enhance one batch: images of one size that need no tiling at
        once, the others one by one, in tiles when larger than ``tile_size``;
        in :attr:`precision` (:func:`.precision.in_precision`).

        Args:
            batch (dict): From :meth:`preprocess`.
            before_tile (callable, optional): Called before each image and
                tile (the CPU thread governor of :func:`cpu_tuning`).
            tile_size (int, optional): Tile side; None or 0: no tiling.
            tile_overlap (int): Tile overlap.
            network (str, optional): ``'teacher'`` / ``'student'``.

        Returns:
            list[dict]: Per image ``pred_img`` (``(3, H, W)`` float32 RGB in
            [0, 1]) and ``output`` (laid out as the input: shape, dtype,
            gray, alpha).
        """
        net = self.get_network(network)
        device = _net_device(net)
        if before_tile is not None:
            before_tile()
        xs = [packed['inputs'] for _, packed in batch['packed']]
        if len(xs) > 1 and len({tuple(x.shape) for x in xs}) == 1 and \
                not needs_tiling(*xs[0].shape[1:], tile_size):
            ys = list(net(torch.stack(xs).to(device)).float().cpu())
        else:  # the image stays on the CPU; tiles go to the device
            ys = [enhance_tensor(net, x[None], tile_size, tile_overlap,
                                 before_tile=before_tile)[0] for x in xs]
        preds = []
        for (_, packed), y in zip(batch['packed'], ys):
            y = y.clamp_(0, 1)  # a fresh tensor: in place
            preds.append(dict(pred_img=y,
                              output=tensor_to_image(y, packed['layout'])))
        return preds

    def visualize(self, batch: dict, preds: List[dict], *,
                  return_vis: bool = False,
                  vis_out_dir: str = '') -> Optional[List[np.ndarray]]:
        """The ``input | output`` pictures (``Hx(2W)x3`` uint8 RGB), returned
        with ``return_vis``, written as PNG under ``vis_out_dir``."""
        if not return_vis and not vis_out_dir:
            return None
        vis = []
        for (item, packed), pred in zip(batch['packed'], preds):
            pic = side_by_side(packed['img'], pred['output'])
            if vis_out_dir:
                write_image_atomic(osp.join(
                    vis_out_dir, output_name(item['rel'], '.png')), pic)
            vis.append(pic)
        return vis if return_vis else None

    def save_prediction(self, pred: dict, path: str) -> List[str]:
        """Write one enhanced image (``pred['output']`` or the array)
        atomically, adapted to the format of ``path``'s extension; returns
        notes on what the format could not hold."""
        out = pred['output'] if isinstance(pred, dict) else pred
        out, notes = adapt_to_format(out, osp.splitext(path)[1])
        write_image_atomic(path, out)
        return notes

    def postprocess(self, preds: List[dict], visualization, batch: dict,
                    results: dict, *, return_datasamples: bool = False,
                    return_preds: bool = True, out_dir: str = '',
                    ext: Optional[str] = None,
                    on_error: str = 'raise') -> dict:
        """Add one batch to ``results`` (see :meth:`__call__`), image by
        image, writing the enhanced images under ``out_dir``; with
        ``on_error='skip'`` unreadable inputs and failed writes are logged
        and listed in ``skipped``, else they raise."""
        from mmagic.structures import DataSample
        for item, reason, err in batch['failed']:
            name = item.get('img_path') or 'array input'
            if on_error != 'skip':
                raise ValueError(f'{name}: {reason}') from err
            logger.warning('skipped %s: %s', name, reason)
            results['skipped'].append(dict(path=name, reason=reason))
        results['visualization'] += visualization or []
        for (item, packed), pred in zip(batch['packed'], preds):
            meta = dict(packed['metainfo'])
            if out_dir:
                dst = osp.join(out_dir, output_name(item['rel'], ext))
                src = item.get('img_path')
                try:  # the real files, not the paths: links are followed
                    if src and osp.exists(dst) and osp.samefile(src, dst):
                        raise OutputConflictError(
                            f'output {dst} is the input {src}')
                    notes = self.save_prediction(pred, dst)
                except Exception as e:  # noqa: BLE001
                    if on_error != 'skip':
                        raise
                    logger.warning('skipped %s: %s', src, e)
                    results['skipped'].append(dict(path=src, reason=str(e)))
                    continue
                results['outputs'].append(dst)
                results['notes'] += [dict(path=src or dst, note=n)
                                     for n in notes]
                meta['output_path'] = dst
            if return_preds and return_datasamples:
                ds = DataSample(metainfo=meta)
                ds.pred_img = pred['pred_img'] * 255.
                results['predictions'].append(ds)
            elif return_preds:
                results['predictions'].append(pred['output'])
        return results

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
                 skip_existing: bool = False,
                 cpu_tuning: bool = False,
                 results: Optional[dict] = None,
                 temporal_smoothing: float = 0.0) -> dict:
        """Enhance images (all arguments: docs/enhance.md).

        Args:
            inputs (str | np.ndarray | dict | list): An image file, a video
                file, a folder (recursive; its images and videos), an
                RGB(A)/gray array, a dict (``img_path`` or ``video_path``,
                and ``rel``: the output name) or a list of these. Videos:
                :mod:`.video`, written under ``out_dir`` (else returned as
                ``TxHxWx3`` uint8 arrays), after the images.
            batch_size (int): Images of one size that need no tiling are
                stacked by this many. Default: 1.
            tile_size (int, optional): Larger images run in overlapping
                tiles; None or 0 runs them whole. Default: 512.
            tile_overlap (int): Tile overlap. Default: 64.
            network (str, optional): ``'teacher'`` / ``'student'``.
            return_vis (bool): Return the ``input | output`` pictures.
            return_datasamples (bool): Predictions as mmagic ``DataSample``.
            return_preds (bool): Return the predictions. Default: True.
            out_dir (str): Write the enhanced images there (names relative
                to an input folder; arrays ``NNNNNNNN.png``, numbered on
                across calls).
            ext (str, optional): Extension of written images.
            vis_out_dir (str): Write the pictures there (PNG).
            on_error (str): ``'raise'`` or ``'skip'`` (log, list in
                ``skipped``) unreadable inputs and failed writes.
            skip_existing (bool): Leave out inputs whose output exists.
            cpu_tuning (bool): Run under :func:`~semillie_mm.apis.
                cpu_tuning.cpu_tuning` on the CPU (restored at the end).
            results (dict, optional): Filled image by image instead of a
                new dict: after an exception it holds what was done.
            temporal_smoothing (float): Videos only: ``alpha`` of
                :class:`~.video.GainSmoother`; 0 (default) is off.

        Returns:
            dict: ``predictions`` (as each input's shape and dtype),
            ``visualization``, ``outputs``, ``notes``, ``skipped``,
            ``ignored`` (non-image files) and ``existing``.

        Raises:
            OutputConflictError: Before any image is read: two inputs map
                to one output, or an output is an input.
        """
        check_tiling(tile_size, tile_overlap)
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"on_error must be 'raise' or 'skip', got "
                             f'{on_error!r}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        ext = output_extension(ext)
        GainSmoother(temporal_smoothing)  # checks the value
        _, forward_kw, visualize_kw, postprocess_kw = self._dispatch_kwargs(
            tile_size=tile_size, tile_overlap=tile_overlap, network=network,
            return_vis=return_vis, vis_out_dir=vis_out_dir,
            return_datasamples=return_datasamples, return_preds=return_preds,
            out_dir=out_dir, ext=ext, on_error=on_error)
        device = _net_device(self.get_network(network))
        results = {} if results is None else results
        results.update(predictions=[], visualization=[], outputs=[],
                       notes=[], skipped=[], ignored=[], existing=[])
        videos, inputs, in_folders = split_video_inputs(inputs)
        items, ignored = list_inputs(inputs)
        results['ignored'] = [p for p in ignored if p not in in_folders]
        for item in items:
            if item.get('rel') is None and (out_dir or vis_out_dir):
                item['rel'] = f'{next(self._array_names):08d}.png'
        if out_dir:
            items, results['existing'] = plan_outputs(items, out_dir, ext,
                                                      skip_existing)
            videos, existing = plan_video_outputs(videos, out_dir,
                                                  skip_existing)
            results['existing'] += existing
        if results['existing']:
            logger.info('%d outputs exist already, kept (their inputs are '
                        'not enhanced again)', len(results['existing']))
        batches = self.preprocess(items, batch_size=batch_size)
        if self.show_progress and (items or not videos):
            from rich.progress import track
            batches = track(batches, description='Enhancing',
                            total=math.ceil(len(items) / batch_size))
        with cpu_tuning_context(cpu_tuning
                                and device.type == 'cpu') as before_tile:
            for batch in batches:
                preds = self.forward(batch, before_tile, **forward_kw)
                vis = self.visualize(batch, preds, **visualize_kw)
                self.postprocess(preds, vis, batch, results, **postprocess_kw)
            enhance_videos(self, videos, results, out_dir, on_error,
                           return_preds, before_tile, batch_size=batch_size,
                           tile_size=tile_size, tile_overlap=tile_overlap,
                           network=network,
                           temporal_smoothing=temporal_smoothing)
        return results


def init_enhancer(config,
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  use_teacher: bool = True) -> nn.Module:
    """The network alone, built and loaded as :class:`SemiLLIEInferencer`
    does (``config``: file or object; ``checkpoint`` None: initial weights);
    in eval mode on ``device``, mapping ``(B, 3, H, W)`` RGB in [0, 1] to
    the same shape."""
    inferencer = SemiLLIEInferencer(
        config, checkpoint, device=str(device),
        network='teacher' if use_teacher else 'student', show_progress=False)
    return inferencer.get_network()


__all__ = [
    'SemiLLIEInferencer', 'init_enhancer', 'enhance_image',
    'DEFAULT_INFERENCE_PIPELINE', 'PreprocessedGenerator',
    'select_enhancement_network', 'OutputConflictError'
]
