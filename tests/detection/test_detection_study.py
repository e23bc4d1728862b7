"""Tests of the detection study (semillie_mm.detection) and its command line
(tools/detection_study.py: arguments and one-line errors).

The end-to-end test runs the whole study on a tiny generated VisDrone-style set: conversion to
COCO, three methods (the night images, a folder of brightened PNGs, a small random-weight
SemiLLIENet through semillie_mm.apis), one epoch (2 iterations) of a small ResNet-18 Faster
R-CNN at 128x96 per
method with mmdet's runner in a child process, COCO evaluation, the table files; then a rerun
that must reuse every row.
"""
import csv
import importlib.util
import json
import os
import os.path as osp
import warnings

import numpy as np
import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load(rel, name):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from semillie_mm import detection  # noqa: E402
from semillie_mm.detection import study  # noqa: E402

tool = _load('tools/detection_study.py', 'detection_study_tool')
from semillie_mm.datasets.converters import visdrone2coco as v2c  # noqa: E402


def test_parse_method():
    m = detection.parse_method('Original=none')
    assert (m.name, m.kind, m.path, m.config, m.checkpoint) == ('Original', 'none', None, None,
                                                                 None)
    m = detection.parse_method('ZeroDCE=folder:some/dir')
    assert m.kind == 'folder' and m.path == osp.abspath('some/dir')
    m = detection.parse_method('Semi-LLIE (Ours)=semillie:a/cfg.py,b/ckpt.pth')
    assert m.name == 'Semi-LLIE (Ours)' and m.kind == 'semillie'
    assert m.config == osp.abspath('a/cfg.py') and m.checkpoint == osp.abspath('b/ckpt.pth')
    assert detection.parse_method('X=semillie:a/cfg.py').checkpoint is None
    for bad in ('Original', '=none', 'A=none:x', 'A=folder:', 'A=semillie:', 'A=zerodce:x'):
        with pytest.raises(ValueError):
            detection.parse_method(bad)
    assert detection.slugify('Semi-LLIE (Ours)') == 'semi-llie-ours'
    assert detection.slugify('***') == 'method'


def test_cli_arguments():
    pytest.importorskip('mmengine')
    args = tool.parse_args(['--images', 'img', '--ann-dir', 'ann', '--method', 'Original=none',
                             '--method', 'G=folder:g', '--img-scale', '128', '96', '--epochs',
                             '1', '--cfg-options', 'model.backbone.depth=18',
                             'model.neck.in_channels=[64,128,256,512]'])
    assert args.train_ann == osp.join('ann', 'train.json')
    assert args.test_ann == osp.join('ann', 'test.json')
    assert args.method == ['Original=none', 'G=folder:g'] and args.img_scale == [128, 96]
    assert args.cfg_options == {'model.backbone.depth': 18,
                                'model.neck.in_channels': [64, 128, 256, 512]}
    with pytest.raises(SystemExit):
        tool.parse_args(['--images', 'img'])  # no annotations


