"""`import semillie_mm` registers every component into mmagic's registries."""
import semillie_mm  # noqa: F401

import pytest
from mmagic.registry import DATASETS, HOOKS, METRICS, MODEL_WRAPPERS, MODELS, OPTIMIZERS, TRANSFORMS

EXPECTED = [
    (MODELS, 'SemiLLIENet'), (MODELS, 'SemiLLIE'), (MODELS, 'RAMImageEncoder'),
    (MODELS, 'ImageNetEncoder'),
    (MODELS, 'SemanticContrastiveLoss'), (MODELS, 'RAMPerceptualLoss'),
    (MODELS, 'GradientMagnitudeLoss'), (MODELS, 'PatchDiscriminator'),
    (MODELS, 'GANLoss'), (MODELS, 'MomentumAnnealingEMA'),
    (DATASETS, 'PairedLowLightDataset'), (DATASETS, 'UnpairedLowLightDataset'),
    (DATASETS, 'SemiSupervisedDataset'), (TRANSFORMS, 'PackSemiInputs'),
    (TRANSFORMS, 'LowLightSynthesis'), (TRANSFORMS, 'PairedRandomCropWithPad'),
    (METRICS, 'LOE'), (METRICS, 'PSNR'), (METRICS, 'SSIM'), (METRICS, 'NIQE'),
    (HOOKS, 'MeanTeacherHook'), (HOOKS, 'RNGStateHook'),
    (HOOKS, 'CPUThreadsHook'), (HOOKS, 'CPUMemoryCacheHook'),
    (HOOKS, 'AtomicCheckpointHook'),
    (OPTIMIZERS, 'AdamP'),
    (MODEL_WRAPPERS, 'DeviceAwareSeparateDDP'),
]


@pytest.mark.parametrize('registry,name', EXPECTED,
                         ids=[n for _, n in EXPECTED])
def test_registered(registry, name):
    assert registry.get(name) is not None, f'{name} not in {registry.name}'


def test_mmagic_names_not_overridden():
    # mmagic's own GradientLoss (Sobel) must stay mmagic's
    from mmagic.models.losses import GradientLoss
    assert MODELS.get('GradientLoss') is GradientLoss


def test_checkpoint_loader_only_local_scheme_relaxed():
    from semillie_mm.utils.checkpoint import load_checkpoint_file

    import torch
    from mmengine.runner.checkpoint import CheckpointLoader
    assert CheckpointLoader._schemes[''] is load_checkpoint_file
    # torch.load itself keeps its safe default elsewhere in the process
    import inspect
    assert inspect.signature(torch.load).parameters['weights_only'].default \
        in (None, True)
