"""tools/enhance.py on a folder of awkward files, and its one-line errors."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'enhance.py')
    spec = importlib.util.spec_from_file_location('enhance_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    import semillie_mm  # noqa: F401

    from mmagic.registry import MODELS
    d = tmp_path_factory.mktemp('model')
    cfg = d / 'tiny.py'
    cfg.write_text(
        "default_scope = 'mmagic'\n"
        "custom_imports = dict(imports=['semillie_mm'], "
        "allow_failed_imports=False)\n"
        "model = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, "
        "blocks_per_group=1)\n")
    torch.manual_seed(0)
    net = MODELS.build(dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                            blocks_per_group=1))
    ckpt = d / 'tiny.pth'
    torch.save(dict(state_dict=net.state_dict()), ckpt)
    return str(cfg), str(ckpt)


@pytest.fixture
def messy_folder(tmp_path):
    import cv2
    from PIL import Image
    rng = np.random.default_rng(0)
    src = tmp_path / 'in'
    (src / 'sub').mkdir(parents=True)
    # plain RGB JPEG in a sub-folder
    cv2.imwrite(str(src / 'sub' / 'plain.jpg'),
                rng.integers(0, 80, (30, 44, 3), dtype=np.uint8))
    # grayscale PNG
    Image.fromarray(rng.integers(0, 80, (26, 34), dtype=np.uint8),
                    'L').save(src / 'gray.png')
    # RGBA PNG
    rgba = rng.integers(0, 255, (28, 36, 4), dtype=np.uint8)
    Image.fromarray(rgba, 'RGBA').save(src / 'rgba.png')
    # 16-bit RGB PNG
    cv2.imwrite(str(src / 'deep16.png'),
                rng.integers(0, 20000, (24, 31, 3), dtype=np.uint16))
    # JPEG stored 40 wide x 24 high, EXIF says "rotate 90 CW" -> 24 x 40
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 80, (24, 40, 3), dtype=np.uint8)).save(
        src / 'rotated.jpg', exif=exif)
    # corrupt file with an image name, and a non-image file
    (src / 'broken.jpg').write_bytes(b'\xff\xd8 definitely not a jpeg')
    (src / 'notes.txt').write_text('not an image')
    return src, rgba


def _no_temp_files(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            assert '.tmp' not in name, osp.join(root, name)


def test_enhance_folder(tmp_path, model_files, messy_folder):
    import cv2
    tool = _load_tool()
    cfg, ckpt = model_files
    src, rgba = messy_folder
    out = tmp_path / 'out'
    summary = tool.main([cfg, ckpt, str(src), str(out), '--tile', '24',
                         '--tile-overlap', '8', '--no-progress', '--summary',
                         str(tmp_path / 'summary.json')])
    assert summary['processed'] == 5
    assert summary['skipped'] == 1 and summary['ignored'] == 1
    assert summary['skipped_files'][0]['path'].endswith('broken.jpg')
    assert 'unreadable' in summary['skipped_files'][0]['reason']
    assert json.loads((tmp_path / 'summary.json').read_text()) == summary

    def read(name):
        return cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)

    assert read('sub/plain.jpg').shape == (30, 44, 3)
    g = read('gray.png')
    assert g.shape == (26, 34) and g.dtype == np.uint8
    a = read('rgba.png')
    assert a.shape == (28, 36, 4)
    np.testing.assert_array_equal(a[..., 3], rgba[..., 3])  # alpha kept
    d = read('deep16.png')
    assert d.shape == (24, 31, 3) and d.dtype == np.uint16
    assert len(np.unique(d)) > 256  # really 16-bit content
    assert read('rotated.jpg').shape == (40, 24, 3)  # display orientation
    assert not (out / 'broken.jpg').exists()
    assert not (out / 'notes.txt').exists()
    _no_temp_files(out)


def test_enhance_ext_and_single_file(tmp_path, model_files, messy_folder):
    import cv2
    tool = _load_tool()
    cfg, ckpt = model_files
    src, _ = messy_folder
    out = tmp_path / 'out_jpg'
    summary = tool.main([cfg, ckpt, str(src), str(out), '--ext', 'jpg',
                         '--no-tile', '--no-progress', '--student'])
    assert summary['processed'] == 5
    notes = {osp.basename(n['path']): n['note'] for n in summary['notes']}
    assert 'alpha' in notes['rgba.png'] and '8-bit' in notes['deep16.png']
    assert cv2.imread(str(out / 'rgba.jpg')).shape == (28, 36, 3)
    # one file to an explicit output file
    single = tmp_path / 'single' / 'x.png'
    summary = tool.main([cfg, ckpt, str(src / 'gray.png'), str(single),
                         '--no-progress'])
    assert summary['processed'] == 1 and single.is_file()
    _no_temp_files(tmp_path)


def _fresh_mmlogger():
    """mmengine logs through the newest MMLogger; one made by an earlier test
    writes to that test's (closed) captured stream, and logging's error
    report would land in this test's stderr. A fresh one writes here."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'enhance_test_{len(MMLogger._instance_dict)}')


