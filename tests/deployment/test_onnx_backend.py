"""The onnxruntime backend: SemiLLIEInferencer(backend='onnxruntime') and
``tools/enhance.py MODEL.onnx INPUT OUTPUT``."""
import importlib.util
import os.path as osp

from semillie_mm.apis import SemiLLIEInferencer
from semillie_mm.deployment import OnnxModelError, OnnxRuntimeNetwork, export_onnx

import numpy as np
import pytest
import torch

onnx = pytest.importorskip(
    'onnx', reason='requirements/deployment.txt is not installed')
pytest.importorskip('onnxruntime',
                    reason='requirements/deployment.txt is not installed')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, blocks_per_group=1,
            d_state=4)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny model's checkpoint, config and dynamic ONNX export."""
    d = tmp_path_factory.mktemp('onnx')
    cfg = d / 'tiny.py'
    cfg.write_text(
        "default_scope = 'mmagic'\n"
        "custom_imports = dict(imports=['semillie_mm'], "
        "allow_failed_imports=False)\n"
        f'model = {TINY!r}\n')
    import semillie_mm  # noqa: F401

    from mmagic.registry import MODELS
    torch.manual_seed(3)
    net = MODELS.build(TINY).eval()
    ckpt = d / 'tiny.pth'
    torch.save(dict(state_dict=net.state_dict()), ckpt)
    path = str(d / 'tiny.onnx')
    export_onnx(net, path, dynamic=True, metadata=dict(network='teacher'))
    student = str(d / 'student.onnx')
    export_onnx(net, student, dynamic=True, metadata=dict(network='student'))
    return str(cfg), str(ckpt), path, student


def _foreign_onnx(path):
    from onnx import TensorProto, helper
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])], 'relu',
        [info('x', TensorProto.FLOAT, [1, 3, 4, 4])],
        [info('y', TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, ir_version=8,
                                opset_imports=[helper.make_opsetid('', 17)]),
              path)
    return path


def test_inferencer_onnxruntime_matches_pytorch(exported):
    cfg, ckpt, path, _ = exported
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 90, (45, 70, 3), dtype=np.uint8),
            rng.integers(0, 90, (23, 31, 3), dtype=np.uint8)]
    torch_inf = SemiLLIEInferencer(cfg, ckpt, device='cpu',
                                   show_progress=False)
    ort_inf = SemiLLIEInferencer(backend='onnxruntime', onnx_model=path,
                                 show_progress=False)
    assert isinstance(ort_inf.get_network(), OnnxRuntimeNetwork)
    # tiled (45x70 > 32) and whole, through the same pipeline and tiling
    kw = dict(tile_size=32, tile_overlap=8)
    ref = torch_inf(imgs, **kw)['predictions']
    got = ort_inf(imgs, **kw)['predictions']
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype == np.uint8
        assert np.abs(r.astype(int) - g.astype(int)).max() <= 1
        assert (r != g).mean() < 0.01
    # a stacked batch of same-size images
    got = ort_inf([imgs[1], imgs[1]], batch_size=2)['predictions']
    ref = torch_inf([imgs[1], imgs[1]], batch_size=2)['predictions']
    assert np.abs(got[0].astype(int) - ref[0].astype(int)).max() <= 1


def test_inferencer_onnxruntime_errors(exported, tmp_path):
    _, _, path, student = exported
    with pytest.raises(OnnxModelError, match='not a semillie-mm model'):
        SemiLLIEInferencer(backend='onnxruntime',
                           onnx_model=_foreign_onnx(str(tmp_path / 'f.onnx')))
    garbage = tmp_path / 'g.onnx'
    garbage.write_bytes(b'not a protobuf')
    with pytest.raises(OnnxModelError, match='not a readable ONNX model'):
        SemiLLIEInferencer(backend='onnxruntime', onnx_model=str(garbage))
    with pytest.raises(OnnxModelError, match='holds the student network'):
        SemiLLIEInferencer(backend='onnxruntime', onnx_model=student)
    inf = SemiLLIEInferencer(backend='onnxruntime', onnx_model=student,
                             network='student', show_progress=False)
    with pytest.raises(ValueError, match='student network only'):
        inf.get_network('teacher')
    with pytest.raises(ValueError, match='needs onnx_model'):
        SemiLLIEInferencer(backend='onnxruntime')
    with pytest.raises(ValueError, match='backend must be one of'):
        SemiLLIEInferencer(backend='tensorrt', onnx_model=path)


def _load_enhance():
    path = osp.join(ROOT, 'tools', 'enhance.py')
    spec = importlib.util.spec_from_file_location('enhance_tool_onnx', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_enhance_tool_with_onnx(exported, tmp_path, capsys):
    import cv2
    cfg, ckpt, path, _ = exported
    src = tmp_path / 'in'
    src.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(src / 'a.png'),
                rng.integers(0, 90, (40, 52, 3), dtype=np.uint8))
    (src / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    tool = _load_enhance()
    args = ['--tile', '32', '--tile-overlap', '8', '--no-progress']
    res = tool.main([path, str(src), str(tmp_path / 'ort'), *args])
    assert res['processed'] == 1 and res['skipped'] == 1
    tool.main([cfg, ckpt, str(src), str(tmp_path / 'pt'), *args])
    a = cv2.imread(str(tmp_path / 'ort' / 'a.png')).astype(int)
    b = cv2.imread(str(tmp_path / 'pt' / 'a.png')).astype(int)
    assert a.shape == (40, 52, 3) and np.abs(a - b).max() <= 1

    from semillie_mm.utils.cli import run_cli
    static = str(tmp_path / 'static.onnx')
    export_onnx(torch.nn.Conv2d(3, 3, 1), static, shape=(8, 8))
    cases = [([_foreign_onnx(str(tmp_path / 'f.onnx')), str(src),
               str(tmp_path / 'o')], 'not a semillie-mm model'),
             ([str(tmp_path / 'none.onnx'), str(src), str(tmp_path / 'o')],
              'does not exist'),
             ([path, str(src), str(tmp_path / 'o'), '--student'],
              'holds the teacher network'),
             ([path, str(src), str(tmp_path / 'o'), '--device', 'cuda:0'],
              '--device'),
             ([static, str(src), str(tmp_path / 'o')], '--dynamic')]
    for argv, needle in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run_cli(tool.main, argv, prog='enhance.py')
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, (argv, err)
        assert len(err) == 1 and needle in err[0], (needle, err)
    assert not osp.exists(tmp_path / 'o')
