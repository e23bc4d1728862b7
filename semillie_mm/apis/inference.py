"""Enhance users' own images with a trained model.

Public API (used by ``tools/enhance.py`` and by the detection study):

- :func:`init_enhancer`: config (+ checkpoint) -> the enhancement network
  (input/output ``(B, 3, H, W)`` RGB in [0, 1]) in eval mode;
- :func:`enhance_image`: one ``np.ndarray`` image -> its enhancement, same
  size, dtype and channels; large images are processed in overlapping tiles
  blended with a raised-cosine window so memory stays bounded;
- :func:`enhance_path`: a file or a folder (recursive) -> files written
  atomically under ``output`` with the same relative paths; returns a summary.

See docs/enhance.md.
"""
import logging
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_NO_ALPHA_EXTS = ('.jpg', '.jpeg', '.bmp')
_8BIT_ONLY_EXTS = ('.jpg', '.jpeg', '.bmp', '.webp')
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64


# --------------------------------------------------------------------------
# Building the network
# --------------------------------------------------------------------------
class PreprocessedGenerator(nn.Module):
    """Wrap a generator trained behind an mmagic ``DataPreprocessor``.

    The wrapper takes RGB in [0, 1], applies the preprocessor's normalisation
    (``(255 * x - mean) / std``) and channel order, runs the generator and
    undoes both, so that every network :func:`init_enhancer` returns has the
    same interface.

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
    net = None
    if use_teacher:
        for name in ('teacher', 'teacher_generator', 'generator_ema'):
            cand = getattr(model, name, None)
            if isinstance(cand, nn.Module):
                net = _unwrap(cand)
                break
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


#: Model-config keys only the training losses use (SemiLLIE); set to None
#: when building a model to enhance.
TRAINING_ONLY_KEYS = ('ram_encoder', 'perceptual_loss', 'contrastive_loss',
                      'discriminator', 'gan_loss')


def _load_weights(model: nn.Module, net: nn.Module, checkpoint: str,
                  dropped: Sequence[str]) -> None:
    """Load a checkpoint of the whole model; every weight of the selected
    enhancement network must be in it."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint} does not exist')
    # mmengine's local loader (made to work under torch >= 2.6 by
    # semillie_mm.compat): only load checkpoints you trust.
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    state = {(k[7:] if k.startswith('module.') else k): v
             for k, v in state.items()}
    target_names = {id(p): n for n, p in net.state_dict(keep_vars=True).items()}
    model_keys = set(model.state_dict().keys())
    if not (model_keys & set(state)) and net is not model:
        # a checkpoint of the bare network
        missing, _ = net.load_state_dict(state, strict=False)
        if missing:
            raise KeyError(f'{checkpoint} lacks weights of the network: '
                           f'{missing[:5]}...')
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    full = model.state_dict(keep_vars=True)
    net_missing = [k for k in missing if id(full[k]) in target_names]
    if net_missing:
        raise KeyError(f'{checkpoint} lacks weights of the enhancement '
                       f'network: {net_missing[:5]} ({len(net_missing)} '
                       'missing)')
    unexpected = [k for k in unexpected
                  if not any(k.startswith(d + '.') for d in dropped)]
    if unexpected:
        logger.warning('ignored %d checkpoint keys not in the model, e.g. %s',
                       len(unexpected), unexpected[:3])


def init_enhancer(config,
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  use_teacher: bool = True) -> nn.Module:
    """Build the config's model, load a checkpoint, return the enhancer.

    Args:
        config (str | mmengine.Config | dict): Config file or object. Its
            ``model`` may be a SemiLLIE model, an mmagic ``BaseEditModel``
            (anything with a ``generator``) or a bare generator.
        checkpoint (str, optional): Checkpoint path (an mmengine checkpoint
            with ``state_dict``, or a plain state dict) for the *whole model*
            of the config. None keeps the initial weights.
        device (str | torch.device): Where the network runs. Default: 'cpu'.
        use_teacher (bool): For mean-teacher models, return the teacher
            (default) rather than the student.

    Returns:
        nn.Module: The network, in eval mode, on ``device``; it maps
        ``(B, 3, H, W)`` RGB in [0, 1] to the same shape.
    """
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import semillie_mm  # noqa: F401  (registers the modules, applies compat)
    from mmagic.registry import MODELS
    from mmagic.utils import register_all_modules

    if isinstance(config, str):
        config = Config.fromfile(config)
    elif isinstance(config, dict) and not isinstance(config, Config):
        config = Config(config)
    if 'model' not in config:
        raise KeyError('the config has no `model` entry')
    register_all_modules(init_default_scope=False)
    model_cfg = config.model.copy()
    # Parts used only by the training losses (the RAM encoder needs its own
    # weights file, the discriminator) are not built to enhance.
    dropped = [k for k in TRAINING_ONLY_KEYS if model_cfg.get(k) is not None]
    for k in dropped:
        model_cfg[k] = None
    scope = config.get('default_scope', None) or 'mmagic'
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    net = select_enhancement_network(model, use_teacher=use_teacher)
    if checkpoint is not None:
        _load_weights(model, net, checkpoint, dropped)
    net = net.to(device)
    net.eval()
    return net


