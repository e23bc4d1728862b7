"""Parameters and FLOPs of a config's network, selective scans included.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--part KEY]
                                             [--cfg-options k=v ...]

Counts the network that runs at test time (``model.generator`` of a Semi-LLIE
config; ``--part`` picks another sub-network of ``model``) on one
``1 x 3 x H x W`` input (default 256 x 256). The layers are counted by
mmengine's ``FlopAnalyzer`` (fvcore's counter) and every selective-scan call by
an analytic formula registered as the counter's handle for the scan; one
multiply-add is one FLOP (the figures are MACs, fvcore's convention). See
:mod:`semillie_mm.utils.flops` for what is counted.
"""

from semillie_mm.utils.checks import load_config  # noqa: E402
from semillie_mm.utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: the parsed arguments.
    """
    from mmengine.config import DictAction
    parser = ArgumentParser(
        description='Parameters and FLOPs (MACs) with the selective scans '
        'counted')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[256, 256],
        metavar=('H', 'W'), help='input height and width (256 256)')
    parser.add_argument(
        '--part', default=None,
        help='sub-network of cfg.model to count (default: generator)')
    parser.add_argument(
        '--in-channels', type=int, default=3, help='input channels (3)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    return parser.parse_args(argv)


def _fmt(n: float) -> str:
    for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(n) >= scale:
            return f'{n / scale:.3f} {unit}'
    return f'{n:.0f}'


def main(argv=None) -> int:
    """Count and print.

    Args:
        argv (list[str] | None): arguments; None reads ``sys.argv``.

    Returns:
        int: 0.

    Raises:
        UserError: a missing or broken config, a bad shape or part.
    """
    args = parse_args(argv)
    h, w = args.shape
    if h < 1 or w < 1:
        raise UserError(f'--shape {h} {w}: height and width must be positive')
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'model' not in cfg:
        raise UserError(f'config {args.config} has no `model`')
    from semillie_mm.utils.flops import build_model_from_config, count_flops

    import torch
    try:
        net = build_model_from_config(cfg, args.part)
    except KeyError as err:
        if args.part is not None and args.part not in cfg.model:
            raise UserError(
                f'--part {args.part}: cfg.model of {args.config} has no such '
                f'key; choose one of {sorted(cfg.model.keys())}') from err
        raise
    x = torch.rand(1, args.in_channels, h, w)
    res = count_flops(net, (x, ))
    name = args.part or ('generator' if 'generator' in cfg.model else 'model')
    print(f'config: {args.config}')
    print(f'network: {type(net).__name__} (cfg.model'
          f'{"." + name if name != "model" else ""})')
    print(f'input shape: {tuple(x.shape)}')
    print(f'parameters: {_fmt(res["params"])} ({res["params"]:,})')
    print(f'FLOPs (1 multiply-add = 1 FLOP): {_fmt(res["flops"])} '
          f'({res["flops"]:,})')
    print(f'  layers (mmengine FlopAnalyzer): {_fmt(res["flops_layers"])}')
    print(f'  selective scans (analytic, {res["scan_calls"]} calls): '
          f'{_fmt(res["flops_scan"])}')
    return 0


if __name__ == '__main__':
    run_cli(main)
