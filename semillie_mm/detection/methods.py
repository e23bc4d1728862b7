"""The enhancement methods of the detection study: what a row of Table VII does to the night images.

Methods are given as ``NAME=SPEC`` (``tools/detection_study.py --method``, repeated; rows keep
this order):

- ``Original=none``: the night images themselves;
- ``NAME=semillie:CONFIG[,CHECKPOINT]``: enhance with a trained Semi-LLIE model (or any model that
  ``semillie_mm.apis.SemiLLIEInferencer`` runs: the teacher by default, ``--use-student`` for the
  student); the enhanced images go to ``WORK_DIR/rows/<name>/images`` (:func:`enhance_images`);
- ``NAME=folder:DIR``: images already enhanced by another method (same file stems as the night
  images, same size, any image extension).
"""
import json
import logging
import os
import os.path as osp
import shutil
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from ._io import dump_json_atomic, json_normalise

logger = logging.getLogger(__name__)

KINDS = ('none', 'semillie', 'folder')


@dataclass
class Method:
    """One row of the study.

    Args:
        name (str): the row label (e.g. ``'Original'``).
        kind (str): ``'none'``, ``'semillie'`` or ``'folder'``.
        path (str, optional): the folder of enhanced images (``folder``).
        config (str, optional): the enhancement model's config (``semillie``).
        checkpoint (str, optional): its checkpoint (``semillie``).
    """
    name: str
    kind: str
    path: Optional[str] = None
    config: Optional[str] = None
    checkpoint: Optional[str] = None


def parse_method(spec: str) -> Method:
    """Parse ``NAME=none``, ``NAME=folder:DIR`` or ``NAME=semillie:CONFIG[,CHECKPOINT]``.

    Args:
        spec (str): the method string.

    Returns:
        Method: the parsed method (paths made absolute).

    Raises:
        ValueError: a malformed string.
    """
    if '=' not in spec:
        raise ValueError(f'method {spec!r}: expected NAME=none, NAME=folder:DIR or '
                         f'NAME=semillie:CONFIG[,CHECKPOINT]')
    name, rhs = spec.split('=', 1)
    name = name.strip()
    if not name:
        raise ValueError(f'method {spec!r}: empty name')
    kind, _, arg = rhs.partition(':')
    kind = kind.strip().lower()
    if kind == 'none':
        if arg:
            raise ValueError(f'method {spec!r}: "none" takes no argument')
        return Method(name, 'none')
    if kind == 'folder':
        if not arg:
            raise ValueError(f'method {spec!r}: folder:DIR needs a folder')
        return Method(name, 'folder', path=osp.abspath(arg))
    if kind == 'semillie':
        config, _, checkpoint = arg.partition(',')
        if not config:
            raise ValueError(f'method {spec!r}: semillie:CONFIG[,CHECKPOINT] needs a config')
        return Method(name, 'semillie', config=osp.abspath(config),
                      checkpoint=osp.abspath(checkpoint) if checkpoint else None)
    raise ValueError(f'method {spec!r}: unknown kind {kind!r} (one of {", ".join(KINDS)})')


def load_enhancer(method: Method, device: str = 'cpu', use_teacher: bool = True):
    """Load a ``semillie`` method's enhancement model from its config and checkpoint.

    The one place where the study reads an enhancer checkpoint.

    Args:
        method (Method): a ``semillie`` method.
        device (str): where the enhancer runs.
        use_teacher (bool): the mean teacher (default) or the student.

    Returns:
        semillie_mm.apis.SemiLLIEInferencer: the enhancer (no progress bar).

    Raises:
        FileNotFoundError: the checkpoint or the config does not exist.
    """
    if method.checkpoint is not None and not osp.isfile(method.checkpoint):
        raise FileNotFoundError(f'[{method.name}] enhancement checkpoint not found: '
                                f'{method.checkpoint}')
    if not osp.isfile(method.config):
        raise FileNotFoundError(f'[{method.name}] enhancement config not found: {method.config}')
    from semillie_mm.apis import SemiLLIEInferencer
    return SemiLLIEInferencer(method.config, method.checkpoint, device=device,
                              network='teacher' if use_teacher else 'student',
                              show_progress=False)


