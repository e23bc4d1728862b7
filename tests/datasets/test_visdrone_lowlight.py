"""VisDrone low-light converter on a tiny synthetic VisDrone-style folder.

The logic is tested through the package
(:mod:`semillie_mm.datasets.converters.visdrone_lowlight`), the command line
through ``tools/dataset_converters/visdrone_lowlight.py``."""
import filecmp
import importlib.util
import json
import os
import os.path as osp
import runpy
import sys

import semillie_mm.datasets.converters.visdrone_lowlight as vl

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'dataset_converters', 'visdrone_lowlight.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('visdrone_lowlight_tool',
                                                  TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture
def visdrone(tmp_path):
    import cv2
    rng = np.random.default_rng(0)
    src = tmp_path / 'VisDrone'
    train = src / 'VisDrone2019-DET-train' / 'images'
    val = src / 'VisDrone2019-DET-val' / 'images'
    train.mkdir(parents=True)
    val.mkdir(parents=True)

    def img(level):
        base = rng.integers(-25, 25, (48, 64, 3)) + level
        return np.clip(base, 0, 255).astype(np.uint8)

    for i in range(6):
        cv2.imwrite(str(train / f'00000{i}_day_d.jpg'), img(150))
    for i in range(4):
        cv2.imwrite(str(train / f'00001{i}_night_n.jpg'), img(20))
    cv2.imwrite(str(train / '000020_dusk.jpg'), img(70))  # ambiguous
    (train / '000021_broken.jpg').write_bytes(b'not a jpeg at all')
    for i in range(2):
        cv2.imwrite(str(val / f'00003{i}_day_d.png'), img(160))
    cv2.imwrite(str(val / '000040_night_n.jpg'), img(25))
    (src / 'README.txt').write_text('annotations elsewhere')
    return src


def _files(root):
    out = {}
    for r, _, names in os.walk(root):
        for n in names:
            p = osp.join(r, n)
            out[osp.relpath(p, root)] = p
    return out


def test_split_counts_rule():
    assert vl.split_counts(5746, 1915) == vl.PAPER_COUNTS
    assert vl.split_counts(9000, 4000) == vl.PAPER_COUNTS
    assert vl.split_counts(574, 191) == dict(
        paired_train=521, val=53, unpaired_train=125, test=66)
    assert vl.split_counts(2, 2) == dict(paired_train=1, val=1,
                                         unpaired_train=1, test=1)
    assert vl.split_counts(8, 5, dict(paired_train=3, val=2)) == dict(
        paired_train=3, val=2, unpaired_train=3, test=2)
    assert vl.split_counts(8, 5, dict(val=2))['paired_train'] == 6
    with pytest.raises(ValueError, match='day'):
        vl.split_counts(8, 5, dict(paired_train=8, val=2))


def test_convert_and_rebuild_from_manifest(tmp_path, visdrone):
    out = tmp_path / 'out'
    report = tool.main([str(visdrone), str(out), '--seed', '3',
                      '--no-progress'])
    # 8 day -> 7 train + 1 val; 5 night -> 3 unpaired + 2 test
    assert report['counts'] == dict(paired_train=7, val=1, unpaired_train=3,
                                    test=2)
    assert [u['source'] for u in report['unreadable']] == [
        'VisDrone2019-DET-train/images/000021_broken.jpg']
    assert report['ambiguous'] == 1 and report['written'] == 13
    assert not report['failed']

    def count(sub):
        return len(os.listdir(out / sub))

    assert (count('labeled/input'), count('labeled/GT'), count('val/input'),
            count('val/GT'), count('unlabeled/input'),
            count('test/input')) == (7, 7, 1, 1, 3, 2)
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['seed'] == 3
    assert manifest['ambiguous'][0]['source'].endswith('000020_dusk.jpg')
    import cv2
    for entry in manifest['files']:
        src = visdrone / entry['source']
        if entry['split'] in ('paired_train', 'val'):
            assert entry['params']['noise_seed'] >= 0
            assert 'day' in entry['source']
            # GT is the untouched day image, input its darker synthesis
            assert filecmp.cmp(src, out / entry['gt'], shallow=False)
            low = cv2.imread(str(out / entry['input']))
            gt = cv2.imread(str(out / entry['gt']))
            assert low.shape == gt.shape and low.mean() < gt.mean() / 1.5
            assert osp.splitext(entry['input'])[0].split('/')[-1] == \
                osp.splitext(entry['gt'])[0].split('/')[-1]
        else:
            assert 'night' in entry['source'] and 'params' not in entry
            assert filecmp.cmp(src, out / entry['input'], shallow=False)

    # rebuild from the manifest: byte-identical files
    out2 = tmp_path / 'rebuilt'
    report2 = tool.main([str(visdrone), str(out2), '--from-manifest',
                       str(out / 'manifest.json'), '--no-progress'])
    assert not report2['failed'] and not report2['mismatched']
    f1, f2 = _files(out), _files(out2)
    assert sorted(f1) == sorted(f2)
    for rel in f1:
        assert filecmp.cmp(f1[rel], f2[rel], shallow=False), rel
    _, _, errors = filecmp.cmpfiles(out, out2, ['manifest.json'],
                                    shallow=False)
    assert not errors