def test_metrics_to_row_and_tables(tmp_path):
    raw = {'coco/bbox_mAP': 0.094, 'coco/bbox_mAP_50': 0.183, 'coco/bbox_mAP_75': 0.085,
           'coco/bbox_mAP_s': 0.035, 'coco/bbox_mAP_m': 0.149, 'coco/bbox_mAP_l': -1.0}
    row = detection.metrics_to_row(raw)
    assert row == dict(AP=9.4, AP50=18.3, AP75=8.5, APs=3.5, APm=14.9, APl=None)
    # no detection at all: mmdet returns no bbox metric, every AP is 0
    assert detection.metrics_to_row({}) == {c: 0.0 for c, _ in detection.METRICS}
    results = [dict(name='Original', epochs=12, metrics=detection.metrics_to_row({})),
               dict(name='Semi-LLIE (Ours)', epochs=12, metrics=row)]
    md, cv = str(tmp_path / 't.md'), str(tmp_path / 't.csv')
    detection.write_tables(results, md, cv)
    lines = open(md).read().splitlines()
    assert '| Model | Epochs | AP | AP50 | AP75 | APs | APm | APl |' in lines
    assert '| Semi-LLIE (Ours) | 12 | 9.4 | 18.3 | 8.5 | 3.5 | 14.9 | n/a |' in lines
    with open(cv, newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['Model', 'Epochs', 'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl']
    assert rows[1] == ['Original', '12', '0.0', '0.0', '0.0', '0.0', '0.0', '0.0']
    assert rows[2][:3] == ['Semi-LLIE (Ours)', '12', '9.4']


def test_resolve_annotations(tmp_path, visdrone_factory):
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=3)
    v2c.convert(data['img_dir'], data['ann_dir'], str(tmp_path / 'coco'))
    ann = str(tmp_path / 'coco' / 'all.json')
    # another method's outputs, saved as PNG: matched by stem
    png_dir = tmp_path / 'png'
    png_dir.mkdir()
    for name in os.listdir(data['img_dir']):
        Image.open(osp.join(data['img_dir'], name)).save(png_dir / (name[:-4] + '.png'))
    out = str(tmp_path / 'resolved.json')
    assert detection.resolve_annotations(ann, str(png_dir), out) == 3
    with open(out) as f, open(ann) as g:
        resolved, orig = json.load(f), json.load(g)
    assert [i['file_name'] for i in resolved['images']] == [
        i['file_name'][:-4] + '.png' for i in orig['images']]
    assert resolved['annotations'] == orig['annotations']
    # a different size is an error (the boxes would not match)
    Image.new('RGB', (64, 64)).save(png_dir / 'night_0001.png')
    with pytest.raises(ValueError, match='differ in size'):
        detection.resolve_annotations(ann, str(png_dir), out)
    os.remove(png_dir / 'night_0001.png')
    with pytest.raises(FileNotFoundError, match='missing'):
        detection.resolve_annotations(ann, str(png_dir), out)


def test_build_detector_config(tmp_path):
    pytest.importorskip('mmdet')
    cfg = detection.build_detector_config(
        detection.DEFAULT_DET_CONFIG, str(tmp_path / 'img'), str(tmp_path / 'tr.json'),
        str(tmp_path / 'te.json'), str(tmp_path / 'wd'))
    # the paper's setting, read from mmdet's own base configs plus ours
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.type == 'FasterRCNN' and cfg.model.backbone.depth == 50
    assert cfg.model.backbone.init_cfg is None and cfg.model.backbone.frozen_stages == -1
    assert cfg.model.backbone.norm_eval is False
    assert cfg.model.roi_head.bbox_head.num_classes == 10
    assert cfg.train_dataloader.dataset.metainfo.classes[7] == 'awning-tricycle'
    assert cfg.train_cfg.max_epochs == 12 and cfg.auto_scale_lr.enable
    assert cfg.test_evaluator.type == 'CocoMetric' and cfg.test_evaluator.metric == 'bbox'
    assert cfg.test_evaluator.ann_file == str(tmp_path / 'te.json')
    assert cfg.train_dataloader.dataset.ann_file == str(tmp_path / 'tr.json')
    assert cfg.test_dataloader.dataset.data_prefix.img == str(tmp_path / 'img') + '/'
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    # short-run overrides
    cfg = detection.build_detector_config(
        detection.DEFAULT_DET_CONFIG, 'i', 'a.json', 'b.json', 'w', epochs=3,
        img_scale=(256, 192), batch_size=4, num_workers=0, cfg_options={'model.backbone.depth': 18})
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.param_scheduler[1].milestones == [2, 3] and cfg.param_scheduler[1].end == 3
    assert [t.scale for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize'] == [
        (256, 192)]
    assert [t.scale for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize'] == [
        (256, 192)]
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.train_dataloader.num_workers == 0 and not cfg.train_dataloader.persistent_workers
    assert cfg.model.backbone.depth == 18


def test_imagenet_variant_missing_checkpoint(tmp_path):
    pytest.importorskip('mmdet')
    variant = osp.join(detection.DETECTOR_CONFIG_DIR,
                       'faster-rcnn_r50_fpn_12e_visdrone-night_imagenet.py')
    with pytest.raises(FileNotFoundError, match='resnet50-0676ba61.pth'):
        detection.build_detector_config(variant, 'i', 'a.json', 'b.json', 'w')
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        detection.build_detector_config(detection.DEFAULT_DET_CONFIG, 'i', 'a.json', 'b.json',
                                        'w', pretrained_backbone=str(tmp_path / 'nothing.pth'))
    with pytest.raises(ValueError, match='downloads nothing'):
        detection.build_detector_config(
            variant, 'i', 'a.json', 'b.json', 'w',
            cfg_options={'model.backbone.init_cfg.checkpoint': 'torchvision://resnet50'})


