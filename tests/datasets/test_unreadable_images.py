"""A corrupt training image is logged by name and replaced by another sample
instead of ending the run (issue 20, item 6)."""
import os.path as osp
import sys

import semillie_mm.datasets.folder_utils as folder_utils
from semillie_mm.datasets.folder_utils import unreadable_image_reason

import pytest
from mmagic.registry import DATASETS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from semillie_test_config import make_dataset, write_config
from torch.utils.data import DataLoader


@pytest.fixture
def warnings(monkeypatch):
    logged = []
    monkeypatch.setattr(folder_utils, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    return logged


@pytest.fixture
def tiny(tmp_path):
    """The tiny data set and the training config's datasets over it."""
    root = make_dataset(str(tmp_path / 'data'), n_train=4, n_unpaired=3)
    cfg = Config.fromfile(write_config(str(tmp_path / 'cfg.py'), root))
    return root, cfg


def _truncate(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def _epoch(dataset):
    loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=0,
                        collate_fn=pseudo_collate)
    return [b for batch in loader for b in batch['data_samples']]


def test_truncated_gt_png_is_skipped_and_named(tiny, warnings):
    root, cfg = tiny
    bad = osp.join(root, 'labeled', 'GT', '001.png')
    _truncate(bad)
    assert unreadable_image_reason(bad).startswith('cannot be decoded')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = _epoch(dataset)  # the epoch finishes
    assert len(samples) == len(dataset) == 4
    assert all(s.gt_path != bad for s in samples)
    assert warnings and all(bad in w for w in warnings), warnings
    assert 'PairedLowLightDataset' in warnings[0]


def test_unreadable_unpaired_images_are_skipped(tiny, warnings):
    root, cfg = tiny
    empty = osp.join(root, 'unlabeled', 'input', 'u000.png')
    open(empty, 'wb').close()
    garbage = osp.join(root, 'unlabeled', 'input', 'u002.png')
    with open(garbage, 'wb') as f:
        f.write(b'not a png at all')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = _epoch(dataset)
    assert len(samples) == 4
    named = {p for p in (empty, garbage) if any(p in w for w in warnings)}
    assert named == {empty, garbage}
    assert any('the file is empty' in w for w in warnings)


def test_validation_does_not_skip_but_names_the_file(tiny, warnings):
    root, cfg = tiny
    bad = osp.join(root, 'val', 'GT', '000.png')
    _truncate(bad)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    with pytest.raises(Exception) as err:
        dataset[0]
    if sys.version_info >= (3, 11):  # exceptions carry notes
        assert any(bad in note for note in err.value.__notes__)
    assert not warnings


def test_pipeline_errors_with_good_files_propagate(tiny, warnings):
    root, cfg = tiny

    def broken(results):
        raise KeyError('a bug in a transform')

    dataset = DATASETS.build(dict(
        type='PairedLowLightDataset', data_root=root,
        input_dir='labeled/input', gt_dir='labeled/GT', pipeline=[broken]))
    with pytest.raises(KeyError, match='a bug in a transform'):
        dataset[0]
    assert not warnings
