"""A web demo of a semillie-mm model, in your browser, served from this machine.

    python tools/webui.py [CONFIG [CHECKPOINT]] [--port 7860]
        [--device cpu|cuda] [--host 127.0.0.1] [--allowed-hosts NAME ...]
        [--auth USER:PASSWORD | --auth-file FILE] [--max-upload-mb 50]
        [--max-pixels 24000000] [--max-tile 512] [--queue-size 16]
        [--keep-seconds 600]

Open the printed address, upload a photo, choose the network (teacher /
student) and the tiling, and compare the input with the enhanced image; the
enhanced PNG can be downloaded. Without CONFIG the model shipped in the package
is used (semillie_mm/pretrained/, see MODEL_CARD.md there; the page and the
log say so); with CONFIG but without CHECKPOINT the weights are random (the
page says so). Nothing is fetched from the network. The page is built by
semillie_mm.apis.webui; see docs/enhance.md, "Web demo" and "Web demo under
hostile use" (the limits below).
"""
import argparse
import os
import socket

# Nothing is fetched at run time: albumentations (imported by mmagic) asks PyPI for its newest
# version when it is imported, unless told not to.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

import semillie_mm.apis.webui as webui  # noqa: E402  (gradio not imported)
from semillie_mm.apis.pretrained import DEFAULT_MODEL, MODEL_CARD  # noqa: E402
from semillie_mm.utils.checkpoint import add_trust_argument, set_trust_checkpoints  # noqa: E402
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
    parser.add_argument('--precision', choices=('fp32', 'bf16'),
                        default='fp32',
                        help='bf16: GEMMs and convs in bfloat16, the scan in '
                        'float32, on CPUs with AVX512-BF16 / AMX (else fp32 '
                        'with a notice; default: fp32)')
    lim = parser.add_argument_group(
        'limits and access (docs/enhance.md, "Web demo under hostile use")')
    lim.add_argument('--allowed-hosts', action='append', default=[],
                     metavar='NAME[,NAME...]',
                     help='more host names or addresses the page may be '
                     'reached by (the Host header; others get 400, against '
                     'DNS rebinding); always allowed: localhost, 127.0.0.1, '
                     '::1 and --host; "*" allows any. Repeatable')
    lim.add_argument('--auth', action='append', default=[],
                     metavar='USER:PASSWORD',
                     help='require this login (repeatable; visible to other '
                     'users of this machine in the process list: prefer '
                     '--auth-file)')
    lim.add_argument('--auth-file', action='append', default=[],
                     metavar='FILE',
                     help='require a login from FILE, one USER:PASSWORD a '
                     'line (# comments)')
    lim.add_argument('--max-upload-mb', type=float,
                     default=webui.DEFAULT_MAX_UPLOAD_MB,
                     help='largest upload in MB (10^6 bytes); larger ones get '
                     f'413 (default: {webui.DEFAULT_MAX_UPLOAD_MB})')
    lim.add_argument('--max-pixels', type=int,
                     default=webui.DEFAULT_MAX_PIXELS,
                     help='largest image in pixels, refused from its header '
                     'before decoding; never above SEMILLIE_MAX_PIXELS '
                     f'(default: {webui.DEFAULT_MAX_PIXELS})')
    lim.add_argument('--max-tile', type=int, default=webui.DEFAULT_MAX_TILE,
                     help='largest tile side (tile sizes are clamped to '
                     f'{webui.MIN_TILE}..this); without tiles only images of '
                     'at most this squared pixels are enhanced (default: '
                     f'{webui.DEFAULT_MAX_TILE}, 4.5 GB on the CPU with the '
                     'default model; raise it on a GPU)')
    lim.add_argument('--queue-size', type=int,
                     default=webui.DEFAULT_QUEUE_SIZE,
                     help='requests that may wait while one is enhanced; '
                     'more are told the queue is full (default: '
                     f'{webui.DEFAULT_QUEUE_SIZE})')
    lim.add_argument('--keep-seconds', type=int,
                     default=webui.DEFAULT_KEEP_SECONDS,
                     help='uploads, results and PNGs to download are deleted '
                     'after this many seconds, and all when the server '
                     f'stops (default: {webui.DEFAULT_KEEP_SECONDS})')
    add_trust_argument(parser)
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


def check_limits(args) -> None:
    """Fail with one line on a limit out of range.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Raises:
        UserError: A limit out of range.
    """
    import math
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise UserError(f'--max-upload-mb {args.max_upload_mb}: must be > 0')
    for name, low in (('max_pixels', 1), ('max_tile', webui.MIN_TILE),
                      ('queue_size', 1), ('keep_seconds', 1)):
        if getattr(args, name) < low:
            raise UserError(f'--{name.replace("_", "-")} '
                            f'{getattr(args, name)}: must be >= {low}')


def main(argv=None) -> int:
    """Run the tool.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Returns:
        int: Exit status.
    """
    args = parse_args(argv)
    set_trust_checkpoints(args.trust_checkpoint)
    check_port(args.host, args.port)
    check_limits(args)
    try:
        auth = webui.parse_auth(args.auth, args.auth_file)
    except OSError as err:
        raise UserError(f'--auth-file {err.filename}: {err.strerror}'
                        ) from err
    except ValueError as err:
        raise UserError(str(err)) from err
    allowed = [name for value in args.allowed_hosts
               for name in value.split(',') if name.strip()]
    from semillie_mm.apis.checks import (
        build_inferencer_checked,
        check_device,
        shipped_model_checked,
    )
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
        show_progress=False, precision=args.precision)
    demo = webui.build_demo(
        inferencer, args.checkpoint, shipped=shipped,
        max_pixels=args.max_pixels, max_tile=args.max_tile,
        queue_size=args.queue_size, keep_seconds=args.keep_seconds)
    app = webui.build_app(demo, host=args.host, allowed_hosts=allowed,
                          max_upload_mb=args.max_upload_mb, auth=auth)
    names = sorted(webui.allowed_host_names(args.host, allowed))
    print(f'answering to Host names: {", ".join(names)} (more: '
          '--allowed-hosts)' + ('' if auth else '; no login (--auth-file)'),
          flush=True)
    webui.serve(app, args.host, args.port)
    return 0


if __name__ == '__main__':
    run_cli(main)
