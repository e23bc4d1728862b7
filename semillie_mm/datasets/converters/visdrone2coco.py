"""Convert VisDrone-DET annotations to COCO JSON with a seeded, recorded train/test split.

VisDrone-DET keeps one ``.txt`` file per image, one object a line::

    bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion

Object categories: 0 ignored region, 1 pedestrian, 2 people, 3 bicycle, 4 car, 5 van, 6 truck,
7 tricycle, 8 awning-tricycle, 9 bus, 10 motor, 11 others. The ``score`` of a ground-truth line is
1 when the box counts in evaluation and 0 when it is to be ignored.

The COCO files have the 10 detection classes as categories 1..10 (the VisDrone ids unchanged):

- category 1..10, score 1: an ordinary annotation (``iscrowd=0``);
- category 1..10, score 0: kept as an ignore area of its own class (``iscrowd=1``);
- category 0 (ignored region): an ignore area for every class, i.e. one ``iscrowd=1`` annotation
  per category, so that COCO evaluation does not count detections of any class inside it as
  false positives (COCO's crowd regions are per category) and mmdet marks them ``ignore_flag=1``;
- category 11 (others): dropped, as in the paper (Sec. V: "excluding the 'others' category").

Boxes with a non-positive width or height are dropped and counted. Truncation and occlusion are
kept as extra annotation fields.

The images are split into train/test with a seeded shuffle of the sorted image names: 526/131 for
the 657 night test images of the paper (Sec. V), the same train fraction (526/657, rounded) for
other counts, or ``--num-train``. The split is written to ``split.json`` and recorded in the
``info`` field of each COCO file; ``--split-file`` reuses a recorded split.

Malformed lines are an error naming the file and line number; with ``--skip-bad`` they are logged,
skipped and counted instead.

Example::

    python tools/dataset_converters/visdrone2coco.py \\
        --img-dir data/visdrone_night/images --ann-dir data/visdrone_night/annotations_visdrone \\
        --out-dir data/visdrone_night/annotations --seed 0

writes ``train.json``, ``test.json``, ``all.json`` and ``split.json`` to ``--out-dir``.
"""
import json
import logging
import os
import os.path as osp
import random
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from ...utils.fileio import IMG_EXTENSIONS, atomic_write_json

logger = logging.getLogger('visdrone2coco')

CLASSES = ('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck', 'tricycle',
           'awning-tricycle', 'bus', 'motor')
IGNORED_REGION = 0
OTHERS = 11
PAPER_NUM_IMAGES = 657
PAPER_NUM_TRAIN = 526


class MalformedLineError(ValueError):
    """A VisDrone annotation line that cannot be parsed."""


def categories() -> List[dict]:
    """The COCO ``categories`` list: the 10 VisDrone detection classes with ids 1..10.

    Returns:
        list[dict]: ``[{'id': 1, 'name': 'pedestrian', 'supercategory': 'visdrone'}, ...]``.
    """
    return [dict(id=i + 1, name=name, supercategory='visdrone') for i, name in enumerate(CLASSES)]


def parse_line(line: str) -> Optional[Tuple[float, float, float, float, int, int, int, int]]:
    """Parse one VisDrone-DET annotation line.

    A trailing comma (present in some VisDrone files) is allowed; blank lines give ``None``.

    Args:
        line (str): the text of the line.

    Returns:
        tuple | None: ``(left, top, width, height, score, category, truncation, occlusion)``
        or ``None`` for a blank line.

    Raises:
        MalformedLineError: wrong number of fields, a non-numeric field, or a category
            outside 0..11.
    """
    text = line.strip()
    if not text:
        return None
    fields = [f.strip() for f in text.split(',')]
    if fields and fields[-1] == '':
        fields = fields[:-1]
    if len(fields) != 8:
        raise MalformedLineError(f'expected 8 comma-separated fields, got {len(fields)}: {text!r}')
    try:
        left, top, width, height = (float(f) for f in fields[:4])
        score, category, truncation, occlusion = (int(float(f)) for f in fields[4:])
    except ValueError:
        raise MalformedLineError(f'non-numeric field: {text!r}') from None
    if not 0 <= category <= OTHERS:
        raise MalformedLineError(f'object_category {category} is outside 0..11: {text!r}')
    return left, top, width, height, score, category, truncation, occlusion


