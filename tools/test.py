"""Test (evaluate) a checkpoint with a semillie-mm (or any MMagic) config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.json]
                         [--save-outputs DIR | --no-save] [--dataset-name NAME]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Prints the metrics in the layout of the paper's Table I (the metrics the test
evaluator computes, e.g. FID/NIQE/LOE on an unpaired set, PSNR/SSIM on a paired
one), saves the enhanced images (PNG, default WORK_DIR/enhanced) and, with
``--out``, writes the numbers as JSON (``{metric: value}``).

A user's mistake (a missing or broken config or checkpoint, a missing weights
file, a wrong option) ends in one line on stderr and exit status 2; ``--debug``
or ``SEMILLIE_DEBUG=1`` shows the traceback (:mod:`semillie_mm.utils.cli`).
"""
import os
import os.path as osp

import semillie_mm  # noqa: E402,F401
from semillie_mm.apis import write_image_atomic  # noqa: E402
from semillie_mm.evaluation import format_table1, group_metrics  # noqa: E402
from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
from semillie_mm.utils.checks import check_checkpoint, check_config_files, load_config  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402
from semillie_mm.utils.fileio import atomic_write_json  # noqa: E402

from mmengine.config import DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402


class SaveEnhancedImagesHook(Hook):
    """Write each test output (``output.pred_img``) as a PNG; keep the metrics.

    mmagic hands predictions as ``C x H x W`` tensors in 0..255, BGR after
    ``DataPreprocessor.destruct``. Files are named after the dataset's
    ``key`` (input path relative to its folder, without extension) or the
    input file name, and written atomically. The metrics passed to
    ``after_test_epoch`` are kept in ``self.metrics`` (mmagic's
    ``MultiTestLoop.run`` does not return them).

    Args:
        out_dir (str, optional): Output folder; None saves nothing.
    """

    priority = 'LOW'

    def __init__(self, out_dir=None):
        self.out_dir = out_dir
        self.count = 0
        self.metrics = None

    def before_test(self, runner) -> None:
        """Map input paths to the datasets' ``key`` (relative path without
        extension), which PackInputs does not carry into the data samples."""
        self.keys = {}
        loop = runner.test_loop
        loaders = getattr(loop, 'dataloaders', None) or [
            getattr(loop, 'dataloader', None)
        ]
        for loader in loaders:
            dataset = getattr(loader, 'dataset', None)
            if dataset is None or not hasattr(dataset, 'get_data_info'):
                continue
            for i in range(len(dataset)):
                info = dataset.get_data_info(i)
                if isinstance(info.get('key'), str) and isinstance(
                        info.get('img_path'), str):
                    self.keys[osp.abspath(info['img_path'])] = info['key']

    def after_test_epoch(self, runner, metrics=None) -> None:
        """Keep the metrics."""
        self.metrics = metrics

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        """Save the batch's enhanced images."""
        import numpy as np
        if self.out_dir is None:
            return
        for i, sample in enumerate(outputs or []):
            pred = sample.output.pred_img
            img = pred.detach().cpu().float().clamp(0, 255).round()
            img = img.numpy().astype(np.uint8)
            img = img[0] if img.ndim == 4 else img
            img = img.transpose(1, 2, 0)
            if img.shape[2] == 3:
                img = img[..., ::-1]  # BGR -> RGB for write_image_atomic
            elif img.shape[2] == 1:
                img = img[..., 0]
            meta = sample.metainfo
            path = meta.get('img_path')
            if isinstance(path, list):
                path = path[0]
            key = meta.get('key')
            if not isinstance(key, str) and isinstance(path, str):
                key = getattr(self, 'keys', {}).get(
                    osp.abspath(path),
                    osp.splitext(osp.basename(path))[0])
            if not isinstance(key, str):
                key = f'{batch_idx:06d}_{i}'

            write_image_atomic(osp.join(self.out_dir, key + '.png'), img)
            self.count += 1


def _dataset_name(cfg) -> str:
    """Row title: the basename of the test set's data_root, else the config."""
    loader = cfg.get('test_dataloader', None)
    loaders = loader if isinstance(loader, (list, tuple)) else [loader]
    for ld in loaders:
        ds = (ld or {}).get('dataset', {}) or {}
        root = ds.get('data_root') if hasattr(ds, 'get') else None
        if root:
            return osp.basename(osp.normpath(root))
    return osp.splitext(osp.basename(cfg.filename or 'test'))[0]


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    parser = ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and outputs')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--save-outputs',
        default=None,
        help='folder for the enhanced images (default: WORK_DIR/enhanced)')
    parser.add_argument(
        '--no-save', action='store_true', help='do not save the images')
    parser.add_argument(
        '--dataset-name',
        default=None,
        help='row title of the table (default: the test data_root name)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    add_trust_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    """Entry point: build the Runner, load the checkpoint, run the test loop.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        dict: the metrics.

    Raises:
        UserError: a missing or broken config or checkpoint, a weights file
            named in the model or test evaluator that does not exist, a file
            or folder of the config (e.g. a data root) that does not exist.
    """
    args = parse_args(argv)
    set_trust_checkpoints(args.trust_checkpoint)
    cfg = load_config(args.config)
    check_checkpoint(args.checkpoint)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    check_config_files(cfg, ('model', 'test_evaluator'), args.config)
    if args.launcher != 'none':
        from train import _use_gloo_without_cuda
        _use_gloo_without_cuda(cfg)

    from mmengine.runner import Runner
    out_dir = None
    if not args.no_save:
        out_dir = args.save_outputs or osp.join(cfg.work_dir, 'enhanced')
    saver = SaveEnhancedImagesHook(out_dir)
    try:
        runner = Runner.from_cfg(cfg)
        runner.register_hook(saver)
        metrics = runner.test()
    except FileNotFoundError as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise UserError(f'{lines[0]} (named by {args.config} or '
                        '--cfg-options); fix the path') from err
    if metrics is None:
        metrics = saver.metrics or {}
    numbers = {}
    for k, v in metrics.items():
        try:
            numbers[k] = float(v)
        except (TypeError, ValueError):
            continue
    table = format_table1(
        group_metrics(numbers, args.dataset_name or _dataset_name(cfg)))
    print(table)
    if out_dir is not None:
        print(f'saved {saver.count} enhanced images to {out_dir}')
    if args.out:
        atomic_write_json(args.out, numbers, indent=2)
    return metrics


if __name__ == '__main__':
    run_cli(main)
