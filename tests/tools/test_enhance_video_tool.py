"""tools/enhance.py on videos: a clip to a file, a folder with bad videos,
and the one-line errors (tiny generated clips, a few frames)."""
import logging
import os
import os.path as osp

from semillie_mm.apis.video import VideoSink, probe_video, read_frames

import numpy as np
import pytest
from test_enhance_tool import _load_tool, _no_temp_files, _run_cli, model_files  # noqa: F401


def _write(path, n=4, shape=(24, 32), fps=9.0, high=80, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    with VideoSink(str(path), fps, shape[::-1]) as sink:
        for _ in range(n):
            sink.write(rng.integers(0, high, (*shape, 3), dtype=np.uint8))
    return str(path)


@pytest.fixture
def bad_videos(tmp_path):
    d = tmp_path / 'bad'
    d.mkdir()
    with VideoSink(str(d / 'empty.avi'), 10, (32, 24)):
        pass
    data = open(_write(tmp_path / 'noise.avi', n=10, shape=(48, 64),
                       high=256), 'rb').read()
    (d / 'truncated.avi').write_bytes(data[:len(data) // 2])
    (d / 'codec.avi').write_bytes(data.replace(b'MJPG', b'ZZZZ'))
    return d


def test_video_to_file_and_folder(tmp_path, model_files, bad_videos,  # noqa: F811
                                  caplog):
    tool = _load_tool()
    cfg, ckpt = model_files
    src = _write(tmp_path / 'in' / 'night.mkv')
    out = tmp_path / 'out.mp4'
    with caplog.at_level(logging.INFO):
        summary = tool.main([cfg, ckpt, src, str(out), '--batch-size', '3',
                             '--tile', '16', '--tile-overlap', '4',
                             '--temporal-smoothing', '0.5', '--no-progress'])
    assert summary['processed'] == 1 and summary['outputs'] == [str(out)]
    info = probe_video(str(out))
    assert (info.frames, info.width, info.height, info.fps) == (4, 32, 24, 9)
    line = [r.getMessage() for r in caplog.records if 'dropped' in
            r.getMessage()]
    assert len(line) == 1 and 'ffv1 -> mp4v' in line[0] and 'audio' in \
        line[0] and '4 frames, 32x24, 9 fps kept' in line[0]
    # run again: the output exists and is kept
    assert tool.main([cfg, ckpt, src, str(out), '--no-progress'])[
        'existing'] == 1
    # a folder: images and videos; bad videos are skipped with a reason
    folder = tmp_path / 'in'
    for name in os.listdir(bad_videos):
        os.replace(bad_videos / name, folder / name)
    _write(folder / 'sub' / 'clip.avi', n=3)
    np.save(folder / 'notes.npy', np.zeros(2))
    summary = tool.main([cfg, ckpt, str(folder), str(tmp_path / 'res'),
                         '--no-progress'])
    assert sorted(osp.relpath(p, tmp_path / 'res')
                  for p in summary['outputs']) == ['night.mkv',
                                                   'sub/clip.avi']
    reasons = {osp.basename(s['path']): s['reason']
               for s in summary['skipped_files']}
    assert set(reasons) == {'empty.avi', 'truncated.avi', 'codec.avi'}
    assert 'no frames' in reasons['empty.avi']
    assert 'truncated' in reasons['truncated.avi']
    assert 'codec' in reasons['codec.avi']
    assert summary['ignored'] == 1  # notes.npy
    lossless = np.stack(list(read_frames(str(tmp_path / 'res' /
                                             'night.mkv'))))
    assert lossless.shape == (4, 24, 32, 3)
    _no_temp_files(tmp_path)


def test_video_one_line_errors(tmp_path, model_files, bad_videos,  # noqa: F811
                               capsys):
    tool = _load_tool()
    cfg, ckpt = model_files
    good = _write(tmp_path / 'good.mp4')
    cases = [
        ([str(bad_videos / 'truncated.avi'), 'o.mp4'], 'truncated'),
        ([str(bad_videos / 'empty.avi'), 'o.mp4'], 'no frames'),
        ([str(bad_videos / 'codec.avi'), 'o.mp4'], 'codec'),
        ([good, str(tmp_path / 'o.webm')], 'cannot write .webm'),
        ([good, str(tmp_path / 'o.png')], 'the input is a video'),
        ([good, good], 'would overwrite an input'),
        ([good, str(tmp_path / 'o.mp4'), '--temporal-smoothing', '1'],
         '--temporal-smoothing'),
    ]
    for argv, needle in cases:
        code, err = _run_cli(tool, [cfg, ckpt] + argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith('enhance.py: error:')
        assert needle in lines[0], (needle, err)
    assert not osp.exists(tmp_path / 'o.mp4')