def test_find_detector_config(tmp_path, monkeypatch):
    """The shipped configs by bare name; anything else is returned as given."""
    variant = 'faster-rcnn_r50_fpn_12e_visdrone-night_imagenet'
    shipped = osp.join(osp.dirname(detection.__file__), 'configs', f'{variant}.py')
    assert osp.isfile(shipped)
    assert detection.DEFAULT_DET_CONFIG == osp.join(
        osp.dirname(detection.__file__), 'configs', 'faster-rcnn_r50_fpn_12e_visdrone-night.py')
    monkeypatch.chdir(tmp_path)
    assert detection.find_detector_config(variant) == shipped
    assert detection.find_detector_config(f'{variant}.py') == shipped
    for given in ('nothing', 'nothing.py', f'sub/{variant}.py', str(tmp_path / 'x.py')):
        assert detection.find_detector_config(given) == given
    pytest.importorskip('mmengine')
    args = tool.parse_args(['--images', 'i', '--ann-dir', 'a', '--det-config', variant])
    assert args.det_config == shipped
    assert tool.parse_args(['--images', 'i', '--ann-dir', 'a']).det_config == \
        detection.DEFAULT_DET_CONFIG
    # a file of that name in the current folder is the user's, not the shipped one
    (tmp_path / f'{variant}.py').write_text('x = 1\n')
    assert detection.find_detector_config(f'{variant}.py') == f'{variant}.py'


def test_detector_configs_ship_in_the_package(tmp_path):
    """The default detector config is package data: found in a built (non-editable) package.

    ``setup.py build_py`` lays the package out as a wheel would; a fresh process imports it from
    there, with another working folder and no checkout on its path, and reads the default config.
    """
    import shutil
    import subprocess
    import sys
    pytest.importorskip('mmdet')
    src, lib, cwd = tmp_path / 'src', tmp_path / 'lib', tmp_path / 'elsewhere'
    src.mkdir()
    cwd.mkdir()
    for name in ('setup.py', 'README.md'):
        shutil.copy(osp.join(ROOT, name), src / name)
    shutil.copytree(osp.join(ROOT, 'requirements'), src / 'requirements')
    shutil.copytree(osp.join(ROOT, 'semillie_mm'), src / 'semillie_mm',
                    ignore=shutil.ignore_patterns('__pycache__', '*.so', '*.pyd'))
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '-d', str(lib)], cwd=src,
                   check=True, capture_output=True)
    code = ('import json; import semillie_mm.detection as d; '
            "cfg = d.build_detector_config(d.DEFAULT_DET_CONFIG, 'i', 'a.json', 'b.json', 'w'); "
            'print(json.dumps([d.DEFAULT_DET_CONFIG, cfg.model.type, '
            'cfg.model.roi_head.bbox_head.num_classes]))')
    env = dict(os.environ, PYTHONPATH=str(lib), NO_ALBUMENTATIONS_UPDATE='1')
    out = subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, check=True,
                         capture_output=True, text=True).stdout
    path, model, num_classes = json.loads(out.strip().splitlines()[-1])
    assert path == str(lib / 'semillie_mm' / 'detection' / 'configs'
                       / 'faster-rcnn_r50_fpn_12e_visdrone-night.py')
    assert (model, num_classes) == ('FasterRCNN', 10)


def test_local_pretrained_init(tmp_path):
    torch = pytest.importorskip('torch')
    pytest.importorskip('mmdet')
    import semillie_mm.detection  # noqa: F401

    from mmdet.models.backbones import ResNet
    from mmengine.registry import DefaultScope
    src = ResNet(depth=18)
    ckpt = str(tmp_path / 'r18.pth')
    torch.save(src.state_dict(), ckpt)
    with DefaultScope.overwrite_default_scope('mmdet'):
        net = ResNet(depth=18, init_cfg=dict(type='LocalPretrained', checkpoint=ckpt))
        net.init_weights()
        for k, v in src.state_dict().items():
            assert torch.equal(net.state_dict()[k], v), k
        missing = ResNet(depth=18, init_cfg=dict(type='LocalPretrained',
                                                  checkpoint=str(tmp_path / 'no.pth')))
        with pytest.raises(FileNotFoundError, match='no.pth'):
            missing.init_weights()


