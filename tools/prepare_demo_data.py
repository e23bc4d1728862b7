"""Build the embedded demo data set (no download).

    python tools/prepare_demo_data.py [--root data/demo] [--seed 0] [--force]

Cuts photos shipped inside scikit-image / scikit-learn into tiles, synthesises
low-light inputs with the physical model of
``semillie_mm/datasets/transforms/low_light_synthesis.py`` and writes
``labeled/{input,GT}``, ``unlabeled/input``, ``val/{input,GT}`` and
``manifest.json`` under ``--root`` (see docs/datasets.md). Returns at once if
a matching build is already there; never leaves a half-written folder.
A user's mistake (``--root`` is a file, a folder that is not a demo build, a
folder that cannot be written) is one line on stderr and exit status 2;
``--debug`` shows the traceback.
"""
import json
import os.path as osp
import time

from semillie_mm.datasets.demo_data import prepare_demo_data  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = ArgumentParser(
        description='Build the embedded Semi-LLIE demo data (no download).')
    parser.add_argument(
        '--root', default='data/demo', help='output folder (data/demo)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the synthesis (0)')
    parser.add_argument(
        '--force', action='store_true', help='rebuild even if it exists')
    return parser.parse_args(argv)


def main(argv=None):
    """Build the data and print a summary.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.
    """
    args = parse_args(argv)
    start = time.time()
    if osp.exists(args.root) and not osp.isdir(args.root):
        raise UserError(f'--root {args.root} is a file, not a folder; choose '
                        'another --root')
    try:
        root = prepare_demo_data(
            root=args.root, seed=args.seed, force=args.force)
    except FileExistsError as err:
        raise UserError(f'--root {args.root} exists and is not a semillie '
                        'demo build; remove it, choose another --root or '
                        'pass --force to replace it') from err
    except PermissionError as err:
        raise UserError(f'cannot write {err.filename or args.root} '
                        f'({err.strerror}); choose a writable --root') from err
    with open(osp.join(root, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    counts = ', '.join(f'{k}: {v}' for k, v in manifest['counts'].items())
    print(f'demo data at {root} (seed {manifest["seed"]}; {counts}) '
          f'in {time.time() - start:.1f} s')


if __name__ == '__main__':
    run_cli(main)
