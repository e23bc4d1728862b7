# Copyright (c) semillie-mm contributors. All rights reserved.
"""Helpers shared by the folder datasets: image listing, demo preparation."""
import os
import os.path as osp
from typing import Dict, List, Optional, Union

#: File extensions taken as images (compared case-insensitively).
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.tif', '.tiff',
                  '.webp')


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
