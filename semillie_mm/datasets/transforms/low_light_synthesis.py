# Copyright (c) semillie-mm contributors. All rights reserved.
"""Low-light image synthesis with a physical camera model.

The paired VisDrone-derived set of Semi-LLIE (paper Sec. IV-B) pairs clear
daytime images with *synthesised* low-light versions; the paper does not
publish its synthesis. This module provides a documented physical model that
the dataset converter (``tools/dataset_converters/visdrone_lowlight.py``), the
embedded demo data (:mod:`semillie_mm.datasets.demo_data`) and on-the-fly
training pipelines (:class:`LowLightSynthesis`) share.

Model (per pixel and channel, all arithmetic in float64)::

    x     = img / 255                                  # display-referred [0, 1]
    lin   = linearise(x)                               # inverse sRGB curve or x ** gamma
    m     = exposure * lin                             # under-exposure by a factor k < 1
    y     = shot_gain * Poisson(m / shot_gain)         # photon shot noise
            + N(0, read_std ** 2)                      # read (Gaussian) noise
    y     = clip(y, 0, 1)                              # sensor floor / saturation
    out   = round(255 * delinearise(y))                # re-apply the gamma, 8-bit output

``m / shot_gain`` is the mean photon (electron) count of the pixel, so
``shot_gain`` is the sensor gain in linear units per electron; the shot noise
variance is ``shot_gain * m`` (the Poisson-Gaussian model of Foi et al., 2008:
``var(y) = shot_gain * m + read_std ** 2``). The model is channel-symmetric, so
it gives the same result on RGB and BGR arrays.

Determinism: :func:`synthesize_low_light` draws its noise from
``numpy.random.default_rng(params['noise_seed'])``, so the same parameters
give byte-identical images (with the same NumPy build; NumPy's ``Generator``
streams are stable across versions in practice but not guaranteed).
"""
import copy
import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform

__all__ = [
    'DEFAULT_LOW_LIGHT_RANGES', 'sample_low_light_params',
    'synthesize_low_light', 'LowLightSynthesis'
]

#: Version of the synthesis model; stored in every parameter dict so that a
#: manifest written by one version can be checked by another.
SYNTHESIS_VERSION = 1

#: Default sampling ranges. A ``(low, high)`` pair is sampled, a scalar (or
#: the string ``'srgb'`` for ``gamma``) is used as it is.
#:
#: - ``exposure``: factor k on linear intensity, sampled log-uniformly.
#:   k = 0.02 .. 0.2 maps a mid-grey (128) to about 20 .. 60 (gamma 2.2),
#:   the range of real low-light sets such as LOL / LSRW inputs.
#: - ``gamma``: display gamma g used to linearise (``x ** g``) and to re-apply
#:   (``y ** (1 / g)``); ``'srgb'`` selects the exact IEC 61966-2-1 curve.
#: - ``shot_gain``: Poisson gain (linear units per electron), log-uniform.
#: - ``read_std``: standard deviation of the Gaussian read noise in linear
#:   units, log-uniform.
DEFAULT_LOW_LIGHT_RANGES: Dict[str, object] = {
    'exposure': (0.02, 0.2),
    'gamma': (2.0, 2.6),
    'shot_gain': (2e-4, 4e-3),
    'read_std': (2e-4, 3e-3),
}

# Parameters sampled log-uniformly (scale parameters); the others uniformly.
_LOG_UNIFORM = ('exposure', 'shot_gain', 'read_std')


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055)**2.4)


def _linear_to_srgb(y: np.ndarray) -> np.ndarray:
    """sRGB transfer function (IEC 61966-2-1)."""
    return np.where(y <= 0.0031308, 12.92 * y,
                    1.055 * np.power(y, 1.0 / 2.4) - 0.055)


def _sample_one(rng: np.random.Generator, name: str, spec) -> object:
    """Sample one parameter from a range spec (pair -> random, else fixed)."""
    if isinstance(spec, str):
        if name != 'gamma' or spec != 'srgb':
            raise ValueError(f'Unsupported value {spec!r} for {name!r}; only '
                             "gamma may be the string 'srgb'.")
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f'Range for {name!r} must be (low, high), '
                             f'got {spec!r}.')
        low, high = float(spec[0]), float(spec[1])
        if not low <= high:
            raise ValueError(f'Range for {name!r} has low > high: {spec!r}.')
        if name in _LOG_UNIFORM:
            if low <= 0:
                raise ValueError(f'{name!r} range must be positive: {spec!r}')
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return float(rng.uniform(low, high))
    return float(spec)


def sample_low_light_params(rng: np.random.Generator,
                            ranges: Optional[dict] = None) -> dict:
    """Sample the parameters of one low-light synthesis.

    Args:
        rng (np.random.Generator): Random generator; the result depends only
            on its state.
        ranges (dict, optional): Overrides of :data:`DEFAULT_LOW_LIGHT_RANGES`
            (keys ``exposure``, ``gamma``, ``shot_gain``, ``read_std``); each
            value is a ``(low, high)`` pair or a fixed value. Defaults to None.

    Returns:
        dict: JSON-serialisable parameters ``exposure``, ``gamma`` (float or
        ``'srgb'``), ``shot_gain``, ``read_std`` (floats), ``noise_seed``
        (int in [0, 2**31)) and ``version`` (int).
    """
    spec = dict(DEFAULT_LOW_LIGHT_RANGES)
    if ranges:
        unknown = set(ranges) - set(DEFAULT_LOW_LIGHT_RANGES)
        if unknown:
            raise KeyError(f'Unknown low-light range(s) {sorted(unknown)}; '
                           f'known: {sorted(DEFAULT_LOW_LIGHT_RANGES)}')
        spec.update(ranges)
    params = {}
    for name in ('exposure', 'gamma', 'shot_gain', 'read_std'):
        params[name] = _sample_one(rng, name, spec[name])
    params['noise_seed'] = int(rng.integers(0, 2**31 - 1))
    params['version'] = SYNTHESIS_VERSION
    return params


