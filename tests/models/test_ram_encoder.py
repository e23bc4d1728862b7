"""Tests of RAMImageEncoder: architecture, RAM checkpoint loading, freezing.

The checkpoint test writes a synthetic file laid out like RAM's
``ram_swin_large_14m.pth`` (``{'model': state_dict}`` with ``visual_encoder.*`` in
the Microsoft Swin layout, ``image_proj.*`` and other RAM parts) for a tiny Swin,
and compares the encoder that loads it with an independent functional Swin
written here from the Swin paper, reading the Microsoft-layout tensors directly.
"""
import math

from semillie_mm.models.encoders import RAMImageEncoder, convert_ram_checkpoint

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

TINY = dict(
    img_size=64,
    patch_size=4,
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    window_size=4,
    proj_dim=8)

TAG_HEAD = dict(
    num_tags=5, hidden_size=12, num_layers=2, num_heads=3,
    intermediate_size=24)

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# --------------------------------------------------------------- RAM's layout
def _stage_windows(cfg):
    """(resolution, window, shift of odd blocks) per stage, Microsoft rule."""
    res = cfg['img_size'] // cfg['patch_size']
    out = []
    for _ in cfg['depths']:
        ws, shift = cfg['window_size'], cfg['window_size'] // 2
        if res <= ws:
            ws, shift = res, 0
        out.append((res, ws, shift))
        res //= 2
    return out


