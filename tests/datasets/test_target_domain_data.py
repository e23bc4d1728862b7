import json
import os
import os.path as osp

from semillie_mm.datasets.target_domain_data import (
    TARGET_RANGES,
    TARGET_SOURCES,
    prepare_target_domain_data,
    sample_target_params,
    synthesize_target_low_light,
)
from semillie_mm.datasets.transforms.low_light_synthesis import synthesize_low_light

import cv2
import numpy as np
import pytest

SOURCES = [
    dict(name='a', package='fake', split='labeled', scale=1.0),
    dict(name='b', package='fake', split='unlabeled', scale=1.0),
    dict(name='c', package='fake', split='val', scale=0.5),
]


def fake_loader(name, package):
    rng = np.random.default_rng(ord(name))
    h, w = dict(a=(160, 240), b=(130, 140), c=(260, 300))[name]
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)],
                   -1)
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1]


def test_photo_groups_do_not_overlap():
    groups = {}
    for src in TARGET_SOURCES:
        groups.setdefault(src['name'], set()).add(src['split'])
    assert all(len(s) == 1 for s in groups.values())
    names = {src['split']: [] for src in TARGET_SOURCES}
    for src in TARGET_SOURCES:
        names[src['split']].append(src['name'])
    assert set(names) == {'labeled', 'unlabeled', 'val'}


def test_build_is_deterministic_and_rebuildable(tmp_path):
    r1 = prepare_target_domain_data(str(tmp_path / 'one'), sources=SOURCES,
                                    loader=fake_loader)
    r2 = prepare_target_domain_data(str(tmp_path / 'two'), sources=SOURCES,
                                    loader=fake_loader)
    m1 = json.load(open(osp.join(r1, 'manifest.json')))
    m2 = json.load(open(osp.join(r2, 'manifest.json')))
    assert m1['files'] == m2['files']
    # a=160x240 -> 1x2 tiles, b=130x140 -> 1x1, c=130x150 at 0.5 -> 1x1
    assert m1['counts'] == {'labeled': 2, 'unlabeled': 1, 'val': 1,
                            'val_source': 1}
    for item in m1['files']:
        low1 = _read(osp.join(r1, item['input']))
        assert np.array_equal(low1, _read(osp.join(r2, item['input'])))
        gt = _read(osp.join(r1, item['gt']))
        top, left, th, tw = item['box']
        src = next(s for s in SOURCES if s['name'] == item['source'])
        photo = fake_loader(item['source'], 'fake')
        if src['scale'] != 1.0:
            photo = cv2.resize(photo, (150, 130), interpolation=cv2.INTER_AREA)
        assert np.array_equal(gt, photo[top:top + th, left:left + tw])
        # every input is rebuilt from its manifest parameters
        if item['degradation'] == 'target':
            ref = synthesize_target_low_light(gt, item['params'])
            assert item['split'] in ('unlabeled', 'val')
        else:
            ref = synthesize_low_light(gt, item['params'])
            assert item['split'] in ('labeled', 'val_source')
        assert np.array_equal(low1, ref)
    # val and val_source: same clean tiles, different degradations
    val = [f for f in m1['files'] if f['split'] == 'val']
    src = [f for f in m1['files'] if f['split'] == 'val_source']
    assert [f['box'] for f in val] == [f['box'] for f in src]
    assert not np.array_equal(_read(osp.join(r1, val[0]['input'])),
                              _read(osp.join(r1, src[0]['input'])))
    # idempotent: a complete build is returned untouched
    stamp = os.stat(osp.join(r1, 'manifest.json')).st_mtime_ns
    prepare_target_domain_data(r1, sources=SOURCES, loader=fake_loader)
    assert os.stat(osp.join(r1, 'manifest.json')).st_mtime_ns == stamp


def test_target_synthesis_matches_closed_form_without_noise():
    """Noise-free, near-lossless JPEG: out = (k * cast * x^g)^(1/g)."""
    rng = np.random.default_rng(0)
    clean = cv2.GaussianBlur(
        rng.integers(0, 256, (48, 64, 3)).astype(np.uint8), (0, 0), 3)
    params = dict(exposure=0.05, gamma=2.2, shot_gain=0.0, read_std=0.0,
                  noise_seed=1, version=1, cast=[1.0, 0.7, 0.4],
                  jpeg_quality=100)
    out = synthesize_target_low_light(clean, params).astype(np.float64)
    x = clean / 255.
    ref = 255 * (0.05 * np.array([1.0, 0.7, 0.4]) * x**2.2)**(1 / 2.2)
    assert np.abs(out - ref).mean() < 1.0
    assert np.abs(out - ref).max() <= 6
    # the cast: blue darker than green darker than red
    means = out.reshape(-1, 3).mean(0)
    assert means[0] > means[1] > means[2]


def test_target_params_follow_the_ranges():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = sample_target_params(rng)
        assert TARGET_RANGES['exposure'][0] <= p['exposure'] <= \
            TARGET_RANGES['exposure'][1]
        assert p['cast'][0] == 1.0
        assert TARGET_RANGES['cast_b'][0] <= p['cast'][2] <= \
            TARGET_RANGES['cast_b'][1]
        lo, hi = TARGET_RANGES['jpeg_quality']
        assert lo <= p['jpeg_quality'] <= hi
        assert isinstance(p['jpeg_quality'], int)


def test_not_a_build_is_not_replaced(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not a target-domain build'):
        prepare_target_domain_data(str(tmp_path / 'x'), sources=SOURCES,
                                   loader=fake_loader)


def _snapshot(root):
    return {osp.relpath(osp.join(d, n), root): open(osp.join(d, n), 'rb').read()
            for d, _, names in os.walk(root) for n in names}


def test_failed_rebuild_keeps_the_previous_build(tmp_path, monkeypatch):
    """A forced rebuild that fails mid-build, or while moving the new folder
    in (after the old one was moved aside), leaves the previous complete
    build in place and no temporary folder (issue 19, item 5)."""
    from semillie_mm.utils import fileio
    root = str(tmp_path / 'target')
    prepare_target_domain_data(root, sources=SOURCES, loader=fake_loader)
    before = _snapshot(root)

    def failing_loader(name, package):
        if name == 'b':
            raise KeyboardInterrupt('simulated interruption')
        return fake_loader(name, package)

    with pytest.raises(KeyboardInterrupt):
        prepare_target_domain_data(root, seed=1, force=True, sources=SOURCES,
                                   loader=failing_loader)
    assert _snapshot(root) == before
    assert os.listdir(tmp_path) == ['target']

    real_replace = os.replace

    def failing_replace(src, dst):
        if dst == root and osp.basename(str(src)).startswith('.target.tmp-'):
            raise OSError(28, 'No space left on device')
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, 'replace', failing_replace)
    with pytest.raises(OSError):
        prepare_target_domain_data(root, seed=1, force=True, sources=SOURCES,
                                   loader=fake_loader)
    monkeypatch.undo()
    assert _snapshot(root) == before
    assert os.listdir(tmp_path) == ['target']
