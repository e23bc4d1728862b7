import json
import os
import os.path as osp
import runpy
import sys

import semillie_mm.datasets.converters.visdrone2coco as v2c

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'dataset_converters', 'visdrone2coco.py')


def _run_tool(args, monkeypatch, capsys):
    """Run the command line as ``__main__``; exit status and stderr lines."""
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', ['visdrone2coco.py', *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(TOOL, run_name='__main__')
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err.strip().splitlines()


def test_parse_line():
    assert v2c.parse_line('684,8,273,116,0,0,0,0') == (684.0, 8.0, 273.0, 116.0, 0, 0, 0, 0)
    assert v2c.parse_line(' 1,2,3,4,1,4,0,1,\n') == (1.0, 2.0, 3.0, 4.0, 1, 4, 0, 1)
    assert v2c.parse_line('   \n') is None
    for bad in ('1,2,3,4,1,4,0', '1,2,3,4,1,4,0,1,5', '1,2,x,4,1,4,0,1', '1,2,3,4,1,12,0,0',
                '1,2,3,4,1,-1,0,0'):
        with pytest.raises(v2c.MalformedLineError):
            v2c.parse_line(bad)


def test_split_counts_and_seeded_split():
    assert v2c.split_counts(657) == (526, 131)
    assert v2c.split_counts(10) == (8, 2)       # 10 * 526 / 657 = 8.006
    assert v2c.split_counts(1915) == (1533, 382)
    assert v2c.split_counts(5, num_train=2) == (2, 3)
    with pytest.raises(ValueError):
        v2c.split_counts(5, num_train=6)
    names = [f'{i:05d}.jpg' for i in range(657)]
    split = v2c.make_split(names, seed=3)
    assert len(split['train']) == 526 and len(split['test']) == 131
    assert sorted(split['train'] + split['test']) == names
    # the split depends on the set of names and the seed only
    assert v2c.make_split(list(reversed(names)), seed=3) == split
    assert v2c.make_split(names, seed=4) != split


def _expected_annotations(objects):
    """Reference conversion of the generator's lines, written independently of the tool."""
    expected = []
    for x, y, w, h, score, cat, trunc, occ in objects:
        if cat == 11:
            continue
        if cat == 0:
            expected += [(c, (x, y, w, h), 1) for c in range(1, 11)]
        else:
            expected.append((cat, (x, y, w, h), 0 if score else 1))
    return sorted(expected)


def test_convert(tmp_path, visdrone_factory):
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=10, malformed=True)
    out = str(tmp_path / 'coco')
    # malformed line: an error naming the file and the line number
    with pytest.raises(v2c.MalformedLineError) as err:
        v2c.convert(data['img_dir'], data['ann_dir'], out, seed=0)
    path, lineno = data['malformed']
    assert f'{path}:{lineno}:' in str(err.value)
    summary = v2c.convert(data['img_dir'], data['ann_dir'], out, seed=0, skip_bad=True)
    assert summary['bad_lines'] == 1
    assert summary['num_images'] == 10 and summary['num_train'] == 8 and summary['num_test'] == 2
    assert summary['ignore_regions'] == 10 and summary['others_dropped'] == 10
    assert summary['objects'] == 30

    with open(osp.join(out, 'all.json')) as f:
        coco = json.load(f)
    assert [c['id'] for c in coco['categories']] == list(range(1, 11))
    assert coco['categories'][0]['name'] == 'pedestrian'
    assert coco['categories'][7]['name'] == 'awning-tricycle'
    assert coco['categories'][9]['name'] == 'motor'
    by_image = {img['id']: img for img in coco['images']}
    assert all(img['width'] == 128 and img['height'] == 96 for img in coco['images'])
    got = {}
    for ann in coco['annotations']:
        assert ann['area'] == ann['bbox'][2] * ann['bbox'][3]
        got.setdefault(by_image[ann['image_id']]['file_name'], []).append(
            (ann['category_id'], tuple(ann['bbox']), ann['iscrowd']))
    for name, objects in data['objects'].items():
        assert sorted(got[name]) == _expected_annotations(objects)
    assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])

    with open(osp.join(out, 'train.json')) as f:
        train = json.load(f)
    with open(osp.join(out, 'test.json')) as f:
        test = json.load(f)
    with open(osp.join(out, 'split.json')) as f:
        split = json.load(f)
    assert train['info']['split']['seed'] == 0 and split['info']['seed'] == 0
    assert [i['file_name'] for i in train['images']] == split['train']
    assert [i['file_name'] for i in test['images']] == split['test']
    assert split == dict(v2c.make_split(list(data['objects']), seed=0), info=split['info'])
    train_ids = {i['id'] for i in train['images']}
    assert all(a['image_id'] in train_ids for a in train['annotations'])
    assert len(train['annotations']) + len(test['annotations']) == len(coco['annotations'])

    # a recorded split is reused whatever the seed
    out2 = str(tmp_path / 'coco2')
    v2c.convert(data['img_dir'], data['ann_dir'], out2, seed=123, skip_bad=True,
                split_file=osp.join(out, 'split.json'))
    with open(osp.join(out2, 'split.json')) as f:
        assert json.load(f)['train'] == split['train']


def test_convert_loads_in_pycocotools(tmp_path, visdrone_factory):
    coco_api = pytest.importorskip('pycocotools.coco')
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=4)
    out = str(tmp_path / 'coco')
    v2c.convert(data['img_dir'], data['ann_dir'], out, seed=0)
    coco = coco_api.COCO(osp.join(out, 'all.json'))
    assert len(coco.getImgIds()) == 4
    assert len(coco.getAnnIds(iscrowd=True)) == 4 * 10


def test_cli(tmp_path, visdrone_factory, capsys, monkeypatch):
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=3, malformed=True)
    out = str(tmp_path / 'coco')
    args = ['--img-dir', data['img_dir'], '--ann-dir', data['ann_dir'], '--out-dir', out]
    code, _, err = _run_tool(args, monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith('visdrone2coco.py: error: ') and '--skip-bad' in err[0]
    assert 'night_' in err[0] and '.txt' in err[0]  # names the file
    assert not osp.exists(osp.join(out, 'all.json'))
    code, stdout, _ = _run_tool(args + ['--skip-bad', '--num-train', '2'], monkeypatch, capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary['num_train'] == 2 and summary['bad_lines'] == 1
    bad_split = tmp_path / 'split.json'
    bad_split.write_text('{"train": [')
    code, _, err = _run_tool(args + ['--skip-bad', '--split-file', str(bad_split)],
                             monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert str(bad_split) in err[0] and 'not a split.json' in err[0]
    # missing annotation file
    os.remove(osp.join(data['ann_dir'], 'night_0002.txt'))
    code, _, err = _run_tool(args + ['--skip-bad'], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and 'no annotation file' in err[0], err
    # missing folder, broken split file
    code, _, err = _run_tool(['--img-dir', str(tmp_path / 'nope'), '--ann-dir', data['ann_dir'],
                              '--out-dir', out], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and str(tmp_path / 'nope') in err[0], err
