# Copyright (c) semillie-mm contributors. All rights reserved.
"""Unpaired low-light images (no ground truth)."""
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmagic.registry import DATASETS
from mmengine.dataset import BaseDataset

from .folder_utils import SkipUnreadableImagesMixin, maybe_prepare, scan_images


@DATASETS.register_module()
class UnpairedLowLightDataset(SkipUnreadableImagesMixin, BaseDataset):
    """A folder of low-light images without ground truth.

    Used for the unpaired half of semi-supervised training (the authors'
    ``unlabeled/input``, EnlightenGAN's ``trainA``) and for the real night
    test set. The folder is scanned recursively by default.

    Each item has ``img_path`` (absolute), ``key`` (path relative to the
    folder without extension) and ``sample_idx``.

    In training (not ``test_mode``), a corrupt or unreadable image is logged
    by name and replaced by another random sample
    (:class:`SkipUnreadableImagesMixin`).

    (mmagic registers its own ``UnpairedImageDataset`` -- CycleGAN's two
    domains -- so this one is named ``UnpairedLowLightDataset``.)

    Args:
        data_root (str): Dataset root.
        input_dir (str): Folder of the images, relative to ``data_root``.
            Defaults to '' (``data_root`` itself).
        pipeline (list[dict | callable]): Transforms. Defaults to [].
        recursive (bool): Scan sub-folders too. Defaults to True.
        prepare (str | dict, optional): ``'demo'`` builds the embedded demo
            data at ``data_root`` first, if it is not there yet. Defaults to
            None.
        **kwargs: Other arguments of mmengine's ``BaseDataset``.
    """

    METAINFO = dict(dataset_type='unpaired_low_light', task_name='llie')

    def __init__(self,
                 data_root: str,
                 input_dir: str = '',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 recursive: bool = True,
                 prepare: Optional[Union[str, dict]] = None,
                 **kwargs) -> None:
        self.input_dir = input_dir
        self.recursive = recursive
        self.prepare = prepare
        maybe_prepare(str(data_root), prepare)
        super().__init__(
            data_root=str(data_root), pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        """Scan the folder.

        Returns:
            list[dict]: One dict per image, sorted by path.
        """
        root = osp.join(self.data_root, self.input_dir)
        files = scan_images(root, self.recursive)
        if not files:
            raise FileNotFoundError(f'No images found in {root}')
        return [
            dict(key=osp.splitext(rel)[0], img_path=osp.join(root, rel))
            for rel in files
        ]
