"""Convert VisDrone-DET annotations to COCO JSON with a seeded, recorded train/test split.

A thin command line over :mod:`semillie_mm.datasets.converters.visdrone2coco`, which holds
the logic and documents the conversion rules (classes, ignore regions, the 526/131 split).

Example::

    python tools/dataset_converters/visdrone2coco.py \\
        --img-dir data/visdrone_night/images --ann-dir data/visdrone_night/annotations_visdrone \\
        --out-dir data/visdrone_night/annotations --seed 0

writes ``train.json``, ``test.json``, ``all.json`` and ``split.json`` to ``--out-dir``.
"""
import json
import logging

from semillie_mm.datasets.converters.visdrone2coco import (  # noqa: E402,F401
    CLASSES,
    IGNORED_REGION,
    IMG_EXTENSIONS,
    OTHERS,
    PAPER_NUM_IMAGES,
    PAPER_NUM_TRAIN,
    MalformedLineError,
    categories,
    convert,
    find_images,
    make_split,
    objects_to_coco_annotations,
    parse_line,
    read_annotation_file,
    split_counts,
)
from semillie_mm.utils.checks import require_dir, require_file  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    parser = ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--img-dir', required=True, help='folder of VisDrone images')
    parser.add_argument('--ann-dir', required=True, help='folder of VisDrone-DET .txt files')
    parser.add_argument('--out-dir', required=True, help='output folder for the COCO JSON files')
    parser.add_argument('--seed', type=int, default=0, help='split seed (default 0)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='number of train images (default: round(N * 526 / 657))')
    parser.add_argument('--split-file', default=None, help='reuse the split of a split.json')
    parser.add_argument('--skip-bad', action='store_true',
                        help='skip malformed lines (logged and counted) instead of failing')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Convert and print the summary.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        int: 0.

    Raises:
        UserError: a missing folder or file, a malformed line (without
            ``--skip-bad``), a split file that does not fit.
    """
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = parse_args(argv)
    require_dir(args.img_dir, 'image folder (--img-dir)')
    require_dir(args.ann_dir, 'annotation folder (--ann-dir)')
    if args.split_file is not None:
        require_file(args.split_file, 'split file (--split-file)',
                     'pass a split.json written by an earlier run')
    try:
        summary = convert(args.img_dir, args.ann_dir, args.out_dir, seed=args.seed,
                          num_train=args.num_train, split_file=args.split_file,
                          skip_bad=args.skip_bad)
    except MalformedLineError as e:
        raise UserError(f'{e}; fix the line or pass --skip-bad to skip malformed lines') from e
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    run_cli(main)