def ram_layout_state_dict(cfg, seed=0, device='cpu'):
    """A random state dict with the key names and shapes of RAM's file."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.1, offset=0.0):
        if device == 'meta':
            return torch.empty(*shape, device='meta')
        return torch.randn(*shape, generator=gen) * scale + offset

    sd = {}
    v = 'visual_encoder.'
    e, p = cfg['embed_dim'], cfg['patch_size']
    sd[v + 'patch_embed.proj.weight'] = rnd(e, 3, p, p, scale=0.2)
    sd[v + 'patch_embed.proj.bias'] = rnd(e)
    sd[v + 'patch_embed.norm.weight'] = rnd(e, offset=1.0)
    sd[v + 'patch_embed.norm.bias'] = rnd(e)
    windows = _stage_windows(cfg)
    n_stages = len(cfg['depths'])
    for i, depth in enumerate(cfg['depths']):
        c = e * 2**i
        heads = cfg['num_heads'][i]
        res, ws, shift = windows[i]
        for j in range(depth):
            b = f'{v}layers.{i}.blocks.{j}.'
            sd[b + 'norm1.weight'] = rnd(c, offset=1.0)
            sd[b + 'norm1.bias'] = rnd(c)
            sd[b + 'attn.relative_position_bias_table'] = rnd(
                (2 * ws - 1)**2, heads, scale=0.5)
            sd[b + 'attn.relative_position_index'] = torch.zeros(
                ws * ws, ws * ws, dtype=torch.long)
            sd[b + 'attn.qkv.weight'] = rnd(3 * c, c, scale=c**-0.5)
            sd[b + 'attn.qkv.bias'] = rnd(3 * c)
            sd[b + 'attn.proj.weight'] = rnd(c, c, scale=c**-0.5)
            sd[b + 'attn.proj.bias'] = rnd(c)
            sd[b + 'norm2.weight'] = rnd(c, offset=1.0)
            sd[b + 'norm2.bias'] = rnd(c)
            sd[b + 'mlp.fc1.weight'] = rnd(4 * c, c, scale=c**-0.5)
            sd[b + 'mlp.fc1.bias'] = rnd(4 * c)
            sd[b + 'mlp.fc2.weight'] = rnd(c, 4 * c, scale=(4 * c)**-0.5)
            sd[b + 'mlp.fc2.bias'] = rnd(c)
            if j % 2 == 1 and shift > 0:
                n_win = (res // ws)**2
                sd[b + 'attn_mask'] = torch.zeros(n_win, ws * ws, ws * ws)
        if i < n_stages - 1:
            d = f'{v}layers.{i}.downsample.'
            sd[d + 'norm.weight'] = rnd(4 * c, offset=1.0)
            sd[d + 'norm.bias'] = rnd(4 * c)
            sd[d + 'reduction.weight'] = rnd(2 * c, 4 * c, scale=(4 * c)**-0.5)
    c_out = e * 2**(n_stages - 1)
    sd[v + 'norm.weight'] = rnd(c_out, offset=1.0)
    sd[v + 'norm.bias'] = rnd(c_out)
    sd['image_proj.weight'] = rnd(cfg['proj_dim'], c_out, scale=c_out**-0.5)
    sd['image_proj.bias'] = rnd(cfg['proj_dim'])
    # RAM's tagging head (used only with with_tagging_head=True)
    t, hid, inter = TAG_HEAD['num_tags'], TAG_HEAD['hidden_size'], TAG_HEAD[
        'intermediate_size']
    emb = cfg['proj_dim']
    sd['label_embed'] = rnd(t, emb, scale=1.0)
    sd['wordvec_proj.weight'] = rnd(hid, emb, scale=emb**-0.5)
    sd['wordvec_proj.bias'] = rnd(hid)
    sd['fc.weight'] = rnd(1, hid, scale=hid**-0.5)
    sd['fc.bias'] = rnd(1)
    for i in range(TAG_HEAD['num_layers']):
        b = f'tagging_head.encoder.layer.{i}.'
        for name, fan_in in (('query', hid), ('key', emb), ('value', emb)):
            sd[f'{b}crossattention.self.{name}.weight'] = rnd(
                hid, fan_in, scale=fan_in**-0.5)
            sd[f'{b}crossattention.self.{name}.bias'] = rnd(hid)
        sd[b + 'crossattention.output.dense.weight'] = rnd(
            hid, hid, scale=hid**-0.5)
        sd[b + 'crossattention.output.dense.bias'] = rnd(hid)
        sd[b + 'crossattention.output.LayerNorm.weight'] = rnd(hid, offset=1.)
        sd[b + 'crossattention.output.LayerNorm.bias'] = rnd(hid)
        sd[b + 'intermediate.dense.weight'] = rnd(inter, hid, scale=hid**-0.5)
        sd[b + 'intermediate.dense.bias'] = rnd(inter)
        sd[b + 'output.dense.weight'] = rnd(hid, inter, scale=inter**-0.5)
        sd[b + 'output.dense.bias'] = rnd(hid)
        sd[b + 'output.LayerNorm.weight'] = rnd(hid, offset=1.)
        sd[b + 'output.LayerNorm.bias'] = rnd(hid)
    # other parts of RAM (text decoder, tag encoder)
    sd['tag_encoder.encoder.layer.0.attention.self.query.weight'] = rnd(4, 4)
    sd['text_decoder.cls.predictions.bias'] = rnd(7)
    return sd


# ------------------------------------------------- independent reference Swin
def _window_attention(x, ws, shift, heads, w):
    """One (shifted) window attention on x of shape (B, H, W, C)."""
    b, h, wd, c = x.shape
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    win = x.view(b, h // ws, ws, wd // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(-1, ws * ws, c)
    n = ws * ws
    qkv = F.linear(win, w('attn.qkv.weight'), w('attn.qkv.bias'))
    q, k, v = qkv.view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (c // heads)**-0.5) @ k.transpose(-2, -1)
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + ws - 1) * (2 * ws - 1) + (
        xs[:, None] - xs[None, :] + ws - 1)
    table = w('attn.relative_position_bias_table')
    attn = attn + table[index.view(-1)].view(n, n, heads).permute(2, 0, 1)
    if shift:
        region = torch.zeros(h, wd)
        label = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for wsl in (slice(0, -ws), slice(-ws, -shift),
                        slice(-shift, None)):
                region[hs, wsl] = label
                label += 1
        reg = region.view(h // ws, ws, wd // ws, ws).permute(0, 2, 1, 3)
        reg = reg.reshape(-1, n)
        mask = (reg[:, None, :] != reg[:, :, None]).float() * -100.0
        attn = attn.view(b, -1, heads, n, n) + mask[None, :, None]
        attn = attn.view(-1, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
    out = F.linear(out, w('attn.proj.weight'), w('attn.proj.bias'))
    out = out.view(b, h // ws, wd // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(b, h, wd, c)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    return out


def reference_swin(sd, img, cfg):
    """Swin forward on RAM's (Microsoft-layout) tensors; returns like the encoder.

    img: (B, 3, img_size, img_size), already normalised.
    """

    def g(key):
        return sd['visual_encoder.' + key]

    x = F.conv2d(img, g('patch_embed.proj.weight'), g('patch_embed.proj.bias'),
                 stride=cfg['patch_size'])
    b, c, h, wd = x.shape
    x = x.permute(0, 2, 3, 1)
    x = F.layer_norm(x, (c, ), g('patch_embed.norm.weight'),
                     g('patch_embed.norm.bias'))
    feats = []
    windows = _stage_windows(cfg)
    for i, depth in enumerate(cfg['depths']):
        _, ws, shift = windows[i]
        for j in range(depth):

            def w(key, i=i, j=j):
                return g(f'layers.{i}.blocks.{j}.{key}')

            y = F.layer_norm(x, (c, ), w('norm1.weight'), w('norm1.bias'))
            x = x + _window_attention(y, ws, shift if j % 2 else 0,
                                      cfg['num_heads'][i], w)
            y = F.layer_norm(x, (c, ), w('norm2.weight'), w('norm2.bias'))
            y = F.gelu(F.linear(y, w('mlp.fc1.weight'), w('mlp.fc1.bias')))
            x = x + F.linear(y, w('mlp.fc2.weight'), w('mlp.fc2.bias'))
        feats.append(x.permute(0, 3, 1, 2))
        if i < len(cfg['depths']) - 1:  # patch merging at the end of stage i
            x = torch.cat([
                x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                x[:, 1::2, 1::2]
            ], -1)
            d = f'layers.{i}.downsample.'
            x = F.layer_norm(x, (4 * c, ), g(d + 'norm.weight'),
                             g(d + 'norm.bias'))
            x = F.linear(x, g(d + 'reduction.weight'))
            c *= 2
    x = F.layer_norm(x, (c, ), g('norm.weight'), g('norm.bias')).flatten(1, 2)
    tokens = torch.cat([x.mean(1, keepdim=True), x], 1)
    emb = F.linear(tokens, sd['image_proj.weight'], sd['image_proj.bias'])
    return emb, feats


def reference_tag_logits(sd, emb, cfg=TAG_HEAD):
    """RAM's tag decoder from the BERT formulas, on RAM's tensors."""
    x = F.relu(F.linear(sd['label_embed'], sd['wordvec_proj.weight'],
                        sd['wordvec_proj.bias']))
    x = x.unsqueeze(0).expand(emb.size(0), -1, -1)
    hid, heads = cfg['hidden_size'], cfg['num_heads']
    d = hid // heads

    def lin(t, key):
        return F.linear(t, sd[key + '.weight'], sd[key + '.bias'])

    def split(t):  # (B, L, hid) -> (B, heads, L, d)
        return t.view(t.size(0), t.size(1), heads, d).transpose(1, 2)

    for i in range(cfg['num_layers']):
        b = f'tagging_head.encoder.layer.{i}.'
        q = split(lin(x, b + 'crossattention.self.query'))
        k = split(lin(emb, b + 'crossattention.self.key'))
        v = split(lin(emb, b + 'crossattention.self.value'))
        ctx = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, -1) @ v
        ctx = ctx.transpose(1, 2).reshape(x.shape)
        x = F.layer_norm(
            lin(ctx, b + 'crossattention.output.dense') + x, (hid, ),
            sd[b + 'crossattention.output.LayerNorm.weight'],
            sd[b + 'crossattention.output.LayerNorm.bias'], eps=1e-12)
        y = F.gelu(lin(x, b + 'intermediate.dense'))
        x = F.layer_norm(
            lin(y, b + 'output.dense') + x, (hid, ),
            sd[b + 'output.LayerNorm.weight'], sd[b + 'output.LayerNorm.bias'],
            eps=1e-12)
    return lin(x, 'fc').squeeze(-1)


# ----------------------------------------------------------------------- tests
@pytest.fixture(scope='module')
def ram_file(tmp_path_factory):
    sd = ram_layout_state_dict(TINY)
    path = tmp_path_factory.mktemp('ram') / 'ram_tiny.pth'
    torch.save({'model': sd}, str(path))
    return str(path), sd


def test_tiny_shapes_and_random_weight_warning(caplog):
    enc = RAMImageEncoder(**TINY)
    emb, feats = enc(torch.rand(2, 3, 50, 70))
    # 64 / 4 = 16 -> 8 -> 4 -> 2: 2 * 2 tokens + the pooled one
    assert emb.shape == (2, 5, 8)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 32, 8, 8),
                                               (2, 64, 4, 4), (2, 128, 2, 2)]
    assert enc.out_channels == [16, 32, 64, 128]


def test_synthetic_ram_checkpoint_matches_reference(ram_file):
    path, sd = ram_file
    enc = RAMImageEncoder(pretrained=path, **TINY)
    # every encoder tensor came from the file
    swin_sd, proj_sd = convert_ram_checkpoint(sd, enc.swin)
    for k, v in enc.swin.state_dict().items():
        assert torch.equal(v, swin_sd[k]), k
    assert torch.equal(enc.image_proj.weight, sd['image_proj.weight'])
    # the downsample of Microsoft's stage i is timm's stage i + 1
    assert torch.equal(enc.swin.layers[1].downsample.reduction.weight,
                       sd['visual_encoder.layers.0.downsample.reduction.weight'])

    img = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        emb, feats = enc(img)
        x = F.interpolate(img, size=(64, 64), mode='bilinear',
                          align_corners=False)
        ref_emb, ref_feats = reference_swin(
            sd, (x - IMAGENET_MEAN) / IMAGENET_STD, TINY)
    torch.testing.assert_close(emb, ref_emb, rtol=1e-4, atol=1e-5)
    for f, r in zip(feats, ref_feats):
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-5)


def test_normalize_off_feeds_raw_input(ram_file):
    path, sd = ram_file
    enc = RAMImageEncoder(pretrained=path, normalize=False, **TINY)
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        emb, _ = enc(img)
        ref_emb, _ = reference_swin(sd, img, TINY)
    torch.testing.assert_close(emb, ref_emb, rtol=1e-4, atol=1e-5)


def test_checkpoint_key_errors(ram_file, tmp_path):
    _, sd = ram_file
    broken = dict(sd)
    del broken['visual_encoder.layers.2.blocks.1.mlp.fc2.bias']
    del broken['image_proj.bias']
    broken['visual_encoder.layers.3.blocks.2.norm1.weight'] = torch.ones(128)
    path = tmp_path / 'broken.pth'
    torch.save({'model': broken}, str(path))
    with pytest.raises(KeyError) as err:
        RAMImageEncoder(pretrained=str(path), **TINY)
    msg = str(err.value)
    assert 'visual_encoder.layers.2.blocks.1.mlp.fc2.bias' in msg
    assert 'image_proj.bias' in msg
    assert 'visual_encoder.layers.3.blocks.2.norm1.weight' in msg
    assert 'missing (2)' in msg and 'unexpected (1)' in msg
    # a checkpoint of another architecture: reported, not silently loaded
    with pytest.raises(KeyError, match='depths'):
        RAMImageEncoder(pretrained=ram_file[0],
                        **dict(TINY, depths=(2, 2, 4, 2)))


def test_missing_file_error(tmp_path):
    missing = str(tmp_path / 'ram_swin_large_14m.pth')
    with pytest.raises(FileNotFoundError) as err:
        RAMImageEncoder(pretrained=missing, **TINY)
    msg = str(err.value)
    assert missing in msg
    assert 'ram_swin_large_14m.pth' in msg and 'Hugging Face' in msg
    assert 'recognize-anything' in msg


def test_frozen_but_differentiable_wrt_input():
    enc = RAMImageEncoder(**TINY)
    parent = nn.ModuleDict(dict(enc=enc, head=nn.Linear(2, 2)))
    parent.train()
    assert parent['head'].training
    assert not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    img = torch.rand(1, 3, 64, 64, requires_grad=True)
    emb, feats = enc(img)
    (emb.square().mean() + feats[2].abs().mean()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())


def test_weights_left_out_of_parent_state_dict(ram_file):
    path, _ = ram_file
    enc = RAMImageEncoder(pretrained=path, **TINY)
    before = {k: v.clone() for k, v in enc.swin.state_dict().items()}
    parent = nn.ModuleDict(dict(a=enc, b=nn.Linear(2, 2)))
    parent.add_module('c', enc)  # the same encoder twice, as in two losses
    sd = parent.state_dict()
    assert set(sd) == {'b.weight', 'b.bias'}
    # a state dict with or without the encoder keys loads strictly and
    # leaves RAM's weights alone
    parent.load_state_dict(sd, strict=True)
    full = dict(sd)
    full.update({f'a.swin.{k}': torch.zeros_like(v)
                 for k, v in before.items()})
    parent.load_state_dict(full, strict=True)
    for k, v in enc.swin.state_dict().items():
        assert torch.equal(v, before[k]), k
    # opt-out keeps the usual behaviour
    enc2 = RAMImageEncoder(exclude_from_state_dict=False, **TINY)
    assert 'image_proj.weight' in enc2.state_dict()


def test_mmengine_init_weights_does_not_touch_the_encoder(ram_file):
    from mmengine.model import BaseModule

    class Parent(BaseModule):

        def __init__(self):
            super().__init__()
            self.enc = RAMImageEncoder(pretrained=ram_file[0], **TINY)

    model = Parent()
    before = model.enc.image_proj.weight.clone()
    qkv = model.enc.swin.layers[0].blocks[0].attn.qkv.weight.clone()
    model.init_weights()
    assert torch.equal(model.enc.image_proj.weight, before)
    assert torch.equal(model.enc.swin.layers[0].blocks[0].attn.qkv.weight, qkv)


def test_swin_large_layout_matches_ram_keys():
    """The default (RAM Swin-L/384) takes every key of RAM's file layout."""
    cfg = dict(img_size=384, patch_size=4, embed_dim=192, depths=(2, 2, 18, 2),
               num_heads=(6, 12, 24, 48), window_size=12, proj_dim=512)
    with torch.device('meta'):
        enc = RAMImageEncoder()
    n_params = sum(p.numel() for p in enc.swin.parameters())
    assert 190e6 < n_params < 200e6  # Swin-L: ~195 M
    sd = ram_layout_state_dict(cfg, device='meta')
    swin_sd, proj_sd = convert_ram_checkpoint(sd, enc.swin)
    own = enc.swin.state_dict()
    assert set(swin_sd) == set(own)
    for k, v in own.items():
        assert swin_sd[k].shape == v.shape, k
    assert proj_sd['weight'].shape == (512, 1536)
    assert math.isclose(enc.swin.num_features, 1536)