def _check_params(params: dict) -> None:
    """Raise a clear error for missing or invalid synthesis parameters."""
    missing = [
        k for k in ('exposure', 'gamma', 'shot_gain', 'read_std', 'noise_seed')
        if k not in params
    ]
    if missing:
        raise KeyError(f'Low-light parameters miss {missing}: {params!r}')
    if params.get('version', SYNTHESIS_VERSION) != SYNTHESIS_VERSION:
        raise ValueError(
            f'Parameters were made for synthesis version {params["version"]}, '
            f'this is version {SYNTHESIS_VERSION}.')
    if not params['exposure'] > 0:
        raise ValueError(f'exposure must be > 0, got {params["exposure"]}')
    if params['shot_gain'] < 0 or params['read_std'] < 0:
        raise ValueError('shot_gain and read_std must be >= 0.')
    gamma = params['gamma']
    if not (gamma == 'srgb' or (not isinstance(gamma, str) and gamma > 0)):
        raise ValueError(f"gamma must be > 0 or 'srgb', got {gamma!r}")


def synthesize_low_light(img: np.ndarray, params: dict) -> np.ndarray:
    """Make a low-light version of an 8-bit image.

    Args:
        img (np.ndarray): HxWx3 (or HxW / HxWxC) uint8 image, RGB or BGR
            (the model treats channels alike).
        params (dict): Parameters from :func:`sample_low_light_params`.

    Returns:
        np.ndarray: uint8 array of the same shape; the same ``img`` and
        ``params`` give a byte-identical result.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError('synthesize_low_light expects a uint8 numpy array, '
                        f'got {type(img).__name__} '
                        f'{getattr(img, "dtype", "")}.')
    _check_params(params)
    x = img.astype(np.float64) / 255.0
    gamma = params['gamma']
    if gamma == 'srgb':
        lin = _srgb_to_linear(x)
    else:
        lin = np.power(x, float(gamma))

    mean = float(params['exposure']) * lin
    rng = np.random.default_rng(int(params['noise_seed']))
    shot_gain = float(params['shot_gain'])
    if shot_gain > 0:
        y = shot_gain * rng.poisson(mean / shot_gain).astype(np.float64)
    else:
        y = mean
    read_std = float(params['read_std'])
    if read_std > 0:
        y = y + rng.normal(0.0, read_std, size=y.shape)
    y = np.clip(y, 0.0, 1.0)

    if gamma == 'srgb':
        out = _linear_to_srgb(y)
    else:
        out = np.power(y, 1.0 / float(gamma))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class LowLightSynthesis(BaseTransform):
    """Pipeline transform that replaces images by synthesised low-light ones.

    Typical use builds a low-light input from a clear image on the fly::

        dict(type='LoadImageFromFile', key='gt', channel_order='rgb'),
        dict(type='CopyValues', src_keys=['gt'], dst_keys=['img']),
        dict(type='LowLightSynthesis', keys=['img']),

    All keys of one sample share one parameter draw. The parameters are
    stored in ``results['low_light_params']``.

    Randomness: with ``seed=None`` the parameters come from a generator
    seeded by ``np.random.randint`` (NumPy's global state), so they follow
    mmengine's seeding (``randomness=dict(seed=...)`` in the main process and
    ``worker_init_fn`` in dataloader workers). With an int ``seed`` the
    transform owns a generator seeded once; each call advances it.

    Required Keys:

    - [KEYS]

    Modified Keys:

    - [KEYS]

    Added Keys:

    - low_light_params

    Args:
        keys (list[str]): Image keys to darken. Defaults to ['img'].
        ranges (dict, optional): Parameter ranges, see
            :data:`DEFAULT_LOW_LIGHT_RANGES`. Defaults to None.
        seed (int, optional): Seed of the transform's own generator.
            Defaults to None (use NumPy's global random state).
    """

    def __init__(self,
                 keys: Union[str, Sequence[str]] = ('img', ),
                 ranges: Optional[dict] = None,
                 seed: Optional[int] = None) -> None:
        self.keys: List[str] = [keys] if isinstance(keys, str) else list(keys)
        self.ranges = copy.deepcopy(ranges)
        self.seed = seed
        self._rng = (np.random.default_rng(seed) if seed is not None else None)
        # validate the ranges at build time
        sample_low_light_params(np.random.default_rng(0), self.ranges)

    def _next_rng(self) -> np.random.Generator:
        if self._rng is not None:
            return self._rng
        return np.random.default_rng(np.random.randint(0, 2**31 - 1))

    def transform(self, results: dict) -> dict:
        """Darken the images under ``self.keys``.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The same dict, images replaced, parameters added.
        """
        params = sample_low_light_params(self._next_rng(), self.ranges)
        for key in self.keys:
            value = results[key]
            if isinstance(value, list):
                results[key] = [synthesize_low_light(v, params) for v in value]
            else:
                results[key] = synthesize_low_light(value, params)
        results['low_light_params'] = params
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={self.keys}, '
                f'ranges={self.ranges}, seed={self.seed})')
