"""SemiLLIEInferencer against a direct forward of the model's networks.

The model is the demo config's SemiLLIE mean teacher (a small backbone) with
random weights; the teacher is perturbed so that teacher and student differ.
"""
import os
import os.path as osp

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(ROOT, 'configs', 'semillie_demo.py')


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """Demo config + a checkpoint of random weights; the reference model."""
    from semillie_mm.apis import SemiLLIEInferencer
    torch.manual_seed(0)
    ref = SemiLLIEInferencer(DEMO_CFG, device='cpu', show_progress=False)
    assert not ref.weights_loaded and ref.has_teacher
    with torch.no_grad():
        for p in ref.model.teacher.module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = tmp_path_factory.mktemp('ckpt')
    ckpt = str(d / 'model.pth')
    torch.save(dict(state_dict=ref.model.state_dict(), meta=dict()), ckpt)
    return ckpt, ref.model


def _direct(net, img):
    """Reference: the network on the whole image, rounded to uint8."""
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        y = net(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    return y


def _images(n, shape=(32, 40, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 90, shape, dtype=np.uint8) for _ in range(n)]


def test_matches_direct_forward_teacher_and_student(model_files):
    from semillie_mm.apis import SemiLLIEInferencer
    ckpt, ref = model_files
    inf = SemiLLIEInferencer(DEMO_CFG, ckpt, device='cpu',
                             show_progress=False)
    assert inf.weights_loaded
    imgs = _images(3)
    res = inf(imgs, batch_size=2)  # a batch of 2 stacked, then 1
    assert set(res) >= {'predictions', 'visualization'}
    assert res['visualization'] == []
    for img, out in zip(imgs, res['predictions']):
        assert out.shape == img.shape and out.dtype == np.uint8
        ref_y = _direct(ref.teacher.module, img)
        diff = np.abs(out.astype(int) - np.round(ref_y * 255))
        assert diff.max() <= 1  # rounding of a float difference only
    student = inf(imgs[0], network='student')['predictions'][0]
    ref_s = np.round(_direct(ref.generator, imgs[0]) * 255)
    assert np.abs(student.astype(int) - ref_s).max() <= 1
    # the two networks really differ
    assert np.abs(student.astype(int) -
                  res['predictions'][0].astype(int)).max() > 2


def test_datasamples_vis_and_tiles(model_files):
    from semillie_mm.apis import SemiLLIEInferencer, enhance_tensor
    ckpt, ref = model_files
    inf = SemiLLIEInferencer(DEMO_CFG, ckpt, network='student',
                             device='cpu', show_progress=False)
    img = _images(1, (40, 52, 3), seed=1)[0]
    res = inf(img, return_datasamples=True, return_vis=True, tile_size=None)
    ds = res['predictions'][0]
    assert tuple(ds.pred_img.shape) == (3, 40, 52)
    torch.testing.assert_close(
        ds.pred_img / 255,
        torch.from_numpy(_direct(ref.generator, img).transpose(2, 0, 1)),
        atol=1e-5, rtol=0)
    assert ds.metainfo['ori_shape'] == (40, 52, 3)
    vis = res['visualization'][0]
    assert vis.shape == (40, 104, 3) and vis.dtype == np.uint8
    np.testing.assert_array_equal(vis[:, :52], img)
    # tiled: the inferencer's result is the tiled run of the network
    tiled = inf(img, tile_size=32, tile_overlap=16)['predictions'][0]
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None] / 255
    y = enhance_tensor(ref.generator, x, 32, 16)[0].clamp(0, 1)
    expected = np.round(y.numpy().transpose(1, 2, 0) * 255)
    assert np.abs(tiled.astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match='tile_overlap'):
        inf(img, tile_size=16, tile_overlap=16)


