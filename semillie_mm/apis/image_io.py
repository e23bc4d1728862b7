"""Image files and arrays for inference: reading, writing, conversions.

- :func:`read_image`: a file -> RGB(A)/gray array in its own bit depth, in
  display orientation (EXIF), decoded with mmcv;
- :func:`image_to_tensor` / :func:`tensor_to_image`: arrays of any supported
  layout and dtype <-> the network's ``(3, H, W)`` RGB in [0, 1];
- :func:`adapt_to_format` and :func:`write_image_atomic`: write what the
  destination format can hold, never leaving a half-written file;
- :func:`list_images`: the image files of a folder tree;
- :func:`side_by_side`: the ``input | output`` picture.

See docs/enhance.md, section "Input handling".
"""
import io
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_NO_ALPHA_EXTS = ('.jpg', '.jpeg', '.bmp')
_8BIT_ONLY_EXTS = ('.jpg', '.jpeg', '.bmp', '.webp')


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
def _probe(data: bytes) -> Tuple[bool, int]:
    """``(has_alpha, exif_orientation)`` from the file header (Pillow, lazy:
    no pixel is decoded). A file Pillow does not know counts as having alpha,
    so that everything OpenCV decodes is kept."""
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as im:
            alpha = im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
                im.mode == 'P' and 'transparency' in im.info)
            orientation = int(im.getexif().get(0x0112, 1) or 1)
        return alpha, orientation
    except Exception:  # noqa: BLE001  (OpenCV may still decode it)
        return True, 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels of an EXIF-oriented image into display
    orientation (only needed where OpenCV does not do it: alpha images)."""
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

    Decoding is mmcv's (``mmcv.imfrombytes``, OpenCV backend). Images
    without alpha are decoded with ``IMREAD_ANYDEPTH | IMREAD_ANYCOLOR``, so
    that OpenCV keeps 16 bits and grayscale and applies the EXIF orientation;
    images with alpha need ``IMREAD_UNCHANGED``, which ignores EXIF, so their
    orientation (read from the header with Pillow) is applied here.

    Args:
        path (str): Image file.

    Returns:
        np.ndarray: ``HxW`` gray, ``HxWx3`` RGB or ``HxWx4`` RGBA; ``uint8``,
        ``uint16`` or ``float32`` in [0, 1]; in display orientation.

    Raises:
        ValueError: The file is empty or cannot be decoded.
    """
    import cv2
    import mmcv
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise ValueError('empty file')
    has_alpha, orientation = _probe(data)
    flag = 'unchanged' if has_alpha else (cv2.IMREAD_ANYDEPTH
                                          | cv2.IMREAD_ANYCOLOR)
    try:
        img = mmcv.imfrombytes(data, flag=flag, backend='cv2')
    except cv2.error as e:
        raise ValueError(f'cannot decode image ({e.__class__.__name__})'
                         ) from e
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
        img = mmcv.bgr2rgb(img) if img.dtype != np.float32 else img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    elif img.ndim != 2:
        raise ValueError(f'unsupported image layout {img.shape}')
    img = np.ascontiguousarray(img)
    if has_alpha:
        img = _apply_orientation(img, orientation)
    return img


def list_images(folder: str) -> Tuple[List[str], List[str]]:
    """The image files of a folder tree, in a stable order.

    Args:
        folder (str): The folder (searched recursively).

    Returns:
        tuple[list[str], list[str]]: Paths of the files with an
        ``IMG_EXTENSIONS`` extension (sorted by folder, then name), and the
        other files (ignored).
    """
    images, ignored = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = osp.join(root, name)
            if osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
                images.append(path)
            else:
                ignored.append(path)
    return images, ignored


