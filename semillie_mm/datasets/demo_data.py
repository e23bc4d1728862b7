# Copyright (c) semillie-mm contributors. All rights reserved.
"""Embedded demo data: a tiny semi-supervised low-light set, no download.

:func:`prepare_demo_data` builds, from natural photographs shipped inside
scikit-image and scikit-learn, a folder in the authors' layout::

    root/
        labeled/input/  labeled/GT/     paired train tiles (synthetic low light)
        unlabeled/input/                unpaired train tiles (low light only)
        val/input/      val/GT/         paired validation tiles
        manifest.json                   sources, splits, synthesis params, seed

Splits (no photo is shared between splits; val photos are never trained on):

============  ==============================================================
split         photos (scale applied before tiling)
============  ==============================================================
labeled       astronaut, chelsea, rocket, motorcycle left view (0.75),
              immunohistochemistry (0.5), retina (0.25), china (sklearn)
unlabeled     motorcycle right view, hubble_deep_field (0.25)
val           coffee (0.75), flower (sklearn, 0.75)
============  ==============================================================

Train tiles are 128x128 with stride 96 (109 paired, 30 unpaired), val tiles
128x128 with stride 128 (12 pairs). Every tile gets its own low-light
parameters from :func:`sample_low_light_params` (default ranges) drawn from
one ``numpy.random.default_rng(seed)`` stream in a fixed order, so the build
is deterministic; the parameters are stored in the manifest and
:func:`synthesize_low_light` rebuilds each input byte for byte. The GT of
unlabeled tiles is not written anywhere.

The build is idempotent (a matching ``manifest.json`` whose files exist makes
it return at once) and atomic: it writes into a hidden temporary sibling
folder and renames it to ``root`` only when complete, so an interrupted build
leaves no half-written ``root`` (a hard kill may leave the temporary
``.<name>.tmp-*`` folder, which the next build ignores and you may delete).
"""
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional

import numpy as np

from ..utils.fileio import atomic_folder, atomic_write_json
from .transforms.low_light_synthesis import (
    DEFAULT_LOW_LIGHT_RANGES,
    SYNTHESIS_VERSION,
    sample_low_light_params,
    synthesize_low_light,
)

__all__ = ['prepare_demo_data', 'DEMO_SOURCES', 'DEMO_VERSION']

#: Bump when the demo content changes (part of the manifest fingerprint).
DEMO_VERSION = 1
MANIFEST = 'manifest.json'
FORMAT = 'semillie-demo'

#: (name, package, loader, split, scale)
DEMO_SOURCES: List[Dict[str, object]] = [
    dict(name='astronaut', package='skimage', split='labeled', scale=1.0),
    dict(name='chelsea', package='skimage', split='labeled', scale=1.0),
    dict(name='rocket', package='skimage', split='labeled', scale=1.0),
    dict(
        name='motorcycle_left', package='skimage', split='labeled',
        scale=0.75),
    dict(
        name='immunohistochemistry',
        package='skimage',
        split='labeled',
        scale=0.5),
    dict(name='retina', package='skimage', split='labeled', scale=0.25),
    dict(name='china', package='sklearn', split='labeled', scale=1.0),
    dict(
        name='motorcycle_right',
        package='skimage',
        split='unlabeled',
        scale=1.0),
    dict(
        name='hubble_deep_field',
        package='skimage',
        split='unlabeled',
        scale=0.25),
    dict(name='coffee', package='skimage', split='val', scale=0.75),
    dict(name='flower', package='sklearn', split='val', scale=0.75),
]

#: Tile size and stride per split.
DEMO_TILING = dict(
    labeled=dict(tile=128, stride=96),
    unlabeled=dict(tile=128, stride=96),
    val=dict(tile=128, stride=128))

_SPLIT_DIRS = dict(
    labeled=('labeled/input', 'labeled/GT'),
    unlabeled=('unlabeled/input', None),
    val=('val/input', 'val/GT'))


def load_demo_photo(name: str, package: str) -> np.ndarray:
    """Load one photo shipped inside an installed package.

    Args:
        name (str): Photo name (see :data:`DEMO_SOURCES`).
        package (str): ``'skimage'``, ``'sklearn'`` or ``'matplotlib'``.

    Returns:
        np.ndarray: HxWx3 uint8 RGB image.
    """
    if package == 'skimage':
        from skimage import data
        if name in ('motorcycle_left', 'motorcycle_right'):
            left, right, _ = data.stereo_motorcycle()
            img = left if name == 'motorcycle_left' else right
        else:
            img = getattr(data, name)()
    elif package == 'sklearn':
        from sklearn.datasets import load_sample_image
        img = load_sample_image(f'{name}.jpg')
    elif package == 'matplotlib':  # mpl-data/sample_data, e.g. grace_hopper
        from matplotlib import cbook
        from PIL import Image
        with cbook.get_sample_data(f'{name}.jpg') as f:
            img = np.asarray(Image.open(f).convert('RGB'))
    else:
        raise ValueError(f'Unknown package {package!r} for photo {name!r}')
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f'{package}.{name} is {img.dtype}, expected uint8')
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    """Downscale with area averaging (deterministic, OpenCV)."""
    if scale == 1.0:
        return img
    import cv2
    h, w = img.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _tile_origins(length: int, tile: int, stride: int) -> List[int]:
    return list(range(0, length - tile + 1, stride)) if length >= tile else []


