"""Image files and arrays for inference: reading, writing, conversions.

- :func:`read_image`: a file -> RGB(A)/gray array in its own bit depth, in
  display orientation (EXIF), decoded with mmcv, refused when its header
  declares more than :func:`max_image_pixels` pixels;
- :func:`image_to_tensor` / :func:`tensor_to_image`: arrays of any supported
  layout and dtype <-> the network's ``(3, H, W)`` RGB in [0, 1];
- :func:`adapt_to_format` and :func:`write_image_atomic`: write what the
  destination format can hold, never leaving a half-written file;
- :func:`list_images`: the image files of a folder tree;
- :func:`side_by_side`: the ``input | output`` picture.

See docs/enhance.md, sections "Input handling" and "Large images".
"""
import os
import os.path as osp
import re
import warnings
from typing import BinaryIO, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..compat import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, OPENCV_MAX_PIXELS, OPENCV_MAX_PIXELS_ENV
from ..utils.fileio import IMG_EXTENSIONS, atomic_path

_NO_ALPHA_EXTS = ('.jpg', '.jpeg', '.bmp', '.ppm')
_COLOUR_ONLY_EXTS = ('.ppm', )
_8BIT_ONLY_EXTS = ('.jpg', '.jpeg', '.bmp', '.webp')


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
class ImageTooLargeError(ValueError):
    """An image file declares more pixels than :func:`max_image_pixels`."""


def max_image_pixels() -> int:
    """The largest image, in pixels, that :func:`read_image` decodes.

    Returns:
        int: ``SEMILLIE_MAX_PIXELS`` from the environment (read at each
        call), default 100 megapixels (about 5 GB of CPU memory in the tiled
        enhancement path; docs/enhance.md, "Large images").

    Raises:
        ValueError: ``SEMILLIE_MAX_PIXELS`` is not a whole number > 0.
    """
    value = os.environ.get(MAX_PIXELS_ENV, '').strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f'{MAX_PIXELS_ENV} must be a whole number of '
                         f'pixels > 0, got {value!r}')
    return number


def _too_large(pixels: int, cap: int,
               size: Optional[Tuple[int, int]] = None) -> ImageTooLargeError:
    what = f'{size[0]} x {size[1]} = ' if size else ''
    return ImageTooLargeError(
        f'image too large: {what}{pixels:,} pixels, over the limit of '
        f'{cap:,} ({MAX_PIXELS_ENV}; raise it if the machine has the '
        'memory, see docs/enhance.md)')


def _probe(f: BinaryIO, cap: int
           ) -> Tuple[bool, int, Optional[Tuple[int, int]]]:
    """``(has_alpha, exif_orientation, (width, height))`` from the file
    header (Pillow, lazy: no pixel is decoded). A file Pillow does not know
    counts as having alpha, so that everything OpenCV decodes is kept; its
    size is then None.

    Raises:
        ImageTooLargeError: Pillow refuses the size: over twice
            ``PIL.Image.MAX_IMAGE_PIXELS``, its decompression-bomb limit
            (the message compares it with ``cap``).
    """
    from PIL import Image
    try:
        with warnings.catch_warnings():
            # the size is checked by the caller against its own cap
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(f) as im:
                alpha = im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
                    im.mode == 'P' and 'transparency' in im.info)
                orientation = int(im.getexif().get(0x0112, 1) or 1)
                size = im.size
        return alpha, orientation, size
    except Image.DecompressionBombError as e:
        # Pillow's message: 'Image size (N pixels) exceeds limit of ...'
        found = re.search(r'\((\d+) pixels\)', str(e))
        pixels = int(found.group(1)) if found else None
        if pixels is not None and pixels > cap:
            raise _too_large(pixels, cap) from e
        limit = 2 * Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(
            f'image too large: {pixels or "more than " + str(limit)} '
            f'pixels, over Pillow\'s decompression-bomb limit of {limit:,} '
            '(raise PIL.Image.MAX_IMAGE_PIXELS as well as '
            f'{MAX_PIXELS_ENV})') from e
    except Exception:  # noqa: BLE001  (OpenCV may still decode it)
        return True, 1, None


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


def _probe_checked(f: BinaryIO, cap: int
                   ) -> Tuple[bool, int, Optional[Tuple[int, int]]]:
    """:func:`_probe`, then refuse what may not be decoded.

    Raises:
        ValueError: The file is empty.
        ImageTooLargeError: The header declares more than ``cap`` pixels,
            or Pillow cannot read it and OpenCV's cap is above ``cap``.
    """
    has_alpha, orientation, size = _probe(f, cap)
    if size is not None:
        if size[0] * size[1] > cap:
            raise _too_large(size[0] * size[1], cap, size)
        return has_alpha, orientation, size
    f.seek(0, os.SEEK_END)
    if f.tell() == 0:
        raise ValueError('empty file')
    if OPENCV_MAX_PIXELS > cap:
        raise ImageTooLargeError(
            'cannot read the image size from the header, and OpenCV\'s own '
            f'limit ({OPENCV_MAX_PIXELS_ENV}={OPENCV_MAX_PIXELS}) is above '
            f'{MAX_PIXELS_ENV}={cap}: import semillie_mm before cv2, or '
            f'set {OPENCV_MAX_PIXELS_ENV}')
    return has_alpha, orientation, size