# --------------------------------------------------------------------------
# Arrays <-> network tensors
# --------------------------------------------------------------------------
def image_to_tensor(img: np.ndarray) -> Tuple[torch.Tensor, Dict]:
    """An image array -> the network's input and what is needed to undo it.

    Args:
        img (np.ndarray): ``HxW`` / ``HxWx1`` grayscale, ``HxWx3`` RGB or
            ``HxWx4`` RGBA; ``uint8``, ``uint16`` or float in [0, 1].

    Returns:
        tuple[Tensor, dict]: ``(3, H, W)`` float32 RGB in [0, 1] (gray is
        replicated, alpha left out) and the layout: ``dtype``, ``scale``
        (255, 65535 or 1), ``channels`` (1, 3 or 4), ``squeeze`` (2-D input),
        ``alpha`` (the alpha plane or None).

    Raises:
        TypeError: Unsupported dtype.
        ValueError: Unsupported shape.
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
    alpha = arr[..., 3:].copy() if channels == 4 else None
    rgb = arr[..., :3] if channels >= 3 else np.repeat(arr, 3, axis=2)
    x = torch.from_numpy(
        np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) /
        np.float32(scale))
    return x, dict(dtype=dtype, scale=scale, channels=channels,
                   squeeze=squeeze, alpha=alpha)


def tensor_to_image(y: torch.Tensor, layout: Dict) -> np.ndarray:
    """The network's output -> an array laid out like the input.

    Args:
        y (Tensor): ``(3, H, W)`` RGB, nominally in [0, 1] (clamped here).
        layout (dict): The second value of :func:`image_to_tensor`.

    Returns:
        np.ndarray: Same shape and dtype as the input image. Grayscale stays
        grayscale (ITU-R BT.601 luma of the enhanced RGB); the alpha plane
        is copied unchanged.
    """
    y = y.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    if layout['channels'] == 1:
        y = (0.299 * y[..., 0] + 0.587 * y[..., 1] +
             0.114 * y[..., 2])[..., None]
    scale, dtype = layout['scale'], layout['dtype']
    if scale != 1.:
        y = np.clip(np.round(y * scale), 0, scale).astype(dtype)
    else:
        y = y.astype(dtype)
    if layout['alpha'] is not None:
        y = np.concatenate([y, layout['alpha'].astype(y.dtype)], axis=2)
    if layout['squeeze']:
        y = y[..., 0]
    return y


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any supported image array -> ``HxWx3`` uint8 RGB (for display).

    Args:
        img (np.ndarray): As :func:`image_to_tensor` accepts.

    Returns:
        np.ndarray: ``HxWx3`` uint8 (alpha dropped, gray replicated,
        16-bit divided by 257, float scaled by 255).
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3] if img.shape[2] >= 3 else np.repeat(img, 3, axis=2)
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        img = np.clip(np.round(img * 255.), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def side_by_side(inp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The ``input | output`` picture.

    Args:
        inp (np.ndarray): The input image.
        out (np.ndarray): Its enhancement (same height and width).

    Returns:
        np.ndarray: ``Hx(2W)x3`` uint8 RGB, the input on the left.
    """
    return np.concatenate([to_rgb8(inp), to_rgb8(out)], axis=1)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
def adapt_to_format(img: np.ndarray, ext: str) -> Tuple[np.ndarray, List[str]]:
    """Drop what the output format cannot hold.

    Args:
        img (np.ndarray): The image (RGB(A)/gray).
        ext (str): The destination's extension, e.g. ``'.jpg'``.

    Returns:
        tuple[np.ndarray, list[str]]: The image to write and notes on what
        was dropped (alpha for JPEG/BMP, 16 bits for JPEG/BMP/WebP).
    """
    ext = ext.lower()
    notes = []
    if ext in _NO_ALPHA_EXTS and img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
        notes.append(f'alpha dropped ({ext} has no alpha)')
    if ext in _8BIT_ONLY_EXTS and img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.).astype(np.uint8)
        notes.append(f'16-bit reduced to 8-bit ({ext} is 8-bit)')
    return img, notes


def write_image_atomic(path: str, img: np.ndarray) -> None:
    """Write an RGB(A)/gray image so that ``path`` is never half-written.

    The image is encoded by ``mmcv.imwrite`` into a temporary file
    (``.NAME.XXXX.tmp.EXT``) in the destination folder, flushed to disk and
    moved onto ``path`` with :func:`os.replace`; on any error the temporary
    file is removed.

    Args:
        path (str): Destination; its extension chooses the format.
        img (np.ndarray): ``HxW``, ``HxWx3`` RGB or ``HxWx4`` RGBA; uint8,
            uint16, or float32 in [0, 1] (written as 8-bit).

    Raises:
        ValueError: The image cannot be encoded in that format.
    """
    import mmcv
    ext = osp.splitext(path)[1].lower()
    if ext not in IMG_EXTENSIONS:
        raise ValueError(f'unsupported output extension {ext!r}; choose one '
                         f'of {", ".join(IMG_EXTENSIONS)}')
    arr = img
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        arr = np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = mmcv.rgb2bgr(np.ascontiguousarray(arr))
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp' + ext, dir=folder)
    os.close(fd)
    try:
        try:
            ok = mmcv.imwrite(np.ascontiguousarray(arr), tmp)
        except Exception as e:  # noqa: BLE001  (cv2.error, IOError)
            raise ValueError(f'cannot encode image as {ext}: {e}') from e
        if not ok:
            raise ValueError(f'cannot encode image as {ext}')
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def output_extension(ext: Optional[str]) -> Optional[str]:
    """Normalise an output extension (``'png'`` -> ``'.png'``).

    Args:
        ext (str, optional): The extension, with or without the dot.

    Returns:
        str | None: ``'.ext'`` in lower case, or None.

    Raises:
        ValueError: Not an ``IMG_EXTENSIONS`` extension.
    """
    if not ext:
        return None
    ext = ext.lower() if ext.startswith('.') else '.' + ext.lower()
    if ext not in IMG_EXTENSIONS:
        raise ValueError(f'unsupported output extension {ext}; choose one '
                         f'of {", ".join(IMG_EXTENSIONS)}')
    return ext
