"""Downstream detection study: Faster R-CNN on enhanced VisDrone night images (paper Sec. V, Table VII).

The logic of ``tools/detection_study.py`` (the command line).

For each enhancement method (a row of the table) the night images are enhanced, a Faster R-CNN is
trained from scratch on the train split and evaluated (COCO bbox AP) on the test split with mmdet's
own runner, and a Table VII-style Markdown and CSV file are written.

Methods are given as ``NAME=SPEC`` (``--method`` repeated; rows keep this order):

- ``Original=none``: the night images themselves;
- ``NAME=semillie:CONFIG[,CHECKPOINT]``: enhance with a trained Semi-LLIE model (or any model that
  ``semillie_mm.apis.SemiLLIEInferencer`` runs: the teacher by default, ``--use-student`` for the
  student); the enhanced images go to ``WORK_DIR/rows/<name>/images``;
- ``NAME=folder:DIR``: images already enhanced by another method (same file stems as the night
  images, same size, any image extension).

Example (the paper's setting; data from tools/dataset_converters/visdrone2coco.py)::

    python tools/detection_study.py \\
        --images data/visdrone_night/images --ann-dir data/visdrone_night/annotations \\
        --method Original=none \\
        --method "Semi-LLIE (Ours)=semillie:configs/semillie_visdrone.py,work_dirs/semillie/last.pth" \\
        --method "ZeroDCE=folder:results/zerodce_night" \\
        --work-dir work_dirs/detection_study

writes ``WORK_DIR/table_vii.md`` and ``WORK_DIR/table_vii.csv``.

Resuming: each finished row is stored in ``WORK_DIR/rows/<name>/result.json`` (written atomically)
together with the settings it was computed with; a rerun reads it back instead of recomputing.
A stored row whose settings differ from the current ones is an error (``--force`` recomputes).
Enhanced images are likewise reused when ``enhance.json`` records a finished enhancement.

Each row's training and testing runs in a fresh Python process (:func:`run_row`:
``Runner.from_cfg(cfg)``, ``runner.train()``, ``runner.test()``): mmengine
keeps process-wide named instances (DefaultScope, MessageHub, the visualizer named ``visualizer``
in mmdet's runtime config, loggers) that a second Runner in the same process would pick up
again, and a separate process also returns all memory between rows.
"""
import csv
import hashlib
import json
import logging
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from ..utils.fileio import IMG_EXTENSIONS, atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_DET_CONFIG = osp.join(REPO_ROOT, 'configs', 'detection',
                              'faster-rcnn_r50_fpn_12e_visdrone-night.py')
# Table VII columns and the keys of mmdet's CocoMetric (prefix 'coco', metric 'bbox')
METRICS = (('AP', 'coco/bbox_mAP'), ('AP50', 'coco/bbox_mAP_50'), ('AP75', 'coco/bbox_mAP_75'),
           ('APs', 'coco/bbox_mAP_s'), ('APm', 'coco/bbox_mAP_m'), ('APl', 'coco/bbox_mAP_l'))
KINDS = ('none', 'semillie', 'folder')


class StoredResultMismatch(RuntimeError):
    """A stored row was computed with other settings than the current ones."""


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


def slugify(name: str) -> str:
    """Folder name of a row: lower case, runs of other characters than ``a-z0-9`` become ``-``."""
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')
    return slug or 'method'


def dump_json_atomic(obj, path: str) -> None:
    """Write JSON to ``path`` atomically (:func:`atomic_write_json`)."""
    atomic_write_json(path, obj, indent=2)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _json_normalise(obj):
    """Tuples to lists etc., as a JSON round trip would."""
    return json.loads(json.dumps(obj, default=str))


# ------------------------------------------------------------------------------------------------
# Images and annotations
# ------------------------------------------------------------------------------------------------
def _images_by_stem(img_dir: str) -> Dict[str, str]:
    found = {}
    for name in sorted(os.listdir(img_dir)):
        stem, ext = osp.splitext(name)
        if ext.lower() in IMG_EXTENSIONS:
            if stem in found:
                raise ValueError(f'two images with the stem {stem!r} in {img_dir}: '
                                 f'{found[stem]} and {name}')
            found[stem] = name
    return found


