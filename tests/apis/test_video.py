"""Videos: probing, bad files, lossless round trip, the inferencer on a clip,
temporal smoothing and the flicker figure (tiny clips, a few frames)."""
import os
import os.path as osp

from semillie_mm.apis.video import (
    GainSmoother,
    VideoError,
    VideoSink,
    dropped_line,
    enhance_video,
    is_video,
    probe_video,
    read_frames,
    video_output_name,
)
from semillie_mm.datasets.demo_video import make_pan_clip
from semillie_mm.evaluation.functional.temporal import temporal_change

import numpy as np
import pytest
import torch


def _frames(n=5, shape=(24, 32), seed=0, high=80):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, high, (*shape, 3), dtype=np.uint8)
            for _ in range(n)]


def _write(path, frames, fps=12.5):
    h, w = frames[0].shape[:2]
    with VideoSink(str(path), fps, (w, h)) as sink:
        for f in frames:
            sink.write(f)
    return str(path)


def _no_temp_files(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            assert '.tmp' not in name, osp.join(root, name)


def test_lossless_round_trip_and_probe(tmp_path):
    frames = _frames(6)
    path = _write(tmp_path / 'clip.mkv', frames)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (6, 32, 24)
    assert info.fps == pytest.approx(12.5) and info.codec.lower() == 'ffv1'
    back = list(read_frames(path))
    assert len(back) == 6
    assert all(np.array_equal(a, b) for a, b in zip(back, frames))
    for ext, codec in (('.mp4', 'mp4v'), ('.avi', 'MJPG')):
        p = _write(tmp_path / f'clip{ext}', frames)
        assert probe_video(p).frames == 6
        assert VideoSink(p, 10, (32, 24)).codec == codec
    # odd sides: padded by a copy of the last row / column, said in the line
    odd = _frames(3, (23, 31))
    path = _write(tmp_path / 'odd.mkv', odd)
    info = probe_video(path)
    assert (info.width, info.height) == (32, 24)
    back = list(read_frames(path))
    assert all(np.array_equal(a[:23, :31], b) for a, b in zip(back, odd))
    assert np.array_equal(back[0][23, :31], odd[0][22])
    info.width, info.height = 31, 23
    assert 'padded to 32x24' in dropped_line(info, 'o.mkv', 'FFV1',
                                             (32, 24))
    assert 'padded' not in dropped_line(info, 'o.mkv', 'FFV1', (31, 23))
    _no_temp_files(tmp_path)
    assert is_video('a/B.MP4') and not is_video('a.png')
    assert video_output_name('x/y.webm') == 'x/y.mp4'
    assert video_output_name('y.avi') == 'y.avi'


def test_bad_videos(tmp_path):
    # no frames
    with VideoSink(str(tmp_path / 'empty.avi'), 10, (32, 24)):
        pass
    empty = str(tmp_path / 'empty.avi')
    with pytest.raises(VideoError, match='has no frames'):
        probe_video(empty)
    # truncated: half of an AVI of noise frames
    full = _write(tmp_path / 'full.avi', _frames(10, (48, 64), high=256))
    data = open(full, 'rb').read()
    cut = tmp_path / 'cut.avi'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(VideoError, match=r'truncated .*: \d of the 10'):
        probe_video(str(cut))
    # a truncated MP4 (its index is at the end) does not even open
    mp4 = open(_write(tmp_path / 'full.mp4', _frames(10)), 'rb').read()
    (tmp_path / 'cut.mp4').write_bytes(mp4[:len(mp4) // 2])
    with pytest.raises(VideoError, match='cannot open as a video'):
        probe_video(str(tmp_path / 'cut.mp4'))
    # an unknown codec (the FourCC of an AVI replaced) and plain junk
    (tmp_path / 'zz.avi').write_bytes(data.replace(b'MJPG', b'ZZZZ'))
    (tmp_path / 'junk.mkv').write_bytes(b'not a video' * 50)
    for name in ('zz.avi', 'junk.mkv'):
        with pytest.raises(VideoError, match='format or codec'):
            probe_video(str(tmp_path / name))
    with pytest.raises(VideoError, match='does not exist'):
        probe_video(str(tmp_path / 'none.mp4'))
    # outputs that cannot be written
    with pytest.raises(VideoError, match='cannot write .webm'):
        VideoSink(str(tmp_path / 'o.webm'), 10, (32, 24))
    sink = VideoSink(str(tmp_path / 'o.mkv'), 10, (32, 24))
    with pytest.raises(VideoError, match='frame of size'):
        with sink:
            sink.write(np.zeros((10, 10, 3), np.uint8))
    assert not (tmp_path / 'o.mkv').exists()
    _no_temp_files(tmp_path)


def test_gain_smoother():
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        GainSmoother(1.0)
    levels = [0.4, 0.6] * 5  # flickers between two levels
    out = []
    s = GainSmoother(0.8)
    for lv in levels:
        out.append(float(s(torch.full((3, 2, 2), lv)).mean()))
    assert out[0] == pytest.approx(0.4)
    # EMA: M_1 = 0.8 * 0.4 + 0.2 * 0.6
    assert out[1] == pytest.approx(0.44)
    assert np.ptp(out[4:]) < 0.25 * np.ptp(levels)
    x = torch.rand(3, 4, 4)
    assert torch.equal(GainSmoother(0)(x.clone()), x)
    const = GainSmoother(0.9)
    for _ in range(3):
        y = const(x.clone())
    assert torch.allclose(y, x, atol=1e-6)


def test_temporal_change_figures():
    clip = [np.full((2, 2), v, np.uint8) for v in (10, 20, 30, 40)]
    r = temporal_change(clip)
    assert r['mean_abs_change'] == 10 and r['mean_level'] == 25
    assert r['relative_change'] == pytest.approx(0.4)
    assert r['brightness_jitter'] == 0  # a ramp is not flicker
    flick = [np.full((2, 2), v / 255, np.float32) for v in (10, 30, 10, 30)]
    r = temporal_change(flick)
    assert r['mean_abs_change'] == pytest.approx(20, abs=1e-4)
    assert r['brightness_jitter'] == pytest.approx(40, abs=1e-4)
    with pytest.raises(ValueError, match='at least 3'):
        temporal_change(clip[:2])


def test_pan_clip():
    dark, clean = make_pan_clip(frames=5, size=(24, 32))
    again, _ = make_pan_clip(frames=5, size=(24, 32))
    assert all(np.array_equal(a, b) for a, b in zip(dark, again))
    assert dark[0].shape == (24, 32, 3) and dark[0].dtype == np.uint8
    # the pan: frame 1 is frame 0 moved 2 px left
    assert np.array_equal(clean[1][:, :-2], clean[0][:, 2:])
    means = [f.mean() for f in dark]
    assert means[-1] > means[0] and np.mean(clean[0]) > 2 * means[0]
    with pytest.raises(ValueError, match='too small'):
        make_pan_clip(frames=5, size=(2000, 32))


@pytest.fixture(scope='module')
def inferencer():
    import semillie_mm  # noqa: F401
    from semillie_mm.apis import SemiLLIEInferencer

    from mmengine.config import Config
    torch.manual_seed(0)
    cfg = Config(dict(model=dict(type='SemiLLIENet', embed_dim=8,
                                 num_groups=1, blocks_per_group=1)))
    return SemiLLIEInferencer(cfg, device='cpu', show_progress=False)


def test_inferencer_video_is_frame_by_frame(inferencer, tmp_path):
    frames = _frames(5, (24, 30))
    src = _write(tmp_path / 'in' / 'night.mkv', frames, fps=7)
    per_image = inferencer(frames, batch_size=1)['predictions']
    # batches of 2 frames; tiles of 16 (frames tile as images do)
    res = inferencer(src, batch_size=2)
    assert len(res['predictions']) == 1
    video = res['predictions'][0]
    assert video.shape == (5, 24, 30, 3) and video.dtype == np.uint8
    diff = np.abs(video.astype(int) - np.stack(per_image).astype(int))
    assert diff.max() <= 1
    tiled = inferencer(src, tile_size=16, tile_overlap=4)['predictions'][0]
    ref = inferencer(frames, tile_size=16, tile_overlap=4)['predictions']
    assert np.abs(tiled.astype(int) - np.stack(ref).astype(int)).max() <= 1
    # to a folder: lossless output, same size, rate and frame count
    out = tmp_path / 'out'
    res = inferencer(str(tmp_path / 'in'), out_dir=str(out))
    assert res['outputs'] == [str(out / 'night.mkv')] and not res['ignored']
    info = probe_video(res['outputs'][0])
    assert (info.frames, info.width, info.height, info.fps) == (5, 30, 24, 7)
    back = np.stack(list(read_frames(res['outputs'][0])))
    assert np.array_equal(back, video)
    # skip existing
    res = inferencer(str(tmp_path / 'in'), out_dir=str(out),
                     skip_existing=True)
    assert res['existing'] == [str(out / 'night.mkv')] and not res['outputs']
    _no_temp_files(tmp_path)


def test_smoothing_reduces_flicker_of_a_flickering_model(tmp_path):
    """A network whose gain alternates frame by frame flickers; the option
    brings the brightness jitter down."""
    from semillie_mm.apis import SemiLLIEInferencer

    from mmengine.config import Config

    class Flicker(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))  # its device
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * (3.0 if self.calls % 2 else 2.0)

    inferencer = SemiLLIEInferencer(Config(dict(model=dict(
        type='SemiLLIENet', embed_dim=8, num_groups=1, blocks_per_group=1))),
        device='cpu', show_progress=False)
    inferencer._networks['teacher'] = Flicker()
    dark, _ = make_pan_clip(frames=12, size=(24, 32))
    src = _write(tmp_path / 'clip.mkv', dark)
    figures = {}
    for alpha in (0.0, 0.8):
        dst = str(tmp_path / f'out_{alpha}.mkv')
        enhance_video(inferencer, src, dst, temporal_smoothing=alpha)
        figures[alpha] = temporal_change(read_frames(dst))
    assert figures[0.8]['brightness_jitter'] < \
        0.5 * figures[0.0]['brightness_jitter']
    assert figures[0.8]['mean_abs_change'] < figures[0.0]['mean_abs_change']
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        inferencer(src, temporal_smoothing=1.5)


def test_interrupted_video_leaves_nothing(inferencer, tmp_path):
    """Ctrl-C in the middle of a video: no output, no temporary file, and
    an output that existed before is left as it was."""
    src = _write(tmp_path / 'clip.avi', _frames(4))
    dst = tmp_path / 'out.mp4'
    forward = inferencer.forward
    calls = []

    def interrupt(batch, before_tile=None, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return forward(batch, before_tile, **kw)

    inferencer.forward = interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            enhance_video(inferencer, src, str(dst))
        assert not dst.exists()
        dst.write_bytes(b'old')
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            enhance_video(inferencer, src, str(dst))
        assert dst.read_bytes() == b'old'
    finally:
        del inferencer.forward
    assert len(calls) == 2
    _no_temp_files(tmp_path)