# --------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------
def _tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles covering ``[0, length)``; the last tile ends at
    ``length``; neighbours overlap by at least ``overlap`` pixels."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _axis_weight(tile: int, overlap: int, ramp_start: bool,
                 ramp_end: bool) -> np.ndarray:
    """1-D blending weight of one tile.

    1 inside; on a side that borders another tile the weight is 0 for the
    first ``overlap // 4`` pixels (where the tile lacks context) and then rises
    as a raised cosine (half a Hann window) to 1 over the rest of the overlap.
    Sides on the image border keep weight 1.
    """
    w = np.ones(tile, dtype=np.float64)
    dead = overlap // 4
    ramp_len = overlap - dead
    if ramp_len > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_len) + 0.5) /
                                  ramp_len)
        ramp = np.concatenate([np.zeros(dead), ramp])
    else:
        ramp = np.zeros(0)
    if ramp_start and ramp.size:
        w[:ramp.size] = np.minimum(w[:ramp.size], ramp)
    if ramp_end and ramp.size:
        w[tile - ramp.size:] = np.minimum(w[tile - ramp.size:], ramp[::-1])
    return w


@torch.no_grad()
def enhance_tensor(net: nn.Module,
                   x: torch.Tensor,
                   tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                   tile_overlap: int = DEFAULT_TILE_OVERLAP) -> torch.Tensor:
    """Run ``net`` on a ``(1, 3, H, W)`` tensor, in tiles when it is large.

    Tiling is used when ``tile_size`` is set and ``H`` or ``W`` exceeds it.
    Tiles of ``tile_size`` (clipped to the image) overlap by at least
    ``tile_overlap``; each output is multiplied by its blending weight
    (:func:`_axis_weight` along both axes), weighted outputs and weights are
    accumulated, and the sum is divided by the weights. Only one tile is on
    the network's device at a time; the accumulators live on the CPU.

    Args:
        net (nn.Module): Enhancement network.
        x (Tensor): ``(1, 3, H, W)`` on the network's device, RGB in [0, 1].
        tile_size (int, optional): Tile side; None or <= 0 disables tiling.
        tile_overlap (int): Overlap between neighbouring tiles.

    Returns:
        Tensor: ``(1, 3, H, W)`` float32 output on the CPU (not clamped).
    """
    _, _, h, w = x.shape
    if not tile_size or tile_size <= 0 or (h <= tile_size and w <= tile_size):
        return net(x).float().cpu()
    if not 0 <= tile_overlap < tile_size:
        raise ValueError(f'tile_overlap ({tile_overlap}) must be in '
                         f'[0, tile_size={tile_size})')
    th, tw = min(tile_size, h), min(tile_size, w)
    ys = _tile_starts(h, th, tile_overlap)
    xs = _tile_starts(w, tw, tile_overlap)
    out = torch.zeros(1, 3, h, w, dtype=torch.float64)
    wsum = torch.zeros(1, 1, h, w, dtype=torch.float64)
    for iy, y0 in enumerate(ys):
        wy = _axis_weight(th, tile_overlap, iy > 0, iy < len(ys) - 1)
        for ix, x0 in enumerate(xs):
            wx = _axis_weight(tw, tile_overlap, ix > 0, ix < len(xs) - 1)
            tile_out = net(x[:, :, y0:y0 + th, x0:x0 + tw]).double().cpu()
            weight = torch.from_numpy(np.outer(wy, wx))[None, None]
            out[:, :, y0:y0 + th, x0:x0 + tw] += tile_out * weight
            wsum[:, :, y0:y0 + th, x0:x0 + tw] += weight
    return (out / wsum).float()


