"""Build the Semi-LLIE VisDrone low-light set from VisDrone images.

    # build from a VisDrone folder (any tree of images, searched recursively)
    python tools/dataset_converters/visdrone_lowlight.py SRC OUT [--seed 0]
        [--night-threshold 50] [--day-threshold 90] [--override FILE]
        [--paired-train N] [--val N] [--unpaired-train N] [--test N]
        [--workers N]

    # rebuild a set identically from its manifest
    python tools/dataset_converters/visdrone_lowlight.py SRC OUT \\
        --from-manifest OLD_OUT/manifest.json

Output (the authors' layout, paper Sec. IV-B / Table II)::

    OUT/labeled/input/<stem>.png   synthesised low-light  (paired train)
    OUT/labeled/GT/<name>          the day-time image, byte copy
    OUT/val/input/<stem>.png, OUT/val/GT/<name>         (paired validation)
    OUT/unlabeled/input/<name>     real night image, byte copy (unpaired train)
    OUT/test/input/<name>          real night image, byte copy (unpaired test)
    OUT/manifest.json              everything needed to rebuild the set

Day / night rule: brightness = mean ITU-R BT.601 luma (0..255) of the image
decoded at 1/4 resolution (OpenCV ``IMREAD_REDUCED_COLOR_4``). ``night`` if
brightness < ``--night-threshold`` (default 50), ``day`` if brightness >=
``--day-threshold`` (default 90); images in between are ``ambiguous`` and left
out (listed in the manifest). An override file (``--override``) forces a class:
one ``<path> <day|night|exclude>`` per line (path relative to SRC, or a bare
file name), ``#`` starts a comment.

Counts: the paper's 5213 paired-train + 533 val day images and 1258 unpaired
train + 657 test night images. With fewer day (night) images than 5746 (1915)
the day (night) images are split in the paper's proportion:
``val = round(n_day * 533 / 5746)``, ``train = n_day - val``;
``test = round(n_night * 657 / 1915)``, ``unpaired = n_night - test`` (at
least one each when there are two or more). With more, a seeded random subset
of the paper's size is used and the rest is listed as unused. Explicit
``--paired-train/--val/--unpaired-train/--test`` override this.

The low-light partners come from
:func:`semillie_mm.datasets.transforms.low_light_synthesis.synthesize_low_light`
with parameters drawn by ``sample_low_light_params`` from a generator seeded
with ``--seed``; each image's parameters (incl. its noise seed) are stored in
the manifest, with SHA-256 digests of sources and outputs, so
``--from-manifest`` rebuilds byte-identical files and checks them.
"""
import hashlib
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...utils.fileio import IMG_EXTENSIONS, atomic_copy, atomic_write_bytes

MANIFEST_NAME = 'manifest.json'
MANIFEST_FORMAT = 1
#: The paper's counts (Sec. IV-B, Table II).
PAPER_COUNTS = dict(paired_train=5213, val=533, unpaired_train=1258, test=657)
#: split name -> (input folder, GT folder or None)
SPLIT_DIRS = {
    'paired_train': ('labeled/input', 'labeled/GT'),
    'val': ('val/input', 'val/GT'),
    'unpaired_train': ('unlabeled/input', None),
    'test': ('test/input', None),
}


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def sha256_file(path: str) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def scan_images(src: str) -> List[str]:
    """Relative paths (``/``-separated, sorted) of the images under src."""
    rels = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            if osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
                rel = osp.relpath(osp.join(root, name), src)
                rels.append(rel.replace(os.sep, '/'))
    return sorted(rels)


def brightness(path: str) -> float:
    """Mean BT.601 luma (0..255) of an image decoded at 1/4 resolution.

    Raises:
        ValueError: The file cannot be decoded.
    """
    import cv2
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_4) if data.size else None
    if img is None:
        raise ValueError('cannot decode image')
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    return float(np.mean(0.299 * r + 0.587 * g + 0.114 * b))


