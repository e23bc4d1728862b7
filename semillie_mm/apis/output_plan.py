"""Which images a call enhances, and where their outputs go.

:func:`list_inputs` turns files, folders and arrays into the items that
:class:`~semillie_mm.apis.SemiLLIEInferencer` runs; :func:`output_name` and
:func:`check_output_plan` decide and check the output paths before any image
is read (``tools/enhance.py`` checks its plan with them before it loads the
model).
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .image_io import list_images


class OutputConflictError(ValueError):
    """Outputs that would overwrite an input, or each other."""


def list_inputs(inputs) -> Tuple[List[dict], List[str]]:
    """Inputs -> a list of ``dict(img_path=...)`` / ``dict(img=...)``.

    A folder is searched recursively for ``IMG_EXTENSIONS`` files
    (:func:`~semillie_mm.apis.image_io.list_images`: other files and
    dot-files are ignored); each item remembers its name relative to the
    folder, or its base name for a file (``rel``; None for arrays).

    Args:
        inputs (str | os.PathLike | np.ndarray | dict | list): An image
            file, a folder, an array, a dict of pipeline inputs, or a list
            of these.

    Returns:
        tuple[list[dict], list[str]]: The items, and the ignored files.

    Raises:
        TypeError: An input of another type.
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(inputs, (str, np.ndarray)) or hasattr(
            inputs, '__fspath__'):
        inputs = [inputs]
    items, ignored = [], []
    for item in inputs:
        if isinstance(item, np.ndarray):
            items.append(dict(img=item, rel=None))
            continue
        if isinstance(item, dict):
            items.append(dict(item))
            continue
        if not isinstance(item, str) and not hasattr(item, '__fspath__'):
            raise TypeError(f'inputs must be image paths, folders or '
                            f'numpy arrays, got {type(item).__name__}')
        item = os.fspath(item)
        if osp.isdir(item):
            images, skipped = list_images(item)
            ignored += skipped
            items += [dict(img_path=p, rel=osp.relpath(p, item))
                      for p in images]
        elif osp.isfile(item):
            items.append(dict(img_path=item, rel=osp.basename(item)))
        else:
            raise FileNotFoundError(f'input {item} does not exist')
    return items, ignored


def output_name(rel: str, ext: Optional[str] = None) -> str:
    """The output name of an input (relative to the output folder).

    Args:
        rel (str): The input's name relative to its folder.
        ext (str, optional): The output extension (``'.png'``); None keeps
            the input's.

    Returns:
        str: ``rel`` with ``ext``.
    """
    return osp.splitext(rel)[0] + ext if ext else rel


def _listed(names: Sequence[str], limit: int = 3) -> str:
    more = len(names) - limit
    return '; '.join(names[:limit]) + (f'; and {more} more' if more > 0
                                       else '')


def check_output_plan(pairs: Sequence[Tuple[Optional[str], str]]) -> None:
    """Refuse a run that would destroy an input or one of its own outputs.

    Two checks, made before any image is read:

    - two inputs mapping to one output path (e.g. ``a.png`` and ``a.jpg``
      written with ``ext='.png'``): the second would replace the first;
    - an output that already exists and is one of the inputs: the same file
      by device and inode, as :func:`os.path.samefile` compares, so symbolic
      links (an output folder that is a link to the input folder) and hard
      links are caught, not only equal paths.

    Args:
        pairs (Sequence[tuple[str | None, str]]): ``(input file or None for
            an array, output path)`` per image.

    Raises:
        OutputConflictError: One line naming the files (three of each kind
            at most) and the fix.
    """
    by_dst: Dict[str, List[str]] = {}
    for src, dst in pairs:
        key = osp.normcase(osp.abspath(dst))
        by_dst.setdefault(key, []).append(src or 'an array')
    clashes = [f'{" and ".join(srcs)} -> {dst}'
               for dst, srcs in by_dst.items() if len(srcs) > 1]
    if clashes:
        raise OutputConflictError(
            f'{len(clashes)} output file(s) would be written from more than '
            f'one input, the last overwriting the others: {_listed(clashes)}'
            '; rename the inputs or choose another output extension')
    inputs = {}
    for src, _ in pairs:
        if src:
            try:
                st = os.stat(src)
            except OSError:
                continue  # reported as unreadable when it is read
            inputs[(st.st_dev, st.st_ino)] = src
    same = []
    for _, dst in pairs:
        try:
            st = os.stat(dst)
        except OSError:
            continue  # not there yet: nothing to destroy
        src = inputs.get((st.st_dev, st.st_ino))
        if src is not None:
            same.append(f'{dst} is {src}')
    if same:
        raise OutputConflictError(
            f'{len(same)} output file(s) would overwrite an input (the same '
            f'file, through a link or the same folder): {_listed(same)}; '
            'choose another output folder')


def plan_outputs(items: List[dict],
                 out_dir: str,
                 ext: Optional[str] = None,
                 skip_existing: bool = False
                 ) -> Tuple[List[dict], List[str]]:
    """Check where the items go under ``out_dir``, before any is read.

    Args:
        items (list[dict]): From :func:`list_inputs`, each with its ``rel``
            name.
        out_dir (str): The output folder.
        ext (str, optional): The output extension; None keeps each input's.
        skip_existing (bool): Leave out the items whose output exists.

    Returns:
        tuple[list[dict], list[str]]: The items to enhance, and the existing
        outputs whose items were left out (none unless ``skip_existing``).

    Raises:
        OutputConflictError: See :func:`check_output_plan`.
    """
    dsts = [osp.join(out_dir, output_name(item['rel'], ext))
            for item in items]
    check_output_plan([(item.get('img_path'), dst)
                       for item, dst in zip(items, dsts)])
    if not skip_existing:
        return items, []
    there = [osp.exists(dst) for dst in dsts]
    return ([item for item, t in zip(items, there) if not t],
            [dst for dst, t in zip(dsts, there) if t])


__all__ = [
    'OutputConflictError', 'list_inputs', 'output_name', 'check_output_plan',
    'plan_outputs'
]