def resolve_annotations(src_ann: str, img_dir: str, dst_ann: str) -> int:
    """Copy a COCO file, pointing each image at its file in ``img_dir``.

    Images are matched by file stem, so an enhancer that writes ``.png`` for ``.jpg`` inputs is
    fine. Each file's size must equal the annotated size (boxes are in those pixels).

    Args:
        src_ann (str): COCO JSON of the night images (visdrone2coco.py).
        img_dir (str): folder with one image per annotated image.
        dst_ann (str): where the resolved COCO JSON is written (atomically).

    Returns:
        int: the number of images.

    Raises:
        FileNotFoundError: ``img_dir`` lacks some images.
        ValueError: an image's size differs from the annotation's.
    """
    from PIL import Image
    with open(src_ann, encoding='utf-8') as f:
        coco = json.load(f)
    if not osp.isdir(img_dir):
        raise FileNotFoundError(f'image folder not found: {img_dir}')
    by_stem = _images_by_stem(img_dir)
    missing, wrong_size = [], []
    for img in coco['images']:
        name = by_stem.get(osp.splitext(osp.basename(img['file_name']))[0])
        if name is None:
            missing.append(img['file_name'])
            continue
        with Image.open(osp.join(img_dir, name)) as im:
            size = im.size
        if size != (img['width'], img['height']):
            wrong_size.append(f'{name}: {size[0]}x{size[1]} instead of '
                              f'{img["width"]}x{img["height"]}')
        img['file_name'] = name
    if missing:
        raise FileNotFoundError(f'{len(missing)} image(s) of {src_ann} are missing in {img_dir}, '
                                f'e.g. {missing[:5]}')
    if wrong_size:
        raise ValueError(f'{len(wrong_size)} image(s) in {img_dir} differ in size from the '
                         f'annotated night images (boxes would not match), e.g. {wrong_size[:3]}')
    dump_json_atomic(coco, dst_ann)
    return len(coco['images'])


def _annotated_names(ann_files: Sequence[str]) -> List[str]:
    names = []
    for path in ann_files:
        with open(path, encoding='utf-8') as f:
            names += [img['file_name'] for img in json.load(f)['images']]
    return sorted(set(names))


