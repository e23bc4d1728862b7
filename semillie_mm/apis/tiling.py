"""Tiled inference for large images.

An image whose height or width exceeds ``tile_size`` is cut into overlapping
tiles; each tile's output is multiplied by a blending weight (1 inside, a
raised cosine over the overlap, 0 over the first quarter of the overlap where
the tile lacks context), weighted outputs and weights are accumulated on the
CPU in float64, and the sum is divided by the weights. See docs/enhance.md,
section "Tiling and memory".
"""
from typing import Callable, List, Optional

import numpy as np
import torch
import torch.nn as nn

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
    (:func:`_axis_weight` along both axes), weighted outputs and weights are
    accumulated, and the sum is divided by the weights. Only one tile is on
    the network's device at a time; the accumulators live on the CPU.

    Args:
        net (nn.Module): Enhancement network.
        x (Tensor): ``(B, 3, H, W)`` on the network's device, RGB in [0, 1].
        tile_size (int, optional): Tile side; None or <= 0 disables tiling.
        tile_overlap (int): Overlap between neighbouring tiles.
        before_tile (callable, optional): Called before each tile (e.g.
            :meth:`~semillie_mm.utils.cpu_threads.CPUThreadGovernor.update`).

    Returns:
        Tensor: ``(B, C, H, W)`` float32 output on the CPU (not clamped).
    """
    b, _, h, w = x.shape
    if not needs_tiling(h, w, tile_size):
        return net(x).float().cpu()
    check_tiling(tile_size, tile_overlap)
    th, tw = min(tile_size, h), min(tile_size, w)
    ys = _tile_starts(h, th, tile_overlap)
    xs = _tile_starts(w, tw, tile_overlap)
    out = None
    wsum = torch.zeros(1, 1, h, w, dtype=torch.float64)
    for iy, y0 in enumerate(ys):
        wy = _axis_weight(th, tile_overlap, iy > 0, iy < len(ys) - 1)
        for ix, x0 in enumerate(xs):
            wx = _axis_weight(tw, tile_overlap, ix > 0, ix < len(xs) - 1)
            if before_tile is not None:
                before_tile()
            tile_out = net(x[:, :, y0:y0 + th, x0:x0 + tw]).double().cpu()
            weight = torch.from_numpy(np.outer(wy, wx))[None, None]
            if out is None:
                out = torch.zeros(b, tile_out.shape[1], h, w,
                                  dtype=torch.float64)
            out[:, :, y0:y0 + th, x0:x0 + tw] += tile_out * weight
            wsum[:, :, y0:y0 + th, x0:x0 + tw] += weight
    return (out / wsum).float()
