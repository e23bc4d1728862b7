# Copyright (c) semillie-mm contributors. All rights reserved.
"""Semi-supervised batching: one paired and one unpaired sample per item."""
import copy
from typing import Callable, Optional, Sequence, Union

from mmagic.registry import DATASETS
from mmengine.dataset import Compose
from torch.utils.data import Dataset


@DATASETS.register_module()
class SemiSupervisedDataset(Dataset):
    """Zip a paired dataset with an unpaired one (paper Sec. III-B, IV-A).

    Item ``i`` combines ``paired[i % len(paired)]`` with
    ``unpaired[i % len(unpaired)]``; the length is
    ``max(len(paired), len(unpaired))``, so one epoch visits every sample of
    the larger set once and cycles the smaller one. A batch of ``b`` items
    thus holds ``b`` paired and ``b`` unpaired images (the paper's 8 + 8 with
    ``batch_size=8``).

    Each sub-dataset runs its own pipeline (the one in its config, or
    ``paired_pipeline`` / ``unpaired_pipeline`` here, which replace it). The
    two result dicts are then merged: the paired keys are kept as they are
    (``img``, ``gt``, ``img_path``, ``gt_path``, ``key``, ...), every key of
    the unpaired result is prefixed with ``'unpaired_'`` (``weak`` ->
    ``unpaired_weak``, ``strong`` -> ``unpaired_strong``, ``img_path`` ->
    ``unpaired_img_path``), ``unpaired_path`` is set to the unpaired image's
    path and ``sample_idx`` to ``i``. Finally ``pipeline`` runs on the merged
    dict; it normally ends with :class:`PackSemiInputs`.

    Randomness: the transforms draw from Python's ``random``, NumPy's global
    state and (mmagic's ``ColorJitter``) torch's global generator, which
    mmengine seeds in the main process (``randomness=dict(seed=...)``) and
    per dataloader worker (``worker_init_fn``: ``seed + worker_id +
    num_workers * rank``). So a seeded run draws the same crops and views.

    Args:
        paired (dict | Dataset): Config (built from ``DATASETS``) or instance
            of the paired dataset, e.g. ``PairedLowLightDataset``.
        unpaired (dict | Dataset): Config or instance of the unpaired dataset,
            e.g. ``UnpairedLowLightDataset``.
        pipeline (list[dict | callable]): Transforms applied to the merged
            dict. Defaults to [].
        paired_pipeline (list, optional): Replaces the paired dataset's
            pipeline (configs only). Defaults to None.
        unpaired_pipeline (list, optional): Replaces the unpaired dataset's
            pipeline (configs only). Defaults to None.
        unpaired_prefix (str): Prefix of the unpaired keys. Defaults to
            'unpaired_'.
        test_mode (bool): Kept for mmengine's interface. Defaults to False.
    """

    def __init__(self,
                 paired: Union[dict, Dataset],
                 unpaired: Union[dict, Dataset],
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 paired_pipeline: Optional[Sequence[dict]] = None,
                 unpaired_pipeline: Optional[Sequence[dict]] = None,
                 unpaired_prefix: str = 'unpaired_',
                 test_mode: bool = False) -> None:
        self.paired = self._build(paired, paired_pipeline, 'paired')
        self.unpaired = self._build(unpaired, unpaired_pipeline, 'unpaired')
        self.pipeline = Compose(list(pipeline))
        self.unpaired_prefix = unpaired_prefix
        self.test_mode = test_mode
        if len(self.paired) == 0 or len(self.unpaired) == 0:
            raise ValueError(
                f'SemiSupervisedDataset needs both parts non-empty, got '
                f'{len(self.paired)} paired and {len(self.unpaired)} unpaired'
                ' samples.')

    @staticmethod
    def _build(cfg, pipeline, name):
        if isinstance(cfg, dict):
            cfg = copy.deepcopy(cfg)
            if pipeline is not None:
                cfg['pipeline'] = list(pipeline)
            return DATASETS.build(cfg)
        if pipeline is not None:
            raise TypeError(f'{name}_pipeline can only be used when {name} is '
                            'a config dict.')
        return cfg

    @property
    def metainfo(self) -> dict:
        """dict: Meta information (that of the paired dataset, plus the
        sizes of both parts)."""
        meta = copy.deepcopy(getattr(self.paired, 'metainfo', {}))
        meta.update(
            dataset_type='semi_supervised',
            num_paired=len(self.paired),
            num_unpaired=len(self.unpaired))
        return meta

    def full_init(self) -> None:
        """Fully initialise both parts (mmengine's lazy-init interface)."""
        for part in (self.paired, self.unpaired):
            if hasattr(part, 'full_init'):
                part.full_init()

    def __len__(self) -> int:
        return max(len(self.paired), len(self.unpaired))

    def __getitem__(self, idx: int) -> dict:
        """Return the merged, transformed sample ``idx``.

        Args:
            idx (int): Index in ``[0, len(self))``.

        Returns:
            dict: Output of ``pipeline`` on the merged dict.
        """
        if not 0 <= idx < len(self):
            raise IndexError(f'index {idx} out of range for a '
                             f'SemiSupervisedDataset of length {len(self)}')
        paired = self.paired[idx % len(self.paired)]
        unpaired = self.unpaired[idx % len(self.unpaired)]
        results = dict(paired)
        for key, value in unpaired.items():
            results[self.unpaired_prefix + key] = value
        if 'img_path' in unpaired:
            results['unpaired_path'] = unpaired['img_path']
        results['sample_idx'] = idx
        out = self.pipeline(results)
        if out is None:
            raise RuntimeError(f'The pipeline dropped sample {idx} '
                               f'({results.get("img_path")}, '
                               f'{results.get("unpaired_path")}).')
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(paired={len(self.paired)}, '
                f'unpaired={len(self.unpaired)}, length={len(self)})')