def check_image_size(path: str) -> Optional[Tuple[int, int]]:
    """Check an image file's size from its header, decoding no pixel.

    Args:
        path (str): Image file.

    Returns:
        tuple[int, int] | None: ``(width, height)``, or None when Pillow
        cannot read the header (OpenCV's cap then applies, see
        :func:`read_image`).

    Raises:
        ImageTooLargeError: More pixels than :func:`max_image_pixels`.
        ValueError: The file is empty.
    """
    with open(path, 'rb') as f:
        return _probe_checked(f, max_image_pixels())[2]


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB(A)/gray in its own bit depth.

    The size is read from the header first (Pillow, which decodes no pixel
    for it): an image of more than :func:`max_image_pixels` pixels is
    refused before it is decoded. A file whose header Pillow cannot read is
    decoded only while OpenCV's own cap (``OPENCV_IO_MAX_IMAGE_PIXELS``, set
    by :mod:`semillie_mm.compat`) is not above that limit.

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
        ImageTooLargeError: More pixels than :func:`max_image_pixels`.
        ValueError: The file is empty or cannot be decoded.
    """
    import cv2
    import mmcv
    with open(path, 'rb') as f:
        has_alpha, orientation, _ = _probe_checked(f, max_image_pixels())
        f.seek(0)
        data = f.read()
    flag = 'unchanged' if has_alpha else (cv2.IMREAD_ANYDEPTH
                                          | cv2.IMREAD_ANYCOLOR)
    try:
        img = mmcv.imfrombytes(data, flag=flag, backend='cv2')
    except cv2.error as e:
        if 'CV_IO_MAX_IMAGE' in str(e):  # OpenCV's own size check
            raise ImageTooLargeError(
                f'image too large: over OpenCV\'s limit of '
                f'{OPENCV_MAX_PIXELS:,} pixels ({OPENCV_MAX_PIXELS_ENV})'
            ) from e
        raise ValueError(f'cannot decode image ({e.__class__.__name__})'
                         ) from e
    del data
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
        other files (ignored): files of other extensions and dot-files
        (hidden files, such as the temporary files of
        :func:`write_image_atomic` or macOS's ``._NAME.jpg``).
    """
    images, ignored = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = osp.join(root, name)
            if name.startswith('.'):
                ignored.append(path)
            elif osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
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
    # plane by plane into the float32 result: no other full-size temporary
    x = np.empty((3, ) + arr.shape[:2], np.float32)
    for c in range(3):
        np.divide(arr[..., c if channels >= 3 else 0], np.float32(scale),
                  out=x[c], dtype=np.float32)
    x = torch.from_numpy(x)
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
    # one float32 copy (``y`` is left alone), then in place
    y = y.detach().cpu().float().clamp(0, 1).numpy().transpose(1, 2, 0)
    if layout['channels'] == 1:
        y = (0.299 * y[..., 0] + 0.587 * y[..., 1] +
             0.114 * y[..., 2])[..., None]
    scale, dtype = layout['scale'], layout['dtype']
    if scale != 1.:
        y *= np.float32(scale)
        np.round(y, out=y)
        np.clip(y, 0, scale, out=y)
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
        was dropped (alpha for JPEG/BMP/PPM, 16 bits for JPEG/BMP/WebP) or
        added (gray replicated to RGB for PPM).
    """
    ext = ext.lower()
    notes = []
    if ext in _NO_ALPHA_EXTS and img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
        notes.append(f'alpha dropped ({ext} has no alpha)')
    if ext in _COLOUR_ONLY_EXTS and (img.ndim == 2 or img.shape[2] == 1):
        img = np.repeat(img.reshape(img.shape[:2] + (1, )), 3, axis=2)
        notes.append(f'gray written as RGB ({ext} is colour only)')
    if ext in _8BIT_ONLY_EXTS and img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.).astype(np.uint8)
        notes.append(f'16-bit reduced to 8-bit ({ext} is 8-bit)')
    return img, notes


def write_image_atomic(path: str, img: np.ndarray) -> None:
    """Write an RGB(A)/gray image so that ``path`` is never half-written.

    The image is encoded by ``mmcv.imwrite`` into a temporary dot-file
    (``.NAME.XXXXXXXX.tmp.EXT``, which :func:`list_images` ignores) in the
    destination folder, flushed to disk and moved onto ``path`` with
    :func:`os.replace`; on any error (KeyboardInterrupt included) the
    temporary file is removed. The file gets the mode of any new file,
    ``0o666`` less the umask (the temporary file is created with that mode,
    not with ``mkstemp``'s ``0o600``).

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
    with atomic_path(path, suffix='.tmp' + ext) as tmp:
        try:
            ok = mmcv.imwrite(np.ascontiguousarray(arr), tmp)
        except Exception as e:  # noqa: BLE001  (cv2.error, IOError)
            raise ValueError(f'cannot encode image as {ext}: {e}') from e
        if not ok:
            raise ValueError(f'cannot encode image as {ext}')


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
