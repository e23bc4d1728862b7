"""Downstream detection study: Faster R-CNN on enhanced VisDrone night images.

Paper Sec. V, Table VII.

A thin command line over :mod:`semillie_mm.detection` (the methods, the detector, resuming, the
tables: see there and docs/detection.md). Example::

    CKPT=work_dirs/semillie/last.pth
    python tools/detection_study.py \\
        --images data/visdrone_night/images --ann-dir data/visdrone_night/annotations \\
        --method Original=none \\
        --method "Semi-LLIE (Ours)=semillie:configs/semillie_visdrone.py,$CKPT" \\
        --method "ZeroDCE=folder:results/zerodce_night" \\
        --work-dir work_dirs/detection_study

Several processes enhance the night images together (each its share; the detectors are then
trained by rank 0, one row after the other)::

    torchrun --nproc_per_node 4 tools/detection_study.py ... --launcher pytorch

A user's mistake (a missing folder, annotation, config or checkpoint file, a truncated checkpoint, a
malformed --method, a stored row computed with other settings) ends in one line on stderr and exit
status 2; --debug shows the traceback.
"""
import argparse
import logging
import os
import os.path as osp

# Nothing is fetched at run time: albumentations (imported by mmagic) asks PyPI for its newest
# version when it is imported, unless told not to.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from semillie_mm import detection  # noqa: E402
from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
from semillie_mm.utils.checks import check_checkpoint, load_config, require_dir, require_file  # noqa: E402
from semillie_mm.utils.cli import UserError, run_cli  # noqa: E402

ANN_HINT = 'make it with tools/dataset_converters/visdrone2coco.py'


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Faster R-CNN on enhanced VisDrone night images (Semi-LLIE Table VII)',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--images', required=True, help='folder of the night images')
    parser.add_argument('--ann-dir', help='folder with train.json and test.json '
                        '(tools/dataset_converters/visdrone2coco.py)')
    parser.add_argument('--train-ann', help='train COCO JSON (default ANN_DIR/train.json)')
    parser.add_argument('--test-ann', help='test COCO JSON (default ANN_DIR/test.json)')
    parser.add_argument('--method', action='append', default=[], metavar='NAME=SPEC',
                        help='NAME=none | NAME=folder:DIR | NAME=semillie:CONFIG[,CHECKPOINT] '
                        '(repeat; default: Original=none)')
    parser.add_argument('--work-dir', default='work_dirs/detection_study')
    parser.add_argument('--det-config', default=detection.DEFAULT_DET_CONFIG,
                        help='mmdet config: a file, or the name of one shipped in '
                        'semillie_mm/detection/configs/ (default: the paper\'s, from scratch)')
    parser.add_argument('--epochs', type=int, help='override the number of epochs (12)')
    parser.add_argument('--img-scale', type=int, nargs=2, metavar=('W', 'H'),
                        help='override the Resize scale (1333 800)')
    parser.add_argument('--batch-size', type=int, help='train images per GPU (2)')
    parser.add_argument('--num-workers', type=int, help='data-loader workers (2)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--pretrained-backbone', help='local ImageNet ResNet-50 checkpoint '
                        '(not the paper: it trains from scratch)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='mmengine-style overrides of the detector config, key=value')
    parser.add_argument('--enhance-device', default=None,
                        help='device of the Semi-LLIE enhancer (default cuda if available)')
    parser.add_argument('--use-student', action='store_true',
                        help='enhance with the student instead of the mean teacher')
    parser.add_argument('--tile-size', type=int, default=512,
                        help='tile side for enhancing large images (0: whole image)')
    parser.add_argument('--enhance-ext', default=None,
                        help='extension of the enhanced images (default: as the input)')
    parser.add_argument('--force', action='store_true', help='recompute finished rows')
    parser.add_argument('--launcher', choices=('none', 'pytorch', 'slurm', 'mpi'),
                        default='none',
                        help='job launcher: with pytorch (torchrun), slurm or mpi the processes '
                        'share the enhancement of the night images; rank 0 then trains the '
                        'detectors (default: none)')
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if not args.train_ann or not args.test_ann:
        if not args.ann_dir:
            parser.error('give --ann-dir or both --train-ann and --test-ann')
        args.train_ann = args.train_ann or osp.join(args.ann_dir, 'train.json')
        args.test_ann = args.test_ann or osp.join(args.ann_dir, 'test.json')
    args.det_config = detection.find_detector_config(args.det_config)
    return args


def check_inputs(args, methods) -> None:
    """Check every file and folder the study will read, with one-line errors.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.
        methods (list[detection.Method]): The parsed methods.

    Raises:
        UserError: The first problem found.
    """
    require_dir(args.images, 'night image folder (--images)')
    require_file(args.train_ann, 'train annotation file', ANN_HINT)
    require_file(args.test_ann, 'test annotation file', ANN_HINT)
    load_config(args.det_config)
    if args.pretrained_backbone:
        require_file(args.pretrained_backbone, '--pretrained-backbone checkpoint')
    for m in methods:
        if m.kind == 'folder':
            require_dir(m.path, f'[{m.name}] folder of enhanced images')
        elif m.kind == 'semillie':
            cfg = load_config(m.config)
            if 'model' not in cfg:
                raise UserError(f'[{m.name}] config {m.config} has no `model`')
            if m.checkpoint is not None:
                check_checkpoint(m.checkpoint, f'[{m.name}] checkpoint')


def main(argv=None) -> int:
    """Run the study.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        int: Exit status (0 when a table was written).
    """
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s: '
                        '%(message)s')
    args = parse_args(argv)
    set_trust_checkpoints(args.trust_checkpoint)
    try:
        methods = [detection.parse_method(s) for s in (args.method or ['Original=none'])]
    except ValueError as err:
        raise UserError(f'--method {err}') from err
    check_inputs(args, methods)
    device = args.enhance_device
    if device is None:
        import torch
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    from semillie_mm.apis.checks import check_device
    check_device(device, '--enhance-device')
    rank = 0
    if args.launcher != 'none':
        from semillie_mm.apis import sharding
        try:
            rank, world_size, device = sharding.init_distributed(args.launcher, device)
        except ValueError as err:
            raise UserError(str(err)) from err
        sharding.set_process_threads()
        sharding.prefix_log_with_rank(rank, world_size)
    try:
        results = detection.run_study(
            methods, args.images, args.train_ann, args.test_ann, args.work_dir,
            det_config=args.det_config, epochs=args.epochs, img_scale=args.img_scale,
            batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
            pretrained_backbone=args.pretrained_backbone, cfg_options=args.cfg_options,
            enhance_device=device, use_teacher=not args.use_student, tile_size=args.tile_size,
            enhance_ext=args.enhance_ext, force=args.force)
    except (detection.StoredResultMismatch, FileNotFoundError) as err:
        raise UserError(str(err)) from err
    if args.launcher != 'none':
        sharding.end_distributed()
        if rank != 0:
            return 0  # its share of the enhancement is done; rank 0 trains
    with open(osp.join(args.work_dir, 'table_vii.md'), encoding='utf-8') as f:
        print(f.read())
    return 0 if results else 1


if __name__ == '__main__':
    run_cli(main)
