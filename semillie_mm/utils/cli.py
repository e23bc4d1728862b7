"""One-line errors for the command-line tools.

A user's mistake (a missing config, a truncated checkpoint, a wrong option
value) should end in one line on stderr that names the file or value and says
what to do, with exit status 2 -- not in a Python traceback. Our own bugs keep
their traceback. Every tool's ``if __name__ == '__main__':`` is::

    run_cli(main)

where ``main(argv)`` raises :class:`UserError` for a user's mistake. ``--debug``
on the command line (or ``SEMILLIE_DEBUG=1`` in the environment) lets the
exception propagate with its full traceback.

This module imports nothing heavy at import time (torch and mmengine are
imported inside the functions that need them), so a tool can check its
arguments before it pays for importing the OpenMMLab stack.
"""
import ast
import os
import os.path as osp
import sys
from typing import Callable, List, NoReturn, Optional

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'SEMILLIE_DEBUG'
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake of the user's, reported as one line without a traceback.

    ``str(err)`` is a single line that names the file or value at fault and
    the fix; newlines in the message are folded into spaces.
    """

    def __init__(self, message: str):
        super().__init__(' '.join(str(message).split()))


def debug_enabled(argv: Optional[List[str]] = None) -> bool:
    """Whether tracebacks were asked for.

    Args:
        argv (list[str] | None): command line; None reads ``sys.argv[1:]``.

    Returns:
        bool: True if ``--debug`` is in ``argv`` or ``SEMILLIE_DEBUG`` is set
        to a true value (anything but '', '0', 'false', 'no', 'off').
    """
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ.get(DEBUG_ENV, '').strip().lower()
    return DEBUG_FLAG in argv or env not in ('', '0', 'false', 'no', 'off')


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def run_cli(main: Callable[[Optional[List[str]]], Optional[int]],
            argv: Optional[List[str]] = None,
            prog: Optional[str] = None) -> NoReturn:
    """Run a tool's ``main`` and turn user errors into one line and status 2.

    Args:
        main (callable): ``main(argv) -> int | None``; an int is the exit
            status, None means 0.
        argv (list[str] | None): command line without the program name;
            None reads ``sys.argv[1:]``. ``--debug`` is removed before
            ``main`` sees it.
        prog (str | None): name printed before the message; default the
            basename of ``sys.argv[0]``.

    Returns:
        NoReturn: always exits (:class:`SystemExit`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    prog = prog or osp.basename(sys.argv[0] or 'semillie')
    try:
        status = main(argv)
    except UserError as err:
        if debug:
            raise
        print(f'{prog}: error: {_one_line(err)}', file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(status if isinstance(status, int) else 0)


def require_file(path, what: str, hint: str = '') -> str:
    """Check that ``path`` is a readable file.

    Args:
        path (str | os.PathLike): the file.
        what (str): what it is, e.g. ``'config'`` or ``'RAM weights'``.
        hint (str): the fix, appended to the message (e.g. how to get it).

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: if the path is empty, missing, a directory or unreadable.
    """
    if path is None or str(path) == '':
        raise UserError(f'no {what} given' + (f'; {hint}' if hint else ''))
    path = osp.expanduser(os.fspath(path))
    tail = f'; {hint}' if hint else ''
    if not osp.exists(path):
        raise UserError(f'{what} {path} does not exist{tail}')
    if osp.isdir(path):
        raise UserError(f'{what} {path} is a directory, expected a file{tail}')
    if not os.access(path, os.R_OK):
        raise UserError(f'{what} {path} is not readable (check its '
                        f'permissions){tail}')
    try:
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as err:
        raise UserError(f'{what} {path} cannot be read '
                        f'({err.strerror or err}){tail}') from err
    return path


def require_dir(path, what: str, hint: str = '') -> str:
    """Check that ``path`` is an existing folder.

    Args:
        path (str | os.PathLike): the folder.
        what (str): what it is, e.g. ``'VisDrone root'``.
        hint (str): the fix, appended to the message.

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: if it is missing or not a folder.
    """
    tail = f'; {hint}' if hint else ''
    if path is None or str(path) == '':
        raise UserError(f'no {what} given{tail}')
    path = osp.expanduser(os.fspath(path))
    if not osp.exists(path):
        raise UserError(f'{what} {path} does not exist{tail}')
    if not osp.isdir(path):
        raise UserError(f'{what} {path} is not a folder{tail}')
    return path


def _syntax_error_of(path: str):
    """The first syntax error of a Python file, or None."""
    try:
        with open(path, encoding='utf-8') as f:
            ast.parse(f.read(), filename=path)
    except SyntaxError as err:
        return err
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def load_config(path):
    """Load an mmengine config, turning a user's mistake into a UserError.

    Args:
        path (str | os.PathLike): the config file.

    Returns:
        mmengine.Config: the loaded config.

    Raises:
        UserError: if the config (or one of its ``_base_`` files) is missing,
            unreadable, or has a syntax error (the message names the file and
            the line).
    """
    path = require_file(path, 'config', 'pass the path of a config file, '
                        'e.g. configs/semillie/semillie_demo.py')
    if path.endswith('.py'):
        err = _syntax_error_of(path)
        if err is not None:
            raise UserError(f'config {path} line {err.lineno}: syntax error '
                            f'({err.msg}); fix that line')
    from mmengine.config import Config
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        # a _base_ file of the config: find which one, for the message
        bad = err.filename if err.filename and osp.isfile(
            str(err.filename)) else None
        line = err.lineno
        if bad is None:
            raise UserError(f'config {path}: syntax error in it or in one of '
                            f'its _base_ files ({_one_line(err)})') from err
        inner = _syntax_error_of(bad)
        if inner is not None:
            line = inner.lineno
        raise UserError(f'config {bad} line {line}: syntax error (used by '
                        f'{path}); fix that line') from err
    except FileNotFoundError as err:
        missing = getattr(err, 'filename', None) or _one_line(err)
        raise UserError(f'config {path} refers to a file that does not '
                        f'exist: {missing}; fix its _base_ path') from err
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise UserError(f'config {path} cannot be read '
                        f'({_one_line(err)})') from err


def check_checkpoint(path, what: str = 'checkpoint') -> str:
    """Check that ``path`` is a loadable PyTorch checkpoint.

    The file is loaded on the CPU (zip-format files memory-mapped, so the
    tensors are not read twice into memory). Loading runs code stored in the
    file, as every mmengine checkpoint load does: only pass checkpoints you
    trust.

    Args:
        path (str | os.PathLike): the checkpoint file.
        what (str): what it is in messages (``'checkpoint'``,
            ``'--resume checkpoint'``, ...).

    Returns:
        str: ``path`` as a string, ``~`` expanded.

    Raises:
        UserError: if the file is missing, empty, truncated or not a
            checkpoint (a dict).
    """
    fix = 're-download it or save it again'
    path = require_file(path, what)
    if osp.getsize(path) == 0:
        raise UserError(f'{what} {path} is empty; {fix}')
    import zipfile

    import torch
    kwargs = dict(map_location='cpu', weights_only=False)
    if zipfile.is_zipfile(path):
        kwargs['mmap'] = True
    try:
        obj = torch.load(path, **kwargs)
    except Exception as err:  # noqa: BLE001 -- torch raises many types
        # RuntimeError (truncated zip), EOFError / UnpicklingError (truncated
        # or not a pickle), ValueError ...; all mean "this file is broken"
        kind = 'truncated or corrupt' if zipfile.is_zipfile(path) or \
            isinstance(err, (EOFError, RuntimeError)) else \
            'not a PyTorch checkpoint'
        raise UserError(f'{what} {path} is {kind} ({type(err).__name__}: '
                        f'{_one_line(err)[:120]}); {fix}') from err
    if not isinstance(obj, dict):
        raise UserError(f'{what} {path} holds a {type(obj).__name__}, not a '
                        f'checkpoint dict; {fix}')
    return path
