"""Enhance your own low-light images with a trained model.

    python tools/enhance.py CONFIG CHECKPOINT INPUT OUTPUT
        [--device cpu|cuda|cuda:1] [--tile 512] [--tile-overlap 64] [--no-tile]
        [--ext .png] [--student] [--summary FILE.json]

INPUT is an image file or a folder (searched recursively; relative paths and
names are kept under OUTPUT). Unreadable files are skipped with a logged reason
and counted in the summary printed at the end. See docs/enhance.md.
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from semillie_mm.apis.inference import (DEFAULT_TILE_OVERLAP,  # noqa: E402
                                        DEFAULT_TILE_SIZE, enhance_path,
                                        init_enhancer)


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Enhance low-light images with a semillie-mm model')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='an image file or a folder')
    parser.add_argument('output', help='output folder (or file for a file)')
    parser.add_argument('--device', default='cpu',
                        help='cpu, cuda or cuda:N (default: cpu)')
    parser.add_argument('--tile', type=int, default=DEFAULT_TILE_SIZE,
                        help='tile side for images larger than it '
                        f'(default: {DEFAULT_TILE_SIZE})')
    parser.add_argument('--tile-overlap', type=int,
                        default=DEFAULT_TILE_OVERLAP,
                        help='overlap of neighbouring tiles '
                        f'(default: {DEFAULT_TILE_OVERLAP})')
    parser.add_argument('--no-tile', action='store_true',
                        help='run every image whole (memory grows with size)')
    parser.add_argument('--ext', default=None,
                        help='output extension, e.g. .png (default: keep)')
    parser.add_argument('--student', action='store_true',
                        help='use the student of a mean-teacher model '
                        '(default: the teacher)')
    parser.add_argument('--summary', default=None,
                        help='also write the summary to this JSON file')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Run the tool.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        dict: The summary of :func:`enhance_path`.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda asked but CUDA is not available')
    net = init_enhancer(args.config, args.checkpoint, device=args.device,
                        use_teacher=not args.student)
    tile = None if args.no_tile else args.tile
    summary = enhance_path(
        net, args.input, args.output,
        tile_size=tile, tile_overlap=args.tile_overlap, device=args.device,
        ext=args.ext, progress=not args.no_progress)
    print(f"processed: {summary['processed']}  skipped: {summary['skipped']}"
          f"  ignored (not images): {summary['ignored']}")
    for item in summary['skipped_files']:
        print(f"  skipped {item['path']}: {item['reason']}")
    for item in summary['notes']:
        print(f"  note {item['path']}: {item['note']}")
    if args.summary:
        tmp = args.summary + '.tmp'
        os.makedirs(osp.dirname(osp.abspath(args.summary)), exist_ok=True)
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, args.summary)
    return summary


if __name__ == '__main__':
    main()
