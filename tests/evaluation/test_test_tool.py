"""tools/test.py: Table-I output, saved images and --out JSON on a tiny
unpaired set with a no-reference metric (LOE; FID through the same metric
interface is tested in test_fid.py -- its 2048-d matrix functions are too slow
for a loaded CI machine)."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'test.py')
    spec = importlib.util.spec_from_file_location('test_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# mmagic's Evaluator (what 'Evaluator' means under default_scope='mmagic')
# needs mmagic's MultiTestLoop; mmengine's TestLoop calls it with other
# arguments.
@pytest.mark.parametrize('loop', ['MultiTestLoop'])
def test_test_tool_prints_table1_and_saves(tmp_path, capsys, loop):
    import semillie_mm  # noqa: F401

    import cv2
    from mmagic.registry import MODELS

    rng = np.random.default_rng(0)
    data = tmp_path / 'data'
    (data / 'test' / 'input' / 'sub').mkdir(parents=True)
    (data / 'ref').mkdir()
    for i in range(3):
        name = f'sub/n{i}.jpg' if i == 2 else f'n{i}.jpg'
        cv2.imwrite(str(data / 'test' / 'input' / name),
                    rng.integers(0, 60, (40, 56, 3), dtype=np.uint8))
        cv2.imwrite(str(data / 'ref' / f'd{i}.png'),
                    rng.integers(60, 255, (40, 56, 3), dtype=np.uint8))

    gen = dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
               blocks_per_group=1)
    model = dict(type='BaseEditModel', generator=gen,
                 pixel_loss=dict(type='L1Loss'),
                 data_preprocessor=dict(type='DataPreprocessor',
                                        mean=[0., 0., 0.],
                                        std=[255., 255., 255.]))
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'''
default_scope = 'mmagic'
custom_imports = dict(imports=['semillie_mm'], allow_failed_imports=False)
model = {model!r}
test_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='UnpairedLowLightDataset', data_root={str(data)!r},
                 input_dir='test/input', test_mode=True,
                 pipeline=[dict(type='LoadImageFromFile', key='img',
                                channel_order='rgb'),
                           dict(type='PackInputs')]))
test_evaluator = dict(type='Evaluator', metrics=[
    dict(type='LOE')])
test_cfg = dict(type={loop!r})
''')
    built = MODELS.build(model)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict=built.state_dict(), meta=dict()), ckpt)

    tool = _load_tool()
    out_json = tmp_path / 'metrics.json'
    metrics = tool.main([str(cfg), str(ckpt), '--work-dir',
                         str(tmp_path / 'work'), '--out', str(out_json),
                         '--dataset-name', 'Visdrone'])
    printed = capsys.readouterr().out
    numbers = json.loads(out_json.read_text())
    assert set(numbers) == {'LOE'}
    assert numbers['LOE'] == pytest.approx(metrics['LOE'])
    assert 'Datasets' in printed and 'Visdrone' in printed
    assert f"{numbers['LOE']:.1f}" in printed and 'LOE ↓' in printed
    enhanced = tmp_path / 'work' / 'enhanced'
    for key in ('n0', 'n1', 'sub/n2'):
        img = cv2.imread(str(enhanced / f'{key}.png'))
        assert img is not None and img.shape == (40, 56, 3)
