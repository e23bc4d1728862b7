"""Export an enhancement network to ONNX (runs in plain ONNX Runtime).

    python tools/deployment/export_onnx.py [CONFIG CHECKPOINT] OUT.onnx
        [--opset 17] [--dynamic] [--network teacher|student]
        [--shape H W] [--no-check] [--trust-checkpoint] [--debug]

Without CONFIG CHECKPOINT the model shipped in the package is exported. The
selective scans are written in standard ONNX operators (one Loop per SS2D),
so no custom operator is needed. Without --dynamic the model takes
(1, 3, H, W) inputs of --shape only (default 64 64); with it any batch and
size. After the export the file is checked: onnx.checker, and ONNX
Runtime's output against PyTorch's on random images of odd sizes (max
absolute difference <= 1e-4). Run the model with ``tools/enhance.py
OUT.onnx INPUT OUTPUT``; see docs/enhance.md, section "ONNX".
"""
import os

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    """Parse the command line (1 or 3 positional arguments)."""
    parser = ArgumentParser(
        usage='%(prog)s [CONFIG CHECKPOINT] OUT.onnx [--opset N] '
        '[--dynamic] [--network teacher|student] [--shape H W] [--no-check]',
        description='Export a semillie-mm enhancement network to ONNX')
    parser.add_argument('paths', nargs='*',
                        metavar='[CONFIG CHECKPOINT] OUT.onnx')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset, >= 12 (default: 17)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--network', default='teacher',
                        choices=('teacher', 'student'))
    parser.add_argument('--shape', type=int, nargs=2, default=(64, 64),
                        metavar=('H', 'W'),
                        help='input size of a static model (default: 64 64)')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the ONNX Runtime vs PyTorch check')
    add_trust_argument(parser)
    args = parser.parse_intermixed_args(argv)
    if len(args.paths) not in (1, 3):
        parser.error('expected OUT.onnx or CONFIG CHECKPOINT OUT.onnx, got '
                     f'{len(args.paths)} positional arguments')
    paths = [None, None] + args.paths if len(args.paths) == 1 else args.paths
    args.config, args.checkpoint, args.out = paths
    return args


def main(argv=None) -> dict:
    """Run the tool; returns the summary of
    :func:`semillie_mm.deployment.onnx_export.export_model_onnx`."""
    args = parse_args(argv)
    if not args.out.endswith('.onnx'):
        raise UserError(f'{args.out}: the output must be a .onnx file')
    if args.opset < 12:
        raise UserError(f'--opset {args.opset}: must be >= 12')
    if min(args.shape) < 1:
        raise UserError(f'--shape {args.shape[0]} {args.shape[1]}: must be '
                        '>= 1')
    set_trust_checkpoints(args.trust_checkpoint)
    from semillie_mm.apis.checks import shipped_model_checked
    from semillie_mm.utils.checks import check_checkpoint, load_config
    if args.config is None:
        args.config, args.checkpoint = shipped_model_checked()
    load_config(args.config)
    if args.checkpoint is not None:
        check_checkpoint(args.checkpoint)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise UserError(f'{err.name} is not installed: pip install -r '
                        'requirements/deployment.txt') from err
    from semillie_mm.deployment.onnx_export import export_model_onnx
    try:
        res = export_model_onnx(args.config, args.checkpoint, args.out,
                                network=args.network, opset=args.opset,
                                dynamic=args.dynamic, shape=args.shape,
                                check=not args.no_check)
    except (KeyError, RuntimeError) as err:
        msg = str(err).strip('\'"').splitlines()[0][:300]
        raise UserError(f'checkpoint {args.checkpoint} does not fit the '
                        f'model of {args.config} ({msg})') from err
    kind = 'dynamic' if args.dynamic else \
        f'static {args.shape[0]}x{args.shape[1]}'
    print(f'wrote {args.out} ({res["bytes"] / 1e6:.2f} MB, {args.network}, '
          f'{kind}, opset {args.opset})')
    if 'max_abs_err' in res:
        print(f'checked: onnx.checker passes; ONNX Runtime vs PyTorch max '
              f'abs error {res["max_abs_err"]:.2e} at '
              f'{", ".join(res["per_shape"])}')
    return res


if __name__ == '__main__':
    run_cli(main)
