"""A local web demo of the enhancer (gradio), served without the network.

:func:`build_demo` makes the page: upload a photo, choose the network
(teacher / student) and the tiling, see the input and the enhanced image side
by side, download the enhanced PNG. :func:`build_app` mounts it in a FastAPI
app whose HTML page is stripped of the two external references gradio's page
template carries (a CDN script only used when embedded in an iframe, and
``preconnect`` hints to Google Fonts); the theme uses the fonts gradio ships.
So the browser fetches nothing but the local server. ``tools/webui.py`` is the
command line; see docs/enhance.md, section "Web demo".

gradio is imported only by these functions; gradio's usage analytics are
turned off (``GRADIO_ANALYTICS_ENABLED=False``) before it is imported.

The page is meant to survive hostile visitors (docs/enhance.md, "Web demo
under hostile use"): uploads and request bodies are size-limited (413), images
over a pixel cap are refused from their header, the tile size is clamped and
untiled processing is allowed only for images no larger than the largest
tile, one image is enhanced at a time with a bounded queue, the files a
request leaves (gradio's cache, our PNGs) are deleted, requests whose
``Host`` header is not on an allow-list are refused (DNS rebinding), input
files named by URL are refused (gradio would download them), and a login can
be required.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
import tempfile
import time
import weakref
from typing import Iterable, List, Optional, Sequence, Set, Tuple

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

# <script src="http(s)://..."></script> and <link ... href="http(s)://...">
_EXTERNAL_SCRIPT = re.compile(
    rb'<script\b[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', re.I)
_EXTERNAL_LINK = re.compile(rb'<link\b[^>]*\bhref="https?://[^"]*"[^>]*/?>',
                            re.I)

TITLE = 'Semi-LLIE low-light enhancement'

#: Smallest tile side the page accepts.
MIN_TILE = 64
#: Default largest tile side. Memory grows with the tile's pixels: the
#: default SemiLLIENet peaks at 4.5 GB on a 512 x 512 input on the CPU
#: (docs/enhance.md, "Tiling and memory"). Untiled processing is allowed
#: only up to ``max_tile ** 2`` pixels, the same memory as one tile.
DEFAULT_MAX_TILE = 512
#: Default largest image, in pixels (a 6000 x 4000 photo; about 1.2 GB of
#: CPU buffers in the tiled path). Never above ``SEMILLIE_MAX_PIXELS``.
DEFAULT_MAX_PIXELS = 24_000_000
#: Default largest upload, in megabytes (10^6 bytes).
DEFAULT_MAX_UPLOAD_MB = 50
#: Default number of requests waiting in the queue (one runs at a time).
DEFAULT_QUEUE_SIZE = 16
#: Default age, in seconds, after which the files of a request (upload,
#: shown image, PNG to download) are deleted.
DEFAULT_KEEP_SECONDS = 600
#: Largest body of a request other than an upload (the page's JSON calls
#: are a few kilobytes).
MAX_REQUEST_BYTES = 1 << 20
#: Multipart overhead allowed on top of the upload limit.
_UPLOAD_OVERHEAD = 64 << 10
#: Host names always allowed in the ``Host`` header.
LOCAL_HOSTS = ('localhost', '127.0.0.1', '::1')
_ANY_INTERFACE = ('0.0.0.0', '::', '')
_OUTPUT_PREFIX = 'enhanced_'


def strip_external_references(html: bytes) -> bytes:
    """Remove ``<script src=http...>`` and ``<link href=http...>`` tags.

    Args:
        html (bytes): An HTML page.

    Returns:
        bytes: The page without references to other hosts in those tags.
    """
    return _EXTERNAL_LINK.sub(b'', _EXTERNAL_SCRIPT.sub(b'', html))


def _offline_theme():
    """gradio's default theme with the fonts gradio ships (its default
    font is fetched from Google Fonts)."""
    import gradio as gr
    from gradio.themes.utils.fonts import LocalFont
    return gr.themes.Default(
        font=[LocalFont('IBM Plex Sans'), 'ui-sans-serif', 'system-ui',
              'sans-serif'],
        font_mono=[LocalFont('IBM Plex Mono'), 'ui-monospace', 'monospace'])


def clamp_tile_size(value, max_tile: int = DEFAULT_MAX_TILE) -> int:
    """The tile side a request asked for, clamped to ``[MIN_TILE, max_tile]``.

    Args:
        value (int | float | str): What the page (or a client) sent.
        max_tile (int): The largest tile side allowed.

    Returns:
        int: The tile side.

    Raises:
        ValueError: ``value`` is not a finite number.
    """
    try:
        side = int(round(float(value)))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f'tile size must be a number, got {value!r}')
    return min(max(side, MIN_TILE), max(int(max_tile), MIN_TILE))


def _pixel_limit(max_pixels: Optional[int]) -> int:
    """``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`), never above
    ``SEMILLIE_MAX_PIXELS``."""
    from .image_io import max_image_pixels
    cap = max_image_pixels()
    return cap if max_pixels is None else min(int(max_pixels), cap)


def _remove_old_outputs(out_dir: str) -> None:
    """Delete the PNGs earlier requests left in ``out_dir`` (gradio has
    copied each into its cache before the request ended)."""
    for path in glob.glob(osp.join(out_dir, _OUTPUT_PREFIX + '*.png')):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _load_upload(img, max_pixels: int, untiled_max: Optional[int]):
    """The uploaded image (a path or an array) as 8-bit RGB, refused over
    ``max_pixels`` (from the header, before decoding) and, when untiled,
    over ``untiled_max`` pixels."""
    import gradio as gr
    import numpy as np

    from .image_io import ImageTooLargeError, check_image_size, read_image, to_rgb8

    def refuse(w: int, h: int) -> None:
        if w * h > max_pixels:
            raise gr.Error(
                f'Image too large: {w} x {h} = {w * h:,} pixels; this demo '
                f'takes at most {max_pixels:,} pixels.')
        if untiled_max is not None and w * h > untiled_max:
            raise gr.Error(
                f'Image too large to enhance without tiles: {w} x {h} = '
                f'{w * h:,} pixels; untiled, this demo takes at most '
                f'{untiled_max:,} pixels. Tick "Tile large images".')

    if isinstance(img, (str, os.PathLike)):
        try:
            size = check_image_size(str(img))
            if size is not None:
                refuse(*size)
            arr = read_image(str(img))
        except (ImageTooLargeError, ValueError) as e:
            raise gr.Error(f'Cannot use this image: {e}')
    else:
        arr = np.asarray(img)
        if arr.ndim < 2:
            raise gr.Error('Cannot use this image: not a picture.')
    refuse(arr.shape[1], arr.shape[0])
    return to_rgb8(arr)


def enhance_for_demo(inferencer, img, network: str = 'teacher',
                     tile: bool = True, tile_size: int = 512,
                     out_dir: Optional[str] = None,
                     max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                     max_tile: int = DEFAULT_MAX_TILE):
    """What the page's button does.

    The request is checked before any pixel is decoded: an image file of
    more than ``max_pixels`` pixels, or, untiled, of more than
    ``max_tile ** 2``, is refused from its header with a message on the
    page; the tile side is clamped to ``[MIN_TILE, max_tile]``.

    Args:
        inferencer (SemiLLIEInferencer): The inferencer.
        img (str | np.ndarray | None): The uploaded image: a file (as the
            page hands it over) or an array; used as 8-bit RGB.
        network (str): ``'teacher'`` or ``'student'``.
        tile (bool): Tile images larger than ``tile_size``.
        tile_size (int): Tile side, clamped; the overlap is
            ``tile_size // 8``.
        out_dir (str, optional): Where the PNG is written (default: a new
            temporary folder). PNGs of earlier calls there are deleted.
        max_pixels (int, optional): The largest image; never above
            ``SEMILLIE_MAX_PIXELS``. None: ``SEMILLIE_MAX_PIXELS``.
        max_tile (int): The largest tile side; also the largest side of
            the square that untiled images must fit in pixels.

    Returns:
        tuple: The enhanced image (8-bit RGB), the path of its PNG, a status
        line.

    Raises:
        gradio.Error: No image, an image refused, a bad network name or tile
            size (shown on the page).
    """
    import gradio as gr

    from .image_io import write_image_atomic
    if img is None:
        raise gr.Error('Upload a photo first.')
    networks = ('teacher', 'student') if getattr(
        inferencer, 'has_teacher', True) else ('teacher', )
    if network not in networks:
        raise gr.Error(f'Unknown network {network!r}; choose '
                       f'{" or ".join(networks)}.')
    try:
        tile_size = clamp_tile_size(tile_size, max_tile)
    except ValueError as e:
        raise gr.Error(str(e))
    tile = bool(tile)
    max_tile = max(int(max_tile), MIN_TILE)
    arr = _load_upload(img, _pixel_limit(max_pixels),
                       None if tile else max_tile * max_tile)
    start = time.time()
    res = inferencer(arr, network=network,
                     tile_size=tile_size if tile else None,
                     tile_overlap=max(tile_size // 8, 1) if tile else 0)
    out = res['predictions'][0]
    seconds = time.time() - start
    if out_dir:
        _remove_old_outputs(out_dir)
    out_dir = out_dir or tempfile.mkdtemp(prefix='semillie_webui_')
    path = osp.join(out_dir, f'{_OUTPUT_PREFIX}{int(start * 1000)}.png')
    write_image_atomic(path, out)
    h, w = out.shape[:2]
    status = (f'{w}x{h} enhanced by the {network} in {seconds:.1f} s'
              + (f' (tiles of {tile_size})' if tile and max(h, w) > tile_size
                 else ''))
    return out, path, status


def build_demo(inferencer, checkpoint: Optional[str] = None,
               shipped: Optional[str] = None, *,
               max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
               max_tile: int = DEFAULT_MAX_TILE,
               queue_size: int = DEFAULT_QUEUE_SIZE,
               keep_seconds: int = DEFAULT_KEEP_SECONDS,
               out_dir: Optional[str] = None):
    """The gradio page.

    One request is enhanced at a time (``concurrency_limit=1``); at most
    ``queue_size`` wait, further ones are told the queue is full. Every
    ``min(keep_seconds, 60)`` seconds gradio deletes the files of this page
    (uploads, shown images, PNGs to download) older than ``keep_seconds``
    (``delete_cache``), and all of them when the server stops; the PNG a
    request writes into ``out_dir`` is deleted by the next request, and
    ``out_dir`` when the process exits if it was made here.

    Args:
        inferencer (SemiLLIEInferencer): The inferencer.
        checkpoint (str, optional): Its checkpoint, named on the page.
        shipped (str, optional): The name of the shipped model it runs
            (:mod:`~semillie_mm.apis.pretrained`), said on the page; default
            the inferencer's ``shipped_model``.
        max_pixels (int, optional): The largest image accepted, in pixels;
            never above ``SEMILLIE_MAX_PIXELS``. None: that variable's.
        max_tile (int): The largest tile side (the slider's end); untiled,
            images of at most ``max_tile ** 2`` pixels are accepted.
        queue_size (int): Requests that may wait.
        keep_seconds (int): Age after which a request's files are deleted.
        out_dir (str, optional): Folder for the enhanced PNGs (default: a
            new temporary folder, removed at exit).

    Returns:
        gradio.Blocks: The page.

    Raises:
        ValueError: A limit out of range.
    """
    import gradio as gr

    from .pretrained import MODEL_CARD
    max_tile = int(max_tile)
    if max_tile < MIN_TILE:
        raise ValueError(f'max_tile must be >= {MIN_TILE}, got {max_tile}')
    if int(queue_size) < 1:
        raise ValueError(f'queue_size must be >= 1, got {queue_size}')
    if int(keep_seconds) < 1:
        raise ValueError(f'keep_seconds must be >= 1, got {keep_seconds}')
    if max_pixels is not None and int(max_pixels) < 1:
        raise ValueError(f'max_pixels must be >= 1, got {max_pixels}')
    shipped = shipped or getattr(inferencer, 'shipped_model', None)
    if inferencer.weights_loaded and shipped:
        name = f' (`{osp.basename(checkpoint)}`)' if checkpoint else ''
        weights = (f'Weights: the model shipped with semillie-mm, '
                   f'`{shipped}`{name}; see `{MODEL_CARD}`.')
    elif inferencer.weights_loaded:
        weights = f'Weights: `{osp.basename(checkpoint or "")}`.'
    else:
        weights = ('**No checkpoint was given: the weights are random, so '
                   'the output means nothing.** Pass a trained checkpoint: '
                   '`python tools/webui.py CONFIG CHECKPOINT`, or no '
                   'config for the model shipped with semillie-mm: '
                   '`python tools/webui.py`.')
    networks = ['teacher', 'student'] if inferencer.has_teacher else [
        'teacher']
    pixel_cap = _pixel_limit(max_pixels)
    keep_seconds = int(keep_seconds)
    with gr.Blocks(title=TITLE, theme=_offline_theme(),
                   analytics_enabled=False,
                   delete_cache=(min(keep_seconds, 60), keep_seconds)
                   ) as demo:
        gr.Markdown(f'# {TITLE}\nUpload a low-light photo and press '
                    '**Enhance**.')
        gr.Markdown(weights, elem_id='weights-note')
        gr.Markdown(f'At most {pixel_cap / 1e6:g} megapixels; untiled, at '
                    f'most {max_tile} x {max_tile} pixels.',
                    elem_id='limits-note')
        with gr.Row():
            # a file: its size is checked from the header before decoding
            inp = gr.Image(label='Input', type='filepath', image_mode=None,
                           sources=['upload'], elem_id='input-image')
            out = gr.Image(label='Enhanced', type='numpy', format='png',
                           interactive=False, elem_id='output-image')
        with gr.Row():
            network = gr.Radio(
                networks, value=inferencer.network if inferencer.has_teacher
                else 'teacher', label='Network',
                info='teacher: the mean teacher (what the paper evaluates)'
                if inferencer.has_teacher else 'this model has one network',
                elem_id='network')
            tile = gr.Checkbox(value=True, label='Tile large images',
                               elem_id='tile')
            tile_size = gr.Slider(MIN_TILE, max_tile,
                                  value=min(512, max_tile), step=32,
                                  label='Tile size', elem_id='tile-size')
        button = gr.Button('Enhance', variant='primary',
                           elem_id='enhance-button')
        status = gr.Markdown(elem_id='status')
        download = gr.File(label='Enhanced PNG', elem_id='download')
        if out_dir is None:
            out_dir = tempfile.mkdtemp(prefix='semillie_webui_')
            weakref.finalize(demo, shutil.rmtree, out_dir,
                             ignore_errors=True)
        else:
            os.makedirs(out_dir, exist_ok=True)

        def run(img, net_name, use_tiles, side):
            return enhance_for_demo(inferencer, img, net_name, use_tiles,
                                    side, out_dir=out_dir,
                                    max_pixels=max_pixels, max_tile=max_tile)

        button.click(run, [inp, network, tile, tile_size],
                     [out, download, status], concurrency_limit=1)
    demo.queue(max_size=int(queue_size), default_concurrency_limit=1)
    demo.semillie_out_dir = out_dir
    return demo


# --------------------------------------------------------------------------
# Requests: Host allow-list, body limits, no remote files
# --------------------------------------------------------------------------
def host_name(host_header: str) -> str:
    """The host name of a ``Host`` header, without port, in lower case.

    Args:
        host_header (str): E.g. ``'localhost:7860'``, ``'[::1]:7860'``.

    Returns:
        str: E.g. ``'localhost'``, ``'::1'`` (a trailing dot removed).
    """
    host = host_header.strip().lower()
    if host.startswith('['):
        host = host[1:host.find(']')] if ']' in host else host[1:]
    elif host.count(':') == 1:
        host = host.split(':', 1)[0]
    return host.rstrip('.')


def allowed_host_names(bind_host: str = '127.0.0.1',
                       extra: Iterable[str] = ()) -> Set[str]:
    """The host names the server answers to.

    Args:
        bind_host (str): The interface it listens on; added unless it is
            every interface (``0.0.0.0``, ``::``).
        extra (Iterable[str]): More names or addresses (``*``: any).

    Returns:
        set[str]: ``localhost``, ``127.0.0.1``, ``::1``, the bind host and
        ``extra``, normalised by :func:`host_name`.
    """
    names = set(LOCAL_HOSTS)
    if bind_host not in _ANY_INTERFACE:
        names.add(host_name(f'[{bind_host}]' if ':' in bind_host
                            else bind_host))
    for name in extra:
        name = name.strip()
        if name == '*':
            names.add('*')
        elif name:
            names.add(host_name(f'[{name}]' if name.count(':') > 1
                                and not name.startswith('[') else name))
    return names


def _names_remote_file(data) -> bool:
    """Whether JSON data hold a file object whose ``path`` is a URL (gradio
    would download it, with no size limit)."""
    if isinstance(data, dict):
        path = data.get('path')
        if isinstance(path, str) and path.strip().lower().startswith(
                ('http://', 'https://', '//')):
            return True
        return any(_names_remote_file(v) for v in data.values())
    if isinstance(data, list):
        return any(_names_remote_file(v) for v in data)
    return False


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware refusing what the demo must not serve.

    - a ``Host`` header naming another host than ``allowed_hosts``: 400
      (a page of another site whose name was rebound to this machine's
      address, DNS rebinding, sends its own name);
    - a body over ``max_upload_bytes`` (``POST .../upload``) or
      ``max_request_bytes`` (any other request): 413, from
      ``Content-Length`` before reading, or as soon as the bytes read
      exceed it;
    - a JSON body naming an input file by URL (gradio would download it):
      400.

    Args:
        app (ASGI app): The app.
        allowed_hosts (Iterable[str]): From :func:`allowed_host_names`;
            ``'*'`` allows any.
        max_upload_bytes (int): Largest upload body.
        max_request_bytes (int): Largest other body.
    """

    def __init__(self, app, allowed_hosts: Iterable[str],
                 max_upload_bytes: int,
                 max_request_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.allowed_hosts = set(allowed_hosts)
        self.allow_any = '*' in self.allowed_hosts
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_request_bytes = int(max_request_bytes)

    async def __call__(self, scope, receive, send):
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse
        if scope['type'] not in ('http', 'websocket'):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = host_name(headers.get('host', ''))
        if not self.allow_any and host not in self.allowed_hosts:
            if scope['type'] == 'websocket':
                return await send({'type': 'websocket.close', 'code': 1008})
            return await PlainTextResponse(
                f'Host {host!r} is not allowed; start the server with '
                f'--allowed-hosts {host or "NAME"} to serve it',
                status_code=400)(scope, receive, send)
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        limit = (self.max_upload_bytes
                 if scope['path'].rstrip('/').endswith('/upload')
                 else self.max_request_bytes)
        too_large = PlainTextResponse(
            f'Request body too large: over {limit:,} bytes', status_code=413)
        length = headers.get('content-length')
        if length is not None:
            if not length.strip().isdigit():
                return await PlainTextResponse(
                    'Bad Content-Length', status_code=400)(scope, receive,
                                                           send)
            if int(length) > limit:
                return await too_large(scope, receive, send)
        if scope['method'] == 'POST' and headers.get(
                'content-type', '').startswith('application/json'):
            return await self._json(scope, receive, send, limit, too_large)
        state = dict(read=0, started=False, over=False)

        async def limited_receive():
            message = await receive()
            if message['type'] == 'http.request':
                state['read'] += len(message.get('body', b''))
                if state['read'] > limit:
                    if not state['started']:
                        state['started'] = True
                        await too_large(scope, receive, send)
                    state['over'] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            if state['over']:  # the app's answer to the cut body
                return
            if message['type'] == 'http.response.start':
                state['started'] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BaseException:
            if not state['over']:
                raise

    async def _json(self, scope, receive, send, limit, too_large):
        """Read a JSON body (at most ``limit`` bytes), refuse URLs of files,
        then hand the body to the app."""
        from starlette.responses import PlainTextResponse
        chunks, size = [], 0
        while True:
            message = await receive()
            if message['type'] != 'http.request':
                return
            chunks.append(message.get('body', b''))
            size += len(chunks[-1])
            if size > limit:
                return await too_large(scope, receive, send)
            if not message.get('more_body', False):
                break
        body = b''.join(chunks)
        try:
            remote = _names_remote_file(json.loads(body or b'null'))
        except ValueError:
            remote = False  # the app answers malformed JSON itself
        if remote:
            return await PlainTextResponse(
                'Files must be uploaded; this server does not download '
                'files named by URL', status_code=400)(scope, receive, send)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {'type': 'http.request', 'body': body,
                        'more_body': False}
            return await receive()

        await self.app(scope, replay, send)


def parse_auth(values: Sequence[str] = (), files: Sequence[str] = ()
               ) -> Optional[List[Tuple[str, str]]]:
    """Logins from ``USER:PASSWORD`` strings and files of such lines.

    Args:
        values (Sequence[str]): ``USER:PASSWORD`` strings.
        files (Sequence[str]): Files with one ``USER:PASSWORD`` a line
            (blank lines and lines starting with ``#`` are skipped).

    Returns:
        list[tuple[str, str]] | None: ``(user, password)`` pairs, or None
        when none were given (no login).

    Raises:
        ValueError: A value or line without ``:``, or an empty user name or
            password (the message does not repeat the password).
    """
    pairs = []

    def add(text: str, where: str) -> None:
        user, sep, password = text.partition(':')
        if not sep or not user.strip() or not password:
            raise ValueError(f'{where}: expected USER:PASSWORD with a '
                             'non-empty user and password')
        pairs.append((user.strip(), password))

    for i, value in enumerate(values):
        add(value, f'--auth value {i + 1}')
    for path in files:
        with open(path, encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip('\r\n')
                if line.strip() and not line.lstrip().startswith('#'):
                    add(line, f'{path}:{n}')
        if not pairs:
            raise ValueError(f'{path}: no USER:PASSWORD line')
    return pairs or None


def build_app(demo, *, host: str = '127.0.0.1',
              allowed_hosts: Iterable[str] = (),
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
              auth: Optional[List[Tuple[str, str]]] = None):
    """A FastAPI app serving the page at ``/`` with no external reference.

    Args:
        demo (gradio.Blocks): From :func:`build_demo`.
        host (str): The interface the server listens on (its name is
            allowed in the ``Host`` header).
        allowed_hosts (Iterable[str]): More host names or addresses the
            page may be reached by (``'*'``: any); see
            :func:`allowed_host_names`.
        max_upload_mb (float): Largest upload, in megabytes (10^6 bytes):
            gradio's ``max_file_size`` (413 beyond), and the bound of an
            upload request's body.
        auth (list[tuple[str, str]], optional): ``(user, password)`` pairs
            required to log in (gradio's login page); None: no login.

    Returns:
        fastapi.FastAPI: The app (serve it with uvicorn).
    """
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    max_bytes = int(float(max_upload_mb) * 1_000_000)
    if max_bytes < 1:
        raise ValueError(f'max_upload_mb must be > 0, got {max_upload_mb}')
    app = FastAPI()

    @app.middleware('http')
    async def local_only(request: Request, call_next):
        response = await call_next(request)
        if not response.headers.get('content-type', '').startswith(
                'text/html'):
            return response
        body = b''.join([chunk async for chunk in response.body_iterator])
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() != 'content-length'}
        return Response(strip_external_references(body),
                        status_code=response.status_code, headers=headers)

    # outermost: runs before anything else reads the request
    app.add_middleware(RequestGuard,
                       allowed_hosts=allowed_host_names(host, allowed_hosts),
                       max_upload_bytes=max_bytes + _UPLOAD_OVERHEAD)
    return gr.mount_gradio_app(app, demo, path='', show_api=False,
                               ssr_mode=False, max_file_size=max_bytes,
                               auth=auth)


def serve(app, host: str = '127.0.0.1', port: int = 7860) -> None:
    """Serve the app until interrupted.

    Args:
        app (fastapi.FastAPI): From :func:`build_app`.
        host (str): Interface to listen on. Default: 127.0.0.1 (this machine
            only).
        port (int): Port. Default: 7860.
    """
    import uvicorn
    print(f'Web demo on http://{host}:{port} (Ctrl-C stops it)', flush=True)
    uvicorn.run(app, host=host, port=port, log_level='warning')
