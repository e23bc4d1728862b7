"""Enhance your own low-light images with a trained model.

    python tools/enhance.py [CONFIG CHECKPOINT | MODEL.onnx] INPUT OUTPUT
        [--device cpu|cuda|cuda:1] [--tile 512] [--tile-overlap 64] [--no-tile]
        [--batch-size 1] [--ext .png] [--student] [--summary FILE.json]
        [--vis-dir DIR] [--skip-existing | --overwrite]
        [--temporal-smoothing ALPHA] [--precision fp32|bf16]
        [--launcher none|pytorch|slurm|mpi] [--dist-timeout S] [--debug]

Without CONFIG CHECKPOINT (two positional arguments: INPUT OUTPUT) the model
shipped in the package is used (semillie_mm/pretrained/, see MODEL_CARD.md
there); MODEL.onnx INPUT OUTPUT runs a model written by
tools/deployment/export_onnx.py with ONNX Runtime on the CPU; other numbers
of positional arguments are a usage error. INPUT
is an image file or a folder (searched recursively; relative paths and names
are kept under OUTPUT). Unreadable files are skipped with a logged reason and
counted in the summary printed at the end. A user's mistake (missing config,
checkpoint or input, a truncated checkpoint, a bad option value) ends in one
line on stderr and exit status 2; --debug shows the traceback. The work is done
by semillie_mm.apis.SemiLLIEInferencer; see docs/enhance.md.

An input is never overwritten: before any image is read, the run is refused
(one line, status 2) when an output would be an input file (compared as real
files: links are followed) or when two inputs map to one output name. Outputs
that exist are kept and their inputs not enhanced again (--skip-existing, the
default), so a run stopped by Ctrl-C resumes where it stopped; --overwrite
replaces them. After Ctrl-C the summary of what was done is still printed (and
written to --summary), and the exit status is 130. An image whose header
declares more than SEMILLIE_MAX_PIXELS pixels (default 100 megapixels) is
refused before it is decoded: a one-line error for a single INPUT file, a
logged skip in a folder.

Videos: INPUT may be a video (OUTPUT a video file: .mp4, .m4v, .mov, .avi or
.mkv, or a folder), and a folder's videos are enhanced too, frame by frame
(semillie_mm.apis.video): frame rate and size kept, one line says what is
dropped (audio, subtitles, the input codec), progress shows frames and ETA,
the output is written atomically. A video that cannot be opened, has no
frames, does not decode or is truncated is a one-line error (single INPUT)
or a logged skip (folder). --temporal-smoothing ALPHA smooths the output's
brightness over time (docs/enhance.md, "Video").

Many files across processes: ``--launcher pytorch`` under ``torchrun
--nproc_per_node N`` (or tools/dist_enhance.sh CONFIG CHECKPOINT INPUT OUTPUT
N) splits a folder's images and videos over the processes (balanced by
pixels, semillie_mm.apis.sharding); each writes its share atomically, reruns
resume, rank 0 prints the totals. docs/enhance.md, "Many images across
processes".
"""
import logging
import os
import os.path as osp
import sys

# Nothing is fetched at run time: albumentations (imported by mmagic) asks PyPI for its newest
# version when it is imported, unless told not to.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from semillie_mm.apis import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, IMG_EXTENSIONS  # noqa: E402
from semillie_mm.apis.pretrained import DEFAULT_MODEL, MODEL_CARD  # noqa: E402
from semillie_mm.apis.sharding import DEFAULT_DIST_TIMEOUT, LAUNCHERS  # noqa: E402
from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402
from semillie_mm.utils.fileio import atomic_write_json  # noqa: E402

