"""read_image against Pillow's decoding and EXIF transposition; the pixel
cap (decompression bombs); atomic writes; the format adaptation."""
import json
import os
import os.path as osp
import subprocess
import sys

import semillie_mm.apis.image_io as image_io
from semillie_mm.apis.image_io import (
    ImageTooLargeError,
    adapt_to_format,
    image_to_tensor,
    list_images,
    read_image,
    side_by_side,
    tensor_to_image,
    write_image_atomic,
)

import numpy as np
import pytest
from PIL import Image, ImageOps
from semillie_test_utils import bomb_png

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _pattern(h=24, w=40):
    """Smooth, asymmetric content: every flip/rotation looks different."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1),
                    (x + 2 * y) * 255 // (w + 2 * h)], -1).astype(np.uint8)
    img[2:8, 3:12] = (250, 20, 20)
    return img


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_jpeg_and_rgba_png(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = _pattern()
    jpg = tmp_path / 'o.jpg'
    Image.fromarray(img).save(jpg, exif=exif, quality=98)
    with Image.open(jpg) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert('RGB'))
    got = read_image(str(jpg))  # OpenCV applies the orientation
    assert got.shape == ref.shape
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 1.5
    # RGBA: decoded unchanged, orientation applied by read_image
    rgba = np.concatenate([img, np.arange(img.shape[0] * img.shape[1],
                                          dtype=np.uint32).reshape(
                                              img.shape[:2] + (1,)) % 251
                           ], -1).astype(np.uint8)
    png = tmp_path / 'o.png'
    Image.fromarray(rgba, 'RGBA').save(png, exif=exif)
    with Image.open(png) as im:
        ref = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(read_image(str(png)), ref)


def test_depths_gray_and_errors(tmp_path):
    import cv2
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'd.png'), deep[..., ::-1])
    np.testing.assert_array_equal(read_image(str(tmp_path / 'd.png')), deep)
    gray16 = rng.integers(0, 65536, (9, 7), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'g.png'), gray16)
    np.testing.assert_array_equal(read_image(str(tmp_path / 'g.png')), gray16)
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(ValueError, match='empty'):
        read_image(str(tmp_path / 'empty.png'))
    (tmp_path / 'bad.png').write_bytes(b'\x89PNG garbage')
    with pytest.raises(ValueError, match='decode'):
        read_image(str(tmp_path / 'bad.png'))


def test_tensor_round_trip_and_side_by_side():
    rng = np.random.default_rng(1)
    for img in (rng.integers(0, 256, (5, 6, 3), dtype=np.uint8),
                rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16),
                rng.integers(0, 256, (5, 6), dtype=np.uint8)):
        x, layout = image_to_tensor(img)
        assert tuple(x.shape) == (3, 5, 6) and float(x.max()) <= 1
        back = tensor_to_image(x, layout)
        assert back.shape == img.shape and back.dtype == img.dtype
        if img.ndim == 3:
            np.testing.assert_array_equal(back, img)
    pic = side_by_side(np.zeros((4, 3), np.uint8),
                       np.full((4, 3, 3), 65535, np.uint16))
    assert pic.shape == (4, 6, 3) and pic.dtype == np.uint8
    assert pic[:, :3].max() == 0 and pic[:, 3:].min() == 255


def test_write_atomic_and_formats(tmp_path):
    import cv2
    rgba16 = np.full((4, 5, 4), 40000, np.uint16)
    out, notes = adapt_to_format(rgba16, '.jpg')
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and len(notes) == 2
    out, notes = adapt_to_format(rgba16, '.png')
    assert out is rgba16 and notes == []
    path = tmp_path / 'sub' / 'x.png'
    write_image_atomic(str(path), rgba16)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back[..., [2, 1, 0, 3]], rgba16)
    with pytest.raises(ValueError, match='extension'):
        write_image_atomic(str(tmp_path / 'x.gif'), rgba16[..., :3])
    # a failed encoding leaves neither the file nor a temporary file
    with pytest.raises(ValueError):
        write_image_atomic(str(tmp_path / 'y.jpg'), np.zeros((4, 5, 2),
                                                             np.uint8))
    assert sorted(os.listdir(tmp_path)) == ['sub']
    assert os.listdir(tmp_path / 'sub') == ['x.png']


def test_ppm_output(tmp_path):
    """``.ppm`` is in the shared ``IMG_EXTENSIONS`` (the datasets listed it
    before): inputs of that format are written back as PPM, which holds
    RGB only, in 8 or 16 bits."""
    rgba16 = (np.arange(4 * 5 * 4).reshape(4, 5, 4) * 1000).astype(np.uint16)
    gray8 = (np.arange(20).reshape(4, 5) * 12).astype(np.uint8)
    for img, notes_expected, want in (
            (rgba16, ['alpha dropped'], rgba16[..., :3]),
            (gray8, ['gray written as RGB'], np.repeat(gray8[..., None], 3, 2)),
            (rgba16[..., :3], [], rgba16[..., :3])):
        out, notes = adapt_to_format(img, '.PPM')
        assert [n.split(' (')[0] for n in notes] == notes_expected
        path = str(tmp_path / 'x.ppm')
        write_image_atomic(path, out)
        back = read_image(path)
        assert back.dtype == want.dtype
        np.testing.assert_array_equal(back, want)
    assert os.listdir(tmp_path) == ['x.ppm']


def _child_env(**extra):
    """The environment of a child Python: this checkout first on the path,
    no pixel caps inherited."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('SEMILLIE_MAX_PIXELS', 'OPENCV_IO_MAX_IMAGE_PIXELS')}
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    env['PYTHONWARNINGS'] = 'ignore'
    env.update(extra)
    return env


