"""read_image against Pillow's decoding and EXIF transposition; atomic
writes; the format adaptation."""
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from semillie_mm.apis.image_io import (adapt_to_format, image_to_tensor,
                                       read_image, side_by_side,
                                       tensor_to_image, write_image_atomic)


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