def test_folder_out_dir_and_skip(model_files, tmp_path):
    from semillie_mm.apis import SemiLLIEInferencer

    import cv2
    ckpt, ref = model_files
    src = tmp_path / 'in'
    (src / 'sub').mkdir(parents=True)
    imgs = _images(2, (24, 28, 3), seed=2)
    cv2.imwrite(str(src / 'a.png'), imgs[0][..., ::-1])
    cv2.imwrite(str(src / 'sub' / 'b.png'), imgs[1][..., ::-1])
    (src / 'bad.jpg').write_bytes(b'not a jpeg')
    (src / 'readme.txt').write_text('x')
    inf = SemiLLIEInferencer(DEMO_CFG, ckpt, device='cpu',
                             show_progress=False)
    with pytest.raises(ValueError, match='bad.jpg'):
        inf(str(src))
    out = tmp_path / 'out'
    res = inf(str(src), out_dir=str(out), ext='png', on_error='skip',
              vis_out_dir=str(tmp_path / 'vis'), batch_size=2)
    assert [osp.relpath(p, out) for p in res['outputs']] == [
        'a.png', osp.join('sub', 'b.png')]
    assert [s['path'] for s in res['skipped']] == [str(src / 'bad.jpg')]
    assert res['ignored'] == [str(src / 'readme.txt')]
    for img, path, pred in zip(imgs, res['outputs'], res['predictions']):
        written = cv2.imread(path)[..., ::-1]
        np.testing.assert_array_equal(written, pred)
        ref_y = np.round(_direct(ref.teacher.module, img) * 255)
        assert np.abs(written.astype(int) - ref_y).max() <= 1
    assert (tmp_path / 'vis' / 'sub' / 'b.png').is_file()
    for root, _, files in os.walk(tmp_path):
        assert not [f for f in files if '.tmp' in f]
    # arrays are named by a counter; return_preds=False keeps nothing
    res = inf(imgs, out_dir=str(tmp_path / 'arr'), return_preds=False)
    assert res['predictions'] == [] and len(res['outputs']) == 2
    assert sorted(os.listdir(tmp_path / 'arr')) == ['00000000.png',
                                                    '00000001.png']


def test_config_from_checkpoint_and_errors(model_files, tmp_path):
    from semillie_mm.apis import SemiLLIEInferencer, init_enhancer

    from mmengine.config import Config
    ckpt, ref = model_files
    # an mmengine checkpoint carries its config: no config needed
    state = torch.load(ckpt, weights_only=False)
    state['meta'] = dict(cfg=Config.fromfile(DEMO_CFG).pretty_text)
    with_cfg = str(tmp_path / 'with_cfg.pth')
    torch.save(state, with_cfg)
    # a config is code: run from a checkpoint only when it is trusted
    with pytest.raises(ValueError, match='config is code'):
        SemiLLIEInferencer(weights=with_cfg, device='cpu')
    inf = SemiLLIEInferencer(weights=with_cfg, device='cpu',
                             show_progress=False, trust_checkpoint=True)
    img = _images(1, seed=3)[0]
    out = inf(img)['predictions'][0]
    assert np.abs(out.astype(int) -
                  np.round(_direct(ref.teacher.module, img) * 255)).max() <= 1
    # a checkpoint without the teacher: the teacher is refused, the student
    # still works
    no_teacher = {k: v for k, v in state['state_dict'].items()
                  if not k.startswith('teacher.')}
    path = str(tmp_path / 'student_only.pth')
    torch.save(dict(state_dict=no_teacher), path)
    with pytest.raises(KeyError, match='teacher'):
        SemiLLIEInferencer(DEMO_CFG, path, device='cpu')
    net = init_enhancer(DEMO_CFG, path, use_teacher=False)
    assert net is not None and not net.training
    with pytest.raises(FileNotFoundError, match='nothing.py'):
        SemiLLIEInferencer(str(tmp_path / 'nothing.py'))
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        SemiLLIEInferencer(DEMO_CFG, str(tmp_path / 'nothing.pth'))
    with pytest.raises(ValueError, match='network'):
        SemiLLIEInferencer(DEMO_CFG, network='ema')


@pytest.mark.parametrize('name', ['semillie_demo', 'semillie_lsrw',
                                  'semillie_visdrone'])
def test_configs_carry_inference_pipeline(name):
    """Every model config has a pipeline without ground truth, and its
    transforms build."""
    from semillie_mm.apis.inferencer import DEFAULT_INFERENCE_PIPELINE

    from mmagic.registry import TRANSFORMS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    pipeline = [dict(t) for t in cfg.inference_pipeline]
    assert pipeline == DEFAULT_INFERENCE_PIPELINE
    assert not any('gt' in str(t) for t in pipeline)
    with DefaultScope.overwrite_default_scope('mmagic'):
        for t in pipeline:
            TRANSFORMS.build(t)


def test_declared_kwargs_match_the_stages():
    """Each ``*_kwargs`` set is exactly its stage's keyword-only parameters,
    and with the call-level ones they are exactly ``__call__``'s."""
    import inspect

    from semillie_mm.apis import SemiLLIEInferencer
    declared = set()
    for stage in ('preprocess', 'forward', 'visualize', 'postprocess'):
        params = inspect.signature(
            getattr(SemiLLIEInferencer, stage)).parameters.values()
        keyword_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        assert keyword_only == getattr(SemiLLIEInferencer,
                                       f'{stage}_kwargs'), stage
        assert not declared & keyword_only
        declared |= keyword_only
    call = set(inspect.signature(SemiLLIEInferencer.__call__).parameters)
    call_level = {'self', 'inputs', 'batch_size', 'skip_existing',
                  'cpu_tuning', 'results', 'temporal_smoothing'}
    assert call - call_level == declared