def _net_device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    for b in net.buffers():
        return b.device
    return torch.device('cpu')


def enhance_image(net: nn.Module,
                  img: np.ndarray,
                  tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                  tile_overlap: int = DEFAULT_TILE_OVERLAP,
                  device: Union[str, torch.device, None] = None) -> np.ndarray:
    """Enhance one image given as an array.

    Args:
        img (np.ndarray): ``HxW`` / ``HxWx1`` grayscale, ``HxWx3`` RGB or
            ``HxWx4`` RGBA; ``uint8``, ``uint16`` or float in [0, 1].
        net (nn.Module): Network from :func:`init_enhancer`.
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
    img = np.asarray(img)
    dtype = img.dtype
    if dtype == np.uint8:
        scale = 255.
    elif dtype == np.uint16:
        scale = 65535.
    elif np.issubdtype(dtype, np.floating):
        scale = 1.
    else:
        raise TypeError(f'unsupported image dtype {dtype}')
    squeeze = img.ndim == 2
    arr = img[..., None] if squeeze else img
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected HxW, HxWx1, HxWx3 or HxWx4, got '
                         f'{img.shape}')
    channels = arr.shape[2]
    alpha = arr[..., 3:] if channels == 4 else None
    rgb = arr[..., :3] if channels >= 3 else np.repeat(arr, 3, axis=2)

    if device is None:
        device = _net_device(net)
    else:
        device = torch.device(device)
        net.to(device)
    x = torch.from_numpy(
        np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) /
        scale)[None].to(device)
    y = enhance_tensor(net, x, tile_size, tile_overlap)[0]
    y = y.clamp_(0, 1).numpy().transpose(1, 2, 0)

    if channels == 1:
        y = (0.299 * y[..., 0] + 0.587 * y[..., 1] +
             0.114 * y[..., 2])[..., None]
    if scale != 1.:
        y = np.clip(np.round(y * scale), 0, scale).astype(dtype)
    else:
        y = y.astype(dtype)
    if alpha is not None:
        y = np.concatenate([y, alpha.astype(y.dtype)], axis=2)
    if squeeze:
        y = y[..., 0]
    return y


# --------------------------------------------------------------------------
# Files and folders
# --------------------------------------------------------------------------
def _exif_orientation(path: str) -> int:
    """EXIF orientation tag (1..8) of a file, 1 when absent/unreadable."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 (no EXIF is the normal case)
        return 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels so that they are in display orientation."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    if orientation in ops:
        arr = np.ascontiguousarray(ops[orientation](arr))
    return arr


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB(A)/gray in its own bit depth.

    EXIF orientation is applied (pixels come back in display orientation);
    16-bit files stay ``uint16``; alpha is kept.

    Args:
        path (str): Image file.

    Returns:
        np.ndarray: ``HxW`` gray, ``HxWx3`` RGB or ``HxWx4`` RGBA.

    Raises:
        ValueError: The file cannot be decoded.
    """
    import cv2
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError('empty file')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError('cannot decode image (corrupt or unsupported format)')
    if img.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(img, 0, 1).astype(np.float32)
        else:
            raise ValueError(f'unsupported pixel type {img.dtype}')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    elif img.ndim != 2:
        raise ValueError(f'unsupported image layout {img.shape}')
    # IMREAD_UNCHANGED ignores EXIF orientation; apply it ourselves.
    return _apply_orientation(np.ascontiguousarray(img),
                              _exif_orientation(path))


def write_image_atomic(path: str, img: np.ndarray) -> None:
    """Write an RGB(A)/gray image so that ``path`` is never half-written.

    The image is encoded in memory, written to a temporary file in the same
    folder and moved onto ``path`` with :func:`os.replace`.

    Args:
        path (str): Destination; its extension chooses the format.
        img (np.ndarray): ``HxW``, ``HxWx3`` RGB or ``HxWx4`` RGBA.
    """
    import cv2
    ext = osp.splitext(path)[1].lower()
    arr = img
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    if arr.dtype == np.float32:
        arr = np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    if not ok:
        raise ValueError(f'cannot encode image as {ext}')
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + osp.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(buf.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _adapt_to_format(img: np.ndarray, ext: str) -> Tuple[np.ndarray, List[str]]:
    """Drop what the output format cannot hold; return the notes."""
    notes = []
    if ext in _NO_ALPHA_EXTS and img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
        notes.append(f'alpha dropped ({ext} has no alpha)')
    if ext in _8BIT_ONLY_EXTS and img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.).astype(np.uint8)
        notes.append(f'16-bit reduced to 8-bit ({ext} is 8-bit)')
    return img, notes


def _collect_inputs(input_path: str, output_path: str,
                    ext: Optional[str]) -> Tuple[List[Tuple[str, str]], List]:
    """Pairs (source, destination) and the ignored non-image files."""
    def dest_name(rel: str) -> str:
        if ext:
            rel = osp.splitext(rel)[0] + ext
        return rel

    pairs, ignored = [], []
    if osp.isdir(input_path):
        for root, dirs, files in os.walk(input_path):
            dirs.sort()
            for name in sorted(files):
                src = osp.join(root, name)
                rel = osp.relpath(src, input_path)
                if osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
                    pairs.append((src, osp.join(output_path, dest_name(rel))))
                else:
                    ignored.append(src)
    elif osp.isfile(input_path):
        out_ext = osp.splitext(output_path)[1].lower()
        if out_ext in IMG_EXTENSIONS:
            dst = output_path
            if ext:
                dst = osp.splitext(dst)[0] + ext
        else:  # an output folder
            dst = osp.join(output_path, dest_name(osp.basename(input_path)))
        pairs.append((input_path, dst))
    else:
        raise FileNotFoundError(f'input {input_path} does not exist')
    return pairs, ignored


def enhance_path(net: nn.Module,
                 input: str,
                 output: str,
                 tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 device: Union[str, torch.device, None] = None,
                 ext: Optional[str] = None,
                 progress: bool = True) -> Dict:
    """Enhance an image file or every image in a folder tree.

    Args:
        net (nn.Module): Network from :func:`init_enhancer`.
        input (str): An image file or a folder (searched recursively for
            ``IMG_EXTENSIONS``).
        output (str): For a folder input, the output folder (relative paths and
            names are kept). For a file input, an output file (if it has an
            image extension) or a folder.
        tile_size (int, optional): See :func:`enhance_image`.
        tile_overlap (int): See :func:`enhance_image`.
        device (str | torch.device, optional): See :func:`enhance_image`.
        ext (str, optional): Output extension (e.g. ``'.png'``); default
            keeps each input's extension.
        progress (bool): Show a progress bar. Default: True.

    Returns:
        dict: ``processed`` (int), ``skipped`` (int), ``skipped_files``
        (list of ``{'path', 'reason'}``), ``ignored`` (non-image files, int),
        ``notes`` (list of ``{'path', 'note'}``: e.g. alpha dropped for a JPEG
        output), ``outputs`` (list of written paths).
    """
    if ext:
        ext = ext.lower() if ext.startswith('.') else '.' + ext.lower()
        if ext not in IMG_EXTENSIONS:
            raise ValueError(f'unsupported output extension {ext}; choose '
                             f'one of {IMG_EXTENSIONS}')
    pairs, ignored = _collect_inputs(input, output, ext)
    if device is not None:
        net.to(torch.device(device))
    summary = dict(processed=0, skipped=0, skipped_files=[],
                   ignored=len(ignored), notes=[], outputs=[])
    iterator = pairs
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(pairs), desc='enhance', unit='img')
    for src, dst in iterator:
        try:
            if osp.abspath(src) == osp.abspath(dst):
                raise ValueError('output would overwrite the input')
            try:
                img = read_image(src)
            except Exception as e:  # noqa: BLE001
                raise ValueError(f'unreadable: {e}') from e
            out = enhance_image(net, img, tile_size, tile_overlap)
            out, notes = _adapt_to_format(out, osp.splitext(dst)[1].lower())
            write_image_atomic(dst, out)
        except Exception as e:  # noqa: BLE001  (skip, log, count)
            reason = str(e) or type(e).__name__
            logger.warning('skipped %s: %s', src, reason)
            summary['skipped'] += 1
            summary['skipped_files'].append(dict(path=src, reason=reason))
        else:
            summary['processed'] += 1
            summary['outputs'].append(dst)
            for n in notes:
                summary['notes'].append(dict(path=src, note=n))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return summary