def read_annotation_file(path: str, skip_bad: bool = False) -> Tuple[list, int]:
    """Read a VisDrone-DET annotation file.

    Args:
        path (str): the ``.txt`` file.
        skip_bad (bool): skip malformed lines (logging each) instead of raising.

    Returns:
        tuple[list, int]: the parsed objects (tuples as :func:`parse_line`) and the number of
        malformed lines skipped.

    Raises:
        MalformedLineError: on the first malformed line (message ``path:line: reason``) unless
            ``skip_bad``.
    """
    objects, bad = [], 0
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            try:
                obj = parse_line(line)
            except MalformedLineError as e:
                if not skip_bad:
                    raise MalformedLineError(f'{path}:{lineno}: {e}') from None
                logger.warning('skipping malformed line %s:%d: %s', path, lineno, e)
                bad += 1
                continue
            if obj is not None:
                objects.append(obj)
    return objects, bad


def split_counts(num_images: int, num_train: Optional[int] = None) -> Tuple[int, int]:
    """Number of train and test images.

    Args:
        num_images (int): images in total.
        num_train (int, optional): explicit train count; by default the paper's fraction
            526/657, rounded (exactly 526/131 for 657 images).

    Returns:
        tuple[int, int]: ``(num_train, num_test)``.
    """
    if num_train is None:
        num_train = int(round(num_images * PAPER_NUM_TRAIN / PAPER_NUM_IMAGES))
    if not 0 <= num_train <= num_images:
        raise ValueError(f'num_train={num_train} is outside 0..{num_images}')
    return num_train, num_images - num_train


def make_split(names: Sequence[str], seed: int = 0,
               num_train: Optional[int] = None) -> Dict[str, List[str]]:
    """Seeded train/test split of image names.

    The names are sorted, shuffled with ``random.Random(seed)`` and the first ``num_train`` go to
    train, so the split depends only on the set of names, the seed and the count.

    Args:
        names (Sequence[str]): image file names.
        seed (int): shuffle seed.
        num_train (int, optional): see :func:`split_counts`.

    Returns:
        dict: ``{'train': [...], 'test': [...]}``, each sorted.
    """
    ordered = sorted(names)
    n_train, _ = split_counts(len(ordered), num_train)
    rng = random.Random(seed)
    rng.shuffle(ordered)
    return dict(train=sorted(ordered[:n_train]), test=sorted(ordered[n_train:]))


def find_images(img_dir: str) -> Dict[str, str]:
    """Map image stems to file names in ``img_dir`` (non-recursive).

    Raises:
        ValueError: two images share a stem (e.g. ``a.jpg`` and ``a.png``).
    """
    found = {}
    for name in sorted(os.listdir(img_dir)):
        stem, ext = osp.splitext(name)
        if ext.lower() not in IMG_EXTENSIONS:
            continue
        if stem in found:
            raise ValueError(f'two images with the stem {stem!r} in {img_dir}: '
                             f'{found[stem]} and {name}')
        found[stem] = name
    return found


def objects_to_coco_annotations(objects, image_id: int, start_id: int) -> Tuple[list, dict]:
    """Turn parsed VisDrone objects of one image into COCO annotations.

    Args:
        objects (list): tuples as returned by :func:`parse_line`.
        image_id (int): the COCO image id.
        start_id (int): the id of the first annotation made.

    Returns:
        tuple[list, dict]: the annotations and counts ``{'objects', 'ignore_regions',
        'ignored_boxes', 'others_dropped', 'degenerate_dropped'}``.
    """
    anns = []
    counts = dict(objects=0, ignore_regions=0, ignored_boxes=0, others_dropped=0,
                  degenerate_dropped=0)

    def add(bbox, category_id, iscrowd, truncation, occlusion):
        anns.append(dict(id=start_id + len(anns), image_id=image_id, category_id=category_id,
                         bbox=list(bbox), area=bbox[2] * bbox[3], iscrowd=iscrowd,
                         segmentation=[], truncation=truncation, occlusion=occlusion))

    for left, top, width, height, score, category, truncation, occlusion in objects:
        if category == OTHERS:
            counts['others_dropped'] += 1
            continue
        if width <= 0 or height <= 0:
            counts['degenerate_dropped'] += 1
            continue
        bbox = (left, top, width, height)
        if category == IGNORED_REGION:
            counts['ignore_regions'] += 1
            for cat_id in range(1, len(CLASSES) + 1):
                add(bbox, cat_id, 1, truncation, occlusion)
        elif score == 0:
            counts['ignored_boxes'] += 1
            add(bbox, category, 1, truncation, occlusion)
        else:
            counts['objects'] += 1
            add(bbox, category, 0, truncation, occlusion)
    return anns, counts


