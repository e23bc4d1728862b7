"""The detection study's enhancement shared by 2 CPU processes (gloo): the
same files as one process, byte for byte; stale files of an earlier run
removed; the record written once."""
import json
import os
import os.path as osp
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _tiny_semillie(folder):
    import semillie_mm  # noqa: F401

    from mmagic.registry import MODELS
    model_cfg = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, blocks_per_group=1,
                     d_state=4, drop_path=0.0)
    cfg_path = osp.join(folder, 'tiny_semillie.py')
    with open(cfg_path, 'w') as f:
        f.write("default_scope = 'mmagic'\n"
                "custom_imports = dict(imports=['semillie_mm'], allow_failed_imports=False)\n"
                f'model = {model_cfg!r}\n')
    torch.manual_seed(0)
    ckpt = osp.join(folder, 'tiny_semillie.pth')
    torch.save(dict(state_dict=MODELS.build(model_cfg).state_dict()), ckpt)
    return cfg_path, ckpt


def _enhance(method_spec, night, names, row_dir):
    from semillie_mm.detection.methods import enhance_images, parse_method
    return enhance_images(parse_method(method_spec), night, names, row_dir, tile_size=80,
                          ext='.png')


def _worker(rank, port, method_spec, night, names, row_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE='2', LOCAL_WORLD_SIZE='2',
                      OMP_NUM_THREADS='1', SEMILLIE_ADAPTIVE_THREADS='0')
    torch.set_num_threads(1)
    from semillie_mm.apis import sharding
    assert sharding.init_distributed('pytorch', 'cpu', timeout=120)[:2] == (rank, 2)
    # a spy on the writer: which files this rank wrote
    from semillie_mm.apis import SemiLLIEInferencer
    written, save = [], SemiLLIEInferencer.save_prediction

    def spy(self, pred, path):
        written.append(osp.basename(path))
        return save(self, pred, path)

    SemiLLIEInferencer.save_prediction = spy
    try:
        assert _enhance(method_spec, night, names, row_dir) == osp.join(row_dir, 'images')
    finally:
        sharding.end_distributed()
    with open(osp.join(row_dir, f'written{rank}.json'), 'w') as f:
        json.dump(written, f)


def _read_all(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(osp.join(folder, name), 'rb') as f:
            out[name] = f.read()
    return out


@pytest.mark.timeout(300)
def test_enhance_images_two_processes(tmp_path, visdrone_factory, monkeypatch):
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=5, size=(128, 96))
    night = data['img_dir']
    names = sorted(os.listdir(night))
    cfg, ckpt = _tiny_semillie(str(tmp_path))
    spec = f'Tiny=semillie:{cfg},{ckpt}'
    monkeypatch.setenv('SEMILLIE_ADAPTIVE_THREADS', '0')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _enhance(spec, night, names, str(tmp_path / 'one'))
    finally:
        torch.set_num_threads(threads)
    expected = _read_all(one)
    assert len(expected) == len(names) == 5

    row = str(tmp_path / 'two')
    os.makedirs(osp.join(row, 'images'))
    with open(osp.join(row, 'images', 'stale.png'), 'wb') as f:
        f.write(b'from an earlier run')
    mp.spawn(_worker, args=(_free_port(), spec, night, names, row), nprocs=2, join=True)
    assert _read_all(osp.join(row, 'images')) == expected  # stale.png gone
    with open(osp.join(row, 'enhance.json')) as f:
        record = json.load(f)
    with open(osp.join(str(tmp_path / 'one'), 'enhance.json')) as f:
        assert record['settings'] == json.load(f)['settings']
    assert record['processed'] == 5
    # each file written by one rank, both ranks had work
    shares = []
    for rank in (0, 1):
        with open(osp.join(row, f'written{rank}.json')) as f:
            shares.append(json.load(f))
    assert all(shares) and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(expected)
