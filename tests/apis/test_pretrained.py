"""The model shipped in the package: finding it, and the inferencer by name.

The shipped folder is pointed at a temporary one holding a small model with
random weights (``semillie_test_utils.write_shipped_model``); the last test
loads the real shipped model and is skipped while its files are absent.
"""
import logging
import os.path as osp

import semillie_mm.apis.pretrained as pretrained
from semillie_mm.apis.pretrained import (
    DEFAULT_MODEL,
    is_shipped_model,
    shipped_model,
    shipped_model_paths,
)

import numpy as np
import pytest
from semillie_test_utils import write_shipped_model

# the real files, before any test points the folder elsewhere
REAL_FILES = shipped_model_paths(DEFAULT_MODEL)


@pytest.fixture(scope='module')
def shipped_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pretrained')
    return str(folder), write_shipped_model(folder)


@pytest.fixture
def shipped(shipped_files, monkeypatch):
    """The shipped folder pointed at the small model; its two files."""
    folder, files = shipped_files
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', folder)
    return files


def _images(n, shape=(24, 30, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 80, shape, dtype=np.uint8) for _ in range(n)]


def test_shipped_model_paths_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(tmp_path))
    cfg = tmp_path / f'{DEFAULT_MODEL}.py'
    weights = tmp_path / f'{DEFAULT_MODEL}_teacher.pth'
    assert shipped_model_paths() == (str(cfg), str(weights))
    for present, missing in (([], cfg), ([cfg], weights)):
        for path in present:
            path.write_text('model = dict(type="SemiLLIENet")\n')
        with pytest.raises(FileNotFoundError) as err:
            shipped_model()
        msg = str(err.value)
        assert len(msg.splitlines()) == 1
        assert str(missing) in msg and 'fresh clone' in msg
        assert 'CONFIG CHECKPOINT' in msg
    weights.write_bytes(b'x')
    assert shipped_model() == (str(cfg), str(weights))
    # names, not files
    assert is_shipped_model(DEFAULT_MODEL)
    assert not is_shipped_model('other_model')
    (tmp_path / 'other_model.py').write_text('')
    assert is_shipped_model('other_model')
    for not_a_name in ('other_model.py', osp.join('x', 'other_model'), '',
                       None, dict(type='SemiLLIENet')):
        assert not is_shipped_model(not_a_name)


def test_inferencer_by_name_matches_paths(shipped, caplog):
    from semillie_mm.apis import SemiLLIEInferencer
    cfg, weights = shipped
    imgs = _images(2)
    by_paths = SemiLLIEInferencer(cfg, weights, device='cpu',
                                  show_progress=False)
    assert by_paths.shipped_model is None
    expected = by_paths(imgs, tile_size=None)['predictions']
    with caplog.at_level(logging.INFO, logger='semillie_mm.apis.inferencer'):
        by_name = SemiLLIEInferencer(DEFAULT_MODEL, device='cpu',
                                     show_progress=False)
    notes = [r for r in caplog.records if 'shipped model' in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert DEFAULT_MODEL in notes[0].getMessage()
    assert weights in notes[0].getMessage()
    assert by_name.weights_loaded and by_name.has_teacher
    assert by_name.shipped_model == DEFAULT_MODEL
    got = by_name(imgs, tile_size=None)['predictions']
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)
    # the classmethod is the same thing
    again = SemiLLIEInferencer.from_shipped(device='cpu', show_progress=False)
    assert np.array_equal(again(imgs[0], tile_size=None)['predictions'][0],
                          expected[0])