def test_same_seed_same_plan_other_seed_differs(visdrone):
    a = vl.plan_dataset(str(visdrone), seed=1, progress=False)
    b = vl.plan_dataset(str(visdrone), seed=1, progress=False)
    c = vl.plan_dataset(str(visdrone), seed=2, progress=False)
    assert a == b
    assert [f['params'] for f in a['files'] if 'params' in f] != \
        [f['params'] for f in c['files'] if 'params' in f]


def test_override_file_and_explicit_counts(tmp_path, visdrone):
    ov = tmp_path / 'override.txt'
    ov.write_text('# force classes\n'
                  'VisDrone2019-DET-train/images/000020_dusk.jpg day\n'
                  '000010_night_n.jpg exclude\n'
                  'no_such_file.jpg night\n')
    out = tmp_path / 'out'
    report = tool.main([str(visdrone), str(out), '--override', str(ov),
                      '--paired-train', '3', '--val', '2', '--no-progress'])
    assert report['counts'] == dict(paired_train=3, val=2, unpaired_train=3,
                                    test=1)
    assert report['unknown_overrides'] == ['no_such_file.jpg']
    manifest = json.loads((out / 'manifest.json').read_text())
    assert len(manifest['unused']) == 4  # 9 day images, 5 used
    assert manifest['excluded'][0]['source'].endswith('000010_night_n.jpg')
    assert manifest['num_day'] == 9 and manifest['num_night'] == 4


def test_rebuild_detects_changed_source(tmp_path, visdrone):
    out = tmp_path / 'out'
    tool.main([str(visdrone), str(out), '--no-progress'])
    manifest = json.loads((out / 'manifest.json').read_text())
    victim = visdrone / manifest['files'][0]['source']
    victim.write_bytes(victim.read_bytes() + b'\0')
    report = tool.main([str(visdrone), str(tmp_path / 'again'),
                      '--from-manifest', str(out / 'manifest.json'),
                      '--no-progress'])
    assert len(report['failed']) == 1
    assert 'differs' in report['failed'][0]['error']


def _run_tool(args, monkeypatch, capsys):
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    monkeypatch.setattr(sys, 'argv', ['visdrone_lowlight.py', *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(TOOL, run_name='__main__')
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def test_cli_user_errors(tmp_path, visdrone, monkeypatch, capsys):
    out = str(tmp_path / 'out')
    cases = [
        ([str(tmp_path / 'nope'), out], str(tmp_path / 'nope')),
        ([str(visdrone), str(visdrone)], 'is SRC'),
        ([str(visdrone), out, '--ranges', '{exposure: 1}'], '--ranges'),
        ([str(visdrone), out, '--from-manifest', str(tmp_path / 'm.json')],
         'm.json'),
        ([str(visdrone), out, '--override', str(tmp_path / 'ov.txt')],
         'ov.txt'),
        ([str(visdrone), out, '--workers', 'two'], "invalid int value"),
    ]
    for args, expected in cases:
        code, err = _run_tool(args + ['--no-progress'], monkeypatch, capsys)
        assert code == 2 and len(err) == 1, (args, err)
        assert err[0].startswith('visdrone_lowlight.py: error: ')
        assert expected in err[0], (args, err)
    bad = tmp_path / 'ov.txt'
    bad.write_text('000020_dusk.jpg sometimes\n')
    code, err = _run_tool([str(visdrone), out, '--override', str(bad),
                           '--no-progress'], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and f'{bad}:1' in err[0], err
    assert not osp.exists(out)


@pytest.mark.parametrize('key,bad', [
    ('input', '/ABS/escaped.png'),
    ('input', '../escaped.png'),
    ('gt', 'labeled/GT/../../../escaped.png'),
    ('source', '../outside.jpg'),
])
def test_from_manifest_refuses_paths_leaving_src_or_out(
        tmp_path, visdrone, monkeypatch, capsys, key, bad):
    out = tmp_path / 'out'
    tool.main([str(visdrone), str(out), '--no-progress'])
    manifest = json.loads((out / 'manifest.json').read_text())
    # a normal manifest rebuilds
    report = tool.main([str(visdrone), str(tmp_path / 'ok'),
                        '--from-manifest', str(out / 'manifest.json'),
                        '--no-progress'])
    assert not report['failed'] and report['written'] == 13
    # a readable file outside SRC, targets outside OUT
    (tmp_path / 'outside.jpg').write_bytes(
        (visdrone / manifest['files'][0]['source']).read_bytes())
    bad = bad.replace('/ABS', str(tmp_path))
    i = next(i for i, f in enumerate(manifest['files']) if key in f)
    manifest['files'][i][key] = bad
    evil = tmp_path / 'evil.json'
    evil.write_text(json.dumps(manifest))
    rebuilt = tmp_path / 'rebuilt'
    code, err = _run_tool([str(visdrone), str(rebuilt), '--from-manifest',
                           str(evil), '--no-progress'], monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert str(evil) in err[0] and f'files[{i}] {key}' in err[0], err
    assert repr(bad) in err[0], err
    assert not (tmp_path / 'escaped.png').exists()
    assert not rebuilt.exists()
    # the library refuses it too (a manifest dict from elsewhere)
    with pytest.raises(ValueError, match=r'\.\.|relative'):
        vl.write_dataset(manifest, str(visdrone), str(rebuilt),
                         progress=False)
    assert not rebuilt.exists()
