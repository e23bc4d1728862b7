"""semillie_mm.utils.fileio: atomic files and folder swaps (issue 19, 5)."""
import errno
import json
import os
import os.path as osp

from semillie_mm.utils import fileio
from semillie_mm.utils.fileio import (
    atomic_copy,
    atomic_folder,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

import pytest


def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


WRITERS = {
    'bytes': lambda p: atomic_write_bytes(p, b'new'),
    'text': lambda p: atomic_write_text(p, 'new'),
    'json': lambda p: atomic_write_json(p, 'new'),
}


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
@pytest.mark.parametrize('kind', ['bytes', 'text', 'json', 'copy', 'path'])
def test_mode_follows_umask(tmp_path, umask, kind):
    """New files get 0o666 & ~umask, as open() gives (mkstemp gave 0o600),
    and nothing but the destination is left in the folder."""
    src = tmp_path / 'src'
    src.write_bytes(b'abc')
    os.chmod(src, 0o600)
    dst = str(tmp_path / 'out' / 'f.bin')
    old = os.umask(umask)
    try:
        if kind == 'copy':
            atomic_copy(str(src), dst)
        elif kind == 'path':
            with atomic_path(dst) as tmp:
                with open(tmp, 'wb') as f:
                    f.write(b'x')
        else:
            WRITERS[kind](dst)
    finally:
        os.umask(old)
    assert os.stat(dst).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path / 'out') == ['f.bin']


def test_written_content_and_json_arguments(tmp_path):
    atomic_write_json(str(tmp_path / 'a.json'), {'b': [1, 2]}, indent=1)
    assert (tmp_path / 'a.json').read_text() == '{\n "b": [\n  1,\n  2\n ]\n}'
    atomic_write_text(str(tmp_path / 'a.csv'), 'x\ny\n', newline='\r\n')
    assert (tmp_path / 'a.csv').read_bytes() == b'x\r\ny\r\n'
    (tmp_path / 'src').write_bytes(b'\x00\x01')
    atomic_copy(str(tmp_path / 'src'), str(tmp_path / 'dst'))
    assert (tmp_path / 'dst').read_bytes() == b'\x00\x01'


def test_no_partial_file_is_visible(tmp_path):
    """While the new content is written, ``path`` holds the old content and
    the temporary file is a dot-file next to it."""
    path = tmp_path / 'f.txt'
    path.write_text('old')
    with atomic_path(str(path), suffix='.tmp.txt') as tmp:
        assert osp.dirname(tmp) == str(tmp_path)
        name = osp.basename(tmp)
        assert name.startswith('.f.txt.') and name.endswith('.tmp.txt')
        with open(tmp, 'w') as f:
            f.write('ne')
            f.flush()
            assert path.read_text() == 'old'
            f.write('w')
        assert path.read_text() == 'old'
    assert path.read_text() == 'new'
    assert os.listdir(tmp_path) == ['f.txt']


@pytest.mark.parametrize('error', [KeyboardInterrupt, ValueError])
def test_cleanup_on_exception(tmp_path, error):
    path = tmp_path / 'f.txt'
    path.write_text('old')
    with pytest.raises(error):
        with atomic_path(str(path)) as tmp:
            with open(tmp, 'w') as f:
                f.write('half')
            raise error('interrupted')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['f.txt']


@pytest.mark.parametrize('kind', ['bytes', 'text', 'json'])
def test_disk_full_while_writing_keeps_the_old_file(tmp_path, monkeypatch,
                                                    kind):
    """A write that stores half its bytes and fails with ENOSPC leaves the
    old file whole and no temporary file."""
    path = tmp_path / 'f.bin'
    path.write_bytes(b'old content')
    real_open = open

    class HalfFile:

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise _enospc()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def faulty_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfFile(f) if 'w' in mode else f

    monkeypatch.setattr('builtins.open', faulty_open)
    with pytest.raises(OSError) as info:
        WRITERS[kind](str(path))
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b'old content'
    assert os.listdir(tmp_path) == ['f.bin']


def test_failed_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    """ENOSPC/EIO may only show at fsync: the old file stays."""
    path = tmp_path / 'f.bin'
    path.write_bytes(b'old')

    def failing_fsync(fd):
        raise _enospc()

    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(str(path), b'new')
    monkeypatch.undo()
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['f.bin']


# --------------------------------------------------------------------------
# atomic_folder
# --------------------------------------------------------------------------
def _snapshot(root):
    return {
        osp.relpath(osp.join(d, n), root): open(osp.join(d, n), 'rb').read()
        for d, _, names in os.walk(root) for n in names
    }


def _build(folder, text):
    os.makedirs(osp.join(folder, 'sub'))
    with open(osp.join(folder, 'sub', 'a.txt'), 'w') as f:
        f.write(text)
    atomic_write_json(osp.join(folder, 'manifest.json'), {'v': text})