def test_swin_large_output_shapes():
    """Shapes of RAM Swin-L/384 (on the meta device: shapes only, no compute)."""
    batch = 2
    with torch.device('meta'):
        enc = RAMImageEncoder()
        emb, feats = enc(torch.empty(batch, 3, 256, 256))
    assert emb.shape == (batch, 145, 512)
    assert [tuple(f.shape[1:]) for f in feats] == [(192, 96, 96),
                                                   (384, 48, 48),
                                                   (768, 24, 24),
                                                   (1536, 12, 12)]


def test_tagging_head_loads_and_matches_reference(ram_file):
    path, sd = ram_file
    enc = RAMImageEncoder(
        pretrained=path, with_tagging_head=True, tagging_head=TAG_HEAD, **TINY)
    assert not any(p.requires_grad for p in enc.tagging_head.parameters())
    img = torch.rand(2, 3, 64, 64, requires_grad=True)
    emb, _ = enc(img)
    logits = enc.tag_logits(emb)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(
        logits, reference_tag_logits(sd, emb.detach()), rtol=1e-4, atol=1e-5)
    logits.sum().backward()
    assert img.grad.abs().sum() > 0
    # an incomplete head is reported like the Swin
    broken = {k: v for k, v in sd.items() if k != 'fc.bias'}
    with pytest.raises(KeyError, match=r'\(tagging head\) fc.bias'):
        enc.load_ram_checkpoint(_save(broken, path + '.broken.pth'))
    with pytest.raises(RuntimeError, match='with_tagging_head'):
        RAMImageEncoder(**TINY).tag_logits(emb)


