# Copyright (c) semillie-mm contributors. All rights reserved.
"""Helpers shared by the folder datasets: image listing, demo preparation,
skipping unreadable training images."""
import logging
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Union

from mmengine.logging import print_log

from ..utils.fileio import IMG_EXTENSIONS


def scan_images(folder: str, recursive: bool = False) -> List[str]:
    """List the image files of a folder.

    Args:
        folder (str): Folder to scan.
        recursive (bool): Descend into sub-folders. Defaults to False.

    Returns:
        list[str]: Paths relative to ``folder`` ('/'-separated), sorted.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Image folder not found: {folder}')
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames.sort()
            rel_dir = osp.relpath(dirpath, folder)
            for name in filenames:
                if osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
                    rel = name if rel_dir == '.' else osp.join(rel_dir, name)
                    found.append(rel.replace(os.sep, '/'))
    else:
        for name in os.listdir(folder):
            if (osp.splitext(name)[1].lower() in IMG_EXTENSIONS
                    and osp.isfile(osp.join(folder, name))):
                found.append(name)
    return sorted(found)


def index_by_stem(folder: str, recursive: bool = False) -> Dict[str, str]:
    """Map ``relative path without extension`` -> relative path.

    Args:
        folder (str): Folder to scan.
        recursive (bool): Descend into sub-folders. Defaults to False.

    Returns:
        dict[str, str]: One entry per image.
    """
    index = {}
    for rel in scan_images(folder, recursive):
        stem = osp.splitext(rel)[0]
        if stem in index:
            raise ValueError(
                f'Two images share the name {stem!r} in {folder}: '
                f'{index[stem]} and {rel}; cannot match them unambiguously.')
        index[stem] = rel
    return index


def maybe_prepare(data_root: str, prepare: Optional[Union[str,
                                                          dict]]) -> None:
    """Build a dataset folder on first use.

    Args:
        data_root (str): The dataset root.
        prepare (str | dict | None): ``None`` (nothing), ``'demo'`` or
            ``dict(type='demo', seed=0)``: build the embedded demo data at
            ``data_root`` with :func:`prepare_demo_data` (returns at once when
            it is already there); ``'target_domain'``: the target-domain
            benchmark (:func:`prepare_target_domain_data`).
    """
    if prepare is None:
        return
    cfg = dict(type=prepare) if isinstance(prepare, str) else dict(prepare)
    kind = cfg.pop('type', None)
    if kind == 'target_domain':  # the target-domain benchmark
        from .target_domain_data import prepare_target_domain_data
        prepare_target_domain_data(root=data_root, **cfg)
        return
    if kind != 'demo':
        raise ValueError(f"prepare must be None, 'demo', 'target_domain' or "
                         f"dict(type='demo', ...), got {prepare!r}")
    from .demo_data import prepare_demo_data
    prepare_demo_data(root=data_root, **cfg)


def unreadable_image_reason(path: str) -> Optional[str]:
    """Why an image file cannot be used, or None if it decodes.

    Args:
        path (str): The image file.

    Returns:
        str | None: e.g. ``'cannot be decoded (truncated or not an
        image)'``; None when OpenCV decodes it.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    if not data:
        return 'the file is empty'
    import cv2
    import numpy as np
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return 'cannot be decoded (truncated or not an image)'
    return None


class SkipUnreadableImagesMixin:
    """For an mmengine ``BaseDataset``: skip training samples whose image
    file is corrupt or unreadable.

    When the pipeline of a sample raises and one of its files (the
    ``*_path`` entries of its data info) cannot be read or decoded, the
    file is logged by name (a warning) and ``prepare_data`` returns None, so
    that ``BaseDataset`` fetches another random sample in its place (up to
    ``max_refetch`` times). An error of the pipeline whose files are fine
    propagates unchanged. In ``test_mode`` (validation, testing) nothing is
    skipped: the error propagates with a note naming the file.
    """

    def prepare_data(self, idx: int) -> Any:
        """``BaseDataset.prepare_data``; None for an unreadable image.

        Args:
            idx (int): The index of the data info.

        Returns:
            Any: The pipeline's output, or None when a file of the sample
            cannot be read (training only).
        """
        try:
            return super().prepare_data(idx)
        except Exception as err:
            info = self.get_data_info(idx)
            bad = []
            for key in sorted(info):
                if key.endswith('_path') and isinstance(info[key], str):
                    reason = unreadable_image_reason(info[key])
                    if reason is not None:
                        bad.append((info[key], reason))
            if not bad:
                raise
            if self.test_mode:
                if hasattr(err, 'add_note'):  # Python 3.11+
                    for path, reason in bad:
                        err.add_note(f'image {path}: {reason}')
                raise
            for path, reason in bad:
                print_log(
                    f'{type(self).__name__}: skipped the unreadable image '
                    f'{path}: {reason}; another sample takes its place',
                    logger='current', level=logging.WARNING)
            return None
