"""Build the Semi-LLIE VisDrone low-light set from VisDrone images.

    # build from a VisDrone folder (any tree of images, searched recursively)
    python tools/dataset_converters/visdrone_lowlight.py SRC OUT [--seed 0]
        [--night-threshold 50] [--day-threshold 90] [--override FILE]
        [--paired-train N] [--val N] [--unpaired-train N] [--test N]
        [--workers N]

    # rebuild a set identically from its manifest
    python tools/dataset_converters/visdrone_lowlight.py SRC OUT \\
        --from-manifest OLD_OUT/manifest.json

A thin command line over :mod:`semillie_mm.datasets.converters.visdrone_lowlight`,
which holds the logic and documents the output layout, the day/night rule, the
counts and the manifest (see also docs/datasets.md).
"""
import argparse
import json
import os.path as osp

from semillie_mm.datasets.converters.visdrone_lowlight import (  # noqa: E402,F401
    IMG_EXTENSIONS,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PAPER_COUNTS,
    SPLIT_DIRS,
    brightness,
    classify,
    load_manifest,
    plan_dataset,
    read_overrides,
    scan_images,
    split_counts,
    write_dataset,
)
from semillie_mm.utils.checks import require_dir, require_file  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402

import numpy as np


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='VisDrone folder (images searched recursively)')
    p.add_argument('out', help='output root')
    p.add_argument('--from-manifest', default=None,
                   help='rebuild exactly the set described by this manifest')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--night-threshold', type=float, default=50.)
    p.add_argument('--day-threshold', type=float, default=90.)
    p.add_argument('--override', default=None,
                   help='file of "<path> <day|night|exclude>" lines')
    for name in PAPER_COUNTS:
        p.add_argument('--' + name.replace('_', '-'), type=int, default=None,
                       help=f'number of {name} images (paper: '
                       f'{PAPER_COUNTS[name]})')
    p.add_argument('--ranges', default=None,
                   help='JSON dict overriding the synthesis ranges, e.g. '
                   '\'{"exposure": [0.05, 0.3]}\'')
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run the converter; returns the report (also printed).

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Raises:
        UserError: a missing SRC, manifest or override file, OUT equal to
            SRC, a malformed override line or ``--ranges``, a source that
            changed since the manifest was written.

    Returns:
        dict: ``counts``, ``written``, ``failed``, ``mismatched``,
        ``unreadable``, ``ambiguous`` (numbers and lists).
    """
    args = parse_args(argv)
    progress = not args.no_progress
    require_dir(args.src, 'VisDrone folder SRC')
    if osp.abspath(args.src) == osp.abspath(args.out):
        raise UserError(f'OUT {args.out} is SRC; choose another output folder')
    try:
        if args.from_manifest:
            require_file(args.from_manifest, 'manifest (--from-manifest)',
                         'pass the manifest.json of an earlier build')
            manifest = load_manifest(args.from_manifest)
            manifest.pop('write_failures', None)
            verify = True
        else:
            if args.override is not None:
                require_file(args.override, 'override file (--override)')
            try:
                ranges = json.loads(args.ranges) if args.ranges else None
            except ValueError as e:
                raise UserError(f'--ranges {args.ranges!r} is not JSON ({e}); '
                                'e.g. \'{"exposure": [0.05, 0.3]}\'') from e
            requested = {k: getattr(args, k) for k in PAPER_COUNTS}
            manifest = plan_dataset(
                args.src, seed=args.seed,
                night_threshold=args.night_threshold,
                day_threshold=args.day_threshold,
                overrides=read_overrides(args.override), requested=requested,
                ranges=ranges, progress=progress)
            verify = False
        result = write_dataset(manifest, args.src, args.out,
                               workers=args.workers, verify=verify,
                               progress=progress)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    report = dict(counts=manifest['counts'], written=result['written'],
                  failed=result['failed'], mismatched=result['mismatched'],
                  unreadable=manifest.get('unreadable', []),
                  ambiguous=len(manifest.get('ambiguous', [])),
                  unknown_overrides=manifest['rule'].get('unknown_overrides',
                                                         []))
    print(f"scanned {manifest.get('num_scanned')} images: "
          f"{manifest.get('num_day')} day, {manifest.get('num_night')} night, "
          f"{report['ambiguous']} ambiguous, "
          f"{len(report['unreadable'])} unreadable")
    values = [f['brightness'] for f in manifest['files']] + [
        a['brightness'] for a in manifest.get('ambiguous', [])]
    if values and not args.from_manifest:
        hist, edges = np.histogram(values, bins=np.arange(0, 256 + 16, 16))
        print('brightness histogram of the used + ambiguous images '
              '(bin start: count): ' + ', '.join(
                  f'{int(e)}: {c}' for e, c in zip(edges, hist) if c))
    print('split counts: ' + ', '.join(f'{k}={v}'
                                       for k, v in manifest['counts'].items()))
    for u in report['unreadable']:
        print(f"  unreadable {u['source']}: {u['reason']}")
    for name in report['unknown_overrides']:
        print(f'  override entry matches no image: {name}')
    for f in result['failed']:
        print(f"  FAILED {f['source']}: {f['error']}")
    if result['mismatched']:
        print(f"  {len(result['mismatched'])} outputs differ from the "
              'manifest digests (different OpenCV/NumPy build?)')
    print(f"wrote {result['written']} entries and "
          f"{osp.join(args.out, MANIFEST_NAME)}")
    return report


if __name__ == '__main__':
    run_cli(main)
