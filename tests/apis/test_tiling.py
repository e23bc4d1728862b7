"""Enhancement API (tiling, arrays, networks): tiled == untiled for a local
network, dtypes/channels, network selection and checkpoint loading."""
from semillie_mm.apis import enhance_image, enhance_tensor, init_enhancer
from semillie_mm.apis.inferencer import PreprocessedGenerator, select_enhancement_network
from semillie_mm.apis.tiling import _axis_weight, _tile_starts

import numpy as np
import pytest
import torch
import torch.nn as nn


def _local_net(seed=0):
    """Three 3x3 convs: receptive-field radius 3 (< overlap // 4 below)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GELU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
        nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid()).eval()


@pytest.mark.parametrize('size,tile,overlap', [((97, 131), 48, 16),
                                               ((64, 200), 64, 12),
                                               ((150, 40), 64, 32),
                                               ((70, 70), 69, 20)])
def test_tiled_equals_untiled_for_local_network(size, tile, overlap):
    net = _local_net()
    x = torch.rand(1, 3, *size)
    full = enhance_tensor(net, x, tile_size=None)
    tiled = enhance_tensor(net, x, tile_size=tile, tile_overlap=overlap)
    assert tiled.shape == full.shape
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)


def test_tiles_without_overlap_show_seams():
    """Sanity check that the previous test is meaningful."""
    net = _local_net()
    x = torch.rand(1, 3, 64, 96)
    full = enhance_tensor(net, x, tile_size=None)
    seams = enhance_tensor(net, x, tile_size=32, tile_overlap=0)
    assert (seams - full).abs().max() > 1e-3


def test_blend_weights_cover_the_image():
    w = _axis_weight(48, 16, True, True)
    assert w[:4].max() == 0 and w[-4:].max() == 0  # no-context margins
    assert np.all(w[16:32] == 1)
    assert np.all(np.diff(w[:16]) >= 0)  # raised-cosine ramp
    np.testing.assert_allclose(w[:16], w[-16:][::-1])
    for length in (33, 48, 100, 131):
        starts = _tile_starts(length, 32, 16)
        assert starts[0] == 0 and starts[-1] == length - 32
        total = np.zeros(length)
        for i, s0 in enumerate(starts):
            total[s0:s0 + 32] += _axis_weight(32, 16, i > 0,
                                              i < len(starts) - 1)
        assert total.min() > 0.5


def test_enhance_image_dtypes_and_channels():
    net = _local_net()
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    out = enhance_image(net, rgb8, tile_size=None)
    assert out.shape == rgb8.shape and out.dtype == np.uint8
    x = torch.from_numpy(rgb8.transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        ref = net(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(out, np.round(ref * 255).astype(np.uint8))

    rgb16 = rgb8.astype(np.uint16) * 257
    out16 = enhance_image(net, rgb16, tile_size=None)
    assert out16.dtype == np.uint16
    assert np.abs(out16.astype(int) - np.round(ref * 65535)).max() <= 1

    gray = rgb8[..., 0]
    out_g = enhance_image(net, gray, tile_size=None)
    assert out_g.shape == gray.shape and out_g.dtype == np.uint8

    rgba = np.concatenate([rgb8, rng.integers(0, 256, (30, 41, 1),
                                              dtype=np.uint8)], 2)
    out_a = enhance_image(net, rgba, tile_size=None)
    assert out_a.shape == rgba.shape
    np.testing.assert_array_equal(out_a[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out_a[..., :3], out)

    f = rgb8.astype(np.float32) / 255
    out_f = enhance_image(net, f, tile_size=16, tile_overlap=8)
    assert out_f.dtype == np.float32 and out_f.shape == f.shape


def test_real_backbone_tiled_run():
    from semillie_mm.models.archs import SemiLLIENet
    torch.manual_seed(0)
    net = SemiLLIENet(embed_dim=8, num_groups=1, blocks_per_group=1).eval()
    img = np.random.default_rng(1).integers(0, 256, (40, 52, 3),
                                            dtype=np.uint8)
    full = enhance_image(net, img, tile_size=None)
    tiled = enhance_image(net, img, tile_size=32, tile_overlap=16)
    assert tiled.shape == full.shape == img.shape
    # SS2D has a global receptive field: tiles are an approximation; the
    # blend keeps them close (measured mean |diff| in 8-bit levels).
    diff = np.abs(tiled.astype(int) - full.astype(int))
    assert diff.mean() < 8


def test_select_network_and_preprocessor_wrapper():
    gen = _local_net()

    class Edit(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = gen

    assert select_enhancement_network(Edit()) is gen
    bare = _local_net(1)
    assert select_enhancement_network(bare) is bare

    class Teacher(Edit):
        """A mean-teacher editor: it says which network it runs through
        ``enhancer()``, as ``SemiLLIE`` does (the one switch)."""

        def __init__(self):
            super().__init__()
            self.teacher = _local_net(2)

        def enhancer(self, use_teacher=True):
            return self.teacher if use_teacher else self.generator

    m = Teacher()
    assert select_enhancement_network(m) is m.teacher
    assert select_enhancement_network(m, use_teacher=False) is gen

    class Pre(nn.Module):
        mean = torch.tensor([10., 20., 30.]).view(3, 1, 1)
        std = torch.tensor([50., 60., 70.]).view(3, 1, 1)
        output_channel_order = 'BGR'

    class WithPre(Edit):
        def __init__(self):
            super().__init__()
            self.data_preprocessor = Pre()

    wrapped = select_enhancement_network(WithPre())
    assert isinstance(wrapped, PreprocessedGenerator)
    x = torch.rand(1, 3, 8, 8)
    inner = (x.flip(1) * 255 - Pre.mean) / Pre.std
    with torch.no_grad():
        ref = ((gen(inner) * Pre.std + Pre.mean) / 255).flip(1)
        torch.testing.assert_close(wrapped(x), ref)


def test_init_enhancer_from_config_and_checkpoint(tmp_path):
    from mmagic.registry import MODELS
    from mmengine.config import Config
    gen_cfg = dict(type='SemiLLIENet', embed_dim=8, num_groups=1,
                   blocks_per_group=1)
    # an mmagic BaseEditModel config with a generator
    cfg = Config(dict(
        default_scope='mmagic',
        model=dict(type='BaseEditModel', generator=gen_cfg,
                   pixel_loss=dict(type='L1Loss'),
                   data_preprocessor=dict(type='DataPreprocessor',
                                          mean=[0., 0., 0.],
                                          std=[255., 255., 255.]))))
    torch.manual_seed(3)
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    net = init_enhancer(cfg, str(ckpt))
    assert not net.training
    x = torch.rand(1, 3, 16, 20)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model.generator(x))
    # a bare generator config
    net2 = init_enhancer(dict(model=gen_cfg))
    assert type(net2).__name__ == 'SemiLLIENet'
    with pytest.raises(FileNotFoundError):
        init_enhancer(cfg, str(tmp_path / 'missing.pth'))
