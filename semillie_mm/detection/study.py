"""Downstream detection study: Faster R-CNN on enhanced VisDrone night images.

Paper Sec. V, Table VII.

:func:`run_study` runs the rows in order and writes the tables; ``tools/detection_study.py`` is
its command line. For each enhancement method (a row of the table;
:mod:`semillie_mm.detection.methods`) the night images are enhanced, a Faster R-CNN
(:mod:`semillie_mm.detection.detector`) is trained from scratch on the train split and evaluated
(COCO bbox AP) on the test split with mmdet's own runner in a child process
(:mod:`semillie_mm.detection.runner`), and a Table VII-style Markdown and CSV file are written
(:mod:`semillie_mm.detection.tables`).

Example (the paper's setting; data from tools/dataset_converters/visdrone2coco.py)::

    CKPT=work_dirs/semillie/last.pth
    python tools/detection_study.py \\
        --images data/visdrone_night/images --ann-dir data/visdrone_night/annotations \\
        --method Original=none \\
        --method "Semi-LLIE (Ours)=semillie:configs/semillie_visdrone.py,$CKPT" \\
        --method "ZeroDCE=folder:results/zerodce_night" \\
        --work-dir work_dirs/detection_study

writes ``WORK_DIR/table_vii.md`` and ``WORK_DIR/table_vii.csv``.

Resuming: each finished row is stored in ``WORK_DIR/rows/<name>/result.json`` (written atomically)
together with the settings it was computed with; a rerun reads it back instead of recomputing.
A stored row whose settings differ from the current ones is an error (``--force`` recomputes).
Enhanced images are likewise reused when ``enhance.json`` records a finished enhancement.

Several processes (``tools/detection_study.py --launcher pytorch`` under ``torchrun``, a process
group started by MMEngine's launcher): every rank first enhances its share of the night images
for each Semi-LLIE row still to compute (:func:`~.methods.enhance_images`); then the ranks other
than 0 return and rank 0 trains and tests the detectors one row after the other, as one process
does (each row's detector runs in a child process on one device).
"""
import hashlib
import json
import logging
import os.path as osp
import re
import shutil
import time
from dataclasses import asdict
from typing import List, Optional, Sequence

from ._io import dump_json_atomic, json_normalise
from .detector import (
    DEFAULT_DET_CONFIG,
    annotated_names,
    build_detector_config,
    resolve_annotations,
)
from .methods import Method, enhance_images
from .runner import run_row_subprocess
from .tables import metrics_to_row, write_tables

logger = logging.getLogger(__name__)


class StoredResultMismatch(RuntimeError):
    """A stored row was computed with other settings than the current ones."""


