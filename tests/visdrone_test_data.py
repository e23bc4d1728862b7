"""A tiny generated VisDrone-DET style data set for the detection-study and converter tests
(the ``visdrone_factory`` fixture, made available to every test by ``tests/conftest.py``).

Each image is a dark (night-like) picture with a few filled rectangles, one per object; the
rectangles' colours depend on the class. Each image's annotation file lists its objects as
VisDrone-DET lines, plus one ignored region (category 0) and one "others" object (category 11);
optionally one image gets a malformed line.
"""
import os
import os.path as osp
import random

import numpy as np
import pytest
from PIL import Image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200),
           (40, 200, 200), (220, 120, 40), (120, 40, 220), (160, 160, 160), (240, 240, 240)]


def make_visdrone_set(root, num_images=6, size=(128, 96), seed=0, malformed=False,
                      ext='.jpg'):
    """Write ``root/images/*.jpg`` and ``root/annotations/*.txt``.

    Args:
        root (str): output folder.
        num_images (int): number of images.
        size (tuple): (width, height) of each image.
        seed (int): random seed of the layout.
        malformed (bool): add one malformed line (line 3 of the first image's file).
        ext (str): image file extension.

    Returns:
        dict: ``{'img_dir', 'ann_dir', 'objects': {file_name: [(x, y, w, h, score, cat, trunc,
        occ), ...]}, 'size', 'malformed': (txt path, line number) or None}`` where ``objects``
        holds every line written (including categories 0 and 11).
    """
    rng = random.Random(seed)
    img_dir, ann_dir = osp.join(root, 'images'), osp.join(root, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    width, height = size
    objects, bad = {}, None
    for i in range(num_images):
        name = f'night_{i:04d}{ext}'
        img = np.full((height, width, 3), 12, np.uint8)
        img += np.random.default_rng(seed + i).integers(0, 8, img.shape, dtype=np.uint8)
        lines = []
        # an ignored region in the top-left corner and an "others" object
        lines.append((0, 0, 20, 16, 0, 0, 0, 0))
        lines.append((width - 18, 2, 14, 12, 1, 11, 0, 1))
        for k in range(3):
            cat = rng.randint(1, 10)
            w, h = rng.randint(14, 40), rng.randint(14, 36)
            x, y = rng.randint(22, width - w - 1), rng.randint(18, height - h - 1)
            lines.append((x, y, w, h, 1, cat, rng.randint(0, 1), rng.randint(0, 2)))
        for x, y, w, h, score, cat, _, _ in lines:
            if cat in (0, 11):
                continue
            img[y:y + h, x:x + w] = np.array(COLOURS[cat - 1], np.uint8) // 3
        Image.fromarray(img).save(osp.join(img_dir, name))
        text = [','.join(str(v) for v in line) for line in lines]
        if i == 1:
            text[0] += ','  # some VisDrone files end lines with a comma
        if malformed and i == 0:
            text.insert(2, '10,20,30,4x,1,3,0,0')
            bad = (osp.join(ann_dir, osp.splitext(name)[0] + '.txt'), 3)
        with open(osp.join(ann_dir, osp.splitext(name)[0] + '.txt'), 'w') as f:
            f.write('\n'.join(text) + '\n')
        objects[name] = lines
    return dict(img_dir=img_dir, ann_dir=ann_dir, objects=objects, size=size, malformed=bad)


@pytest.fixture
def visdrone_factory():
    """The :func:`make_visdrone_set` function."""
    return make_visdrone_set
