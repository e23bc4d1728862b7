"""Small model configs shared by the tests (random weights, CPU-sized)."""
import copy

import torch

TINY_RAM = dict(
    type='RAMImageEncoder',
    pretrained=None,
    img_size=32,
    patch_size=4,
    embed_dim=8,
    depths=(1, 1, 1, 1),
    num_heads=(1, 1, 1, 1),
    window_size=2,
    proj_dim=8)

TINY_MODEL = dict(
    type='SemiLLIE',
    generator=dict(
        type='SemiLLIENet',
        embed_dim=8,
        num_groups=1,
        blocks_per_group=1,
        d_state=4,
        drop_path=0.0),
    teacher=dict(type='MomentumAnnealingEMA', momentum=0.004, gamma=1),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    ram_encoder=TINY_RAM,
    perceptual_loss=dict(type='RAMPerceptualLoss', loss_weight=0.1),
    gradient_loss=dict(type='GradientMagnitudeLoss', loss_weight=0.1),
    consistency_loss=dict(type='L1Loss', loss_weight=1.0),
    contrastive_loss=dict(type='SemanticContrastiveLoss', loss_weight=1.0),
    discriminator=dict(
        type='PatchDiscriminator',
        in_channels=3,
        base_channels=8,
        num_conv=2,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(type='normal', gain=0.02)),
    gan_loss=dict(type='GANLoss', gan_type='vanilla', loss_weight=0.1),
    unsup_weight=0.2,
    unsup_ramp=dict(length=10, by='iter'),
    data_preprocessor=dict(
        type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]))


def tiny_model_cfg(**overrides):
    """A deep copy of :data:`TINY_MODEL` with top-level keys replaced."""
    cfg = copy.deepcopy(TINY_MODEL)
    cfg.update(overrides)
    return cfg


def semi_batch(batch=2, size=16, seed=0):
    """A collated training batch in SemiSupervisedDataset's packed format."""
    from mmagic.structures import DataSample
    g = torch.Generator().manual_seed(seed)

    def img():
        return torch.rand(3, size, size, generator=g) * 255

    samples = []
    for _ in range(batch):
        gt = img()
        samples.append(
            dict(
                inputs=dict(
                    paired=gt * 0.2,
                    unpaired_weak=img() * 0.2,
                    unpaired_strong=img() * 0.2),
                data_samples=DataSample(gt_img=gt)))
    from mmengine.dataset import pseudo_collate
    return pseudo_collate(samples)


def write_shipped_model(folder, name='semillie_target', seed=0):
    """Write a small shipped model, as ``semillie_mm/pretrained/`` holds one.

    ``NAME.py``: a self-contained config of the tiny SemiLLIE mean teacher
    (:data:`TINY_MODEL`); ``NAME_teacher.pth``: the state dict of a bare
    ``SemiLLIENet`` of its generator's size with random weights.

    Args:
        folder (str | Path): Where to write (point
            ``semillie_mm.apis.pretrained.PRETRAINED_DIR`` at it).
        name (str): The model's name.
        seed (int): Seed of the random weights.

    Returns:
        tuple[str, str]: The config and weights paths.
    """
    import os.path as osp

    import semillie_mm  # noqa: F401  (registers the modules)

    from mmagic.registry import MODELS
    cfg = osp.join(str(folder), f'{name}.py')
    weights = osp.join(str(folder), f'{name}_teacher.pth')
    with open(cfg, 'w', encoding='utf-8') as f:
        f.write("default_scope = 'mmagic'\n"
                "custom_imports = dict(imports=['semillie_mm'], "
                'allow_failed_imports=False)\n'
                f'model = {tiny_model_cfg()!r}\n')
    torch.manual_seed(seed)
    net = MODELS.build(copy.deepcopy(TINY_MODEL['generator']))
    torch.save(net.state_dict(), weights)
    return cfg, weights


def bomb_png(width=20000, height=20000):
    """A decompression bomb: a valid PNG that declares ``width x height``.

    1-bit grayscale, every pixel 0: each row is a filter byte and
    ``ceil(width / 8)`` zero bytes, which zlib compresses about 1000 to 1,
    so 20000 x 20000 (400 megapixels; OpenCV would decode it into 400 MB of
    uint8 gray) is a file of about 48 KB. Small sizes decode to zeros with
    OpenCV and Pillow alike.

    Args:
        width (int): Declared width.
        height (int): Declared height.

    Returns:
        bytes: The PNG file.
    """
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

    row = b'\0' * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b''.join(comp.compress(row) for _ in range(height))
    idat += comp.flush()
    # bit depth 1, colour type 0 (gray), deflate, filter 0, no interlace
    ihdr = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
            chunk(b'IDAT', idat) + chunk(b'IEND', b''))