def test_inferencer_name_errors(shipped_files, tmp_path, monkeypatch):
    from semillie_mm.apis import SemiLLIEInferencer

    # a name that is neither a file nor a shipped model: today's wording
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', shipped_files[0])
    with pytest.raises(FileNotFoundError,
                       match='config file no_such_model does not exist'):
        SemiLLIEInferencer('no_such_model')
    # the shipped weights missing: the error names them
    cfg, _ = write_shipped_model(tmp_path)
    (tmp_path / f'{DEFAULT_MODEL}_teacher.pth').unlink()
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(tmp_path))
    with pytest.raises(FileNotFoundError,
                       match=f'{DEFAULT_MODEL}_teacher.pth does not exist'):
        SemiLLIEInferencer(DEFAULT_MODEL)
    with pytest.raises(FileNotFoundError, match='_teacher.pth'):
        SemiLLIEInferencer.from_shipped()


def test_real_shipped_model():
    """The model shipped in the package enhances a dark photo."""
    missing = [p for p in REAL_FILES if not osp.isfile(p)]
    if missing:
        pytest.skip(f'the shipped model is not in this checkout yet '
                    f'({", ".join(missing)} missing)')
    from semillie_mm.apis import SemiLLIEInferencer

    from skimage import data
    assert pretrained.PRETRAINED_DIR == osp.dirname(REAL_FILES[0])
    inferencer = SemiLLIEInferencer(DEFAULT_MODEL, device='cpu',
                                    show_progress=False)
    assert inferencer.weights_loaded
    img = data.coffee()[::4, ::4]  # 100 x 150
    dark = np.round(img * 0.15).astype(np.uint8)
    out = inferencer(dark, tile_size=None)['predictions'][0]
    assert out.shape == dark.shape and out.dtype == np.uint8
    assert out.mean() > dark.mean() + 10, (out.mean(), dark.mean())


def test_export_shipped_model_round_trip(tmp_path, monkeypatch):
    """A mean-teacher checkpoint -> NAME.py + NAME_teacher.pth: the weights
    are the teacher's (not the student's), float32 and weights-only
    readable, and the inferencer by name enhances exactly as that teacher."""
    import copy

    from semillie_mm.apis import SemiLLIEInferencer
    from semillie_mm.apis.pretrained import export_shipped_model

    import torch
    from mmagic.registry import MODELS
    from semillie_test_utils import TINY_MODEL
    torch.manual_seed(1)
    teacher = MODELS.build(copy.deepcopy(TINY_MODEL['generator']))
    student = MODELS.build(copy.deepcopy(TINY_MODEL['generator']))
    state = {f'teacher.module.{k}': v for k, v in
             teacher.state_dict().items()}
    state.update({f'student.{k}': v for k, v in
                  student.state_dict().items()})
    state['teacher.steps'] = torch.tensor([7])
    ckpt = str(tmp_path / 'iter_10.pth')
    torch.save(dict(state_dict=state, meta=dict(note=np.float64(1.5))), ckpt)
    (tmp_path / 'src').mkdir()
    src_cfg, _ = write_shipped_model(tmp_path / 'src', 'tmpl')
    out = tmp_path / 'out'
    cfg_path, w_path = export_shipped_model(src_cfg, ckpt, 'mine', str(out))
    assert osp.basename(cfg_path) == 'mine.py'
    weights = torch.load(w_path, weights_only=True)
    assert set(weights) == set(teacher.state_dict())
    for k, v in teacher.state_dict().items():
        assert weights[k].dtype == torch.float32
        assert torch.equal(weights[k], v.float())
    assert '_base_' not in open(cfg_path).read()
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(out))
    img = _images(1, (20, 28, 3), seed=3)[0]
    got = SemiLLIEInferencer('mine', device='cpu', show_progress=False)(
        img, return_preds=True)['predictions'][0]
    with torch.no_grad():
        ref = teacher(torch.from_numpy(img).permute(2, 0, 1)[None].float()
                      / 255.)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(got.astype(int) - np.round(ref * 255)).max() <= 1
    other = student(torch.from_numpy(img).permute(2, 0, 1)[None].float()
                    / 255.)[0].clamp(0, 1).permute(1, 2, 0).detach().numpy()
    assert np.abs(got.astype(int) - np.round(other * 255)).max() > 1