def convert(img_dir: str, ann_dir: str, out_dir: str, seed: int = 0,
            num_train: Optional[int] = None, split_file: Optional[str] = None,
            skip_bad: bool = False) -> dict:
    """Convert a VisDrone-DET folder pair into COCO train/test/all JSON files.

    Every image in ``img_dir`` needs an annotation file ``<stem>.txt`` in ``ann_dir``.

    Args:
        img_dir (str): folder of images.
        ann_dir (str): folder of VisDrone-DET ``.txt`` annotation files.
        out_dir (str): where ``train.json``, ``test.json``, ``all.json`` and ``split.json`` go.
        seed (int): split seed (ignored with ``split_file``).
        num_train (int, optional): explicit train count (default: the paper's 526/657 fraction).
        split_file (str, optional): a ``split.json`` written before; its split is reused and it
            must name exactly the images found.
        skip_bad (bool): skip malformed lines instead of raising.

    Returns:
        dict: a summary with the split sizes and the counts of objects, ignore regions, dropped
        "others" and degenerate boxes and skipped malformed lines.

    Raises:
        FileNotFoundError: a folder or an image's annotation file is missing.
        MalformedLineError: a malformed line, unless ``skip_bad``.
    """
    for d in (img_dir, ann_dir):
        if not osp.isdir(d):
            raise FileNotFoundError(f'folder not found: {d}')
    images = find_images(img_dir)
    if not images:
        raise FileNotFoundError(f'no images ({", ".join(IMG_EXTENSIONS)}) in {img_dir}')
    missing = [stem + '.txt' for stem in images if not osp.isfile(osp.join(ann_dir, stem + '.txt'))]
    if missing:
        raise FileNotFoundError(f'{len(missing)} image(s) have no annotation file in {ann_dir}, '
                                f'e.g. {missing[:5]}')
    names = sorted(images.values())

    if split_file is not None:
        try:
            with open(split_file, encoding='utf-8') as f:
                recorded = json.load(f)
            recorded['train'], recorded['test']
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f'split file {split_file} is not a split.json written by this '
                             f'converter ({type(e).__name__}: {e})') from e
        split = dict(train=sorted(recorded['train']), test=sorted(recorded['test']))
        if sorted(split['train'] + split['test']) != names:
            raise ValueError(f'the split in {split_file} does not list exactly the '
                             f'{len(names)} images of {img_dir}')
        split_info = dict(recorded.get('info', {}), reused_from=split_file)
    else:
        split = make_split(names, seed=seed, num_train=num_train)
        split_info = dict(seed=seed, method='sorted names, random.Random(seed).shuffle, '
                          'first num_train = train', num_train=len(split['train']),
                          num_test=len(split['test']))

    totals = dict(objects=0, ignore_regions=0, ignored_boxes=0, others_dropped=0,
                  degenerate_dropped=0, bad_lines=0)
    coco_images, coco_anns = {}, {}
    next_ann_id = 1
    for image_id, name in enumerate(names, start=1):
        stem = osp.splitext(name)[0]
        with Image.open(osp.join(img_dir, name)) as im:
            width, height = im.size
        objects, bad = read_annotation_file(osp.join(ann_dir, stem + '.txt'), skip_bad=skip_bad)
        anns, counts = objects_to_coco_annotations(objects, image_id, next_ann_id)
        next_ann_id += len(anns)
        for k, v in counts.items():
            totals[k] += v
        totals['bad_lines'] += bad
        coco_images[name] = dict(id=image_id, file_name=name, width=width, height=height)
        coco_anns[name] = anns
    if totals['bad_lines']:
        logger.warning('skipped %d malformed line(s) in total', totals['bad_lines'])

    os.makedirs(out_dir, exist_ok=True)
    source = dict(img_dir=osp.abspath(img_dir), ann_dir=osp.abspath(ann_dir))
    subsets = dict(train=split['train'], test=split['test'], all=names)
    for subset, subset_names in subsets.items():
        coco = dict(
            info=dict(description=f'VisDrone-DET night images, {subset} subset (visdrone2coco.py)',
                      subset=subset, split=split_info, source=source),
            images=[coco_images[n] for n in subset_names],
            annotations=[a for n in subset_names for a in coco_anns[n]],
            categories=categories())
        atomic_write_json(osp.join(out_dir, f'{subset}.json'), coco)
    atomic_write_json(osp.join(out_dir, 'split.json'),
                      dict(info=split_info, train=split['train'], test=split['test']))
    summary = dict(num_images=len(names), num_train=len(split['train']),
                   num_test=len(split['test']), **totals)
    logger.info('converted: %s', summary)
    return summary