def _run_cli(tool, argv, capsys):
    """The tool's ``__main__`` path: run_cli(main) -> exit status, stderr."""
    from semillie_mm.utils.cli import run_cli
    _fresh_mmlogger()
    capsys.readouterr()  # what earlier calls printed
    with pytest.raises(SystemExit) as exc:
        run_cli(tool.main, argv, prog='enhance.py')
    return exc.value.code, capsys.readouterr().err


def test_one_line_errors(tmp_path, model_files, messy_folder, capsys):
    tool = _load_tool()
    cfg, ckpt = model_files
    src, _ = messy_folder
    out = str(tmp_path / 'out')
    cases = [
        ([str(tmp_path / 'no.py'), ckpt, str(src), out], 'no.py'),
        ([cfg, str(tmp_path / 'no.pth'), str(src), out], 'no.pth'),
        ([cfg, ckpt, str(tmp_path / 'nowhere'), out], 'nowhere'),
        ([cfg, ckpt, str(src), out, '--tile', '16', '--tile-overlap', '16'],
         '--tile-overlap'),
        ([cfg, ckpt, str(src), out, '--ext', 'gif'], '--ext'),
        ([cfg, ckpt, str(src), out, '--device', 'tpu'], '--device'),
    ]
    for argv, needle in cases:
        code, err = _run_cli(tool, argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith('enhance.py: error:')
        assert needle in lines[0], (needle, err)
    # a checkpoint of another model: one line saying it does not fit
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'conv.weight': torch.zeros(3, 3, 1, 1)}),
               other)
    code, err = _run_cli(tool, [cfg, str(other), str(src), out], capsys)
    assert code == 2 and 'does not fit' in err and len(err.splitlines()) == 1
    assert not os.path.exists(out)


def test_truncated_checkpoint_cli(tmp_path, model_files):
    """The real command line: one line on stderr, exit status 2."""
    cfg, ckpt = model_files
    data = open(ckpt, 'rb').read()
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(data[:len(data) // 2])
    img = tmp_path / 'x.png'
    import cv2
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'enhance.py'), cfg,
         str(bad), str(img), str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300,
        # third-party FutureWarnings at import are not this test's subject
        env=dict(os.environ, PYTHONWARNINGS='ignore::FutureWarning'))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('enhance.py: error: checkpoint ')
    assert 'truncated.pth' in lines[0]


@pytest.fixture
def shipped(tmp_path_factory, monkeypatch):
    """The package's shipped folder pointed at a small random model."""
    import semillie_mm.apis.pretrained as pretrained

    from semillie_test_utils import write_shipped_model
    folder = tmp_path_factory.mktemp('pretrained')
    files = write_shipped_model(folder)
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(folder))
    return files