def _brighten_folder(src, dst):
    """A stand-in for another method's outputs: gamma-brightened PNGs."""
    os.makedirs(dst)
    for name in sorted(os.listdir(src)):
        img = np.asarray(Image.open(osp.join(src, name))).astype(np.float32) / 255
        out = np.round(255 * img ** 0.4).astype(np.uint8)
        Image.fromarray(out).save(osp.join(dst, osp.splitext(name)[0] + '.png'))


def _tiny_semillie(tmp_path):
    """A small random-weight SemiLLIENet, as a config file and a checkpoint."""
    torch = pytest.importorskip('torch')
    import semillie_mm  # noqa: F401

    from mmagic.registry import MODELS
    model_cfg = dict(type='SemiLLIENet', embed_dim=8, num_groups=1, blocks_per_group=1,
                     d_state=4, drop_path=0.0)
    cfg_path = tmp_path / 'tiny_semillie.py'
    cfg_path.write_text(
        "default_scope = 'mmagic'\n"
        "custom_imports = dict(imports=['semillie_mm'], allow_failed_imports=False)\n"
        f'model = {model_cfg!r}\n')
    torch.manual_seed(0)
    net = MODELS.build(model_cfg)
    ckpt = str(tmp_path / 'tiny_semillie.pth')
    torch.save(dict(state_dict=net.state_dict()), ckpt)
    return str(cfg_path), ckpt


