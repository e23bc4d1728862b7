"""A weight initializer that loads a local checkpoint only (nothing downloaded)."""
import os.path as osp

from mmengine.model.weight_init import PretrainedInit
from mmengine.registry import WEIGHT_INITIALIZERS


@WEIGHT_INITIALIZERS.register_module(name='LocalPretrained')
class LocalPretrainedInit(PretrainedInit):
    """mmengine's ``Pretrained`` initializer restricted to a file on disk.

    Used by the shipped detector config ``faster-rcnn_r50_fpn_12e_visdrone-night_imagenet.py``
    (``semillie_mm/detection/configs/``) to start the detector's backbone from a local ImageNet
    checkpoint. Unlike ``Pretrained`` it never fetches
    ``torchvision://``, ``open-mmlab://`` or ``http(s)://`` addresses, and a missing file gives an
    error that names the file and says how to get one. It is registered in mmengine's root
    ``WEIGHT_INITIALIZERS``, so it is found from any scope (mmdet's registry is a child of it).

    Args:
        checkpoint (str): path of the checkpoint file (a state dict, or a dict with
            ``state_dict``).
        prefix (str, optional): load only the sub-module under this key prefix.
        map_location (str): passed to the checkpoint loader. Defaults to ``'cpu'``.
    """

    def __init__(self, checkpoint, prefix=None, map_location='cpu'):
        super().__init__(checkpoint, prefix=prefix, map_location=map_location)

    def __call__(self, module):
        check_local_checkpoint(self.checkpoint)
        super().__call__(module)


def check_local_checkpoint(path) -> str:
    """Raise a clear error unless ``path`` is an existing local file.

    Args:
        path (str): the checkpoint path.

    Returns:
        str: the path, unchanged.

    Raises:
        ValueError: ``path`` is an address to download from.
        FileNotFoundError: the file does not exist.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f'a local checkpoint path is required, got {path!r}')
    if '://' in path:
        raise ValueError(
            f'{path!r} is a download address; this project downloads nothing. Download the '
            f'file yourself and give its local path (for ImageNet ResNet-50: torchvision\'s '
            f'resnet50-0676ba61.pth from https://download.pytorch.org/models/).')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'backbone checkpoint not found: {path!r}. This config starts the ResNet-50 from a '
            f'local ImageNet checkpoint: download torchvision\'s resnet50-0676ba61.pth '
            f'(https://download.pytorch.org/models/resnet50-0676ba61.pth) and set '
            f'model.backbone.init_cfg.checkpoint (tools/detection_study.py: '
            f'--pretrained-backbone) to its path, or use the from-scratch config '
            f'faster-rcnn_r50_fpn_12e_visdrone-night.py (semillie_mm/detection/configs/, the '
            f'default of tools/detection_study.py) as the paper.')
    return path
