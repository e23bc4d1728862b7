"""Turn a training run into the model shipped with the package.

    python tools/deployment/export_shipped.py CONFIG CHECKPOINT
        [--name semillie_target] [--out-dir semillie_mm/pretrained]

Writes ``OUT_DIR/NAME.py`` (the config, resolved: no ``_base_``) and
``OUT_DIR/NAME_teacher.pth`` (the EMA teacher's generator, float32, readable
with ``torch.load(weights_only=True)``), which ``tools/enhance.py INPUT
OUTPUT``, ``tools/webui.py`` and ``SemiLLIEInferencer('NAME')`` use. The
checkpoint is unpickled in full: pass your own training run's file only.
"""
import argparse
import os.path as osp

from semillie_mm.utils.cli import UserError, run_cli  # noqa: E402


def main(argv=None) -> tuple:
    """Run the tool.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        tuple[str, str]: The config and weights written.
    """
    from semillie_mm.apis.pretrained import DEFAULT_MODEL, export_shipped_model
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--name', default=DEFAULT_MODEL)
    p.add_argument('--out-dir', default=None,
                   help='default: semillie_mm/pretrained')
    args = p.parse_args(argv)
    for what, path in (('config', args.config),
                       ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise UserError(f'{what} {path} does not exist')
    cfg, weights = export_shipped_model(args.config, args.checkpoint,
                                        args.name, args.out_dir)
    print(f'shipped model {args.name}: {cfg} + {weights}')
    return cfg, weights


if __name__ == '__main__':
    run_cli(main)
