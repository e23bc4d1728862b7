"""Train a model with a semillie-mm (or any MMagic) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Follows mmagic's ``tools/train.py`` conventions; ``--resume`` alone resumes from the
latest checkpoint in the work dir, ``--resume PATH`` from that file.

A user's mistake (a missing or broken config, checkpoint or weights file, a
wrong option) ends in one line on stderr and exit status 2; ``--debug`` or
``SEMILLIE_DEBUG=1`` shows the traceback (:mod:`semillie_mm.utils.cli`).
"""
import os
import os.path as osp

import semillie_mm  # noqa: E402,F401  (compat fixes + registration)
from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
from semillie_mm.utils.checks import check_checkpoint, check_config_files, load_config  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    parser = ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume training: alone, from the latest checkpoint of the work '
        'dir; with a path, from that checkpoint')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic mixed precision training (CUDA)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR by the total batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs; a list is '
        'key="[a,b]" or key=a,b, nested lists/tuples key="[(a,b),(c,d)]" '
        '(quotes required, no spaces)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    add_trust_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _set_amp(optim_wrapper: dict):
    """Switch an optim_wrapper config (single or per-module dict) to AMP."""
    if 'constructor' in optim_wrapper or 'type' not in optim_wrapper and all(
            isinstance(v, dict) for v in optim_wrapper.values()):
        for key, sub in optim_wrapper.items():
            if isinstance(sub, dict) and key != 'constructor':
                _set_amp(sub)
        return
    if optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print('AMP training is already enabled in your config.')
        return
    optim_wrapper['type'] = 'AmpOptimWrapper'
    optim_wrapper.setdefault('loss_scale', 'dynamic')


def build_cfg(args) -> Config:
    """Load the config and apply the command-line options.

    Args:
        args (argparse.Namespace): from :func:`parse_args`.

    Returns:
        Config: the final config.

    Raises:
        UserError: a missing or broken config, ``--resume``/``load_from``
            checkpoint or weights file named in the model/val evaluator.
    """
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        _set_amp(cfg.optim_wrapper)

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise UserError(f'--auto-scale-lr: {args.config} has no '
                            '"auto_scale_lr.base_batch_size"; add it or drop '
                            'the option')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_checkpoint(args.resume, '--resume checkpoint')
        cfg.resume = True
        cfg.load_from = args.resume
    elif isinstance(cfg.get('load_from'), str) and \
            '://' not in cfg.load_from:
        check_checkpoint(cfg.load_from, f'load_from checkpoint of {args.config}')
    check_config_files(cfg, ('model', 'val_evaluator'), args.config)

    if args.launcher != 'none':
        _use_gloo_without_cuda(cfg)
    return cfg


def _use_gloo_without_cuda(cfg: Config):
    """NCCL needs GPUs: distributed runs on CPU-only machines use gloo."""
    import torch
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        print('No CUDA device: using the gloo backend for distributed '
              'training on CPU.')
        dist_cfg['backend'] = 'gloo'


def main(argv=None):
    """Entry point: build the Runner from the config and train.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Raises:
        UserError: a user's mistake (see :func:`build_cfg`); a file or folder
            the config names (e.g. a data root) that does not exist.
    """
    args = parse_args(argv)
    set_trust_checkpoints(args.trust_checkpoint)
    cfg = build_cfg(args)
    from mmengine.runner import Runner
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    except FileNotFoundError as err:
        raise UserError(f'{_one_line(err)} (named by {args.config} or '
                        '--cfg-options); fix the path') from err
    _end_distributed()


def _end_distributed() -> None:
    """Tear the process group down after a distributed training.

    mmengine leaves it to interpreter exit, where the backend's threads are
    destroyed in no defined order: a 2-process gloo run on CPU once ended in
    "terminate called without an active exception" (SIGABRT of rank 0) after
    training had finished. Every rank waits for the others, then the group
    is destroyed explicitly.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _one_line(err: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


if __name__ == '__main__':
    run_cli(main)
