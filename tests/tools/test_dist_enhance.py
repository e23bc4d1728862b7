"""tools/enhance.py --launcher pytorch through tools/dist_enhance.sh: 2 CPU
processes (gloo, torchrun) give
the outputs of one process byte for byte, each file written by one rank,
and a rerun re-creates only what is missing; the shares are a partition."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

from semillie_mm.apis.sharding import shard_work

import numpy as np
import pytest
import torch
from test_enhance_tool import _load_tool, model_files  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# one torch thread everywhere: float sums over another thread count round
# differently (docs/enhance.md, "Many images across processes")
FIXED = dict(OMP_NUM_THREADS='1', SEMILLIE_ADAPTIVE_THREADS='0')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def photo_folder(tmp_path):
    """Six shipped photos (scikit-image), darkened and made small, of
    different sizes; PNG, JPEG and gray, two in a sub-folder; a 3-frame
    video panning over one of them; a broken image and a text file."""
    import cv2
    from skimage import data
    src = tmp_path / 'in'
    (src / 'sub').mkdir(parents=True)
    photos = dict(astronaut=('astronaut.png', 16), chelsea=('chelsea.jpg', 10),
                  coffee=('sub/coffee.png', 12), camera=('camera.png', 20),
                  rocket=('rocket.jpg', 16), hubble_deep_field=('sub/hubble.png', 25))
    for name, (rel, step) in photos.items():
        img = getattr(data, name)()[::step, ::step] // 3
        if img.ndim == 3:
            img = img[..., ::-1]  # RGB -> BGR for cv2
        assert cv2.imwrite(str(src / rel), np.ascontiguousarray(img))
    from semillie_mm.apis.video import VideoSink
    frame = data.coffee()[::8, ::8, ::-1] // 4
    with VideoSink(str(src / 'sub' / 'pan.avi'), 5, (32, 24)) as sink:
        for i in range(3):
            sink.write(np.ascontiguousarray(frame[:24, 4 * i:4 * i + 32]))
    (src / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    (src / 'notes.txt').write_text('not an image')
    return src


def _files(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, folder)] = f.read()
    return out


def _dist_enhance(paths, options, nproc=2):
    """tools/dist_enhance.sh PATHS... NPROC OPTIONS... (torchrun)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable,
               PORT=str(_free_port()), **FIXED)
    proc = subprocess.run(
        ['bash', 'tools/dist_enhance.sh', *paths, str(nproc), *options,
         '--no-progress'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_two_processes_equal_one(tmp_path, model_files, photo_folder,  # noqa: F811
                                 monkeypatch):
    cfg, ckpt = model_files
    opts = ['--tile', '24', '--tile-overlap', '8']
    # one process, in this one, with the same single thread
    for key, value in FIXED.items():
        monkeypatch.setenv(key, value)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _load_tool().main([cfg, ckpt, str(photo_folder),
                                    str(tmp_path / 'one'), *opts,
                                    '--no-progress'])
    finally:
        torch.set_num_threads(threads)
    assert single['processed'] == 7 and single['skipped'] == 1
    expected = _files(tmp_path / 'one')
    assert len(expected) == 7 and 'sub/pan.avi' in expected

    out = tmp_path / 'two'
    summary_path = tmp_path / 'summary.json'
    code, log = _dist_enhance([cfg, ckpt, str(photo_folder), str(out)],
                              [*opts, '--summary', str(summary_path)])
    assert code == 0, log[-4000:]
    assert '[rank 1/2] device cpu, 1 torch thread' in log
    assert _files(out) == expected  # byte for byte, nothing else written
    summary = json.loads(summary_path.read_text())
    assert summary['world_size'] == 2 and not summary['failed']
    assert (summary['processed'], summary['skipped'], summary['ignored']) == \
        (7, 1, 1)
    assert summary['skipped_files'][0]['path'].endswith('broken.jpg')
    # each output written once: the ranks' counts add up to the distinct
    # files, and both ranks had work
    assert len(set(summary['outputs'])) == len(summary['outputs']) == 7
    ranks = summary['ranks']
    assert [r['rank'] for r in ranks] == [0, 1]
    assert sum(r['processed'] for r in ranks) == 7
    assert all(r['processed'] >= 2 for r in ranks), ranks
    assert sum(r['items'] for r in ranks) == 8  # the broken one included
    assert 'rank 0: ' in log and 'rank 1: ' in log

    # resume: delete one output; the rerun writes it alone, the others keep
    # their files (same modification times)
    gone = 'sub/coffee.png'
    mtimes = {rel: os.stat(out / rel).st_mtime_ns for rel in expected}
    os.remove(out / gone)
    code, log = _dist_enhance([cfg, ckpt, str(photo_folder), str(out)],
                              [*opts, '--summary', str(summary_path)])
    assert code == 0, log[-4000:]
    summary = json.loads(summary_path.read_text())
    assert summary['processed'] == 1 and summary['existing'] == 6
    assert summary['outputs'] == [str(out / gone)]
    assert _files(out) == expected
    for rel, mtime in mtimes.items():
        if rel != gone:
            assert os.stat(out / rel).st_mtime_ns == mtime, rel
    assert os.stat(out / gone).st_mtime_ns != mtimes[gone]


@pytest.mark.parametrize('world_size', [1, 2, 3, 4, 7, 12])
def test_shards_are_a_partition(world_size):
    rng = np.random.default_rng(world_size)
    costs = [int(c) for c in rng.integers(1, 10**6, 11)]
    costs[3] = costs[8] = None  # unreadable headers
    shares = shard_work(costs, world_size)
    assert len(shares) == world_size
    flat = [i for s in shares for i in s]
    assert sorted(flat) == list(range(11))  # disjoint and covering
    assert all(s == sorted(s) for s in shares)
    assert shard_work(costs, world_size) == shares  # deterministic
    # balanced: no share exceeds the mean by more than the largest item
    filled = [c if c is not None else sorted(x for x in costs if x)[4]
              for c in costs]
    loads = [sum(filled[i] for i in s) for s in shares]
    assert max(loads) <= sum(filled) / world_size + max(filled)


def test_equal_costs_are_round_robin():
    assert shard_work([5] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard_work([None] * 4, 2) == [[0, 2], [1, 3]]
    assert shard_work([], 3) == [[], [], []]
    # one large item alone on a rank, the small ones on the other
    assert shard_work([1, 1, 10, 1, 1], 2) == [[2], [0, 1, 3, 4]]
    with pytest.raises(ValueError):
        shard_work([1], 0)


def test_work_list_and_costs(tmp_path):
    """The work list (images, then videos; folder order) and the costs read
    from headers: pixels of an image, frames x pixels of a video, None for
    a file whose header does not read."""
    from semillie_mm.apis.sharding import list_work, work_cost
    from semillie_mm.apis.video import VideoSink

    import cv2
    (tmp_path / 'b').mkdir()
    cv2.imwrite(str(tmp_path / 'b' / 'x.png'), np.zeros((10, 30, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((20, 16, 3), np.uint8))
    with VideoSink(str(tmp_path / 'clip.avi'), 5, (32, 24)) as sink:
        for _ in range(3):
            sink.write(np.zeros((24, 32, 3), np.uint8))
    (tmp_path / 'bad.png').write_bytes(b'nothing')
    (tmp_path / 'notes.txt').write_text('x')
    items, ignored = list_work(str(tmp_path))
    assert [it['rel'] for it in items] == ['a.jpg', 'bad.png', 'b/x.png',
                                           'clip.avi']
    assert 'video_path' in items[-1]
    assert [osp.basename(p) for p in ignored] == ['notes.txt']
    assert [work_cost(it) for it in items] == [320, None, 300, 3 * 32 * 24]


def test_launcher_one_line_errors(tmp_path, model_files, photo_folder,  # noqa: F811
                                  capsys):
    """Refused before any process group starts: one file, an output folder
    inside the input folder, a bad timeout."""
    from test_enhance_tool import _run_cli
    tool = _load_tool()
    cfg, ckpt = model_files
    src = str(photo_folder)
    cases = [
        ([osp.join(src, 'camera.png'), str(tmp_path / 'o')], 'is one file'),
        ([src, osp.join(src, 'enhanced')], 'inside the input folder'),
        ([src, src], 'inside the input folder'),
        ([src, str(tmp_path / 'o'), '--dist-timeout', '0'], '--dist-timeout'),
    ]
    for paths, needle in cases:
        code, err = _run_cli(tool, [cfg, ckpt, *paths, '--launcher',
                                    'pytorch'], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert needle in lines[0], (needle, err)
    assert not (tmp_path / 'o').exists()


def _failing_rank_worker(rank, port, out_dir, result_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
                      LOCAL_WORLD_SIZE='2')
    from semillie_mm.apis import sharding

    def work(items, out_dir, results, **kwargs):
        # rank 0 "writes" its share; rank 1 fails as a full disk would
        if rank == 1:
            raise OSError(28, 'No space left on device')
        results['outputs'] += [osp.join(out_dir, it['rel']) for it in items]

    sharding.init_distributed('pytorch', 'cpu', timeout=60)
    local = sharding.enhance_sharded(work, out_dir, out_dir + '_out', rank, 2,
                                     balance='count')
    merged = sharding.merge_summaries(sharding.gather_summaries(local))
    sharding.end_distributed()
    with open(osp.join(result_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(merged, f)


@pytest.mark.timeout(120)
def test_failing_rank_is_reported_to_all(tmp_path, photo_folder):
    """An exception on one rank: that rank still meets the others at the
    end, and every rank gets the totals naming it (no hang)."""
    import torch.multiprocessing as mp
    mp.spawn(_failing_rank_worker,
             args=(_free_port(), str(photo_folder), str(tmp_path)), nprocs=2,
             join=True)
    for rank in (0, 1):
        merged = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert merged['failed'] == [dict(
            rank=1, error='OSError: [Errno 28] No space left on device')]
        assert merged['processed'] == 4  # rank 0's share of 8, round-robin
        assert [r['items'] for r in merged['ranks']] == [4, 4]
        assert merged['ignored'] == 1 and not merged['interrupted']


def test_dist_enhance_sh_usage_errors():
    for args, needle in [(['in', 'out', 'x'], "NUM_PROCS 'x'"),
                         (['in', 'out', '0'], "NUM_PROCS '0'"),
                         (['in', '2'], 'expected INPUT OUTPUT NUM_PROCS')]:
        proc = subprocess.run(['bash', 'tools/dist_enhance.sh', *args],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