def _save(sd, path):
    torch.save({'model': sd}, path)
    return path


def test_tagging_layer_matches_transformers_bert():
    """One tagging layer equals HF BERT's cross-attention + MLP layers."""
    transformers = pytest.importorskip('transformers')
    from semillie_mm.models.encoders.ram_tagging_head import _CrossAttentionLayer

    from transformers.models.bert import modeling_bert as hf

    config = transformers.BertConfig(
        hidden_size=12, num_attention_heads=3, intermediate_size=24,
        hidden_act='gelu', layer_norm_eps=1e-12,
        attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    ours = _CrossAttentionLayer(12, 12, 3, 24, 1e-12).eval()
    for p in ours.parameters():
        nn.init.normal_(p, std=0.3)
    cross = hf.BertAttention(config).eval()
    inter, out = hf.BertIntermediate(config), hf.BertOutput(config).eval()
    sd = ours.state_dict()
    cross.load_state_dict({
        k[len('crossattention.'):]: v
        for k, v in sd.items() if k.startswith('crossattention.')
    })
    inter.load_state_dict({
        k[len('intermediate.'):]: v
        for k, v in sd.items() if k.startswith('intermediate.')
    })
    out.load_state_dict({
        k[len('output.'):]: v
        for k, v in sd.items() if k.startswith('output.')
    })
    x, mem = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    with torch.no_grad():
        a = cross(x, encoder_hidden_states=mem)[0]
        ref = out(inter(a), a)
        torch.testing.assert_close(ours(x, mem), ref, rtol=1e-4, atol=1e-5)