def enhance_images(method: Method, night_dir: str, names: Sequence[str], row_dir: str,
                   device: str = 'cpu', use_teacher: bool = True, tile_size: int = 512,
                   ext: Optional[str] = None) -> str:
    """Enhance the annotated night images with a Semi-LLIE model (reused when already done).

    Only the images listed in the annotation files are enhanced, by
    :class:`semillie_mm.apis.SemiLLIEInferencer`, into ``row_dir/images`` (same file names). A
    finished enhancement is recorded in ``row_dir/enhance.json`` with its settings.

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
    settings = _json_normalise(dict(config=method.config, checkpoint=method.checkpoint,
                                    use_teacher=use_teacher, tile_size=tile_size, ext=ext,
                                    night_dir=osp.abspath(night_dir), names=list(names)))
    if osp.isfile(record_path):
        with open(record_path, encoding='utf-8') as f:
            if json.load(f).get('settings') == settings:
                logger.info('[%s] enhanced images found in %s', method.name, out_dir)
                return out_dir
    if method.checkpoint is not None and not osp.isfile(method.checkpoint):
        raise FileNotFoundError(f'[{method.name}] enhancement checkpoint not found: '
                                f'{method.checkpoint}')
    if not osp.isfile(method.config):
        raise FileNotFoundError(f'[{method.name}] enhancement config not found: {method.config}')
    from semillie_mm.apis import SemiLLIEInferencer

    missing = [n for n in names if not osp.isfile(osp.join(night_dir, n))]
    if missing:
        raise FileNotFoundError(f'{len(missing)} night image(s) not found in {night_dir}, '
                                f'e.g. {missing[:3]}')
    if osp.isdir(out_dir):
        shutil.rmtree(out_dir)
    logger.info('[%s] enhancing %d images with %s', method.name, len(names), method.config)
    start = time.time()
    inferencer = SemiLLIEInferencer(method.config, method.checkpoint, device=device,
                                    network='teacher' if use_teacher else 'student',
                                    show_progress=False)
    res = inferencer([dict(img_path=osp.join(night_dir, n), rel=n) for n in names],
                     out_dir=out_dir, tile_size=tile_size or None, ext=ext, on_error='skip',
                     return_preds=False)
    if res['skipped']:
        raise RuntimeError(f'[{method.name}] {len(res["skipped"])} image(s) could not be '
                           f'enhanced: {res["skipped"][:3]}')
    dump_json_atomic(dict(settings=settings, processed=len(res['outputs']),
                          seconds=round(time.time() - start, 1)), record_path)
    return out_dir


# ------------------------------------------------------------------------------------------------
# Detector config
# ------------------------------------------------------------------------------------------------
def _leaf_dataset(ds):
    while 'dataset' in ds:  # dataset wrappers (RepeatDataset, ...)
        ds = ds['dataset']
    return ds


def build_detector_config(det_config: str, img_dir: str, train_ann: str, test_ann: str,
                          work_dir: str, epochs: Optional[int] = None,
                          img_scale: Optional[Sequence[int]] = None,
                          batch_size: Optional[int] = None, num_workers: Optional[int] = None,
                          seed: int = 0, pretrained_backbone: Optional[str] = None,
                          cfg_options: Optional[dict] = None):
    """Load the mmdet config and point it at one row's images and annotations.

    Validation is switched off (the test split is evaluated once, after training, by the test
    loop: the paper has no validation split).

    Args:
        det_config (str): the mmdet config (default
            ``configs/detection/faster-rcnn_r50_fpn_12e_visdrone-night.py``).
        img_dir (str): the row's image folder.
        train_ann (str): the row's train COCO JSON.
        test_ann (str): the row's test COCO JSON.
        work_dir (str): mmengine's work_dir for the row.
        epochs (int, optional): override the number of epochs; the lr steps are scaled with it.
        img_scale (Sequence[int], optional): ``(w, h)`` of every ``Resize`` in the pipelines.
        batch_size (int, optional): train images per GPU (the lr follows through auto_scale_lr).
        num_workers (int, optional): data-loader workers.
        seed (int): random seed of the run.
        pretrained_backbone (str, optional): local checkpoint for the backbone's init_cfg.
        cfg_options (dict, optional): more overrides, as mmengine's ``--cfg-options``.

    Returns:
        mmengine.Config: the config.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(det_config)
    img_dir = osp.abspath(img_dir).rstrip('/') + '/'
    for key, ann in (('train_dataloader', train_ann), ('test_dataloader', test_ann)):
        ds = _leaf_dataset(cfg[key]['dataset'])
        ds['data_root'] = ''
        ds['ann_file'] = osp.abspath(ann)
        ds['data_prefix'] = dict(img=img_dir)
    cfg.test_evaluator['ann_file'] = osp.abspath(test_ann)
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.work_dir = osp.abspath(work_dir)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.launcher = 'none'
    if not cfg.get('default_scope'):
        cfg.default_scope = 'mmdet'

    if epochs is not None:
        old = cfg.train_cfg['max_epochs']
        cfg.train_cfg['max_epochs'] = epochs
        if 'val_interval' in cfg.train_cfg:
            cfg.train_cfg['val_interval'] = epochs
        for sched in cfg.get('param_scheduler', None) or []:
            if sched.get('by_epoch', True):
                if 'end' in sched and sched['end'] == old:
                    sched['end'] = epochs
                if 'milestones' in sched:
                    sched['milestones'] = [max(1, int(round(m * epochs / old)))
                                           for m in sched['milestones']]
    if img_scale is not None:
        for key in ('train_dataloader', 'test_dataloader'):
            for t in _leaf_dataset(cfg[key]['dataset'])['pipeline']:
                if t['type'] == 'Resize':
                    t['scale'] = tuple(img_scale)
    if batch_size is not None:
        cfg.train_dataloader['batch_size'] = batch_size
    if num_workers is not None:
        for key in ('train_dataloader', 'test_dataloader'):
            cfg[key]['num_workers'] = num_workers
            cfg[key]['persistent_workers'] = num_workers > 0
    if pretrained_backbone is not None:
        cfg.model['backbone']['init_cfg'] = dict(type='LocalPretrained',
                                                 checkpoint=osp.abspath(pretrained_backbone))
        imports = list((cfg.get('custom_imports') or {}).get('imports', []))
        if 'semillie_mm.detection' not in imports:
            cfg.custom_imports = dict(imports=imports + ['semillie_mm.detection'],
                                      allow_failed_imports=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_cfg = cfg.model['backbone'].get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') in ('LocalPretrained', 'Pretrained'):
        # fail now, with a clear message, rather than in the training process
        from semillie_mm.detection.weight_init import check_local_checkpoint
        check_local_checkpoint(init_cfg.get('checkpoint'))
    return cfg


# ------------------------------------------------------------------------------------------------
# Training and testing one row (in a child process)
# ------------------------------------------------------------------------------------------------
def run_row(cfg_path: str, metrics_path: str) -> None:
    """Train and test one detector with mmengine's Runner; write the test metrics (child side).

    Args:
        cfg_path (str): the row's dumped detector config.
        metrics_path (str): where the test metrics go (JSON, atomically).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(cfg_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    dump_json_atomic({k: float(v) for k, v in metrics.items()}, metrics_path)


_CHILD = ('import sys; from semillie_mm.detection.study import run_row; '
          'run_row(sys.argv[1], sys.argv[2])')


def run_row_subprocess(cfg_path: str, metrics_path: str) -> dict:
    """Run :func:`run_row` in a fresh Python process and return its metrics.

    Args:
        cfg_path (str): the row's dumped detector config.
        metrics_path (str): where the child writes the metrics.

    Returns:
        dict: the test metrics.

    Raises:
        RuntimeError: the child process failed (its output is on the console and in the
            mmengine log under the config's work_dir).
    """
    if osp.exists(metrics_path):
        os.remove(metrics_path)
    cmd = [sys.executable, '-c', _CHILD, cfg_path, metrics_path]
    proc = subprocess.run(cmd)
    if proc.returncode != 0 or not osp.isfile(metrics_path):
        raise RuntimeError(f'training/testing failed (exit code {proc.returncode}): '
                           f'{" ".join(cmd)}')
    with open(metrics_path, encoding='utf-8') as f:
        return json.load(f)


def metrics_to_row(metrics: dict) -> Dict[str, Optional[float]]:
    """mmdet's CocoMetric results to Table VII percentages (one decimal).

    A missing key means mmdet found no detection at all on the test set (it then logs "The
    testing results of the whole dataset is empty" and returns no bbox metric): the APs are 0.
    pycocotools' -1 (no ground truth of that size) becomes ``None``.

    Args:
        metrics (dict): ``{'coco/bbox_mAP': 0.094, ...}``.

    Returns:
        dict: ``{'AP': 9.4, 'AP50': ..., 'APl': ...}``.
    """
    row = {}
    for col, key in METRICS:
        v = metrics.get(key, 0.0)
        row[col] = None if v < 0 else round(100 * v, 1)
    return row


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return 'n/a' if v is None else f'{v:.1f}'


def write_tables(results: Sequence[dict], md_path: str, csv_path: str,
                 detector: str = 'Faster R-CNN') -> None:
    """Write the Table VII-style Markdown and CSV files (atomically).

    Args:
        results (Sequence[dict]): row results, each with ``name``, ``epochs`` and ``metrics``
            (as :func:`metrics_to_row`).
        md_path (str): Markdown output.
        csv_path (str): CSV output.
        detector (str): the detector named in the Markdown caption.
    """
    cols = [c for c, _ in METRICS]
    lines = ['| Model | Epochs | ' + ' | '.join(cols) + ' |',
             '|---|---:|' + '---:|' * len(cols)]
    for r in results:
        lines.append(f'| {r["name"]} | {r["epochs"]} | '
                     + ' | '.join(_fmt(r['metrics'][c]) for c in cols) + ' |')
    text = (f'Object detection with {detector} on enhanced VisDrone night images: COCO bbox AP '
            f'(%) on the test split.\n\n' + '\n'.join(lines) + '\n')
    for path, writer in ((md_path, None), (csv_path, 'csv')):
        with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8', newline='') as f:
            if writer is None:
                f.write(text)
            else:
                w = csv.writer(f)
                w.writerow(['Model', 'Epochs'] + cols)
                for r in results:
                    w.writerow([r['name'], r['epochs']] + [_fmt(r['metrics'][c]) for c in cols])


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------
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
        ``settings``, ...), in the order of ``methods``.
    """
    slugs = [slugify(m.name) for m in methods]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f'method names must give distinct folder names, got {slugs}')
    for m in methods:
        if m.kind == 'folder' and not osp.isdir(m.path):
            raise FileNotFoundError(f'[{m.name}] folder of enhanced images not found: {m.path}')
    names = _annotated_names([train_ann, test_ann])
    ann_hashes = dict(train=_sha256(train_ann), test=_sha256(test_ann))
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
        cfg_text = json.dumps(_json_normalise(cfg.to_dict()), sort_keys=True)
        settings = _json_normalise(dict(
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
