"""Build the embedded demo data set (no download).

    python tools/prepare_demo_data.py [--root data/demo] [--seed 0] [--force]

Cuts photos shipped inside scikit-image / scikit-learn into tiles, synthesises
low-light inputs with the physical model of
``semillie_mm/datasets/transforms/low_light_synthesis.py`` and writes
``labeled/{input,GT}``, ``unlabeled/input``, ``val/{input,GT}`` and
``manifest.json`` under ``--root`` (see docs/datasets.md). Returns at once if
a matching build is already there; never leaves a half-written folder.
"""
import argparse
import json
import os.path as osp
import sys
import time

# Let the tool run from a source checkout without installing the package.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from semillie_mm.datasets.demo_data import prepare_demo_data  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
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
    root = prepare_demo_data(root=args.root, seed=args.seed, force=args.force)
    with open(osp.join(root, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    counts = ', '.join(f'{k}: {v}' for k, v in manifest['counts'].items())
    print(f'demo data at {root} (seed {manifest["seed"]}; {counts}) '
          f'in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
