"""The detector of the detection study: its shipped mmdet configs, one row's config and annotations.

The configs ship inside the package (``semillie_mm/detection/configs/``, installed as package
data), so the default is found in an installed package as in a checkout:

- ``faster-rcnn_r50_fpn_12e_visdrone-night.py`` (:data:`DEFAULT_DET_CONFIG`): Faster R-CNN
  R50-FPN trained from scratch for 12 epochs, the paper's setting;
- ``faster-rcnn_r50_fpn_12e_visdrone-night_imagenet.py``: the same from a local ImageNet
  ResNet-50 checkpoint (not the paper's setting).

:func:`find_detector_config` accepts either a file or the bare name of a shipped config.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from ..utils.fileio import IMG_EXTENSIONS
from ._io import dump_json_atomic

DETECTOR_CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'configs')
DEFAULT_DET_CONFIG = osp.join(DETECTOR_CONFIG_DIR, 'faster-rcnn_r50_fpn_12e_visdrone-night.py')


def find_detector_config(config: str) -> str:
    """The file of a detector config: a path, or the name of a config shipped with the package.

    Args:
        config (str): a config file, or a bare name (no folder; ``.py`` optional) of a file in
            :data:`DETECTOR_CONFIG_DIR`, e.g. ``'faster-rcnn_r50_fpn_12e_visdrone-night_imagenet'``.

    Returns:
        str: the shipped config's path for a bare name that is no file in the current folder;
        otherwise ``config`` unchanged (existing or not).
    """
    if not isinstance(config, str) or not config or osp.isfile(config) \
            or osp.basename(config) != config:
        return config
    shipped = osp.join(DETECTOR_CONFIG_DIR, config if config.endswith('.py') else f'{config}.py')
    return shipped if osp.isfile(shipped) else config


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


def annotated_names(ann_files: Sequence[str]) -> List[str]:
    """The image file names of COCO files, sorted, each once.

    Args:
        ann_files (Sequence[str]): COCO JSON files.

    Returns:
        list[str]: the ``file_name`` of every image.
    """
    names = []
    for path in ann_files:
        with open(path, encoding='utf-8') as f:
            names += [img['file_name'] for img in json.load(f)['images']]
    return sorted(set(names))


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
            :data:`DEFAULT_DET_CONFIG`).
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
        from .weight_init import check_local_checkpoint
        check_local_checkpoint(init_cfg.get('checkpoint'))
    return cfg