def test_folder_is_built_then_swapped_in(tmp_path):
    root = str(tmp_path / 'data')
    with atomic_folder(root) as tmp:
        assert osp.dirname(tmp) == str(tmp_path)
        assert osp.basename(tmp).startswith('.data.tmp-')
        _build(tmp, 'one')
        assert not osp.exists(root)  # nothing visible before the swap
    assert os.stat(root).st_mode & 0o777 == 0o755
    with atomic_folder(root) as tmp:
        _build(tmp, 'two')
        assert json.load(open(osp.join(root, 'manifest.json'))) == {
            'v': 'one'
        }
    assert _snapshot(root) == {
        'sub/a.txt': b'two',
        'manifest.json': b'{"v": "two"}'
    }
    assert os.listdir(tmp_path) == ['data']


def test_failure_mid_build_keeps_the_previous_folder(tmp_path):
    root = str(tmp_path / 'data')
    with atomic_folder(root) as tmp:
        _build(tmp, 'one')
    before = _snapshot(root)
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(root) as tmp:
            _build(tmp, 'two')
            raise KeyboardInterrupt
    assert _snapshot(root) == before
    assert os.listdir(tmp_path) == ['data']  # no temporary folder left


def test_failed_swap_rolls_back(tmp_path, monkeypatch):
    """Moving the new folder in fails after the previous one was moved
    aside: the previous folder is put back, no temporary folder is left."""
    root = str(tmp_path / 'data')
    with atomic_folder(root) as tmp:
        _build(tmp, 'one')
    before = _snapshot(root)
    real_replace = os.replace

    def failing_replace(src, dst):
        if osp.basename(str(src)).startswith('.data.tmp-') and dst == root:
            raise _enospc()
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, 'replace', failing_replace)
    with pytest.raises(OSError):
        with atomic_folder(root) as tmp:
            _build(tmp, 'two')
    monkeypatch.undo()
    assert _snapshot(root) == before
    assert os.listdir(tmp_path) == ['data']


@pytest.mark.parametrize('fits', [True, False])
def test_concurrent_build(tmp_path, monkeypatch, fits):
    """Another process moves its build in just before this one: it is kept
    if ``keep_existing()`` says it fits, else the error propagates."""
    root = str(tmp_path / 'data')
    real_replace = os.replace

    def other_process_first(src, dst):
        if dst == root:
            os.makedirs(osp.join(root, 'theirs'))
        return real_replace(src, dst)  # a non-empty folder: fails

    monkeypatch.setattr(fileio.os, 'replace', other_process_first)
    if fits:
        with atomic_folder(root, keep_existing=lambda: True) as tmp:
            _build(tmp, 'mine')
    else:
        with pytest.raises(OSError):
            with atomic_folder(root, keep_existing=lambda: False) as tmp:
                _build(tmp, 'mine')
    monkeypatch.undo()
    assert os.listdir(root) == ['theirs']
    assert os.listdir(tmp_path) == ['data']


# --------------------------------------------------------------------------
# IMG_EXTENSIONS: what each listing finds
# --------------------------------------------------------------------------
def test_image_listings(tmp_path):
    """Every listing takes the shared ``IMG_EXTENSIONS`` in any case; each
    keeps its own rules (recursion, dot-files)."""
    from semillie_mm.apis.image_io import list_images
    from semillie_mm.datasets.converters.visdrone2coco import find_images
    from semillie_mm.datasets.converters.visdrone_lowlight import scan_images as scan_visdrone
    from semillie_mm.datasets.folder_utils import scan_images
    from semillie_mm.evaluation.functional.fid import list_images as fid_images
    images = ['a.JPG', 'b.jpeg', 'c.png', 'd.PPM', 'e.bmp', 'f.tif',
              'g.TIFF', 'h.webp']
    others = ['i.gif', 'j.txt', 'k', 'm.png.bak']
    for name in images + others + ['.hidden.png', 'sub/l.png']:
        os.makedirs(osp.dirname(str(tmp_path / name)), exist_ok=True)
        (tmp_path / name).write_bytes(b'')
    flat = sorted(images + ['.hidden.png'])
    deep = sorted(flat + ['sub/l.png'])
    assert scan_images(str(tmp_path)) == flat
    assert scan_images(str(tmp_path), recursive=True) == deep
    assert scan_visdrone(str(tmp_path)) == deep
    assert [osp.relpath(p, tmp_path) for p in fid_images(str(tmp_path))
            ] == flat + ['sub/l.png']
    assert sorted(find_images(str(tmp_path)).values()) == flat
    found, ignored = list_images(str(tmp_path))
    assert [osp.relpath(p, tmp_path) for p in found] == sorted(images) + [
        'sub/l.png']
    assert sorted(osp.relpath(p, tmp_path) for p in ignored) == sorted(
        others + ['.hidden.png'])
