"""A web demo of a semillie-mm model, in your browser, served from this machine.

    python tools/webui.py [CONFIG [CHECKPOINT]] [--port 7860]
        [--device cpu|cuda] [--host 127.0.0.1] [--debug]

Open the printed address, upload a photo, choose the network (teacher /
student) and the tiling, and compare the input with the enhanced image; the
enhanced PNG can be downloaded. Without CONFIG the model shipped in the package
is used (semillie_mm/pretrained/, see MODEL_CARD.md there; the page and the
log say so); with CONFIG but without CHECKPOINT the weights are random (the
page says so). Nothing is fetched from the network. The page is built by
semillie_mm.apis.webui; see docs/enhance.md.
"""
import argparse
import os
import socket

# Nothing is fetched at run time: albumentations (imported by mmagic) asks PyPI for its newest
# version when it is imported, unless told not to.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

from semillie_mm.apis.pretrained import (DEFAULT_MODEL,  # noqa: E402
                                         MODEL_CARD)
from semillie_mm.utils.cli import UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    """Parse the command line.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Web demo of a semillie-mm enhancement model')
    parser.add_argument('config', nargs='?', default=None,
                        help='config file of the model (default: the model '
                        f'shipped in the package, {DEFAULT_MODEL}; see '
                        f'{MODEL_CARD})')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (default: random weights)')
    parser.add_argument('--port', type=int, default=7860,
                        help='port (default: 7860)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='interface to listen on (default: 127.0.0.1, '
                        'this machine only; 0.0.0.0 for every interface)')
    parser.add_argument('--device', default='cpu',
                        help='cpu, cuda or cuda:N (default: cpu)')
    parser.add_argument('--student', action='store_true',
                        help='preselect the student (default: the teacher)')
    return parser.parse_args(argv)


def check_port(host: str, port: int) -> None:
    """Fail with one line when the port cannot be listened on.

    Args:
        host (str): Interface.
        port (int): Port.

    Raises:
        UserError: Port out of range or in use.
    """
    if not 0 < port < 65536:
        raise UserError(f'--port {port}: must be in 1..65535')
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise UserError(f'--port {port}: cannot listen on {host}:{port} '
                            f'({err.strerror}); choose another --port'
                            ) from err


def main(argv=None) -> int:
    """Run the tool.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        int: Exit status.
    """
    args = parse_args(argv)
    check_port(args.host, args.port)
    from semillie_mm.apis.checks import (build_inferencer_checked,
                                         check_device, shipped_model_checked)
    check_device(args.device)
    shipped = None
    if args.config is None:
        args.config, args.checkpoint = shipped_model_checked(DEFAULT_MODEL)
        shipped = DEFAULT_MODEL
        print(f'no config given: using the shipped model {DEFAULT_MODEL} '
              f'({args.checkpoint}); see {MODEL_CARD}', flush=True)
    inferencer = build_inferencer_checked(
        args.config, args.checkpoint, device=args.device,
        network='student' if args.student else 'teacher',
        show_progress=False)
    from semillie_mm.apis.webui import build_app, build_demo, serve
    serve(build_app(build_demo(inferencer, args.checkpoint, shipped=shipped)),
          args.host, args.port)
    return 0


if __name__ == '__main__':
    run_cli(main)
