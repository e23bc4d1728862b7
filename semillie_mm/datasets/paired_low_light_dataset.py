# Copyright (c) semillie-mm contributors. All rights reserved.
"""Paired low-light / normal-light image folders."""
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmagic.registry import DATASETS
from mmengine.dataset import BaseDataset

from .folder_utils import SkipUnreadableImagesMixin, index_by_stem, maybe_prepare


@DATASETS.register_module()
class PairedLowLightDataset(SkipUnreadableImagesMixin, BaseDataset):
    """Low-light inputs and their ground truths in two folders.

    Layout (the authors' ``labeled/{input,GT}`` and ``val/{input,GT}``, LSRW's
    ``{low,high}``)::

        data_root/
            input_dir/  a.png  b.jpg  sub/c.png
            gt_dir/     a.png  b.png  sub/c.png

    Files are matched by their path relative to the folder without the
    extension, so ``b.jpg`` pairs with ``b.png``. An input without a ground
    truth (or a ground truth without an input) raises ``FileNotFoundError``
    naming the file, as do two files with the same stem in one folder.

    Each item has ``img_path``, ``gt_path`` (absolute paths), ``key`` (the
    relative stem) and ``sample_idx``; mmagic's
    ``LoadImageFromFile(key='img')`` / ``LoadImageFromFile(key='gt')`` and
    ``PackInputs`` use them directly.

    In training (not ``test_mode``), a sample whose input or ground truth is
    corrupt or unreadable is logged by name and replaced by another random
    sample (:class:`SkipUnreadableImagesMixin`).

    (mmagic registers its own ``PairedImageDataset`` -- pix2pix's A|B
    concatenated images -- so this one is named ``PairedLowLightDataset``.)

    Args:
        data_root (str): Dataset root.
        input_dir (str): Folder of low-light inputs, relative to
            ``data_root``. Defaults to 'input'.
        gt_dir (str): Folder of ground truths. Defaults to 'GT'.
        pipeline (list[dict | callable]): Transforms. Defaults to [].
        recursive (bool): Scan sub-folders too. Defaults to False.
        prepare (str | dict, optional): ``'demo'`` builds the embedded demo
            data at ``data_root`` (see ``semillie_mm.datasets.demo_data``)
            before scanning, if it is not there yet. Defaults to None.
        **kwargs: Other arguments of mmengine's ``BaseDataset`` (``metainfo``,
            ``test_mode``, ``indices``, ``lazy_init``, ...).
    """

    METAINFO = dict(dataset_type='paired_low_light', task_name='llie')

    def __init__(self,
                 data_root: str,
                 input_dir: str = 'input',
                 gt_dir: str = 'GT',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 recursive: bool = False,
                 prepare: Optional[Union[str, dict]] = None,
                 **kwargs) -> None:
        self.input_dir = input_dir
        self.gt_dir = gt_dir
        self.recursive = recursive
        self.prepare = prepare
        maybe_prepare(str(data_root), prepare)
        super().__init__(
            data_root=str(data_root), pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        """Match the two folders.

        Returns:
            list[dict]: One dict per pair, sorted by key.
        """
        in_root = osp.join(self.data_root, self.input_dir)
        gt_root = osp.join(self.data_root, self.gt_dir)
        inputs = index_by_stem(in_root, self.recursive)
        gts = index_by_stem(gt_root, self.recursive)
        for stem, rel in inputs.items():
            if stem not in gts:
                raise FileNotFoundError(
                    f'No ground truth for {osp.join(in_root, rel)}: expected '
                    f'a file named {stem}.<ext> in {gt_root}')
        for stem, rel in gts.items():
            if stem not in inputs:
                raise FileNotFoundError(
                    f'No low-light input for {osp.join(gt_root, rel)}: '
                    f'expected a file named {stem}.<ext> in {in_root}')
        if not inputs:
            raise FileNotFoundError(f'No images found in {in_root}')
        return [
            dict(
                key=stem,
                img_path=osp.join(in_root, inputs[stem]),
                gt_path=osp.join(gt_root, gts[stem]))
            for stem in sorted(inputs)
        ]