# Run in a child process: ru_maxrss is the process's peak resident memory
# (KiB on Linux), so the read's extra memory is the peak after it minus the
# peak before it (imports done), which nothing else in the child raises.
_BOMB_CHILD = r"""
import json, resource, sys, time
import cv2, mmcv  # noqa: F401  (imported before the measurement)
from PIL import Image  # noqa: F401
from semillie_mm.apis.image_io import ImageTooLargeError, read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    shape, message = list(read_image(sys.argv[1]).shape), None
except ImageTooLargeError as e:
    shape, message = None, str(e)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(shape=shape, message=message, seconds=seconds,
                      extra_mib=(after - before) / 1024)))
"""


def test_decompression_bomb_refused_fast_and_small(tmp_path):
    """A 48 KB PNG declaring 20000 x 20000 is refused from its header:
    within 1 s and < 100 MB of extra peak RSS (getrusage ru_maxrss in a
    child process), with the default cap."""
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(bomb_png(20000, 20000))
    assert bomb.stat().st_size < 64 * 1024
    proc = subprocess.run(
        [sys.executable, '-c', _BOMB_CHILD, str(bomb)], capture_output=True,
        text=True, timeout=600, cwd=ROOT, env=_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['shape'] is None, res
    # Pillow refuses it first (over its own bomb limit): its pixel count
    assert res['message'].startswith(
        'image too large: 400,000,000 pixels, over the limit of '
        '100,000,000 (SEMILLIE_MAX_PIXELS'), res
    assert res['seconds'] < 1, res
    assert res['extra_mib'] < 100, res
    # the same file, small: a real PNG that decodes (to zeros)
    small = tmp_path / 'small.png'
    small.write_bytes(bomb_png(300, 200))
    img = read_image(str(small))
    assert img.shape == (200, 300) and img.max() == 0


def test_pixel_cap_env(tmp_path, monkeypatch):
    img = np.zeros((20, 30, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / 'x.png')
    monkeypatch.setenv('SEMILLIE_MAX_PIXELS', '599')
    with pytest.raises(ImageTooLargeError, match='30 x 20 = 600 pixels, '
                       'over the limit of 599'):
        read_image(str(tmp_path / 'x.png'))
    monkeypatch.setenv('SEMILLIE_MAX_PIXELS', '600')
    assert read_image(str(tmp_path / 'x.png')).shape == (20, 30, 3)
    for bad in ('lots', '0', '-5', '1e8'):
        monkeypatch.setenv('SEMILLIE_MAX_PIXELS', bad)
        with pytest.raises(ValueError, match='SEMILLIE_MAX_PIXELS'):
            read_image(str(tmp_path / 'x.png'))
    monkeypatch.delenv('SEMILLIE_MAX_PIXELS')
    assert image_io.max_image_pixels() == 100_000_000


def test_header_pillow_cannot_read(tmp_path, monkeypatch):
    """Radiance HDR: OpenCV decodes it, Pillow cannot read its header. It is
    decoded only while OpenCV's own cap is not above SEMILLIE_MAX_PIXELS."""
    import cv2
    ok, buf = cv2.imencode('.hdr', np.full((40, 30, 3), 0.5, np.float32))
    assert ok
    path = tmp_path / 'x.hdr'
    path.write_bytes(buf.tobytes())
    with pytest.raises(Exception):
        Image.open(path)
    monkeypatch.setattr(image_io, 'OPENCV_MAX_PIXELS', 1 << 30)
    with pytest.raises(ImageTooLargeError, match='cannot read the image size'):
        read_image(str(path))
    monkeypatch.setattr(image_io, 'OPENCV_MAX_PIXELS', 100_000_000)
    assert read_image(str(path)).shape == (40, 30, 3)


_OPENCV_CHILD = r"""
import os, sys
import semillie_mm  # noqa: F401  (sets OpenCV's cap before cv2 is loaded)
import cv2
import numpy as np
from semillie_mm.apis.image_io import ImageTooLargeError, read_image
print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])
ok, buf = cv2.imencode('.png', np.zeros((40, 40, 3), np.uint8))
try:
    cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    print('decoded')
except cv2.error:
    print('refused by OpenCV')
try:
    read_image(sys.argv[1])  # Pillow cannot read the header: OpenCV's cap
    print('decoded')
except ImageTooLargeError as e:
    print(e)
"""


def test_opencv_cap_set_before_cv2_is_loaded(tmp_path):
    """Importing semillie_mm sets OPENCV_IO_MAX_IMAGE_PIXELS from
    SEMILLIE_MAX_PIXELS before anything loads cv2: OpenCV itself refuses
    a larger image."""
    import cv2
    ok, buf = cv2.imencode('.hdr', np.zeros((40, 40, 3), np.float32))
    path = tmp_path / 'x.hdr'
    path.write_bytes(buf.tobytes())
    proc = subprocess.run(
        [sys.executable, '-c', _OPENCV_CHILD, str(path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env=_child_env(SEMILLIE_MAX_PIXELS='1000'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-3:]
    assert lines[0] == '1000' and lines[1] == 'refused by OpenCV', lines
    assert lines[2].startswith("image too large: over OpenCV's limit of "
                               '1,000 pixels'), lines


def test_list_images_ignores_dot_files(tmp_path):
    for name in ('a.png', '.a.png.0123abcd.tmp.png', '._b.jpg', 'c.txt'):
        (tmp_path / name).write_bytes(b'x')
    images, ignored = list_images(str(tmp_path))
    assert [osp.basename(p) for p in images] == ['a.png']
    assert sorted(osp.basename(p) for p in ignored) == sorted(
        ['.a.png.0123abcd.tmp.png', '._b.jpg', 'c.txt'])


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_written_file_mode_follows_umask(tmp_path, umask):
    """Outputs get 0o666 & ~umask, as any new file (mkstemp gave 0o600)."""
    old = os.umask(umask)
    try:
        path = tmp_path / 'x.png'
        write_image_atomic(str(path), np.zeros((4, 5, 3), np.uint8))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ['x.png']
