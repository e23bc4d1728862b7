# Copyright (c) semillie-mm contributors. All rights reserved.
"""Files that are never half written, folders that are swapped in whole.

- :data:`IMG_EXTENSIONS`: the file extensions taken as images everywhere
  (folder datasets, inference inputs and outputs, FID folders, the VisDrone
  converters, the detection study);
- :func:`atomic_path` (a context manager yielding a temporary path) and
  :func:`atomic_write_bytes` / :func:`atomic_write_text` /
  :func:`atomic_write_json` / :func:`atomic_copy`: the destination is either
  the old file or the whole new one, never a part;
- :func:`atomic_folder`: build a folder in a temporary sibling, then swap it
  in, rolling back to the previous folder if the swap fails.

The temporary files and folders are dot-files in the destination's folder
(``.NAME.XXXXXXXX.tmp``), so listings that skip hidden files never see them,
and the rename stays on one file system. Only the standard library is
imported.
"""
import contextlib
import json
import os
import os.path as osp
import secrets
import shutil
import tempfile
from typing import Any, Callable, Iterator, Optional

#: File extensions taken as images (compared case-insensitively). Every
#: extension can also be written by :func:`semillie_mm.apis.write_image_atomic`.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.tif', '.tiff',
                  '.webp')

#: Default suffix of the temporary files of :func:`atomic_path`.
TMP_SUFFIX = '.tmp'


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable, where the OS allows it.

    Args:
        folder (str): The folder whose entries changed.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp_file(folder: str, name: str, suffix: str) -> str:
    """Create an empty ``folder/.NAME.XXXXXXXX<suffix>`` (``O_EXCL``, mode
    ``0o666`` less the umask, as ``open()`` gives) and return its path."""
    for _ in range(100):
        tmp = osp.join(folder, f'.{name}.{secrets.token_hex(4)}{suffix}')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f'no free temporary name for {name} in {folder}')


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = TMP_SUFFIX) -> Iterator[str]:
    """Yield a temporary path to write; on success it becomes ``path``.

    The temporary file ``.NAME.XXXXXXXX<suffix>`` is created empty in the
    destination's folder (created if missing) with the mode of any new file,
    ``0o666`` less the umask (not ``mkstemp``'s ``0o600``). When the block
    ends normally the file is flushed to disk (fsync), renamed onto ``path``
    (:func:`os.replace`, atomic on POSIX and Windows) and the folder is
    synced. If the block raises (``KeyboardInterrupt`` or a full disk
    included), the temporary file is removed, ``path`` is left as it was and
    the error propagates.

    Args:
        path (str): The file to write.
        suffix (str): End of the temporary name; a writer that chooses the
            format by extension needs it, e.g. ``'.tmp.png'``. Defaults to
            ``'.tmp'``.

    Yields:
        str: The temporary path (an existing empty file) to write to.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _create_temp_file(folder, osp.basename(path), suffix)
    try:
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: str,
                       data: bytes,
                       suffix: str = TMP_SUFFIX) -> None:
    """Write bytes to ``path`` atomically (:func:`atomic_path`).

    Args:
        path (str): The file to write.
        data (bytes): Its content.
        suffix (str): End of the temporary name. Defaults to ``'.tmp'``.
    """
    with atomic_path(path, suffix) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)


def atomic_write_text(path: str,
                      text: str,
                      encoding: str = 'utf-8',
                      newline: Optional[str] = None,
                      suffix: str = TMP_SUFFIX) -> None:
    """Write a text to ``path`` atomically (:func:`atomic_path`).

    Args:
        path (str): The file to write.
        text (str): Its content.
        encoding (str): Defaults to ``'utf-8'``.
        newline (str, optional): As :func:`open`'s. Defaults to None.
        suffix (str): End of the temporary name. Defaults to ``'.tmp'``.
    """
    with atomic_path(path, suffix) as tmp:
        with open(tmp, 'w', encoding=encoding, newline=newline) as f:
            f.write(text)


def atomic_write_json(path: str, obj: Any, **dump_kwargs) -> None:
    """Write ``obj`` as UTF-8 JSON to ``path`` atomically.

    Args:
        path (str): The file to write.
        obj: JSON-serialisable object.
        **dump_kwargs: Passed to :func:`json.dump` (``indent``...).
    """
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, **dump_kwargs)


def atomic_copy(src: str, dst: str) -> None:
    """Copy the content of ``src`` to ``dst`` atomically.

    Args:
        src (str): The file to copy.
        dst (str): The destination file.
    """
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


@contextlib.contextmanager
def atomic_folder(root: str,
                  keep_existing: Optional[Callable[[], bool]] = None
                  ) -> Iterator[str]:
    """Build a folder in a temporary sibling, then swap it in as ``root``.

    The block fills the yielded folder (``.NAME.tmp-XXXXXXXX`` next to
    ``root``). When it ends normally, the folder gets mode ``0o755`` and
    replaces ``root``: a previous ``root`` is first moved aside (into
    ``.NAME.old-XXXXXXXX``) and deleted only once the new folder is in
    place; if moving the new folder in fails, the previous folder is put back
    (rolled back). If the block raises, ``root`` is untouched. In every case
    no temporary folder is left behind.

    Args:
        root (str): The folder to (re)build.
        keep_existing (callable, optional): Asked when ``root`` appeared
            while building (another process finished first): if it returns
            True that build is kept and this one dropped; otherwise the error
            propagates. Defaults to None (propagate).

    Yields:
        str: The temporary folder to build in.
    """
    root = osp.normpath(str(root))
    parent = osp.dirname(osp.abspath(root))
    name = osp.basename(root)
    os.makedirs(parent, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
    try:
        yield tmp_root
        os.chmod(tmp_root, 0o755)
        if osp.lexists(root):
            old = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=parent)
            try:
                os.replace(root, osp.join(old, 'data'))
            except BaseException:
                os.rmdir(old)
                raise
            try:
                os.replace(tmp_root, root)
            except BaseException:
                # roll back; should that fail too, ``old`` keeps the data
                os.replace(osp.join(old, 'data'), root)
                os.rmdir(old)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp_root, root)
            except OSError:
                if keep_existing is None or not keep_existing():
                    raise
        fsync_dir(parent)
    finally:
        if osp.lexists(tmp_root):
            shutil.rmtree(tmp_root, ignore_errors=True)
