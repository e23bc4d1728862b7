"""LOE: vectorised implementation vs a direct double loop; the mmagic metric."""
from semillie_mm.evaluation.functional import loe, loe_from_lightness, loe_lightness_maps
from semillie_mm.evaluation.functional.loe import loe_downsampled_size

import numpy as np
import pytest
import torch


def _loe_double_loop(light, light_e):
    """Wang et al. 2013, pixel by pixel, as in the reference MATLAB code."""
    h, w = light.shape
    rd = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            e = np.logical_xor(light[y, x] >= light, light_e[y, x] >= light_e)
            rd[y, x] = e.sum()
    return rd.sum() / (h * w)


@pytest.mark.parametrize('shape', [(50, 61), (57, 50), (12, 9)])
def test_loe_matches_double_loop_without_resize(shape):
    rng = np.random.default_rng(0)
    short = min(shape)
    low = rng.integers(0, 256, shape + (3, )).astype(np.uint8)
    enh = rng.integers(0, 256, shape + (3, )).astype(np.uint8)
    ref = _loe_double_loop(low.max(2).astype(float), enh.max(2).astype(float))
    assert loe(low, enh, short_side=short) == pytest.approx(ref, abs=1e-9)


def test_loe_matches_double_loop_with_resize():
    rng = np.random.default_rng(1)
    low = rng.integers(0, 120, (80, 130, 3)).astype(np.uint8)
    # a brightening that mostly keeps the order, plus noise that breaks it
    enh = np.clip(low.astype(int) * 2 + rng.integers(-30, 30, low.shape), 0,
                  255).astype(np.uint8)
    light, light_e = loe_lightness_maps(low, enh)
    assert light.shape == loe_downsampled_size(80, 130) == (50, 81)
    ref = _loe_double_loop(light, light_e)
    assert loe(low, enh) == pytest.approx(ref, abs=1e-9)
    assert 0 < ref < light.size


def test_loe_properties():
    rng = np.random.default_rng(2)
    low = rng.integers(0, 200, (50, 50, 3)).astype(np.uint8)
    assert loe(low, low) == 0
    assert loe(low, low + 40) == 0  # order-preserving brightening
    inverted = 255 - low.max(2, keepdims=True).repeat(3, 2)
    assert loe(low, inverted) > 1000
    # chunking does not change the result
    a, b = low.max(2).astype(float), inverted.max(2).astype(float)
    assert loe_from_lightness(a, b, chunk_size=7) == loe_from_lightness(a, b)


def test_loe_chw_tensor_and_float_inputs():
    rng = np.random.default_rng(3)
    low = rng.integers(0, 256, (60, 75, 3)).astype(np.uint8)
    enh = rng.integers(0, 256, (60, 75, 3)).astype(np.uint8)
    ref = loe(low, enh)
    t_low = torch.from_numpy(low.transpose(2, 0, 1).copy()).float()
    t_enh = torch.from_numpy(enh.transpose(2, 0, 1).copy()).float()
    assert loe(t_low, t_enh, input_order='CHW') == ref
    # BGR vs RGB does not matter (max over channels)
    assert loe(low[..., ::-1], enh[..., ::-1]) == ref
    with pytest.raises(ValueError):
        loe(low, enh[:50])


def test_loe_metric_averages_samples():
    from mmagic.registry import METRICS
    metric = METRICS.build(dict(type='LOE'))
    rng = np.random.default_rng(4)
    samples, refs = [], []
    for _ in range(3):
        low = rng.integers(0, 256, (3, 52, 64)).astype(np.float32)
        enh = rng.integers(0, 256, (3, 52, 64)).astype(np.float32)
        samples.append(dict(input=torch.from_numpy(low),
                            output=dict(pred_img=torch.from_numpy(enh))))
        refs.append(loe(low, enh, input_order='CHW'))
    metric.process(None, samples)
    assert metric.evaluate(3)['LOE'] == pytest.approx(np.mean(refs))
    # without the low-light input: a clear error
    with pytest.raises(KeyError, match='low-light input'):
        metric.process(None, [dict(output=samples[0]['output'])])


def test_loe_reaches_metric_through_base_edit_model():
    """mmagic's BaseEditModel puts the de-normalised input in `input`."""
    from mmagic.models import BaseEditModel
    from mmagic.models.data_preprocessors import DataPreprocessor
    from mmagic.registry import METRICS
    from mmagic.structures import DataSample

    class Brighten(torch.nn.Module):
        # integer-valued on the 0..255 scale (no rounding ties), and the
        # mirror changes the lightness order
        def forward(self, x):
            return x.flip(-1) * 2

    model = BaseEditModel(
        generator=dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                       blocks_per_group=1),
        pixel_loss=dict(type='L1Loss'),
        data_preprocessor=DataPreprocessor(mean=[0., 0., 0.],
                                           std=[255., 255., 255.]))
    model.generator = Brighten()
    rng = np.random.default_rng(5)
    img = rng.integers(0, 120, (3, 40, 56)).astype(np.uint8)
    data = dict(inputs=[torch.from_numpy(img)],
                data_samples=[DataSample(metainfo=dict(img_channel_order='rgb'))])
    outputs = model.val_step(data)
    sample = outputs[0].to_dict()
    assert 'input' in sample
    metric = METRICS.build(dict(type='LOE'))
    metric.process(None, [sample])
    expected = loe(img.astype(np.float32),
                   np.clip(img[..., ::-1] * 2., 0, 255), input_order='CHW')
    assert expected > 100
    assert metric.evaluate(1)['LOE'] == pytest.approx(expected, abs=1e-6)
