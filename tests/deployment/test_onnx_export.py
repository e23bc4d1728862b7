"""ONNX export: the exportable scan, the exported model against PyTorch, the
export tool."""
import importlib.util
import json
import os.path as osp

from semillie_mm.deployment import OnnxRuntimeNetwork, check_onnx, export_mode, export_onnx
from semillie_mm.models.archs import MSSM, SS2D, SemiLLIENet
from semillie_mm.ops.selective_scan import selective_scan_reference
from semillie_mm.ops.selective_scan.backends.exportable import selective_scan_exportable

import pytest
import torch

onnx = pytest.importorskip(
    'onnx', reason='requirements/deployment.txt is not installed')
pytest.importorskip('onnxruntime',
                    reason='requirements/deployment.txt is not installed')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1,
                      d_state=4).eval()
    # not the initial values: random A, D and delta biases of any size
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SS2D):
                m.A_log.uniform_(-1, 2.5)
                m.D.normal_()
                m.dt_proj_bias.normal_(0, 1)
    return net


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('groups', [0, 4])
def test_exportable_scan_matches_reference(dtype, groups):
    g = torch.Generator().manual_seed(1)
    batch, dim, N, L = 2, 8, 5, 23
    u = torch.randn(batch, dim, L, generator=g, dtype=dtype)
    delta = torch.randn(batch, dim, L, generator=g, dtype=dtype)
    A = -torch.rand(dim, N, generator=g, dtype=dtype) * 4
    shape = (batch, groups, N, L) if groups else (batch, N, L)
    B = torch.randn(*shape, generator=g, dtype=dtype)
    C = torch.randn(*shape, generator=g, dtype=dtype)
    D = torch.randn(dim, generator=g, dtype=dtype)
    bias = torch.randn(dim, generator=g, dtype=dtype)
    ref = selective_scan_reference(u, delta, A, B, C, D=D, delta_bias=bias,
                                   delta_softplus=True)
    got = selective_scan_exportable(u, delta, A, B, C, D=D, delta_bias=bias,
                                    delta_softplus=True)
    assert got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (got - ref).abs().max() < tol


def test_export_mode_switches_and_restores():
    net = _tiny_net()
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        ref = net(x)
        with export_mode(net):
            assert all(m.export_mode for m in net.modules()
                       if isinstance(m, SS2D))
            assert not any(m.memory_lean for m in net.modules()
                           if isinstance(m, MSSM))
            out = net(x)
    assert not any(m.export_mode for m in net.modules()
                   if isinstance(m, SS2D))
    assert all(m.memory_lean for m in net.modules() if isinstance(m, MSSM))
    assert (out - ref).abs().max() < 1e-5


def test_dynamic_export_matches_pytorch(tmp_path):
    net = _tiny_net()
    path = str(tmp_path / 'tiny.onnx')
    export_onnx(net, path, dynamic=True, metadata=dict(network='teacher'))
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert 'Loop' in ops  # the scan, of dynamic length
    # standard operators only: every node in the default ONNX domain
    domains = {n.domain for n in model.graph.node} | {
        n.domain for a in model.graph.node for attr in a.attribute
        if attr.g is not None for n in attr.g.node}
    assert domains <= {'', 'ai.onnx'}, domains
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta['semillie_mm'])['network'] == 'teacher'
    res = check_onnx(net, path, shapes=[(37, 53), (16, 9), (2, 3)])
    assert res['max_abs_err'] <= 1e-4
    assert set(res['per_shape']) == {'37x53', '16x9', '2x3'}
    # a batch of two images at once
    ort_net = OnnxRuntimeNetwork(path)
    x = torch.rand(2, 3, 21, 17)
    with torch.no_grad():
        ref = net(x)
    assert ort_net(x).shape == (2, 3, 21, 17)
    assert (ort_net(x) - ref).abs().max() <= 1e-4


def test_static_export(tmp_path):
    net = _tiny_net(1)
    path = str(tmp_path / 'static.onnx')
    export_onnx(net, path, dynamic=False, shape=(37, 53))
    res = check_onnx(net, path, shapes=[(8, 8)])  # checked at its own size
    assert list(res['per_shape']) == ['37x53'] and res['max_abs_err'] <= 1e-4
    ort_net = OnnxRuntimeNetwork(path)
    assert ort_net.static_shape == (37, 53)
    with pytest.raises(ValueError, match='--dynamic'):
        ort_net(torch.rand(1, 3, 36, 53))
    # a batch runs image by image on a batch-1 model
    assert ort_net(torch.rand(3, 3, 37, 53)).shape == (3, 3, 37, 53)


def test_check_fails_on_a_wrong_model(tmp_path):
    """The check compares for real: another network's weights fail it."""
    path = str(tmp_path / 'tiny.onnx')
    export_onnx(_tiny_net(0), path, dynamic=True)
    with pytest.raises(AssertionError, match='differs from PyTorch'):
        check_onnx(_tiny_net(1), path)


def _load_tool():
    path = osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
    spec = importlib.util.spec_from_file_location('export_onnx_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_tool(tmp_path, capsys):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        "default_scope = 'mmagic'\n"
        "custom_imports = dict(imports=['semillie_mm'], "
        "allow_failed_imports=False)\n"
        "model = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, "
        "blocks_per_group=1, d_state=4)\n")
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=_tiny_net(2).state_dict()), ckpt)
    out = tmp_path / 'out' / 'tiny.onnx'
    tool = _load_tool()
    res = tool.main([str(cfg), str(ckpt), str(out), '--dynamic',
                     '--opset', '17'])
    assert osp.isfile(out) and res['max_abs_err'] <= 1e-4
    assert set(res['per_shape']) == {'37x53', '16x24'}
    assert 'ONNX Runtime vs PyTorch max abs error' in capsys.readouterr().out
    net = OnnxRuntimeNetwork(str(out))
    assert net.network == 'teacher' and net.static_shape is None
    assert net.metadata['config'] == 'tiny.py'
    # the weights of the checkpoint, not random ones
    x = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        assert (net(x) - _tiny_net(2)(x)).abs().max() <= 1e-4

    from semillie_mm.utils.cli import run_cli
    for argv, needle in (([str(cfg), str(ckpt), str(tmp_path / 'x.pt')],
                          '.onnx'),
                         ([str(cfg), str(ckpt), str(out), '--opset', '9'],
                          '--opset'),
                         ([str(cfg), str(tmp_path / 'no.pth'), str(out)],
                          'no.pth')):
        with pytest.raises(SystemExit) as exc:
            run_cli(tool.main, argv, prog='export_onnx.py')
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and needle in err[0]