def _save_png(path: str, img: np.ndarray) -> None:
    import cv2
    if not cv2.imwrite(path, np.ascontiguousarray(img[..., ::-1])):
        raise OSError(f'Could not write {path}')


def _fingerprint(seed: int, sources: List[dict]) -> str:
    spec = dict(
        format=FORMAT,
        demo_version=DEMO_VERSION,
        synthesis_version=SYNTHESIS_VERSION,
        seed=int(seed),
        sources=sources,
        tiling=DEMO_TILING,
        ranges={k: list(v) if isinstance(v, tuple) else v
                for k, v in DEFAULT_LOW_LIGHT_RANGES.items()})
    text = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _read_manifest(root: str) -> Optional[dict]:
    path = osp.join(root, MANIFEST)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(root: str, fingerprint: str) -> bool:
    """True if ``root`` holds a finished build with this fingerprint."""
    manifest = _read_manifest(root)
    if not manifest or manifest.get('fingerprint') != fingerprint:
        return False
    for item in manifest.get('files', []):
        for key in ('input', 'gt'):
            rel = item.get(key)
            if rel and not osp.isfile(osp.join(root, rel)):
                return False
    return True


def _build(tmp_root: str, seed: int, sources: List[dict], fingerprint: str,
           loader: Callable[[str, str], np.ndarray]) -> dict:
    """Write the whole demo set into ``tmp_root``; return the manifest."""
    for in_dir, gt_dir in _SPLIT_DIRS.values():
        os.makedirs(osp.join(tmp_root, in_dir), exist_ok=True)
        if gt_dir:
            os.makedirs(osp.join(tmp_root, gt_dir), exist_ok=True)
    rng = np.random.default_rng(seed)
    files, source_info = [], []
    counts = {split: 0 for split in _SPLIT_DIRS}
    for src in sources:
        photo = loader(src['name'], src['package'])
        img = _resize(photo, float(src['scale']))
        tiling = DEMO_TILING[src['split']]
        tile, stride = tiling['tile'], tiling['stride']
        in_dir, gt_dir = _SPLIT_DIRS[src['split']]
        n = 0
        for top in _tile_origins(img.shape[0], tile, stride):
            for left in _tile_origins(img.shape[1], tile, stride):
                clean = np.ascontiguousarray(img[top:top + tile,
                                                 left:left + tile])
                params = sample_low_light_params(rng)
                low = synthesize_low_light(clean, params)
                name = f'{src["name"]}_{top:04d}_{left:04d}.png'
                item = dict(
                    split=src['split'],
                    source=src['name'],
                    box=[top, left, tile, tile],
                    input=f'{in_dir}/{name}',
                    params=params)
                _save_png(osp.join(tmp_root, in_dir, name), low)
                if gt_dir:
                    _save_png(osp.join(tmp_root, gt_dir, name), clean)
                    item['gt'] = f'{gt_dir}/{name}'
                files.append(item)
                n += 1
        counts[src['split']] += n
        source_info.append(
            dict(src, shape=list(photo.shape), scaled_shape=list(img.shape),
                 tiles=n))
    return dict(
        format=FORMAT,
        demo_version=DEMO_VERSION,
        synthesis_version=SYNTHESIS_VERSION,
        fingerprint=fingerprint,
        seed=int(seed),
        tiling=DEMO_TILING,
        synthesis_ranges={
            k: list(v) if isinstance(v, tuple) else v
            for k, v in DEFAULT_LOW_LIGHT_RANGES.items()
        },
        counts=counts,
        sources=source_info,
        files=files)


def prepare_demo_data(root: str = 'data/demo',
                      seed: int = 0,
                      force: bool = False,
                      sources: Optional[List[dict]] = None,
                      loader: Optional[Callable] = None) -> str:
    """Build the embedded demo data set (see the module docstring).

    Args:
        root (str): Output folder. Defaults to 'data/demo'.
        seed (int): Seed of the tile parameters. Defaults to 0.
        force (bool): Rebuild even if a matching build exists, and replace a
            folder that is not a demo build. Defaults to False.
        sources (list[dict], optional): Photos to use (entries like
            :data:`DEMO_SOURCES`); for tests. Defaults to None (all).
        loader (callable, optional): ``loader(name, package) -> uint8 RGB``;
            for tests. Defaults to :func:`load_demo_photo`.

    Returns:
        str: ``root``.
    """
    root = osp.normpath(str(root))
    sources = [dict(s) for s in (DEMO_SOURCES if sources is None else sources)]
    for src in sources:
        if src.get('split') not in _SPLIT_DIRS:
            raise ValueError(f'Bad split in demo source {src!r}')
    fingerprint = _fingerprint(seed, sources)
    if not force and _is_complete(root, fingerprint):
        return root
    if osp.exists(root) and not force:
        manifest = _read_manifest(root)
        if not manifest or manifest.get('format') != FORMAT:
            raise FileExistsError(
                f'{root} exists and is not a semillie demo build (no valid '
                f'{MANIFEST}); remove it or pass force=True to replace it.')
        # an older or differently seeded demo build: replace it below
    # a concurrent build may have finished first: keep it if it fits
    with atomic_folder(root, lambda: _is_complete(root, fingerprint)) as tmp:
        manifest = _build(tmp, seed, sources, fingerprint, loader
                          or load_demo_photo)
        atomic_write_json(osp.join(tmp, MANIFEST), manifest, indent=1)
    return root
