"""Tiled inference for large images.

An image whose height or width exceeds ``tile_size`` is cut into overlapping
tiles; each tile's output is multiplied by a blending weight (1 inside, a
raised cosine over the overlap, 0 over the first quarter of the overlap where
the tile lacks context) and accumulated into one float32 buffer on the CPU,
which is then divided in place by the summed weights. The weights of a tile
are the outer product of two 1-D profiles and the tiles form a grid, so the
summed weights are the outer product of two 1-D sums: no ``H x W`` weight
buffer is needed. Working memory on the CPU is the input (12 bytes per
pixel) plus the output (12 bytes per pixel); only one tile is on the
network's device at a time. See docs/enhance.md, section "Tiling and
memory".
"""
from typing import Callable, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from .image_io import image_to_tensor, tensor_to_image

DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64


def check_tiling(tile_size: Optional[int], tile_overlap: int) -> None:
    """Check tiling arguments.

    Args:
        tile_size (int, optional): Tile side; None or <= 0 disables tiling.
        tile_overlap (int): Overlap between neighbouring tiles.

    Raises:
        ValueError: ``tile_overlap`` is not in ``[0, tile_size)``.
    """
    if tile_size and tile_size > 0 and not 0 <= tile_overlap < tile_size:
        raise ValueError(f'tile_overlap ({tile_overlap}) must be in '
                         f'[0, tile_size={tile_size})')


def needs_tiling(height: int, width: int, tile_size: Optional[int]) -> bool:
    """Whether an image of this size is processed in tiles.

    Args:
        height (int): Image height.
        width (int): Image width.
        tile_size (int, optional): Tile side; None or <= 0 disables tiling.

    Returns:
        bool: True when tiling is on and a side exceeds ``tile_size``.
    """
    return bool(tile_size) and tile_size > 0 and (height > tile_size
                                                  or width > tile_size)


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


def _net_device(net: nn.Module) -> torch.device:
    """The device of the network's first parameter (or buffer); CPU."""
    for p in net.parameters():
        return p.device
    for b in net.buffers():
        return b.device
    return torch.device('cpu')


@torch.no_grad()
def enhance_tensor(net: nn.Module,
                   x: torch.Tensor,
                   tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                   tile_overlap: int = DEFAULT_TILE_OVERLAP,
                   before_tile: Optional[Callable[[], object]] = None
                   ) -> torch.Tensor:
    """Run ``net`` on a ``(B, 3, H, W)`` tensor, in tiles when it is large.

    Tiling is used when ``tile_size`` is set and ``H`` or ``W`` exceeds it.
    Tiles of ``tile_size`` (clipped to the image) overlap by at least
    ``tile_overlap``; each output is multiplied by its blending weight
    (:func:`_axis_weight` along both axes) and added into a float32 buffer
    on the CPU, which is divided in place by the summed weights (kept as two
    1-D sums, see the module docstring). Each tile is moved to the network's
    device on its own, so a large image on the CPU never goes there whole;
    the CPU working memory is ``x`` plus the ``(B, C, H, W)`` float32 output.

    Args:
        net (nn.Module): Enhancement network.
        x (Tensor): ``(B, 3, H, W)`` RGB in [0, 1], on the CPU (best for
            large images) or on the network's device.
        tile_size (int, optional): Tile side; None or <= 0 disables tiling.
        tile_overlap (int): Overlap between neighbouring tiles.
        before_tile (callable, optional): Called before each tile (e.g.
            :meth:`~semillie_mm.utils.cpu_threads.CPUThreadGovernor.update`).

    Returns:
        Tensor: ``(B, C, H, W)`` float32 output on the CPU (not clamped).
    """
    device = _net_device(net)
    b, _, h, w = x.shape
    if not needs_tiling(h, w, tile_size):
        return net(x.to(device)).float().cpu()
    check_tiling(tile_size, tile_overlap)
    th, tw = min(tile_size, h), min(tile_size, w)
    ys = _tile_starts(h, th, tile_overlap)
    xs = _tile_starts(w, tw, tile_overlap)
    wys = [_axis_weight(th, tile_overlap, i > 0, i < len(ys) - 1)
           for i in range(len(ys))]
    wxs = [_axis_weight(tw, tile_overlap, i > 0, i < len(xs) - 1)
           for i in range(len(xs))]
    # the summed weights of a grid of outer products: an outer product
    wsum_y = np.zeros(h)
    for y0, wy in zip(ys, wys):
        wsum_y[y0:y0 + th] += wy
    wsum_x = np.zeros(w)
    for x0, wx in zip(xs, wxs):
        wsum_x[x0:x0 + tw] += wx
    out = None
    for y0, wy in zip(ys, wys):
        for x0, wx in zip(xs, wxs):
            if before_tile is not None:
                before_tile()
            tile = x[:, :, y0:y0 + th, x0:x0 + tw].to(device)
            tile_out = net(tile).float().cpu()
            del tile
            weight = torch.from_numpy(np.outer(wy, wx).astype(np.float32))
            if out is None:
                out = torch.zeros(b, tile_out.shape[1], h, w,
                                  dtype=torch.float32)
            # fused: no temporary (and ``tile_out`` may be a view of ``x``)
            out[:, :, y0:y0 + th, x0:x0 + tw].addcmul_(tile_out, weight)
    out.div_(torch.from_numpy(wsum_y.astype(np.float32)).view(1, 1, h, 1))
    out.div_(torch.from_numpy(wsum_x.astype(np.float32)).view(1, 1, 1, w))
    return out


def enhance_image(net: nn.Module,
                  img: np.ndarray,
                  tile_size: Optional[int] = DEFAULT_TILE_SIZE,
                  tile_overlap: int = DEFAULT_TILE_OVERLAP,
                  device: Union[str, torch.device, None] = None) -> np.ndarray:
    """Enhance one image array with a network.

    Args:
        net (nn.Module): Network from
            :func:`~semillie_mm.apis.inferencer.init_enhancer` (or
            :meth:`~semillie_mm.apis.SemiLLIEInferencer.get_network`).
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
