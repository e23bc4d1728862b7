"""The dataset config pieces build and give the packed format."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

CFG_DIR = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', '_base_', 'datasets')


def _replace(obj, old, new):
    """Recursively replace a data root and the demo preparation options."""
    if isinstance(obj, dict):
        out = {k: _replace(v, old, new) for k, v in obj.items()}
        if out.get('prepare') == 'demo':
            out['prepare'] = dict(type='demo', seed=0, sources=SMALL_SOURCES)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace(v, old, new) for v in obj)
    if obj == old:
        return new
    return obj


# A reduced photo list keeps the test fast (same as test_demo_data.py).
SMALL_SOURCES = [
    dict(name='chelsea', package='skimage', split='labeled', scale=0.5),
    dict(name='astronaut', package='skimage', split='unlabeled', scale=0.3),
    dict(name='flower', package='sklearn', split='val', scale=0.5),
]


def test_demo_config_builds_train_and_val_loaders(tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(CFG_DIR, 'semillie_demo.py'))
    root = str(tmp_path / 'demo')
    train = _replace(cfg.train_dataloader.to_dict(), cfg.data_root, root)
    train.update(num_workers=0, persistent_workers=False, batch_size=2)
    # the small demo has 2 paired tiles; unlabeled 1: length 2
    loader = Runner.build_dataloader(train, seed=0)
    batch = next(iter(loader))
    inputs = batch['inputs']
    assert set(inputs) == {'paired', 'unpaired_weak', 'unpaired_strong'}
    assert [t.shape for t in inputs['paired']] == [(3, 64, 64)] * 2
    assert [t.shape for t in inputs['unpaired_weak']] == [(3, 64, 64)] * 2
    assert all(t.dtype == torch.float32 for t in inputs['unpaired_strong'])
    assert len(batch['data_samples']) == 2
    assert batch['data_samples'][0].gt_img.shape == (3, 64, 64)
    assert osp.exists(osp.join(root, 'manifest.json'))

    val = _replace(cfg.val_dataloader.to_dict(), cfg.data_root, root)
    val.update(num_workers=0, persistent_workers=False)
    vbatch = next(iter(Runner.build_dataloader(val, seed=0)))
    assert vbatch['inputs'][0].shape == (3, 128, 128)
    assert vbatch['data_samples'][0].gt_img.shape == (3, 128, 128)
    names = [m['type'] for m in cfg.val_evaluator]
    assert names == ['PSNR', 'SSIM']


@pytest.mark.parametrize('name', ['semillie_visdrone.py', 'semillie_lsrw.py'])
def test_paper_configs_use_paper_settings(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert cfg.train_dataloader.batch_size == 8  # 8 paired + 8 unpaired
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'SemiSupervisedDataset'
    paired = ds.paired
    pipelines = ([d.pipeline for d in paired.datasets]
                 if paired.type == 'ConcatDataset' else [paired.pipeline])
    for pipeline in pipelines:
        crop = [t for t in pipeline if t.type == 'PairedRandomCropWithPad']
        assert crop[0].crop_size == 256
    resize = [t for t in ds.unpaired.pipeline if t.type == 'Resize'][0]
    assert tuple(resize.scale) == (256, 256)
    assert ds.pipeline[-1].type == 'PackSemiInputs'


def test_strong_views_reproducible_in_seeded_workers(tmp_path):
    """mmengine seeds each dataloader worker (seed + worker_id): the same
    seed gives the same strong views, another seed other ones."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(CFG_DIR, 'semillie_demo.py'))
    root = str(tmp_path / 'demo')
    train = _replace(cfg.train_dataloader.to_dict(), cfg.data_root, root)
    train.update(num_workers=1, persistent_workers=False, batch_size=2)

    def first_batch(seed):
        loader = Runner.build_dataloader(train, seed=seed)
        return next(iter(loader))['inputs']

    a, b, c = first_batch(5), first_batch(5), first_batch(6)
    for key in ('paired', 'unpaired_weak', 'unpaired_strong'):
        for x, y in zip(a[key], b[key]):
            torch.testing.assert_close(x, y)
    assert any(not torch.equal(x, y)
               for key in ('paired', 'unpaired_strong')
               for x, y in zip(a[key], c[key]))


def test_dataset_configs_share_the_pipelines():
    """The pipelines come from one file (semillie_pipelines.py); the demo
    changes only the crop and view sizes (issue 19, item 5)."""
    shared = Config.fromfile(osp.join(CFG_DIR, 'semillie_pipelines.py'))
    names = ('paired_pipeline', 'unpaired_pipeline', 'val_pipeline',
             'inference_pipeline')
    for name in ('semillie_lsrw.py', 'semillie_visdrone.py'):
        cfg = Config.fromfile(osp.join(CFG_DIR, name))
        assert (cfg.crop_size, cfg.view_size) == (256, 256)
        for key in names:
            assert cfg[key] == shared[key], (name, key)
    lsrw = Config.fromfile(osp.join(CFG_DIR, 'semillie_lsrw.py'))
    for ds in lsrw.train_dataloader.dataset.paired.datasets:
        assert ds.pipeline == shared.paired_pipeline
    demo = Config.fromfile(osp.join(CFG_DIR, 'semillie_demo.py'))
    assert (demo.crop_size, demo.view_size) == (64, 64)
    for key in names:
        diff = [(a, b) for a, b in zip(demo[key], shared[key]) if a != b]
        assert len(demo[key]) == len(shared[key])
        if key == 'paired_pipeline':
            assert diff == [(dict(shared[key][2], crop_size=64),
                             shared[key][2])]
        elif key == 'unpaired_pipeline':
            assert diff == [(dict(shared[key][1], scale=(64, 64)),
                             shared[key][1])]
        else:
            assert diff == []
    paired = demo.train_dataloader.dataset.paired
    assert paired.pipeline == demo.paired_pipeline
    assert demo.train_dataloader.dataset.unpaired.pipeline[1].scale == (64, 64)