def read_rgb(path: str) -> np.ndarray:
    """Decode an image as RGB uint8 (EXIF orientation applied by OpenCV).

    Raises:
        ValueError: The file cannot be decoded.
    """
    import cv2
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError('cannot decode image')
    return np.ascontiguousarray(img[..., ::-1])


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless, deterministic PNG bytes of an RGB uint8 image."""
    import cv2
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError('PNG encoding failed')
    return buf.tobytes()


def read_overrides(path: Optional[str]) -> Dict[str, str]:
    """Parse an override file: ``<path-or-name> <day|night|exclude>``."""
    if not path:
        return {}
    out = {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in ('day', 'night', 'exclude'):
                raise ValueError(f'{path}:{lineno}: expected "<path> '
                                 f'<day|night|exclude>", got {line!r}')
            out[parts[0].replace(os.sep, '/')] = parts[1]
    return out


def classify(value: float, night_threshold: float,
             day_threshold: float) -> str:
    """Day / night / ambiguous from the brightness rule."""
    if value < night_threshold:
        return 'night'
    if value >= day_threshold:
        return 'day'
    return 'ambiguous'


def split_counts(n_day: int,
                 n_night: int,
                 requested: Optional[Dict[str, Optional[int]]] = None
                 ) -> Dict[str, int]:
    """Counts per split (see the module docstring for the rule).

    Args:
        n_day (int): Day images available.
        n_night (int): Night images available.
        requested (dict, optional): Explicit counts (None entries = default).

    Returns:
        dict: ``paired_train``, ``val``, ``unpaired_train``, ``test``.

    Raises:
        ValueError: Explicit counts need more images than there are.
    """
    requested = {k: v for k, v in (requested or {}).items() if v is not None}
    p = PAPER_COUNTS

    def proportional(n, big, small):
        total = p[big] + p[small]
        if n >= total:
            return {big: p[big], small: p[small]}
        n_small = _round_half_up(n * p[small] / total)
        if n >= 2:
            n_small = min(max(n_small, 1), n - 1)
        return {big: n - n_small, small: n_small}

    counts = {}
    for (big, small), n in (((('paired_train', 'val')), n_day),
                            ((('unpaired_train', 'test')), n_night)):
        if big in requested or small in requested:
            default = proportional(n, big, small)
            c_big, c_small = requested.get(big), requested.get(small)
            if c_small is None:
                c_small = max(0, min(default[small], n - c_big))
            if c_big is None:
                c_big = n - c_small
                if n >= p[big] + p[small]:
                    c_big = min(p[big], c_big)
            if c_big < 0 or c_small < 0 or c_big + c_small > n:
                raise ValueError(
                    f'{big}={c_big} + {small}={c_small} needs more than the '
                    f'{n} {"day" if big == "paired_train" else "night"} '
                    'images available')
            counts.update({big: c_big, small: c_small})
        else:
            counts.update(proportional(n, big, small))
    return counts


def _unique_stems(rels: Sequence[str]) -> Dict[str, str]:
    """Output stem of each relative path: the file stem, or (when two files
    share a stem) the relative path joined with ``__`` plus ``_<ext>``."""
    stems = {}
    seen: Dict[str, int] = {}
    for rel in rels:
        s = osp.splitext(osp.basename(rel))[0]
        seen[s] = seen.get(s, 0) + 1
    for rel in rels:
        s = osp.splitext(osp.basename(rel))[0]
        if seen[s] > 1:
            # the relative path, extension included (a.jpg and a.png differ)
            stem, ext = osp.splitext(rel)
            s = stem.replace('/', '__') + '_' + ext.lstrip('.')
        stems[rel] = s
    return stems


# ---------------------------------------------------------------------------
# planning (what goes where) and writing
# ---------------------------------------------------------------------------
def plan_dataset(src: str,
                 seed: int = 0,
                 night_threshold: float = 50.,
                 day_threshold: float = 90.,
                 overrides: Optional[Dict[str, str]] = None,
                 requested: Optional[Dict[str, Optional[int]]] = None,
                 ranges: Optional[dict] = None,
                 progress: bool = True) -> dict:
    """Scan ``src``, classify, split and draw synthesis parameters.

    Args:
        src (str): VisDrone folder (searched recursively).
        seed (int): Seed of the split and of the synthesis parameters.
        night_threshold (float): Brightness below which an image is night.
        day_threshold (float): Brightness from which an image is day.
        overrides (dict, optional): ``{path-or-name: day|night|exclude}``.
        requested (dict, optional): Explicit split counts.
        ranges (dict, optional): Synthesis ranges (see
            ``DEFAULT_LOW_LIGHT_RANGES``).
        progress (bool): Show a progress bar.

    Returns:
        dict: The manifest (without output digests).
    """
    from semillie_mm.datasets.transforms.low_light_synthesis import (
        DEFAULT_LOW_LIGHT_RANGES,
        sample_low_light_params,
    )
    overrides = dict(overrides or {})
    rels = scan_images(src)
    if not rels:
        raise FileNotFoundError(f'no images found under {src}')
    records, unreadable = [], []
    iterator = rels
    if progress:
        from tqdm import tqdm
        iterator = tqdm(rels, desc='brightness', unit='img')
    used_overrides = set()
    for rel in iterator:
        path = osp.join(src, rel)
        forced = overrides.get(rel, overrides.get(osp.basename(rel)))
        if forced is not None:
            used_overrides.add(rel if rel in overrides else osp.basename(rel))
        try:
            value = brightness(path)
        except Exception as e:  # noqa: BLE001 (reported, not dropped)
            unreadable.append(dict(source=rel, reason=str(e)))
            continue
        cls = forced or classify(value, night_threshold, day_threshold)
        records.append(dict(source=rel, brightness=round(value, 4),
                            cls=cls, overridden=forced is not None))
    unknown_overrides = sorted(set(overrides) - used_overrides)

    day = [r for r in records if r['cls'] == 'day']
    night = [r for r in records if r['cls'] == 'night']
    counts = split_counts(len(day), len(night), requested)

    seq = np.random.SeedSequence(seed)
    split_seq, synth_seq = seq.spawn(2)
    split_rng = np.random.default_rng(split_seq)
    synth_rng = np.random.default_rng(synth_seq)
    day_order = [day[i] for i in split_rng.permutation(len(day))]
    night_order = [night[i] for i in split_rng.permutation(len(night))]

    stems = _unique_stems([r['source'] for r in records])
    files, unused = [], []
    n_tr, n_val = counts['paired_train'], counts['val']
    n_un, n_te = counts['unpaired_train'], counts['test']
    for i, r in enumerate(day_order):
        split = ('paired_train' if i < n_tr else
                 'val' if i < n_tr + n_val else None)
        if split is None:
            unused.append(dict(source=r['source'], cls='day'))
            continue
        in_dir, gt_dir = SPLIT_DIRS[split]
        files.append(dict(
            split=split, source=r['source'], brightness=r['brightness'],
            overridden=r['overridden'],
            input=f"{in_dir}/{stems[r['source']]}.png",
            gt=f"{gt_dir}/{stems[r['source']]}"
            f"{osp.splitext(r['source'])[1]}",
            params=sample_low_light_params(synth_rng, ranges)))
    for i, r in enumerate(night_order):
        split = ('unpaired_train' if i < n_un else
                 'test' if i < n_un + n_te else None)
        if split is None:
            unused.append(dict(source=r['source'], cls='night'))
            continue
        in_dir, _ = SPLIT_DIRS[split]
        files.append(dict(
            split=split, source=r['source'], brightness=r['brightness'],
            overridden=r['overridden'],
            input=f"{in_dir}/{stems[r['source']]}"
            f"{osp.splitext(r['source'])[1]}"))
    order = list(SPLIT_DIRS)
    files.sort(key=lambda f: (order.index(f['split']), f['input']))

    eff_ranges = dict(DEFAULT_LOW_LIGHT_RANGES)
    eff_ranges.update(ranges or {})
    return dict(
        format=MANIFEST_FORMAT,
        tool='tools/dataset_converters/visdrone_lowlight.py',
        seed=seed,
        rule=dict(
            brightness='mean BT.601 luma (0..255) at 1/4 resolution '
            '(cv2.IMREAD_REDUCED_COLOR_4)',
            night_threshold=night_threshold, day_threshold=day_threshold,
            overrides=overrides, unknown_overrides=unknown_overrides),
        synthesis=dict(
            function='semillie_mm.datasets.transforms.low_light_synthesis.'
            'synthesize_low_light',
            ranges={k: list(v) if isinstance(v, tuple) else v
                    for k, v in eff_ranges.items()},
            numpy_version=np.__version__),
        counts=counts,
        paper_counts=PAPER_COUNTS,
        num_scanned=len(rels),
        num_day=len(day), num_night=len(night),
        files=files,
        ambiguous=[dict(source=r['source'], brightness=r['brightness'])
                   for r in records if r['cls'] == 'ambiguous'],
        excluded=[dict(source=r['source']) for r in records
                  if r['cls'] == 'exclude'],
        unused=unused,
        unreadable=unreadable)


def _write_one(args: Tuple[str, str, dict, bool]) -> dict:
    """Write the file(s) of one manifest entry; return digests or error."""
    src, out, entry, verify = args
    from semillie_mm.datasets.transforms.low_light_synthesis import synthesize_low_light
    path = osp.join(src, entry['source'])
    res = dict(input=entry['input'])
    try:
        if not osp.isfile(path):
            raise FileNotFoundError(f'source {path} is missing')
        res['source_sha256'] = sha256_file(path)
        if verify and entry.get('source_sha256') not in (
                None, res['source_sha256']):
            raise ValueError(f'source {entry["source"]} differs from the one '
                             'the manifest was made from (SHA-256)')
        if 'params' in entry:
            rgb = read_rgb(path)
            low = synthesize_low_light(rgb, entry['params'])
            data = encode_png(low)
            atomic_write_bytes(osp.join(out, entry['input']), data)
            res['input_sha256'] = hashlib.sha256(data).hexdigest()
            atomic_copy(path, osp.join(out, entry['gt']))
        else:
            atomic_copy(path, osp.join(out, entry['input']))
            res['input_sha256'] = res['source_sha256']
    except Exception as e:  # noqa: BLE001 (reported, not dropped)
        res['error'] = f'{type(e).__name__}: {e}'
    return res


def write_dataset(manifest: dict,
                  src: str,
                  out: str,
                  workers: int = 1,
                  verify: bool = False,
                  progress: bool = True) -> dict:
    """Write every file of a manifest under ``out`` and the manifest itself.

    Args:
        manifest (dict): From :func:`plan_dataset` or a manifest file.
        src (str): The VisDrone folder the manifest's sources are relative to.
        out (str): Output root.
        workers (int): Processes (1 = in this process).
        verify (bool): Check sources and outputs against the manifest's
            SHA-256 digests (rebuilds).
        progress (bool): Show a progress bar.

    Raises:
        ValueError: an entry's path is absolute or contains ``..``.

    Returns:
        dict: ``written`` (int), ``failed`` (list of ``{input, error}``),
        ``mismatched`` (outputs whose digest differs from the manifest).
    """
    check_manifest_paths(manifest)
    entries = manifest['files']
    jobs = [(src, out, e, verify) for e in entries]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc='write', unit='img')
    results = []
    if workers > 1:
        from multiprocessing import get_context
        with get_context('spawn').Pool(workers) as pool:
            for r in pool.imap(_write_one, jobs, chunksize=4):
                results.append(r)
                if bar is not None:
                    bar.update(1)
    else:
        for job in jobs:
            results.append(_write_one(job))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    failed, mismatched = [], []
    for entry, r in zip(entries, results):
        if 'error' in r:
            failed.append(dict(input=entry['input'], source=entry['source'],
                               error=r['error']))
            continue
        if verify and entry.get('input_sha256') not in (None,
                                                        r['input_sha256']):
            mismatched.append(entry['input'])
        entry['source_sha256'] = r['source_sha256']
        entry['input_sha256'] = r['input_sha256']
    manifest['write_failures'] = failed
    atomic_write_bytes(
        osp.join(out, MANIFEST_NAME),
        json.dumps(manifest, indent=1, sort_keys=False).encode('utf-8'))
    return dict(written=len(entries) - len(failed), failed=failed,
                mismatched=mismatched)


#: Manifest entry keys that hold paths (relative to SRC or OUT).
MANIFEST_PATH_KEYS = ('source', 'input', 'gt')


def _is_contained(rel) -> bool:
    """Whether ``rel`` is a relative path that stays inside its folder."""
    if not isinstance(rel, str) or not rel or '\0' in rel:
        return False
    parts = rel.replace('\\', '/').split('/')
    return not (osp.isabs(rel) or rel.startswith(('/', '\\'))
                or osp.splitdrive(rel)[0] or '..' in parts)


def check_manifest_paths(manifest: dict, name: str = 'manifest') -> None:
    """Refuse a manifest whose paths would leave SRC or OUT.

    Every ``source`` (read under SRC), ``input`` and ``gt`` (written under
    OUT) of ``manifest['files']`` must be a relative path without ``..``
    components; an absolute path or ``..`` could read or overwrite any file.

    Args:
        manifest (dict): A manifest (``files`` is a list of dicts).
        name (str): What to call the manifest in the error (its file name).

    Raises:
        ValueError: one line naming ``name`` and the first bad entry.
    """
    files = manifest.get('files')
    if not isinstance(files, list):
        raise ValueError(f'{name}: "files" is not a list')
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise ValueError(f'{name}: files[{i}] is not an object')
        for key in MANIFEST_PATH_KEYS:
            if key not in entry and key == 'gt':
                continue
            rel = entry.get(key)
            if not _is_contained(rel):
                raise ValueError(
                    f'{name}: files[{i}] {key} {rel!r} is not a relative '
                    'path inside its folder (absolute paths and ".." are '
                    'refused)')


def load_manifest(path: str) -> dict:
    """Read a manifest file and check its format and paths.

    Args:
        path (str): The ``manifest.json`` of an earlier build.

    Raises:
        ValueError: not JSON, another format, or an entry whose path is
            absolute or contains ``..`` (see :func:`check_manifest_paths`).

    Returns:
        dict: The manifest.
    """
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except ValueError as e:
        raise ValueError(f'{path}: not a JSON manifest ({e})') from e
    fmt = manifest.get('format') if isinstance(manifest, dict) else None
    if fmt != MANIFEST_FORMAT:
        raise ValueError(f'{path}: unsupported manifest format {fmt!r} '
                         f'(expected {MANIFEST_FORMAT})')
    check_manifest_paths(manifest, path)
    return manifest