def enhance_images(method: Method, night_dir: str, names: Sequence[str], row_dir: str,
                   device: str = 'cpu', use_teacher: bool = True, tile_size: int = 512,
                   ext: Optional[str] = None) -> str:
    """Enhance the annotated night images with a Semi-LLIE model (reused when already done).

    Only the images listed in the annotation files are enhanced, by the model of
    :func:`load_enhancer`, into ``row_dir/images`` (same file names). A finished enhancement is
    recorded in ``row_dir/enhance.json`` with its settings.

    In a process group of several ranks (MMEngine's launcher, ``tools/detection_study.py
    --launcher pytorch``; see :mod:`semillie_mm.apis.sharding`) every rank calls this and
    enhances its share of the images; the ranks meet once at the end, rank 0 removes files of
    earlier runs that are not outputs of this one and writes the record, and every rank returns
    the folder (or raises the same error). Alone, a process enhances all the images.

    Args:
        method (Method): a ``semillie`` method.
        night_dir (str): folder of the night images.
        names (Sequence[str]): file names of the images to enhance.
        row_dir (str): the row's folder.
        device (str): where the enhancer runs.
        use_teacher (bool): the mean teacher (default) or the student.
        tile_size (int): tile side for large images (0: whole images).
        ext (str, optional): output extension; default keeps each input's.

    Returns:
        str: the folder of enhanced images.
    """
    out_dir = osp.join(row_dir, 'images')
    record_path = osp.join(row_dir, 'enhance.json')
    settings = json_normalise(dict(config=method.config, checkpoint=method.checkpoint,
                                   use_teacher=use_teacher, tile_size=tile_size, ext=ext,
                                   night_dir=osp.abspath(night_dir), names=list(names)))
    if osp.isfile(record_path):
        with open(record_path, encoding='utf-8') as f:
            if json.load(f).get('settings') == settings:
                logger.info('[%s] enhanced images found in %s', method.name, out_dir)
                return out_dir
    start = time.time()
    inferencer = load_enhancer(method, device=device, use_teacher=use_teacher)
    missing = [n for n in names if not osp.isfile(osp.join(night_dir, n))]
    if missing:
        raise FileNotFoundError(f'{len(missing)} night image(s) not found in {night_dir}, '
                                f'e.g. {missing[:3]}')
    items = [dict(img_path=osp.join(night_dir, n), rel=n) for n in names]
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if world_size > 1:
        res = _enhance_sharded(method, inferencer, items, out_dir, rank, world_size,
                               tile_size=tile_size or None, ext=ext)
    else:
        if osp.isdir(out_dir):
            shutil.rmtree(out_dir)
        logger.info('[%s] enhancing %d images with %s', method.name, len(names),
                    method.config)
        res = inferencer(items, out_dir=out_dir, tile_size=tile_size or None, ext=ext,
                         on_error='skip', return_preds=False)
    if res['skipped']:
        raise RuntimeError(f'[{method.name}] {len(res["skipped"])} image(s) could not be '
                           f'enhanced: {res["skipped"][:3]}')
    if rank == 0:
        dump_json_atomic(dict(settings=settings, processed=len(res['outputs']),
                              seconds=round(time.time() - start, 1)), record_path)
    return out_dir


def _enhance_sharded(method: Method, inferencer, items, out_dir: str, rank: int,
                     world_size: int, **kwargs) -> dict:
    """This rank's share of :func:`enhance_images`, then the totals of all ranks.

    Outputs of an earlier, different enhancement are overwritten (no ``skip_existing``); after
    the ranks met, rank 0 removes the files of ``out_dir`` that this run did not write (what
    one process's ``rmtree`` first does).

    Returns:
        dict: ``outputs`` and ``skipped`` of all ranks.

    Raises:
        RuntimeError: A rank failed (every rank raises it).
    """
    from semillie_mm.apis import sharding
    logger.info('[%s] enhancing %d images with %s, %d processes', method.name, len(items),
                method.config, world_size)
    local = sharding.enhance_sharded(inferencer, items, out_dir, rank, world_size,
                                     on_error='skip', **kwargs)
    if local['interrupted']:  # Ctrl-C reaches every rank: no meeting
        raise KeyboardInterrupt
    merged = sharding.merge_summaries(sharding.gather_summaries(local))
    if merged['failed']:
        raise RuntimeError(f'[{method.name}] the enhancement failed: ' + '; '.join(
            f"rank {f['rank']}: {f['error']}" for f in merged['failed']))
    if rank == 0 and osp.isdir(out_dir):
        keep = {osp.abspath(p) for p in merged['outputs']}
        for root, _, files in os.walk(out_dir):
            for name in files:
                path = osp.abspath(osp.join(root, name))
                if path not in keep:
                    os.remove(path)
    return dict(outputs=merged['outputs'], skipped=merged['skipped_files'])
