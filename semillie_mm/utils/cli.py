"""One-line errors for the command-line tools.

A user's mistake (a missing config, a truncated checkpoint, a wrong option
value) should end in one line on stderr that names the file or value and says
what to do, with exit status 2 -- not in a Python traceback. Our own bugs keep
their traceback. Every tool's ``if __name__ == '__main__':`` is::

    run_cli(main)

where ``main(argv)`` raises :class:`UserError` for a user's mistake. ``--debug``
on the command line (or ``SEMILLIE_DEBUG=1`` in the environment) lets the
exception propagate with its full traceback.

File checks (``require_file``, ``load_config``, ``check_checkpoint``, ...)
live in :mod:`semillie_mm.utils.checks`.

This module imports nothing heavy at import time (torch and mmengine are
imported inside the functions that need them), so a tool can check its
arguments before it pays for importing the OpenMMLab stack.
"""
import argparse
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


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are :class:`UserError`.

    argparse prints its usage and then the error (two or more lines) and
    exits with status 2; here a wrong or missing argument or an unknown
    option value is one line (``<prog>: error: <message> (see <prog>
    --help)``) through :func:`run_cli`, with the same status 2. ``--help``
    is unchanged.
    """

    def error(self, message: str) -> NoReturn:
        """Raise the parse error as a :class:`UserError`."""
        raise UserError(f'{message} (see {self.prog} --help)')


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
