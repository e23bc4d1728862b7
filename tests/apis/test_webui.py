"""tools/webui.py driven in a real headless browser (Debian's chromium and
chromedriver through selenium).

The server is the real command line (demo config, no checkpoint: random
weights), run under a Python audit hook that records every name lookup and
connection to a host other than this machine. The browser may reach 127.0.0.1
only (every other host name is mapped to an unresolvable address), and every
request it made is read from its performance log: the page must load, enhance
an uploaded photo and offer the PNG without the server or the browser
reaching for another host.
"""
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from semillie_mm.apis.webui import strip_external_references

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CHROME_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                '--disable-quic', '--no-first-run',
                '--disable-background-networking',
                '--disable-component-update', '--disable-sync',
                '--disable-dev-shm-usage', '--window-size=1280,1600')


def test_strip_external_references():
    html = (b'<head><link rel="preconnect" href="https://fonts.example" />'
            b'<script src="https://cdn.example/x.js" async></script>'
            b'<script type="module" src="./assets/index.js"></script>'
            b'<link rel="stylesheet" href="./assets/index.css"></head>')
    assert strip_external_references(html) == (
        b'<head><script type="module" src="./assets/index.js"></script>'
        b'<link rel="stylesheet" href="./assets/index.css"></head>')


# Runs tools/webui.py (argv[2:]) with an audit hook writing every look-up of /
# connection to a non-local host to the file argv[1].
SERVER_WRAPPER = r"""
import runpy, sys
log = open(sys.argv[1], 'a', buffering=1)
LOCAL = {'127.0.0.1', 'localhost', '::1', '0.0.0.0', ''}
def hook(event, args):
    if event == 'socket.getaddrinfo':
        host = args[0]
    elif event == 'socket.connect':
        host = args[1][0] if isinstance(args[1], tuple) else None
    else:
        return
    if isinstance(host, bytes):
        host = host.decode()
    if host is not None and host not in LOCAL:
        log.write(f'{event} {host}\n')
sys.addaudithook(hook)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _browser_or_skip():
    missing = [n for n in ('chromium', 'chromedriver') if not shutil.which(n)]
    reason = None
    if missing:
        reason = (f'{" and ".join(missing)} not installed (apt-get install '
                  'chromium chromium-driver; tools/setup_env.sh does it as '
                  'root)')
    else:
        try:
            import gradio  # noqa: F401
            import selenium  # noqa: F401
        except ImportError as e:
            reason = f'{e.name} is not installed (requirements/*.txt)'
    if reason:
        print(f'SKIPPED test_webui_in_browser: {reason}')
        pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _decode(data):
    import cv2
    return cv2.imdecode(np.frombuffer(data, np.uint8),
                        cv2.IMREAD_COLOR)[..., ::-1]


@pytest.mark.timeout(240)
def test_webui_in_browser(tmp_path):
    _browser_or_skip()
    import cv2
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    rng = np.random.default_rng(0)
    img = rng.integers(0, 70, (48, 64, 3), dtype=np.uint8)
    photo = tmp_path / 'night.png'
    cv2.imwrite(str(photo), img[..., ::-1])

    port = _free_port()
    base = f'http://127.0.0.1:{port}'
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path / 'gradio'),
               PYTHONWARNINGS='ignore::FutureWarning')
    for name in ('NO_ALBUMENTATIONS_UPDATE', 'GRADIO_ANALYTICS_ENABLED'):
        env.pop(name, None)  # the tool must set what keeps it offline
    net_log = tmp_path / 'server_network.log'
    net_log.write_text('')
    server = subprocess.Popen(
        [sys.executable, '-c', SERVER_WRAPPER, str(net_log),
         osp.join(ROOT, 'tools', 'webui.py'),
         osp.join(ROOT, 'configs', 'semillie_demo.py'), '--port', str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    driver = None
    try:
        deadline = time.time() + 150
        while True:
            if server.poll() is not None:
                pytest.fail(f'webui.py exited: {server.stdout.read()}')
            try:
                _get(base + '/', timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail('webui.py did not start serving')
                time.sleep(0.5)

        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which('chromium')
        for flag in CHROME_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f'--user-data-dir={tmp_path / "profile"}')
        # the network is closed: only 127.0.0.1 resolves
        opts.add_argument('--host-resolver-rules=MAP * ~NOTFOUND, '
                          'EXCLUDE 127.0.0.1')
        opts.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
        driver = webdriver.Chrome(
            service=Service(shutil.which('chromedriver')), options=opts)
        wait = WebDriverWait(driver, 60)
        driver.get(base + '/')
        button = wait.until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, '#enhance-button')))
        note = driver.find_element(By.CSS_SELECTOR, '#weights-note').text
        assert 'weights are random' in note

        upload = driver.find_element(By.CSS_SELECTOR,
                                     '#input-image input[type=file]')
        upload.send_keys(str(photo))
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#input-image img')))
        button.click()
        shown = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#output-image img')))
        link = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#download a[href]')))
        out = _decode(_get(shown.get_attribute('src')))
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 1
        href = link.get_attribute('href')
        assert href.split('?')[0].endswith('.png')
        png = _decode(_get(href))
        np.testing.assert_array_equal(png, out)
        assert 'enhanced by the teacher' in driver.find_element(
            By.CSS_SELECTOR, '#status').text

        # every request the browser made went to our server
        import json
        urls = set()
        for entry in driver.get_log('performance'):
            msg = json.loads(entry['message'])['message']
            if msg.get('method') == 'Network.requestWillBeSent':
                urls.add(msg['params']['request']['url'])
        assert any(u.startswith(base) for u in urls)
        # (chrome:// pages are the browser's own, before our page opens)
        foreign = sorted(u for u in urls if not u.startswith(
            (base, 'data:', 'blob:', 'chrome://', 'chrome-untrusted://',
             'about:')))
        assert not foreign, foreign
        # ... and the server looked up or connected to no other host
        assert net_log.read_text() == '', net_log.read_text()
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_webui_one_line_errors(tmp_path, capsys):
    """User mistakes end in one line on stderr and exit status 2."""
    import importlib.util

    from semillie_mm.utils.cli import run_cli

    import torch
    spec = importlib.util.spec_from_file_location(
        'webui_tool', osp.join(ROOT, 'tools', 'webui.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = osp.join(ROOT, 'configs', 'semillie_demo.py')
    truncated = tmp_path / 'truncated.pth'
    torch.save(dict(state_dict={'w': torch.zeros(1000)}), truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    busy_port = busy.getsockname()[1]
    cases = [
        ([str(tmp_path / 'none.py')], 'none.py'),
        ([cfg, str(tmp_path / 'none.pth')], 'none.pth'),
        ([cfg, str(truncated)], 'truncated.pth'),
        ([cfg, '--port', str(busy_port)], f'--port {busy_port}'),
        ([cfg, '--device', 'gpu0'], '--device gpu0'),
    ]
    try:
        for argv, needle in cases:
            with pytest.raises(SystemExit) as exc:
                run_cli(tool.main, argv, prog='webui.py')
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.value.code == 2, (argv, err)
            assert len(err) == 1 and err[0].startswith('webui.py: error:')
            assert needle in err[0], (needle, err)
    finally:
        busy.close()


def _load_webui_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'webui_tool', osp.join(ROOT, 'tools', 'webui.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_webui_shipped_model(tmp_path, monkeypatch, capsys):
    """No CONFIG: the shipped model (here a small random one in a temporary
    folder), said in the log and on the page; missing: one line."""
    pytest.importorskip('gradio')
    import semillie_mm.apis.pretrained as pretrained
    import semillie_mm.apis.webui as webui
    from semillie_mm.utils.cli import run_cli

    from semillie_test_utils import write_shipped_model
    tool = _load_webui_tool()
    _, weights = write_shipped_model(tmp_path)
    monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', str(tmp_path))
    served = []
    monkeypatch.setattr(webui, 'build_app', lambda demo, **kw: demo)
    monkeypatch.setattr(webui, 'serve',
                        lambda app, host, port: served.append(app))
    assert tool.main(['--port', str(_free_port())]) == 0
    out = capsys.readouterr().out
    assert (f'using the shipped model semillie_target ({weights}); see '
            'semillie_mm/pretrained/MODEL_CARD.md') in out
    notes = [b.value for b in served[0].blocks.values()
             if getattr(b, 'elem_id', None) == 'weights-note']
    assert len(notes) == 1
    assert 'shipped' in notes[0] and '`semillie_target`' in notes[0]
    assert 'semillie_target_teacher.pth' in notes[0]
    assert 'MODEL_CARD.md' in notes[0]
    # the shipped weights missing: one line naming them, status 2
    os.remove(weights)
    with pytest.raises(SystemExit) as exc:
        run_cli(tool.main, ['--port', str(_free_port())], prog='webui.py')
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith('webui.py: error: shipped model semillie_target')
    assert f'{weights} does not exist' in err[0]