def test_enhance_shipped_model(tmp_path, shipped, messy_folder, capsys):
    """INPUT OUTPUT alone runs the shipped model: the same files as
    CONFIG CHECKPOINT INPUT OUTPUT with its config and weights."""
    import cv2
    tool = _load_tool()
    cfg, weights = shipped
    src, _ = messy_folder
    two, four = tmp_path / 'two', tmp_path / 'four'
    summary = tool.main([str(src), str(two), '--tile', '24',
                         '--tile-overlap', '8', '--no-progress'])
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('no config')]
    assert lines == [
        'no config/checkpoint given: using the shipped model semillie_target '
        f'({weights}); see semillie_mm/pretrained/MODEL_CARD.md']
    # options may come between the positional arguments
    ref = tool.main([cfg, weights, '--tile', '24', str(src), str(four),
                     '--tile-overlap', '8', '--no-progress'])
    assert summary['processed'] == ref['processed'] == 5
    names = sorted(osp.relpath(p, two) for p in summary['outputs'])
    assert names == sorted(osp.relpath(p, four) for p in ref['outputs'])
    for name in names:
        a = cv2.imread(str(two / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(four / name), cv2.IMREAD_UNCHANGED)
        assert a is not None and np.array_equal(a, b), name


def test_enhance_shipped_model_errors(tmp_path, shipped, messy_folder,
                                      capsys):
    tool = _load_tool()
    cfg, weights = shipped
    src, _ = messy_folder
    out = str(tmp_path / 'out')
    usage = 'expected INPUT OUTPUT or CONFIG CHECKPOINT INPUT OUTPUT'
    cases = [
        ([cfg, str(src), out], usage + ', got 3 positional arguments'),
        ([str(src)], usage + ', got 1 positional argument'),
        ([cfg, weights, str(src), out, 'extra'], 'got 5 positional'),
        ([str(src), out, '--tile', 'x'], '--tile'),
    ]
    os.remove(weights)  # the shipped weights are missing
    cases.append(([str(src), out], f'{weights} does not exist'))
    for argv, needle in cases:
        code, err = _run_cli(tool, argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith('enhance.py: error:')
        assert needle in lines[0], (needle, err)
    assert 'fresh clone' in lines[0] and 'CONFIG CHECKPOINT' in lines[0]
    assert not os.path.exists(out)


def _plain_folder(folder, names, size=(20, 28)):
    """Small RGB images named ``names`` in ``folder``; returns their
    SHA-256 by name."""
    import hashlib

    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    for name in names:
        cv2.imwrite(str(folder / name),
                    rng.integers(0, 80, size + (3, ), dtype=np.uint8))
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in names}


def _hashes(folder, names):
    import hashlib
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in names}