@pytest.mark.timeout(600)
def test_study_end_to_end(tmp_path, visdrone_factory, monkeypatch):
    pytest.importorskip('mmdet')
    pytest.importorskip('pycocotools')
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=10, size=(128, 96))
    ann_dir = str(tmp_path / 'coco')
    v2c.convert(data['img_dir'], data['ann_dir'], ann_dir, seed=0)
    bright = str(tmp_path / 'bright')
    _brighten_folder(data['img_dir'], bright)
    methods = [detection.parse_method('Original=none'),
               detection.parse_method(f'Gamma=folder:{bright}')]
    cfg_path, ckpt = _tiny_semillie(tmp_path)
    methods.append(detection.parse_method(f'Semi-LLIE (tiny)=semillie:{cfg_path},{ckpt}'))
    work_dir = str(tmp_path / 'study')
    kwargs = dict(
        epochs=1, img_scale=(128, 96), batch_size=4, num_workers=0, seed=0,
        cfg_options={
            # a small Faster R-CNN: ResNet-18 with 16 base channels, 32-channel FPN and heads,
            # fewer proposals and RoI samples (RoIAlign dominates the CPU time otherwise)
            'model.backbone.depth': 18,
            'model.backbone.base_channels': 16,
            'model.neck.in_channels': [16, 32, 64, 128],
            'model.neck.out_channels': 32,
            'model.rpn_head.in_channels': 32,
            'model.rpn_head.feat_channels': 32,
            'model.roi_head.bbox_roi_extractor.out_channels': 32,
            'model.roi_head.bbox_head.in_channels': 32,
            'model.roi_head.bbox_head.fc_out_channels': 32,
            'model.train_cfg.rpn_proposal.nms_pre': 200,
            'model.train_cfg.rpn_proposal.max_per_img': 100,
            'model.train_cfg.rcnn.sampler.num': 64,
            'model.test_cfg.rpn.nms_pre': 200,
            'model.test_cfg.rpn.max_per_img': 100,
            'model.test_cfg.rcnn.score_thr': 0.0,
            'default_hooks.checkpoint': None,
            'default_hooks.logger.interval': 1,
        })
    results = detection.run_study(methods, data['img_dir'], osp.join(ann_dir, 'train.json'),
                                  osp.join(ann_dir, 'test.json'), work_dir, **kwargs)
    assert [r['name'] for r in results] == [m.name for m in methods]
    for r in results:
        assert r['epochs'] == 1
        assert set(r['metrics']) == {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'}
        # the evaluation really ran (all keys of CocoMetric present; values are fractions)
        assert 'coco/bbox_mAP' in r['raw_metrics'], r['raw_metrics']
        assert all(v is None or 0 <= v <= 100 for v in r['metrics'].values())
        assert osp.isfile(osp.join(work_dir, 'rows', detection.slugify(r['name']), 'result.json'))
    enhanced = osp.join(work_dir, 'rows', 'semi-llie-tiny', 'images')
    assert sorted(os.listdir(enhanced)) == sorted(os.listdir(data['img_dir']))
    # the enhanced images are the inferencer's outputs of the night images
    from semillie_mm.apis import SemiLLIEInferencer, read_image
    inferencer = SemiLLIEInferencer(cfg_path, ckpt, device='cpu', show_progress=False)
    name = sorted(os.listdir(data['img_dir']))[0]
    expected = inferencer(osp.join(data['img_dir'], name))['predictions'][0]
    got = read_image(osp.join(enhanced, name))
    assert got.shape == expected.shape
    # JPEG re-encoding of the same array: close, not equal
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3
    with open(osp.join(work_dir, 'table_vii.md')) as f:
        md = f.read()
    for m in methods:
        assert f'| {m.name} | 1 |' in md
    with open(osp.join(work_dir, 'table_vii.csv'), newline='') as f:
        assert len(list(csv.reader(f))) == 1 + len(methods)

    # rerun: every row is read back, nothing is trained or enhanced again
    def fail(*args, **kw):
        raise AssertionError('a finished row was recomputed')

    monkeypatch.setattr(study, 'run_row_subprocess', fail)
    monkeypatch.setattr(study, 'enhance_images', fail)
    os.remove(osp.join(work_dir, 'table_vii.md'))
    again = detection.run_study(methods, data['img_dir'], osp.join(ann_dir, 'train.json'),
                                osp.join(ann_dir, 'test.json'), work_dir, **kwargs)
    assert [r['metrics'] for r in again] == [r['metrics'] for r in results]
    assert osp.isfile(osp.join(work_dir, 'table_vii.md'))
    # other settings for a stored row: an error, not a silent reuse
    with pytest.raises(detection.StoredResultMismatch, match='other settings'):
        detection.run_study(methods[:1], data['img_dir'], osp.join(ann_dir, 'train.json'),
                            osp.join(ann_dir, 'test.json'), work_dir, **dict(kwargs, epochs=2))


def test_cli_one_line_errors(tmp_path, visdrone_factory, capsys):
    """User mistakes: one line on stderr naming the file, exit status 2."""
    pytest.importorskip('mmdet')
    from semillie_mm.utils.cli import run_cli
    data = visdrone_factory(str(tmp_path / 'vd'), num_images=3)
    ann_dir = str(tmp_path / 'coco')
    v2c.convert(data['img_dir'], data['ann_dir'], ann_dir, seed=0)
    cfg_path, ckpt = _tiny_semillie(tmp_path)
    truncated = tmp_path / 'truncated.pth'
    blob = open(ckpt, 'rb').read()
    truncated.write_bytes(blob[:len(blob) // 2])
    base = ['--images', data['img_dir'], '--ann-dir', ann_dir, '--work-dir',
            str(tmp_path / 'wd')]
    cases = [
        (['--images', str(tmp_path / 'no_images'), '--ann-dir', ann_dir], 'no_images'),
        (['--images', data['img_dir'], '--ann-dir', str(tmp_path / 'no_ann')],
         'train.json'),
        (base + ['--method', 'A=zerodce:x'], 'unknown kind'),
        (base + ['--method', f'G=folder:{tmp_path / "no_folder"}'], 'no_folder'),
        (base + ['--method', f'S=semillie:{tmp_path / "no_cfg.py"}'], 'no_cfg.py'),
        (base + ['--method', f'S=semillie:{cfg_path},{tmp_path / "no.pth"}'], 'no.pth'),
        (base + ['--method', f'S=semillie:{cfg_path},{truncated}'], 'truncated.pth'),
        (base + ['--det-config', str(tmp_path / 'no_det.py')], 'no_det.py'),
        (base + ['--enhance-device', 'tpu'], '--enhance-device tpu'),
    ]
    for argv, needle in cases:
        # (third-party import warnings are not this test's subject)
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exc:
            warnings.simplefilter('ignore')
            run_cli(tool.main, argv, prog='detection_study.py')
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith('detection_study.py: error:'), err
        assert needle in err[0], (needle, err)
