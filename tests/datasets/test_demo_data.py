"""Tests of the embedded demo data builder."""
import json
import os
import os.path as osp

from semillie_mm.datasets import demo_data
from semillie_mm.datasets.demo_data import prepare_demo_data
from semillie_mm.datasets.transforms.low_light_synthesis import synthesize_low_light

import cv2
import numpy as np
import pytest

# A reduced photo list (real packaged photos, downscaled) keeps the test fast.
SMALL = [
    dict(name='chelsea', package='skimage', split='labeled', scale=0.5),
    dict(name='astronaut', package='skimage', split='unlabeled', scale=0.3),
    dict(name='flower', package='sklearn', split='val', scale=0.5),
]


def _read_rgb(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = osp.join(dirpath, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = fh.read()
    return out


def test_build_layout_manifest_and_rebuild_from_params(tmp_path):
    root = str(tmp_path / 'demo')
    assert prepare_demo_data(root, seed=0, sources=SMALL) == root
    with open(osp.join(root, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['seed'] == 0
    assert [s['name'] for s in manifest['sources']] == [
        'chelsea', 'astronaut', 'flower'
    ]
    counts = manifest['counts']
    # chelsea 300x451 * 0.5 -> 150x226: rows {0}, cols {0, 96} -> 2 tiles
    # astronaut 512 * 0.3 -> 154x154: 1 tile; flower 427x640 * 0.5 -> 214x320:
    # stride 128 -> 1 x 2 tiles
    assert counts == dict(labeled=2, unlabeled=1, val=2)
    assert sorted(os.listdir(osp.join(root, 'labeled', 'input'))) == sorted(
        os.listdir(osp.join(root, 'labeled', 'GT')))
    assert not osp.exists(osp.join(root, 'unlabeled', 'GT'))
    assert len(os.listdir(osp.join(root, 'unlabeled', 'input'))) == 1
    for item in manifest['files']:
        low = _read_rgb(osp.join(root, item['input']))
        assert low.shape == (128, 128, 3)
        if item['split'] == 'unlabeled':
            assert 'gt' not in item
            continue
        gt = _read_rgb(osp.join(root, item['gt']))
        # the manifest's parameters rebuild the input byte for byte
        np.testing.assert_array_equal(
            synthesize_low_light(np.ascontiguousarray(gt), item['params']),
            low)
        assert low.mean() < gt.mean()
    # the GT tile is the photo's window
    from skimage import data
    photo = cv2.resize(data.chelsea(), (226, 150), interpolation=cv2.INTER_AREA)
    first = [f for f in manifest['files'] if f['source'] == 'chelsea'][1]
    top, left, h, w = first['box']
    np.testing.assert_array_equal(
        _read_rgb(osp.join(root, first['gt'])),
        photo[top:top + h, left:left + w])


def test_idempotent_deterministic_and_seeded(tmp_path, monkeypatch):
    root = str(tmp_path / 'demo')
    prepare_demo_data(root, seed=0, sources=SMALL)
    before = _snapshot(root)
    # a matching build returns at once: nothing is loaded or synthesised
    monkeypatch.setattr(demo_data, 'synthesize_low_light',
                        lambda *a, **k: pytest.fail('rebuilt'))
    prepare_demo_data(root, seed=0, sources=SMALL)
    monkeypatch.undo()
    assert _snapshot(root) == before
    # a second build elsewhere gives the same bytes
    other = str(tmp_path / 'other')
    prepare_demo_data(other, seed=0, sources=SMALL)
    assert _snapshot(other) == before
    # another seed replaces the old build
    prepare_demo_data(root, seed=1, sources=SMALL)
    with open(osp.join(root, 'manifest.json')) as f:
        assert json.load(f)['seed'] == 1
    assert _snapshot(root) != before
    # a missing file makes the build incomplete: rebuilt
    prepare_demo_data(other, seed=0, sources=SMALL)
    os.remove(osp.join(other, 'val', 'GT', sorted(
        os.listdir(osp.join(other, 'val', 'GT')))[0]))
    prepare_demo_data(other, seed=0, sources=SMALL)
    assert _snapshot(other) == before


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    root = str(tmp_path / 'demo')
    calls = []

    def failing(img, params):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt('simulated interruption')
        return synthesize_low_light(img, params)

    monkeypatch.setattr(demo_data, 'synthesize_low_light', failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_demo_data(root, seed=0, sources=SMALL)
    assert os.listdir(str(tmp_path)) == []  # no root, no temporary folder
    # an existing good build survives a failed forced rebuild
    monkeypatch.undo()
    prepare_demo_data(root, seed=0, sources=SMALL)
    before = _snapshot(root)
    calls.clear()
    monkeypatch.setattr(demo_data, 'synthesize_low_light', failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_demo_data(root, seed=0, sources=SMALL, force=True)
    assert _snapshot(root) == before
    assert os.listdir(str(tmp_path)) == ['demo']


def test_refuses_foreign_folder(tmp_path):
    root = tmp_path / 'mine'
    root.mkdir()
    (root / 'precious.txt').write_text('user data')
    with pytest.raises(FileExistsError, match='force=True'):
        prepare_demo_data(str(root), sources=SMALL)
    assert (root / 'precious.txt').exists()


def test_datasets_prepare_demo_on_first_use(tmp_path):
    from mmagic.registry import DATASETS
    root = str(tmp_path / 'demo')
    small = dict(type='demo', seed=0, sources=SMALL)
    paired = DATASETS.build(dict(type='PairedLowLightDataset', data_root=root,
                                 input_dir='val/input', gt_dir='val/GT',
                                 prepare=small))
    assert len(paired) == 2
    unpaired = DATASETS.build(dict(type='UnpairedLowLightDataset',
                                   data_root=root, input_dir='unlabeled/input',
                                   prepare=small))
    assert len(unpaired) == 1
    with pytest.raises(ValueError, match='prepare'):
        DATASETS.build(dict(type='UnpairedLowLightDataset', data_root=root,
                            prepare='download'))


def test_full_default_build(tmp_path):
    """The documented numbers: 109 / 30 / 12 tiles, photos not shared."""
    root = prepare_demo_data(str(tmp_path / 'demo'))
    with open(osp.join(root, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['counts'] == dict(labeled=109, unlabeled=30, val=12)
    by_split = {}
    for src in manifest['sources']:
        by_split.setdefault(src['split'], set()).add(src['name'])
    assert by_split['val'] == {'coffee', 'flower'}
    assert not (by_split['labeled'] & by_split['unlabeled'])
    assert not (by_split['val'] & (by_split['labeled'] | by_split['unlabeled']))
    for split, n in manifest['counts'].items():
        folder = osp.join(root, split, 'input')
        assert len(os.listdir(folder)) == n