def slugify(name: str) -> str:
    """Folder name of a row: lower case, runs of other characters than ``a-z0-9`` become ``-``."""
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')
    return slug or 'method'


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def run_study(methods: Sequence[Method], images: str, train_ann: str, test_ann: str,
              work_dir: str, det_config: str = DEFAULT_DET_CONFIG, epochs: Optional[int] = None,
              img_scale: Optional[Sequence[int]] = None, batch_size: Optional[int] = None,
              num_workers: Optional[int] = None, seed: int = 0,
              pretrained_backbone: Optional[str] = None, cfg_options: Optional[dict] = None,
              enhance_device: str = 'cpu', use_teacher: bool = True, tile_size: int = 512,
              enhance_ext: Optional[str] = None, force: bool = False) -> List[dict]:
    """Run (or resume) the study and write ``table_vii.md`` / ``table_vii.csv`` in ``work_dir``.

    Args:
        methods (Sequence[Method]): the rows, in order.
        images (str): folder of the night images.
        train_ann (str): COCO JSON of the train split (visdrone2coco.py ``train.json``).
        test_ann (str): COCO JSON of the test split (``test.json``).
        work_dir (str): output folder; row ``NAME`` lives in ``work_dir/rows/<slug of NAME>``.
        det_config (str): the mmdet config.
        epochs, img_scale, batch_size, num_workers, seed, pretrained_backbone, cfg_options:
            see :func:`build_detector_config`.
        enhance_device (str): device of the Semi-LLIE enhancers.
        use_teacher (bool): enhance with the mean teacher (default) or the student.
        tile_size (int): tile side for enhancing large images.
        enhance_ext (str, optional): extension of enhanced images (default: as the input).
        force (bool): recompute rows that have a stored result.

    Returns:
        list[dict]: the row results (``name``, ``epochs``, ``metrics``, ``raw_metrics``,
        ``settings``, ...), in the order of ``methods``; on the ranks other than 0 of a process
        group, an empty list once their shares of the enhancement are done.
    """
    slugs = [slugify(m.name) for m in methods]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f'method names must give distinct folder names, got {slugs}')
    for m in methods:
        if m.kind == 'folder' and not osp.isdir(m.path):
            raise FileNotFoundError(f'[{m.name}] folder of enhanced images not found: {m.path}')
    names = annotated_names([train_ann, test_ann])
    ann_hashes = dict(train=_sha256(train_ann), test=_sha256(test_ann))
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if world_size > 1:  # the enhancement across the processes, then rank 0 alone
        for method, slug in zip(methods, slugs):
            row_dir = osp.abspath(osp.join(work_dir, 'rows', slug))
            if method.kind == 'semillie' and (
                    force or not osp.isfile(osp.join(row_dir, 'result.json'))):
                enhance_images(method, images, names, row_dir, device=enhance_device,
                               use_teacher=use_teacher, tile_size=tile_size, ext=enhance_ext)
        if rank != 0:
            return []
    results = []
    md_path, csv_path = osp.join(work_dir, 'table_vii.md'), osp.join(work_dir, 'table_vii.csv')
    detector = f'{osp.basename(det_config)}'
    for method, slug in zip(methods, slugs):
        row_dir = osp.abspath(osp.join(work_dir, 'rows', slug))
        result_path = osp.join(row_dir, 'result.json')
        img_dir = {'none': osp.abspath(images), 'folder': method.path,
                   'semillie': osp.join(row_dir, 'images')}[method.kind]
        row_train = osp.join(row_dir, 'annotations', 'train.json')
        row_test = osp.join(row_dir, 'annotations', 'test.json')
        cfg = build_detector_config(det_config, img_dir, row_train, row_test,
                                    osp.join(row_dir, 'train'), epochs=epochs,
                                    img_scale=img_scale, batch_size=batch_size,
                                    num_workers=num_workers, seed=seed,
                                    pretrained_backbone=pretrained_backbone,
                                    cfg_options=cfg_options)
        cfg_text = json.dumps(json_normalise(cfg.to_dict()), sort_keys=True)
        settings = json_normalise(dict(
            method=asdict(method), images=osp.abspath(images), annotations=ann_hashes,
            det_config=osp.abspath(det_config), use_teacher=use_teacher,
            detector_config_sha256=hashlib.sha256(cfg_text.encode()).hexdigest()))
        if osp.isfile(result_path) and not force:
            with open(result_path, encoding='utf-8') as f:
                stored = json.load(f)
            if stored.get('settings') != settings:
                diff = sorted(k for k in set(settings) | set(stored.get('settings', {}))
                              if settings.get(k) != stored.get('settings', {}).get(k))
                raise StoredResultMismatch(
                    f'[{method.name}] {result_path} was computed with other settings '
                    f'(differing: {", ".join(diff)}); use --force to recompute, or another '
                    f'--work-dir')
            logger.info('[%s] finished before: %s (skipped)', method.name, result_path)
            results.append(stored)
            continue

        start = time.time()
        if method.kind == 'semillie':
            enhance_images(method, images, names, row_dir, device=enhance_device,
                           use_teacher=use_teacher, tile_size=tile_size, ext=enhance_ext)
        resolve_annotations(train_ann, img_dir, row_train)
        resolve_annotations(test_ann, img_dir, row_test)
        train_dir = osp.join(row_dir, 'train')
        if osp.isdir(train_dir):  # an interrupted run: start the row again
            shutil.rmtree(train_dir)
        cfg_path = osp.join(row_dir, 'detector_config.py')
        cfg.dump(cfg_path)
        logger.info('[%s] training and testing the detector (%s)', method.name, cfg_path)
        raw = run_row_subprocess(cfg_path, osp.join(row_dir, 'metrics.json'))
        result = dict(name=method.name, epochs=cfg.train_cfg['max_epochs'],
                      metrics=metrics_to_row(raw), raw_metrics=raw, settings=settings,
                      image_dir=img_dir, detector_config=cfg_path,
                      no_detections='coco/bbox_mAP' not in raw,
                      seconds=round(time.time() - start, 1),
                      finished=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        dump_json_atomic(result, result_path)
        results.append(result)
        write_tables(results, md_path, csv_path, detector)
    write_tables(results, md_path, csv_path, detector)
    logger.info('tables written: %s, %s', md_path, csv_path)
    return results