USAGE = ('%(prog)s [CONFIG CHECKPOINT] INPUT OUTPUT\n'
         '       [--device D] [--tile N] [--tile-overlap N] [--no-tile]\n'
         '       [--batch-size N] [--ext EXT] [--student] [--summary FILE]\n'
         '       [--vis-dir DIR] [--skip-existing | --overwrite]\n'
         '       [--temporal-smoothing ALPHA] [--precision fp32|bf16]\n'
         '       [--launcher none|pytorch|slurm|mpi] [--dist-timeout S]\n'
         '       [--no-progress] [--trust-checkpoint] [--debug]')


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments; ``config`` and
        ``checkpoint`` are None when only INPUT OUTPUT were given.

    Raises:
        UserError: A wrong option, or not 2 or 4 positional arguments.
    """
    parser = ArgumentParser(
        usage=USAGE,
        description='Enhance low-light images with a semillie-mm model')
    parser.add_argument(
        'paths', nargs='*', metavar='[CONFIG CHECKPOINT] INPUT OUTPUT',
        help='CONFIG CHECKPOINT: config file and checkpoint of the model '
        f'(without them: the model shipped in the package, {DEFAULT_MODEL}; '
        f'see {MODEL_CARD}); INPUT: an image or video file or a folder; '
        'OUTPUT: output folder (or file for a file)')
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
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per forward pass (same-size images '
                        'are stacked; default: 1)')
    parser.add_argument('--ext', default=None,
                        help='output extension, e.g. .png (default: keep)')
    parser.add_argument('--student', action='store_true',
                        help='use the student of a mean-teacher model '
                        '(default: the teacher)')
    parser.add_argument('--precision', choices=('fp32', 'bf16'),
                        default='fp32',
                        help='bf16: GEMMs and convs in bfloat16, the scan in '
                        'float32, on CPUs with AVX512-BF16 / AMX (else fp32 '
                        'with a notice; default: fp32)')
    parser.add_argument('--summary', default=None,
                        help='also write the summary to this JSON file')
    parser.add_argument('--vis-dir', default=None,
                        help='also write input | output pictures there')
    parser.add_argument('--temporal-smoothing', type=float, default=0.0,
                        metavar='ALPHA',
                        help='videos: exponential moving average of each '
                        "frame's brightness, ALPHA in [0, 1) (0.8: about 5 "
                        'frames; default 0: off)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher: with pytorch (torchrun), slurm '
                        'or mpi the files of INPUT are split over the '
                        'processes (default: none)')
    parser.add_argument('--dist-timeout', type=float,
                        default=DEFAULT_DIST_TIMEOUT, metavar='SECONDS',
                        help='with --launcher: how long the processes that '
                        'finish first wait for the others at the end '
                        f'(default: {DEFAULT_DIST_TIMEOUT})')
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument('--skip-existing', dest='overwrite',
                          action='store_false',
                          help='keep outputs that exist and do not enhance '
                          'their inputs again: resumes an interrupted run '
                          '(default)')
    existing.add_argument('--overwrite', dest='overwrite',
                          action='store_true',
                          help='replace outputs that exist')
    parser.set_defaults(overwrite=False)
    add_trust_argument(parser)
    # options may come between the positional arguments
    args = parser.parse_intermixed_args(argv)
    paths, args.onnx = args.paths, None
    if len(paths) == 3 and paths[0].lower().endswith('.onnx'):
        args.onnx, paths = paths[0], paths[1:]  # ONNX Runtime backend
    if len(paths) not in (2, 4):
        parser.error(f'expected INPUT OUTPUT or CONFIG CHECKPOINT INPUT '
                     f'OUTPUT, got {len(args.paths)} positional argument'
                     f'{"" if len(args.paths) == 1 else "s"} (or '
                     'MODEL.onnx INPUT OUTPUT)')
    if len(paths) == 2:
        paths = [None, None] + paths
    args.config, args.checkpoint, args.input, args.output = paths
    del args.paths
    return args


def check_args(args) -> None:
    """Turn wrong option values and missing files into one-line errors.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Raises:
        UserError: The first problem found.
    """
    if not osp.exists(args.input):
        raise UserError(f'input {args.input} does not exist; pass an image '
                        'or video file or a folder of them')
    if not args.no_tile:
        if args.tile <= 0:
            raise UserError(f'--tile {args.tile}: must be > 0 (or use '
                            '--no-tile)')
        if not 0 <= args.tile_overlap < args.tile:
            raise UserError(f'--tile-overlap {args.tile_overlap}: must be in '
                            f'[0, --tile={args.tile})')
    if args.batch_size < 1:
        raise UserError(f'--batch-size {args.batch_size}: must be >= 1')
    if args.launcher != 'none':
        check_shardable(args)
    from semillie_mm.apis.video import check_video_args
    try:
        check_video_args(args.input, args.output, args.temporal_smoothing)
    except ValueError as err:
        raise UserError(str(err)) from err
    if args.ext:
        ext = args.ext.lower() if args.ext.startswith('.') else \
            '.' + args.ext.lower()
        if ext not in IMG_EXTENSIONS:
            raise UserError(f'--ext {args.ext}: unsupported; choose one of '
                            f'{" ".join(IMG_EXTENSIONS)}')
        args.ext = ext
    from semillie_mm.apis.checks import check_device
    check_device(args.device)
    from semillie_mm.apis.image_io import ImageTooLargeError, check_image_size, max_image_pixels
    try:
        max_image_pixels()
    except ValueError as err:
        raise UserError(str(err)) from err
    if osp.isfile(args.input):
        try:
            check_image_size(args.input)
        except ImageTooLargeError as err:
            raise UserError(f'input {args.input}: {err}') from err
        except (OSError, ValueError):
            pass  # unreadable: skipped with its reason, as in a folder


def check_shardable(args) -> None:
    """What ``--launcher`` needs: a folder to split, and an output folder
    outside it (the ranks list INPUT at different times: one that finished
    an output early would make the others list it as an input).

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Raises:
        UserError: INPUT is one file, or OUTPUT lies inside INPUT.
    """
    if not osp.isdir(args.input):
        raise UserError(f'--launcher {args.launcher}: input {args.input} is '
                        'one file; --launcher splits the files of a folder '
                        'over the processes (run one file without it)')
    inp, out = osp.realpath(args.input), osp.realpath(args.output)
    if out == inp or out.startswith(inp.rstrip(os.sep) + os.sep):
        raise UserError(f'--launcher {args.launcher}: output {args.output} '
                        f'is inside the input folder {args.input}; the '
                        'processes would list each other\'s outputs as '
                        'inputs: choose an output folder outside it')
    if args.dist_timeout <= 0:
        raise UserError(f'--dist-timeout {args.dist_timeout}: must be > 0')


def plan_outputs(args):
    """Where each input goes, checked before any work.

    Args:
        args (argparse.Namespace): Checked by :func:`check_args`.

    Returns:
        tuple[bool, str | None]: Whether INPUT is one image written to the
        output file OUTPUT, and that file (None otherwise).

    Raises:
        UserError: An output would overwrite an input, or two inputs map to
            one output name.
    """
    from semillie_mm.apis.output_plan import (
        OutputConflictError,
        check_output_plan,
        list_inputs,
        output_name,
    )
    from semillie_mm.apis.video import is_video, split_video_inputs, video_output_name
    if osp.isfile(args.input) and is_video(args.input) and \
            is_video(args.output):  # a video to a file
        try:
            check_output_plan([(args.input, args.output)])
        except OutputConflictError as err:
            raise UserError(str(err)) from err
        return True, args.output
    to_file = osp.isfile(args.input) and \
        osp.splitext(args.output)[1].lower() in IMG_EXTENSIONS
    if to_file:
        dst = args.output
        if args.ext:
            dst = osp.splitext(dst)[0] + args.ext
        pairs = [(args.input, dst)]
    else:
        dst = None
        videos, rest, _ = split_video_inputs(args.input)
        items, _ = list_inputs(rest)
        pairs = [(item['img_path'],
                  osp.join(args.output, output_name(item['rel'], args.ext)))
                 for item in items]
        pairs += [(v['video_path'],
                   osp.join(args.output, video_output_name(v['rel'])))
                  for v in videos]
    try:
        check_output_plan(pairs)
    except OutputConflictError as err:
        raise UserError(str(err)) from err
    return to_file, dst


def _empty_result() -> dict:
    return dict(outputs=[], skipped=[], ignored=[], notes=[], existing=[])


def build_inferencer(args):
    """The inferencer the arguments ask for (ONNX, a config and checkpoint,
    or the shipped model), with one-line errors.

    Args:
        args (argparse.Namespace): Checked by :func:`check_args`; ``config``
            and ``checkpoint`` are filled in for the shipped model.

    Returns:
        SemiLLIEInferencer: The model on ``args.device``.
    """
    from semillie_mm.apis.checks import (
        build_inferencer_checked,
        build_onnx_inferencer_checked,
        shipped_model_checked,
    )
    network = 'student' if args.student else 'teacher'
    if args.onnx is not None:
        return build_onnx_inferencer_checked(
            args.onnx, device=args.device, network=network,
            show_progress=not args.no_progress)
    if args.config is None:
        args.config, args.checkpoint = shipped_model_checked(DEFAULT_MODEL)
        print(f'no config/checkpoint given: using the shipped model '
              f'{DEFAULT_MODEL} ({args.checkpoint}); see {MODEL_CARD}',
              flush=True)
    return build_inferencer_checked(
        args.config, args.checkpoint, device=args.device, network=network,
        show_progress=not args.no_progress, precision=args.precision)


def _print_summary(summary: dict) -> None:
    interrupted = summary['interrupted']
    print(('interrupted: ' if interrupted else '') +
          f"processed: {summary['processed']}  skipped: {summary['skipped']}"
          f"  ignored (not images): {summary['ignored']}"
          f"  existing (kept): {summary['existing']}")
    for item in summary['skipped_files']:
        print(f"  skipped {item['path']}: {item['reason']}")
    for item in summary['notes']:
        print(f"  note {item['path']}: {item['note']}")
    if summary['existing']:
        print('  existing outputs were kept (--overwrite replaces them)')


def main_sharded(args) -> dict:
    """``--launcher``: this process's share of INPUT, then the totals.

    Each process enhances the files :mod:`semillie_mm.apis.sharding` gives
    it; the processes meet once, at the end, where rank 0 prints the totals
    (and writes --summary) and every rank returns them. A rank that failed
    is named with its error and every rank exits with status 1.

    Args:
        args (argparse.Namespace): Checked by :func:`check_args`.

    Returns:
        dict: The totals (as :func:`main`'s), plus ``failed`` and ``ranks``
        (per rank: ``items``, ``processed``, ``skipped``, ``existing``,
        ``seconds``) and ``rank``, ``world_size``.

    Raises:
        KeyboardInterrupt: This rank was interrupted (no meeting).
        SystemExit: Status 1 when a rank failed.
    """
    import signal

    from semillie_mm.apis import sharding
    try:
        rank, world_size, args.device = sharding.init_distributed(
            args.launcher, args.device, timeout=args.dist_timeout)
    except ValueError as err:
        raise UserError(str(err)) from err
    # stopped by the launcher (another rank died): remove the temporary file
    # of the output being written, as after Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    threads = sharding.set_process_threads()
    sharding.prefix_log_with_rank(rank, world_size)
    logging.getLogger(__name__).info('device %s, %d torch thread(s)',
                                     args.device, threads)
    if rank:
        args.no_progress = True  # rank 0's bar; the others log their counts
    inferencer = build_inferencer(args)
    local = sharding.enhance_sharded(
        inferencer, args.input, args.output, rank, world_size,
        tile_size=None if args.no_tile else args.tile,
        tile_overlap=args.tile_overlap, batch_size=args.batch_size,
        on_error='skip', vis_out_dir=args.vis_dir or '', cpu_tuning=True,
        ext=args.ext, skip_existing=not args.overwrite,
        temporal_smoothing=args.temporal_smoothing)
    if local['interrupted']:  # the others are stopped too: no meeting
        _print_summary(sharding.merge_summaries([local]))
        raise KeyboardInterrupt
    summary = sharding.merge_summaries(sharding.gather_summaries(local))
    sharding.end_distributed()
    summary.update(rank=rank, world_size=world_size)
    if rank == 0:
        _print_summary(summary)
        for r in summary['ranks']:
            print(f"  rank {r['rank']}: {r['items']} inputs, processed "
                  f"{r['processed']}, skipped {r['skipped']}, existing "
                  f"{r['existing']} in {r['seconds']} s")
        if args.summary:
            atomic_write_json(args.summary, summary, indent=2)
    if summary['failed'] and rank == 0:
        for f in summary['failed']:
            who = 'ranks' if f['rank'] is None else f"rank {f['rank']}"
            print(f"enhance.py: error: {who}: {f['error']}", file=sys.stderr)
        print('enhance.py: the outputs written are whole; run the same '
              'command again to do the rest', file=sys.stderr)
    if summary['failed']:
        raise SystemExit(1)
    return summary


def main(argv=None) -> dict:
    """Run the tool.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        dict: The summary: ``processed``, ``skipped``, ``skipped_files``
        (``{'path', 'reason'}``), ``ignored`` (non-image files and
        dot-files), ``existing`` and ``existing_files`` (outputs kept by
        --skip-existing), ``notes`` (``{'path', 'note'}``), ``outputs``
        (written files) and ``interrupted``.

    Raises:
        KeyboardInterrupt: After the summary of the work done before it was
            printed and written.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    check_args(args)
    set_trust_checkpoints(args.trust_checkpoint)
    to_file, dst = plan_outputs(args)
    if args.launcher != 'none':
        return main_sharded(args)
    from semillie_mm.apis.video import VideoError, is_video
    inferencer = build_inferencer(args)
    tile = None if args.no_tile else args.tile
    res, interrupted = _empty_result(), False
    kwargs = dict(tile_size=tile, tile_overlap=args.tile_overlap,
                  batch_size=args.batch_size, on_error='skip',
                  return_preds=False, vis_out_dir=args.vis_dir or '',
                  cpu_tuning=True, results=res)
    try:
        if to_file and osp.exists(dst) and not args.overwrite:
            res['existing'] = [dst]  # one image to an explicit output file
        elif to_file and is_video(dst):
            from semillie_mm.apis.video import enhance_video_file
            enhance_video_file(inferencer, args.input, dst, res,
                               batch_size=args.batch_size, tile_size=tile,
                               tile_overlap=args.tile_overlap,
                               temporal_smoothing=args.temporal_smoothing)
        elif to_file:
            res = inferencer(args.input, **dict(kwargs, return_preds=True))
            res['notes'] = []
            if res['predictions']:
                notes = inferencer.save_prediction(res['predictions'][0],
                                                   dst)
                res['outputs'] = [dst]
                res['notes'] = [dict(path=args.input, note=n) for n in notes]
        else:
            res = inferencer(args.input, out_dir=args.output, ext=args.ext,
                             skip_existing=not args.overwrite,
                             temporal_smoothing=args.temporal_smoothing,
                             **kwargs)
    except VideoError as err:  # a single INPUT video (folders: skipped)
        raise UserError(str(err)) from err
    except KeyboardInterrupt:
        interrupted = True  # ``res`` holds what was written before Ctrl-C
    summary = dict(processed=len(res['outputs']), skipped=len(res['skipped']),
                   skipped_files=res['skipped'], ignored=len(res['ignored']),
                   existing=len(res['existing']),
                   existing_files=res['existing'], notes=res['notes'],
                   outputs=res['outputs'], interrupted=interrupted)
    _print_summary(summary)
    if args.summary:
        atomic_write_json(args.summary, summary, indent=2)
    if interrupted:
        raise KeyboardInterrupt
    return summary


if __name__ == '__main__':
    run_cli(main)