def test_no_per_call_state_and_results_argument(model_files, tmp_path):
    """A call leaves the inferencer's attributes as they were (the array
    counter aside); the result goes to the dict passed as ``results``."""
    from semillie_mm.apis import SemiLLIEInferencer
    ckpt, _ = model_files
    inf = SemiLLIEInferencer(DEMO_CFG, ckpt, device='cpu',
                             show_progress=False)
    before = dict(vars(inf))
    mine = dict(stale=1)
    res = inf(_images(2), out_dir=str(tmp_path / 'o'), results=mine,
              on_error='skip')
    assert res is mine and 'stale' in mine and len(mine['outputs']) == 2
    after = vars(inf)
    assert set(after) == set(before)
    assert all(after[k] is v for k, v in before.items())
    # a second call numbers its arrays on
    res = inf(_images(1), out_dir=str(tmp_path / 'o'))
    assert [osp.basename(p) for p in res['outputs']] == ['00000002.png']


def test_checkpoint_of_other_shapes_is_refused(model_files, tmp_path):
    from semillie_mm.apis import SemiLLIEInferencer
    ckpt, _ = model_files
    state = torch.load(ckpt, weights_only=False)['state_dict']
    key = next(k for k in state if k.startswith('generator.')
               and k.endswith('weight'))
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    path = str(tmp_path / 'other_shapes.pth')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(RuntimeError, match=f'size mismatch for {key}'):
        SemiLLIEInferencer(DEMO_CFG, path, device='cpu')


CPU_TUNING_CHECK = r'''
import json, torch
import semillie_mm.apis.cpu_tuning as ct
from semillie_mm.apis import SemiLLIEInferencer
from semillie_mm.ops.cpu_cache import cpu_cache_available, cpu_cache_stats

class Lowering(ct.CPUThreadGovernor):
    """A governor that finds the cores busy: one thread."""
    def __init__(self):
        super().__init__(enabled=True)
        self.enabled = True
    def update(self):
        torch.set_num_threads(1)
        self.calls = getattr(self, 'calls', 0) + 1
        return 1

ct.CPUThreadGovernor = Lowering
torch.set_num_threads(2)
inf = SemiLLIEInferencer(CFG, device='cpu', show_progress=False)
img = torch.rand(24, 40, 3).numpy()
r = dict(ext=cpu_cache_available())
inf(img, tile_size=16, tile_overlap=4)
r['off'] = [torch.get_num_threads(), cpu_cache_stats()['installed']]
seen = []
orig = inf.forward
def spy(batch, before_tile=None, **kw):
    out = orig(batch, before_tile, **kw)
    seen.append([torch.get_num_threads(), cpu_cache_stats()['active'],
                 cpu_cache_stats()['limit_bytes'] > 0])
    return out
inf.forward = spy
inf(img, tile_size=16, tile_overlap=4, cpu_tuning=True)
s = cpu_cache_stats()
r['inside'] = seen[0]
r['on'] = [torch.get_num_threads(), s['limit_bytes'], s['cached_bytes']]
try:
    with ct.cpu_tuning():
        torch.set_num_threads(1)
        raise KeyboardInterrupt
except KeyboardInterrupt:
    r['interrupted'] = [torch.get_num_threads(),
                        cpu_cache_stats()['limit_bytes']]
print(json.dumps(r))
'''


def test_cpu_tuning_is_opt_in_and_restored():
    """Without ``cpu_tuning`` a call changes no process-wide CPU state; with
    it, the thread count (lowered by the governor during the call) and the
    caching allocator (on during the call) are put back when it ends, an
    exception included. In a fresh interpreter: the allocator is
    process-wide."""
    import json
    import subprocess
    import sys
    code = f'CFG = {DEMO_CFG!r}\n' + CPU_TUNING_CHECK
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r['off'] == [2, 0]  # untouched: no allocator installed
    assert r['inside'][0] == 1  # the governor lowered the thread count
    assert r['on'] == [2, 0, 0]  # restored; limit back to 0, nothing cached
    assert r['interrupted'] == [2, 0]
    if r['ext']:
        assert r['inside'][1:] == [1, True]  # the allocator was on


def test_networks_are_the_editors_enhancer(model_files):
    """One switch: the networks are what ``SemiLLIE.enhancer`` returns, the
    method validation and testing use (``test_cfg.use_teacher``)."""
    from semillie_mm.apis import SemiLLIEInferencer
    ckpt, _ = model_files
    inf = SemiLLIEInferencer(DEMO_CFG, ckpt, device='cpu',
                             show_progress=False)
    model = inf.model
    assert inf.get_network('teacher') is model.enhancer(use_teacher=True)
    assert inf.get_network('student') is model.enhancer(use_teacher=False)
    assert model.enhancer() is model.teacher.module
    model.test_cfg = dict(use_teacher=False)
    assert model.enhancer() is model.student
    assert model.enhancer(use_teacher=True) is model.teacher.module
