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
"""
import os
import os.path as osp
import re
import tempfile
import time
from typing import Optional

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

# <script src="http(s)://..."></script> and <link ... href="http(s)://...">
_EXTERNAL_SCRIPT = re.compile(
    rb'<script\b[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', re.I)
_EXTERNAL_LINK = re.compile(rb'<link\b[^>]*\bhref="https?://[^"]*"[^>]*/?>',
                            re.I)

TITLE = 'Semi-LLIE low-light enhancement'


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


def enhance_for_demo(inferencer, img, network: str = 'teacher',
                     tile: bool = True, tile_size: int = 512,
                     out_dir: Optional[str] = None):
    """What the page's button does.

    Args:
        inferencer (SemiLLIEInferencer): The inferencer.
        img (np.ndarray | None): The uploaded RGB image.
        network (str): ``'teacher'`` or ``'student'``.
        tile (bool): Tile images larger than ``tile_size``.
        tile_size (int): Tile side; the overlap is ``tile_size // 8``.
        out_dir (str, optional): Where the PNG is written (default: a new
            temporary folder).

    Returns:
        tuple: The enhanced image, the path of its PNG, a status line.
    """
    import gradio as gr

    from .image_io import write_image_atomic
    if img is None:
        raise gr.Error('Upload a photo first.')
    tile_size = int(tile_size)
    start = time.time()
    res = inferencer(img, network=network,
                     tile_size=tile_size if tile else None,
                     tile_overlap=max(tile_size // 8, 1) if tile else 0)
    out = res['predictions'][0]
    seconds = time.time() - start
    out_dir = out_dir or tempfile.mkdtemp(prefix='semillie_webui_')
    path = osp.join(out_dir, f'enhanced_{int(start * 1000)}.png')
    write_image_atomic(path, out)
    h, w = out.shape[:2]
    status = (f'{w}x{h} enhanced by the {network} in {seconds:.1f} s'
              + (f' (tiles of {tile_size})' if tile and max(h, w) > tile_size
                 else ''))
    return out, path, status


def build_demo(inferencer, checkpoint: Optional[str] = None,
               shipped: Optional[str] = None):
    """The gradio page.

    Args:
        inferencer (SemiLLIEInferencer): The inferencer.
        checkpoint (str, optional): Its checkpoint, named on the page.
        shipped (str, optional): The name of the shipped model it runs
            (:mod:`~semillie_mm.apis.pretrained`), said on the page; default
            the inferencer's ``shipped_model``.

    Returns:
        gradio.Blocks: The page.
    """
    import gradio as gr

    from .pretrained import MODEL_CARD
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
    with gr.Blocks(title=TITLE, theme=_offline_theme(),
                   analytics_enabled=False) as demo:
        gr.Markdown(f'# {TITLE}\nUpload a low-light photo and press '
                    '**Enhance**.')
        gr.Markdown(weights, elem_id='weights-note')
        with gr.Row():
            inp = gr.Image(label='Input', type='numpy', image_mode='RGB',
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
            tile_size = gr.Slider(64, 2048, value=512, step=32,
                                  label='Tile size', elem_id='tile-size')
        button = gr.Button('Enhance', variant='primary',
                           elem_id='enhance-button')
        status = gr.Markdown(elem_id='status')
        download = gr.File(label='Enhanced PNG', elem_id='download')
        out_dir = tempfile.mkdtemp(prefix='semillie_webui_')

        def run(img, net_name, use_tiles, side):
            return enhance_for_demo(inferencer, img, net_name, use_tiles,
                                    side, out_dir=out_dir)

        button.click(run, [inp, network, tile, tile_size],
                     [out, download, status])
    return demo


def build_app(demo):
    """A FastAPI app serving the page at ``/`` with no external reference.

    Args:
        demo (gradio.Blocks): From :func:`build_demo`.

    Returns:
        fastapi.FastAPI: The app (serve it with uvicorn).
    """
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

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

    return gr.mount_gradio_app(app, demo, path='', show_api=False,
                               ssr_mode=False)


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
