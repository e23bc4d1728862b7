"""Reading checkpoint files safely: weights-only by default, one read per file.

A PyTorch checkpoint is a pickle, and unpickling can run any code the file's
author chose. Every checkpoint this package reads -- ``load_from``,
``--resume``, a tool's CHECKPOINT argument, ``init_cfg=dict(type='Pretrained')``,
the inferencer's weights -- goes through :func:`load_checkpoint_file`, which
MMEngine's loader for local files is pointed at (``semillie_mm/compat.py``).
It loads with ``torch.load(weights_only=True)`` inside
:func:`torch.serialization.safe_globals` with the smallest allow-list that
MMEngine's own checkpoints need (:func:`safe_globals`, found with
:func:`torch.serialization.get_unsafe_globals_in_checkpoint` on this project's
checkpoints: the message hub's ``HistoryBuffer`` and the numpy array, dtype and
scalar classes of its statistics and of ``RNGStateHook``'s state).

``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``; ``builtins.getattr`` itself is not allowed
(with it a pickle reaches any function's globals), only
:func:`_history_buffer_statistic`, which answers for the four statistics of
that one class.

Full unpickling happens only when the caller says the file is trusted:
``--trust-checkpoint`` on the tools, ``trust_checkpoint=True`` on the
inferencer, or :func:`trusted_checkpoints` around a block of code. Configs are
Python code and are always trusted: pass only configs you have read.

:func:`check_checkpoint` looks at a file before anything is built (it exists,
is a zip archive with an intact directory, holds a pickled dict) without
reading its tensors, so a checkpoint is read once, by the load itself.
"""
import contextlib
import contextvars
import functools
import os
import os.path as osp
import pickle
import pickletools
import re
import zipfile
from typing import Iterator, Optional

from .cli import UserError

#: what a refused or broken checkpoint tells the user to do
TRUST_HINT = ('if you trust the file, pass --trust-checkpoint '
              '(trust_checkpoint=True in Python)')
_FIX = 're-download it or save it again'

_TRUST = contextvars.ContextVar('semillie_trust_checkpoint', default=False)

#: the statistics MMEngine's HistoryBuffer registers (and pickles by name)
_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


class CheckpointError(UserError):
    """A checkpoint file that cannot be loaded (one line: file and fix)."""


def _history_buffer_statistic(obj, name: str):
    """``getattr`` as a checkpoint may use it: HistoryBuffer's statistics.

    Args:
        obj: The object of the ``getattr`` in the pickle.
        name (str): The attribute.

    Returns:
        callable: ``HistoryBuffer.<name>``.

    Raises:
        pickle.UnpicklingError: Any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    allowed = set(_HISTORY_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) '
        'is not allowed in a checkpoint')


@functools.lru_cache(maxsize=None)
def safe_globals() -> tuple:
    """The allow-list of a weights-only load of an MMEngine checkpoint.

    Returns:
        tuple: Entries for :func:`torch.serialization.safe_globals` (built
        once per process).
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    core = getattr(np, '_core', None) or np.core
    multiarray = core.multiarray
    entries = [
        HistoryBuffer,
        (_history_buffer_statistic, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
    ]
    # numpy >= 1.25 may pickle a dtype by its class (numpy.dtypes.Float32DType)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(getattr(dtypes, name), type)
        ]
    return tuple(entries)


def trust_enabled() -> bool:
    """Whether checkpoints are unpickled fully in the current context.

    Returns:
        bool: True inside :func:`trusted_checkpoints` or after
        :func:`set_trust_checkpoints` (True).
    """
    return _TRUST.get()


