"""The web demo under hostile use, through HTTP on loopback.

One server (the tiny random SemiLLIE model of the shared test utilities,
``build_demo`` + ``build_app`` served by uvicorn in a thread on a free port of
127.0.0.1) answers raw HTTP requests as gradio's page makes them: upload, join
the queue, read the result from the event stream. Checked: a foreign ``Host``
header is refused, oversize uploads and bodies get 413, an input file named by
URL is refused, a 6000 x 6000 image without tiles and an image over the pixel
cap are refused from the header with a clear message and the server then
serves the next request (with its tile size clamped), and 20 requests leave
bounded disk use. No timing is asserted; the waits are generous.
"""
import os
import os.path as osp
import socket
import threading
import time
import uuid

import numpy as np
import pytest

gr = pytest.importorskip('gradio')
httpx = pytest.importorskip('httpx')

import semillie_mm.apis.webui as webui  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MAX_UPLOAD_MB = 1  # 10^6 bytes
MAX_PIXELS = 40_000_000  # above 6000 x 6000, below 7000 x 7000
KEEP_SECONDS = 8  # an upload must outlive the wait for its turn
QUEUE_SIZE = 3
TIMEOUT = 120  # seconds, per HTTP call: the machine may be busy


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn serving ``app`` in a thread of this process."""

    def __init__(self, app):
        import uvicorn
        self.port = _free_port()
        self.base = f'http://127.0.0.1:{self.port}'
        self.server = uvicorn.Server(uvicorn.Config(
            app, host='127.0.0.1', port=self.port, log_level='warning'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError('the web demo did not start')
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(TIMEOUT)


def _png(img):
    import cv2
    ok, data = cv2.imencode('.png', np.ascontiguousarray(img[..., ::-1]))
    assert ok
    return data.tobytes()


def _upload(client, data, name='photo.png'):
    r = client.post('/gradio_api/upload',
                    files={'files': (name, data, 'image/png')})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()[0]


def _run(client, path, network='teacher', tile=True, tile_size=512,
         name='photo.png'):
    """Press the button the way the page does; the ``process_completed``
    message."""
    import json
    session = uuid.uuid4().hex
    file = dict(path=path, orig_name=name, meta={'_type': 'gradio.FileData'})
    r = client.post('/gradio_api/queue/join', json=dict(
        data=[file, network, tile, tile_size], fn_index=0,
        session_hash=session, event_data=None, trigger_id=None))
    assert r.status_code == 200, (r.status_code, r.text)
    with client.stream('GET', '/gradio_api/queue/data',
                       params={'session_hash': session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith('data:'):
                continue
            msg = json.loads(line[5:])
            if msg.get('msg') == 'process_completed':
                return msg
    raise AssertionError('the event stream ended without a result')


def _files(folder):
    out = []
    for root, _, names in os.walk(folder):
        out += [osp.join(root, n) for n in names]
    return out


@pytest.fixture(scope='module')
def demo_server(tmp_path_factory):
    """The server, its gradio cache folder and its PNG folder."""
    from semillie_mm.apis.inferencer import SemiLLIEInferencer

    from semillie_test_utils import write_shipped_model
    tmp = tmp_path_factory.mktemp('webui_limits')
    cache = str(tmp / 'gradio')
    old = os.environ.get('GRADIO_TEMP_DIR')
    os.environ['GRADIO_TEMP_DIR'] = cache
    server = None
    try:
        cfg, _ = write_shipped_model(tmp)
        inferencer = SemiLLIEInferencer(cfg, device='cpu',
                                        show_progress=False)
        demo = webui.build_demo(inferencer, max_pixels=MAX_PIXELS,
                                keep_seconds=KEEP_SECONDS,
                                queue_size=QUEUE_SIZE,
                                out_dir=str(tmp / 'out'))
        app = webui.build_app(demo, max_upload_mb=MAX_UPLOAD_MB)
        server = _Server(app)
        with httpx.Client(base_url=server.base, timeout=TIMEOUT) as client:
            yield dict(client=client, base=server.base, cache=cache,
                       out_dir=str(tmp / 'out'), demo=demo)
    finally:
        if server is not None:
            server.stop()
        if old is None:
            os.environ.pop('GRADIO_TEMP_DIR', None)
        else:
            os.environ['GRADIO_TEMP_DIR'] = old


def test_foreign_host_refused(demo_server):
    client = demo_server['client']
    port = demo_server['base'].rsplit(':', 1)[1]
    for host in ('evil.example', f'evil.example:{port}', 'EVIL.example.',
                 '192.0.2.1', ''):
        r = client.get('/', headers={'Host': host})
        assert r.status_code == 400, (host, r.status_code)
        assert 'not allowed' in r.text and '--allowed-hosts' in r.text
        r = client.get('/config', headers={'Host': host})
        assert r.status_code == 400 and 'components' not in r.text
    before = len(_files(demo_server['cache']))
    r = client.post('/gradio_api/upload', headers={'Host': 'evil.example'},
                    files={'files': ('a.png', b'x' * 100, 'image/png')})
    assert r.status_code == 400
    assert len(_files(demo_server['cache'])) <= before
    for host in (f'127.0.0.1:{port}', f'localhost:{port}', 'LOCALHOST',
                 f'[::1]:{port}'):
        r = client.get('/', headers={'Host': host})
        assert r.status_code == 200, (host, r.status_code)
        assert b'<html' in r.content[:200].lower()


def test_allowed_host_names():
    assert webui.host_name('Example.COM.:80') == 'example.com'
    assert webui.host_name('[::1]:7860') == '::1'
    assert webui.allowed_host_names('127.0.0.1') == {'localhost',
                                                     '127.0.0.1', '::1'}
    assert webui.allowed_host_names('0.0.0.0', ['demo.lan', 'fe80::1']) == {
        'localhost', '127.0.0.1', '::1', 'demo.lan', 'fe80::1'}
    assert '192.168.1.5' in webui.allowed_host_names('192.168.1.5')


def test_oversize_upload_413(demo_server):
    client = demo_server['client']
    limit = MAX_UPLOAD_MB * 1_000_000
    before = len(_files(demo_server['cache']))
    # gradio's own limit (max_file_size): one byte over
    r = client.post('/gradio_api/upload',
                    files={'files': ('big.png', b'\0' * (limit + 1),
                                     'image/png')})
    assert r.status_code == 413, (r.status_code, r.text)
    assert 'maximum allowed size' in r.text
    # far over: refused from Content-Length before the body is read
    r = client.post('/gradio_api/upload',
                    files={'files': ('huge.png', b'\0' * (2 * limit),
                                     'image/png')})
    assert r.status_code == 413 and 'too large' in r.text
    # many small files in one body add up too
    files = [('files', (f'{i}.png', b'\0' * (limit // 4), 'image/png'))
             for i in range(6)]
    r = client.post('/gradio_api/upload', files=files)
    assert r.status_code == 413
    # a JSON body over 1 MiB
    r = client.post('/gradio_api/queue/join',
                    json=dict(data=['x' * (webui.MAX_REQUEST_BYTES + 1)]))
    assert r.status_code == 413
    assert len(_files(demo_server['cache'])) <= before
    # the page is told the limit (gradio's front end checks it as well)
    assert client.get('/config').json()['max_file_size'] == limit


def test_chunked_body_cut_at_the_limit():
    """No Content-Length: the bytes read are counted (RequestGuard alone,
    in front of an app that reads everything)."""
    import asyncio
    read = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            read.append(len(message.get('body', b'')))
            if not message.get('more_body'):
                break
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': []})
        await send({'type': 'http.response.body', 'body': b'ok'})

    guard = webui.RequestGuard(app, allowed_hosts={'localhost'},
                               max_upload_bytes=1000, max_request_bytes=10)
    sent = []

    async def call(path, chunks):
        queue = [dict(type='http.request', body=c, more_body=True)
                 for c in chunks]
        queue.append(dict(type='http.request', body=b'', more_body=False))
        sent.clear()
        read.clear()

        async def receive():
            return queue.pop(0)

        async def send(message):
            sent.append(message)

        scope = dict(type='http', method='POST', path=path,
                     headers=[(b'host', b'localhost'),
                              (b'content-type', b'multipart/form-data')])
        await guard(scope, receive, send)
        return sent[0]['status']

    assert asyncio.run(call('/gradio_api/upload', [b'x' * 400] * 2)) == 200
    assert asyncio.run(call('/gradio_api/upload', [b'x' * 400] * 10)) == 413
    assert sum(read) <= 800  # the app saw no byte beyond the limit
    assert [m['type'] for m in sent] == ['http.response.start',
                                         'http.response.body']
    assert asyncio.run(call('/gradio_api/other', [b'x' * 11])) == 413


def test_input_file_by_url_refused(demo_server):
    client = demo_server['client']
    for path in ('http://example.invalid/big.png',
                 'HTTPS://example.invalid/x.png'):
        r = client.post('/gradio_api/queue/join', json=dict(
            data=[dict(path=path, meta={'_type': 'gradio.FileData'}),
                  'teacher', True, 512], fn_index=0,
            session_hash=uuid.uuid4().hex))
        assert r.status_code == 400 and 'URL' in r.text


def test_large_images_refused_then_next_request_served(demo_server):
    from semillie_test_utils import bomb_png
    client = demo_server['client']
    big = _upload(client, bomb_png(6000, 6000), 'big.png')  # ~20 KB
    msg = _run(client, big, tile=False)
    assert msg['success'] is False
    error = msg['output']['error']
    assert 'without tiles' in error and '6000 x 6000' in error, error
    assert f'{512 * 512:,}' in error and 'Tile large images' in error
    # over the pixel cap even with tiles
    huge = _upload(client, bomb_png(7000, 7000), 'huge.png')
    msg = _run(client, huge, tile=True)
    assert msg['success'] is False
    error = msg['output']['error']
    assert 'Image too large' in error and f'{MAX_PIXELS:,}' in error, error
    # a decompression bomb (20000 x 20000, 48 KB): Pillow's refusal
    bomb = _upload(client, bomb_png(20000, 20000), 'bomb.png')
    msg = _run(client, bomb, tile=True)
    assert msg['success'] is False
    assert '400000000 pixels' in msg['output']['error']
    # a bad tile size is an error, not a crash
    small = _upload(client, _png(np.full((40, 48, 3), 30, np.uint8)))
    msg = _run(client, small, tile_size='many')
    assert msg['success'] is False and 'tile size' in msg['output']['error']
    # ... and the server serves the next request; the tile size is clamped
    img = np.random.default_rng(1).integers(0, 70, (80, 600, 3), np.uint8)
    msg = _run(client, _upload(client, _png(img)), tile_size=10 ** 9)
    assert msg['success'] is True, msg
    status = msg['output']['data'][2]
    assert '600x80 enhanced by the teacher' in status
    assert f'(tiles of {webui.DEFAULT_MAX_TILE})' in status, status
    shown = client.get(msg['output']['data'][0]['url'])
    assert shown.status_code == 200


def test_gray_alpha_16bit_uploads(demo_server):
    """The page reads the file itself (read_image, then 8-bit RGB)."""
    import cv2
    client = demo_server['client']
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 70, (20, 28), np.uint8)
    rgba = rng.integers(0, 70, (20, 28, 4), np.uint8)
    deep = rng.integers(0, 20000, (20, 28, 3), np.uint16)
    for img in (gray, rgba, deep):
        ok, data = cv2.imencode('.png', img)
        msg = _run(client, _upload(client, data.tobytes()))
        assert msg['success'] is True, msg
        shown = client.get(msg['output']['data'][0]['url']).content
        out = cv2.imdecode(np.frombuffer(shown, np.uint8),
                           cv2.IMREAD_UNCHANGED)
        assert out.shape == (20, 28, 3) and out.dtype == np.uint8


def test_queue_bounded_one_at_a_time(demo_server):
    demo = demo_server['demo']
    assert demo._queue.max_size == QUEUE_SIZE
    fns = list(demo.fns.values())
    assert len(fns) == 1 and fns[0].concurrency_limit == 1
    assert demo.delete_cache == (KEEP_SECONDS, KEEP_SECONDS)


def test_twenty_requests_disk_bounded(demo_server):
    client, cache = demo_server['client'], demo_server['cache']
    out_dir = demo_server['out_dir']
    rng = np.random.default_rng(2)
    for i in range(20):
        img = rng.integers(0, 70, (24, 32, 3), np.uint8)  # new files each
        msg = _run(client, _upload(client, _png(img), f'p{i}.png'),
                   tile=bool(i % 2))
        assert msg['success'] is True, msg
        # our own folder keeps the last PNG only
        assert len(os.listdir(out_dir)) <= 1
    # gradio's cache (uploads, shown images, PNGs to download) is emptied
    # KEEP_SECONDS after the files were made
    deadline = time.time() + 30 * KEEP_SECONDS
    while _files(cache) and time.time() < deadline:
        time.sleep(0.5)
    assert _files(cache) == []
    # (without delete_cache each request left 3 files there for good)


def test_login_required(tmp_path, monkeypatch):
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda s: s, box, box)
    auth = webui.parse_auth(['ann:s3cret:x'])
    assert auth == [('ann', 's3cret:x')]
    server = _Server(webui.build_app(demo, auth=auth))
    try:
        with httpx.Client(base_url=server.base, timeout=TIMEOUT) as client:
            r = client.post('/gradio_api/upload',
                            files={'files': ('a.png', b'x', 'image/png')})
            assert r.status_code == 401
            r = client.post('/login', data=dict(username='ann',
                                                password='wrong'))
            assert r.status_code >= 400
            r = client.post('/login', data=dict(username='ann',
                                                password='s3cret:x'))
            assert r.status_code == 200
            r = client.post('/gradio_api/upload',
                            files={'files': ('a.png', b'x', 'image/png')})
            assert r.status_code == 200
    finally:
        server.stop()


def test_parse_auth(tmp_path):
    assert webui.parse_auth() is None
    f = tmp_path / 'logins'
    f.write_text('# who may log in\nann:pw1\n\nbob: pw 2\n')
    assert webui.parse_auth(['cy:x'], [str(f)]) == [
        ('cy', 'x'), ('ann', 'pw1'), ('bob', ' pw 2')]
    for bad in ('nocolon', ':pw', 'user:'):
        with pytest.raises(ValueError) as exc:
            webui.parse_auth([bad])
        assert 'USER:PASSWORD' in str(exc.value)
    f.write_text('ann:topsecret\nbroken line\n')
    with pytest.raises(ValueError) as exc:
        webui.parse_auth([], [str(f)])
    assert f'{f}:2' in str(exc.value) and 'topsecret' not in str(exc.value)


def test_clamp_tile_size():
    assert webui.clamp_tile_size(10 ** 9) == webui.DEFAULT_MAX_TILE
    assert webui.clamp_tile_size(1) == webui.MIN_TILE
    assert webui.clamp_tile_size('300.4', max_tile=1024) == 300
    for bad in ('x', None, float('nan'), float('inf')):
        with pytest.raises(ValueError):
            webui.clamp_tile_size(bad)


def test_tool_limit_errors(tmp_path, capsys):
    """Bad limits and logins: one line, status 2, before the model loads."""
    import importlib.util

    from semillie_mm.utils.cli import run_cli
    spec = importlib.util.spec_from_file_location(
        'webui_tool', osp.join(ROOT, 'tools', 'webui.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    port = str(_free_port())
    cases = [
        (['--max-tile', '10'], '--max-tile 10: must be >= 64'),
        (['--queue-size', '0'], '--queue-size 0: must be >= 1'),
        (['--max-upload-mb', '0'], '--max-upload-mb 0.0: must be > 0'),
        (['--auth', 'nocolon'], 'USER:PASSWORD'),
        (['--auth-file', str(tmp_path / 'none')], 'No such file'),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            run_cli(tool.main, argv + ['--port', port], prog='webui.py')
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1, (argv, err)
        assert needle in err[0], (needle, err)
    with pytest.raises(SystemExit):
        tool.parse_args(['--help'])
    help_text = capsys.readouterr().out
    for option in ('--allowed-hosts', '--auth', '--auth-file',
                   '--max-upload-mb', '--max-pixels', '--max-tile',
                   '--queue-size', '--keep-seconds'):
        assert option in help_text