def test_decompression_bomb_skipped_in_folder_refused_alone(
        tmp_path, model_files, capsys):
    """A PNG declaring 20000 x 20000 (48 KB) is skipped with its reason in a
    folder, the other images are enhanced; alone, it is one line, status 2,
    before the model is loaded."""
    from semillie_test_utils import bomb_png
    tool = _load_tool()
    cfg, ckpt = model_files
    src = tmp_path / 'in'
    _plain_folder(src, ['a.png', 'c.jpg'])
    (src / 'b_bomb.png').write_bytes(bomb_png(20000, 20000))
    out = tmp_path / 'out'
    summary = tool.main([cfg, ckpt, str(src), str(out), '--tile', '16',
                         '--tile-overlap', '4', '--no-progress'])
    assert summary['processed'] == 2 and summary['skipped'] == 1
    item = summary['skipped_files'][0]
    assert item['path'].endswith('b_bomb.png')
    assert item['reason'].startswith('image too large: 400,000,000 pixels')
    assert sorted(os.listdir(out)) == ['a.png', 'c.jpg']
    code, err = _run_cli(tool, [cfg, ckpt, str(src / 'b_bomb.png'),
                                str(tmp_path / 'one.png')], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert 'b_bomb.png: image too large' in lines[0]
    assert 'SEMILLIE_MAX_PIXELS' in lines[0]
    assert not (tmp_path / 'one.png').exists()
    os.environ['SEMILLIE_MAX_PIXELS'] = 'many'
    try:
        code, err = _run_cli(tool, [cfg, ckpt, str(src), str(out)], capsys)
    finally:
        del os.environ['SEMILLIE_MAX_PIXELS']
    assert code == 2 and 'SEMILLIE_MAX_PIXELS' in err
    assert len(err.strip().splitlines()) == 1


def test_symlinked_output_folder_keeps_inputs(tmp_path, model_files,
                                              capsys):
    """OUTPUT a link to INPUT: the outputs are the input files (same
    device and inode): refused before any work, inputs unchanged, with
    --skip-existing (the default) and with --overwrite; same for one file
    whose output is a hard link to it."""
    tool = _load_tool()
    cfg, ckpt = model_files
    src = tmp_path / 'in'
    names = ['a.png', 'b.jpg']
    before = _plain_folder(src, names)
    link = tmp_path / 'out'
    link.symlink_to(src, target_is_directory=True)
    for extra in ([], ['--overwrite']):
        code, err = _run_cli(tool, [cfg, ckpt, str(src), str(link)] + extra,
                             capsys)
        assert _hashes(src, names) == before
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert 'would overwrite an input' in lines[0]
        assert str(link / 'a.png') in lines[0]
    os.link(src / 'a.png', tmp_path / 'hard.png')
    code, err = _run_cli(tool, [cfg, ckpt, str(src / 'a.png'),
                                str(tmp_path / 'hard.png'), '--overwrite'],
                         capsys)
    assert code == 2 and 'would overwrite an input' in err
    assert _hashes(src, names) == before
    # the Python API refuses too, before reading anything
    from semillie_mm.apis import SemiLLIEInferencer
    from semillie_mm.apis.inferencer import OutputConflictError
    inf = SemiLLIEInferencer(cfg, ckpt, device='cpu', show_progress=False)
    with pytest.raises(OutputConflictError):
        inf(str(src), out_dir=str(link))
    assert _hashes(src, names) == before


def test_colliding_output_names_refused(tmp_path, model_files, capsys):
    """a.png and a.jpg with --ext .png would both be out/a.png: one line
    naming them, status 2, nothing written."""
    tool = _load_tool()
    cfg, ckpt = model_files
    src = tmp_path / 'in'
    _plain_folder(src, ['a.png', 'a.jpg', 'b.png'])
    out = tmp_path / 'out'
    code, err = _run_cli(tool, [cfg, ckpt, str(src), str(out), '--ext',
                                '.png'], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert (f"{src / 'a.jpg'} and {src / 'a.png'} -> {out / 'a.png'}"
            in lines[0]), lines[0]
    assert 'b.png' not in lines[0]
    assert not out.exists()
    # without --ext the names differ: fine
    summary = tool.main([cfg, ckpt, str(src), str(out), '--no-progress'])
    assert summary['processed'] == 3


def test_interrupt_then_resume(tmp_path, model_files, monkeypatch):
    """Ctrl-C (KeyboardInterrupt, injected at the third write) after two
    images: the summary is written, no temporary file is left, the output
    mode follows the umask; a re-run enhances only the other three."""
    from semillie_mm.apis import SemiLLIEInferencer
    tool = _load_tool()
    cfg, ckpt = model_files
    src = tmp_path / 'in'
    names = ['a.png', 'b.png', 'c.png', 'd.jpg', 'e.png']
    _plain_folder(src, names)
    out = tmp_path / 'out'
    summary_file = tmp_path / 'summary.json'
    argv = [cfg, ckpt, str(src), str(out), '--no-progress', '--summary',
            str(summary_file)]
    save = SemiLLIEInferencer.save_prediction
    calls = []

    def interrupting_save(self, pred, path):
        calls.append(osp.basename(path))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return save(self, pred, path)

    monkeypatch.setattr(SemiLLIEInferencer, 'save_prediction',
                        interrupting_save)
    old_umask = os.umask(0o027)
    try:
        with pytest.raises(KeyboardInterrupt):
            tool.main(argv)
    finally:
        os.umask(old_umask)
    summary = json.loads(summary_file.read_text())
    assert summary['interrupted'] is True
    assert summary['processed'] == 2
    assert sorted(osp.basename(p) for p in summary['outputs']) == [
        'a.png', 'b.png']
    assert sorted(os.listdir(out)) == ['a.png', 'b.png']  # no temp file
    for name in ('a.png', 'b.png'):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~0o027
    assert summary_file.stat().st_mode & 0o777 == 0o666 & ~0o027
    first = {n: (out / n).stat().st_mtime_ns for n in ('a.png', 'b.png')}

    calls.clear()
    monkeypatch.setattr(
        SemiLLIEInferencer, 'save_prediction',
        lambda self, pred, path: calls.append(osp.basename(path)) or save(
            self, pred, path))
    summary = tool.main(argv)
    assert calls == ['c.png', 'd.jpg', 'e.png']
    assert summary['processed'] == 3 and summary['existing'] == 2
    assert summary['interrupted'] is False
    assert sorted(os.listdir(out)) == sorted(names)
    assert {n: (out / n).stat().st_mtime_ns for n in first} == first
    # --overwrite enhances all five again
    calls.clear()
    summary = tool.main(argv + ['--overwrite'])
    assert summary['processed'] == 5 and summary['existing'] == 0
    assert sorted(calls) == sorted(names)
