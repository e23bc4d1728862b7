"""Temporal stability of a video: frame-to-frame change and flicker.

:func:`temporal_change` gives the mean absolute frame-to-frame change of a
clip (the figure docs/enhance.md reports for the enhanced and the input
clip), its mean level, their ratio, and the brightness jitter (the mean
absolute second difference of the per-frame mean level: 0 for a constant or
linearly ramping brightness, large when the brightness jumps from frame to
frame, i.e. flickers).
"""
from typing import Dict, Iterable

import numpy as np


def temporal_change(frames: Iterable[np.ndarray]) -> Dict[str, float]:
    """Frame-to-frame change of a clip.

    Args:
        frames (Iterable[np.ndarray]): ``HxW(xC)`` frames of one size, in
            order (uint8, or float in [0, 1]: both measured on the 0-255
            scale); at least 3.

    Returns:
        dict[str, float]: ``mean_abs_change`` (mean over frame pairs and
        pixels of ``|f_t - f_{t-1}|``, 0-255), ``mean_level`` (mean of all
        pixels, 0-255), ``relative_change`` (their ratio: comparable between
        a dark input and a bright output), ``brightness_jitter`` (mean of
        ``|m_{t+1} - 2 m_t + m_{t-1}|`` over the per-frame means ``m_t``,
        0-255) and ``relative_jitter`` (it over ``mean_level``).

    Raises:
        ValueError: Fewer than 3 frames, or frames of different shapes.
    """
    prev, changes, levels, shape = None, [], [], None
    for f in frames:
        f = np.asarray(f)
        f = f.astype(np.float64) * (255.0 if f.dtype.kind == 'f' else 1.0)
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(f'frame of shape {f.shape} in a clip of '
                             f'{shape}')
        levels.append(f.mean())
        if prev is not None:
            changes.append(np.abs(f - prev).mean())
        prev = f
    if len(levels) < 3:
        raise ValueError(f'need at least 3 frames, got {len(levels)}')
    m = np.asarray(levels)
    level = float(m.mean())
    change = float(np.mean(changes))
    jitter = float(np.abs(m[2:] - 2 * m[1:-1] + m[:-2]).mean())
    return dict(mean_abs_change=change, mean_level=level,
                relative_change=change / level if level else float('nan'),
                brightness_jitter=jitter,
                relative_jitter=jitter / level if level else float('nan'))


__all__ = ['temporal_change']