def set_trust_checkpoints(enabled: bool) -> None:
    """Trust (or stop trusting) every checkpoint this process loads.

    The tools call it for ``--trust-checkpoint``.

    Args:
        enabled (bool): True loads checkpoints with full unpickling.
    """
    _TRUST.set(bool(enabled))


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Load checkpoints with full unpickling inside the block (or not).

    Args:
        enabled (bool): False keeps the weights-only load (so a caller can
            pass its ``trust_checkpoint`` argument straight through).

    Yields:
        None
    """
    token = _TRUST.set(bool(enabled) or _TRUST.get())
    try:
        yield
    finally:
        _TRUST.reset(token)


def _one_line(text) -> str:
    return ' '.join(str(text).split())


_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')


def load_checkpoint_file(filename, map_location=None,
                         what: str = 'checkpoint',
                         trust: Optional[bool] = None):
    """Load a local checkpoint file, weights-only unless it is trusted.

    Args:
        filename (str | os.PathLike): The file.
        map_location: As in :func:`torch.load`.
        what (str): What it is, for messages.
        trust (bool, optional): Full unpickling; None follows the context
            (:func:`trusted_checkpoints`, ``--trust-checkpoint``).

    Returns:
        Any: The loaded object (a dict for every checkpoint of this project).

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointError: The file is truncated, not a checkpoint, or needs a
            global outside the allow-list (the message names it).
    """
    import torch
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):  # as MMEngine's own local loader
        raise FileNotFoundError(f'{what} {filename} does not exist')
    trust = trust_enabled() if trust is None else trust
    kwargs = dict(map_location=map_location)
    if zipfile.is_zipfile(filename):
        kwargs['mmap'] = True  # tensors paged in as used, read once
    try:
        if trust:
            return torch.load(filename, weights_only=False, **kwargs)
        with torch.serialization.safe_globals(list(safe_globals())):
            return torch.load(filename, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = _GLOBAL_RE.search(text)
        if 'weights_only' in text.lower() or 'weights only' in text.lower() \
                or found:
            name = found.group(1) if found else _one_line(text)[-120:]
            raise CheckpointError(
                f'{what} {filename} needs the Python global `{name}`, which a '
                'weights-only load '
                'refuses (a checkpoint of this project never needs it; '
                f'unpickling it could run code); {TRUST_HINT}') from err
        raise CheckpointError(f'{what} {filename} is truncated or corrupt '
                              f'({_one_line(text)[:120]}); {_FIX}') from err
    except (RuntimeError, EOFError, ValueError, OSError, KeyError,
            AttributeError, TypeError) as err:
        raise CheckpointError(
            f'{what} {filename} is truncated or corrupt '
            f'({type(err).__name__}: {_one_line(err)[:120]}); {_FIX}'
        ) from err


def _top_level_kind(data: bytes) -> str:
    """What a pickle's top-level object is, from its first opcodes.

    Args:
        data (bytes): The pickle (``data.pkl`` of a zip checkpoint).

    Returns:
        str: ``'dict'`` for a dict or an ``OrderedDict``, ``'Tensor'`` for a
        bare tensor, else ``'list'``, ``'tuple'`` or ``'non-dict object'``.
    """
    kinds = {'EMPTY_DICT': 'dict', 'DICT': 'dict', 'EMPTY_LIST': 'list',
             'LIST': 'list', 'EMPTY_TUPLE': 'tuple', 'TUPLE': 'tuple'}
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ('PROTO', 'FRAME', 'MARK'):
                continue
            if op.name in kinds:
                return kinds[op.name]
            if op.name == 'GLOBAL':
                if arg in ('collections OrderedDict', '__builtin__ dict',
                           'builtins dict'):
                    return 'dict'
                if arg.startswith('torch._utils _rebuild'):
                    return 'Tensor'
            break
    except (ValueError, IndexError):
        pass
    return 'non-dict object'


def check_checkpoint(path, what: str = 'checkpoint') -> str:
    """Check a checkpoint file before anything is built, without loading it.

    Reads only the zip archive's directory and its small pickle of the
    structure (not the tensors); the load itself (:func:`load_checkpoint_file`)
    reports what remains (a refused global, a damaged tensor record).

    Args:
        path (str | os.PathLike): The checkpoint file.
        what (str): What it is in messages (``'checkpoint'``,
            ``'--resume checkpoint'``, ...).

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: The file is missing, empty, truncated, or not a checkpoint
            (not a PyTorch file, or not a dict).
    """
    from .checks import require_file
    path = require_file(path, what)
    if osp.getsize(path) == 0:
        raise UserError(f'{what} {path} is empty; {_FIX}')
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist()
                         if n.endswith('/data.pkl') or n == 'data.pkl']
                if not names:
                    raise UserError(f'{what} {path} is a zip archive but not '
                                    f'a PyTorch checkpoint; {_FIX}')
                data = archive.read(names[0])
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise UserError(f'{what} {path} is truncated or corrupt '
                            f'({_one_line(err)[:120]}); {_FIX}') from err
        kind = _top_level_kind(data)
        if kind != 'dict':
            raise UserError(f'{what} {path} holds a {kind}, not a checkpoint '
                            f'dict; {_FIX}')
        return path
    if head[:1] == b'\x80':
        # torch's legacy (non-zip) format: the load itself checks it
        return path
    raise UserError(f'{what} {path} is not a PyTorch checkpoint; {_FIX}')


def add_trust_argument(parser) -> None:
    """Add ``--trust-checkpoint`` to a tool's argument parser.

    Args:
        parser (argparse.ArgumentParser): The tool's parser; after parsing,
            pass ``args.trust_checkpoint`` to :func:`set_trust_checkpoints`.
    """
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='unpickle checkpoints fully (runs code stored in the file); '
        'only for a file you trust that a weights-only load refuses. '
        'Default: weights-only, which every checkpoint of this project '
        'passes')
