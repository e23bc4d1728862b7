"""The tools import the installed package (tools/setup_env.sh installs the
checkout in editable mode); they no longer put the checkout on sys.path."""
import importlib.metadata
import json
import os
import os.path as osp
import subprocess
import sys
from urllib.parse import unquote, urlparse

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _installed_from_this_checkout():
    """Whether ``semillie_mm`` is installed in editable mode from ROOT."""
    try:
        dist = importlib.metadata.distribution('semillie_mm')
        url = json.loads(dist.read_text('direct_url.json') or '{}')['url']
    except (importlib.metadata.PackageNotFoundError, KeyError, ValueError):
        return False
    path = unquote(urlparse(url).path)
    return osp.isdir(path) and osp.samefile(path, ROOT)


@pytest.mark.skipif(not _installed_from_this_checkout(),
                    reason='this checkout is not the installed semillie_mm '
                    '(tools/setup_env.sh installs it in editable mode)')
def test_tool_runs_from_elsewhere_without_pythonpath(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)
    tool = osp.join(ROOT, 'tools', 'dataset_converters', 'visdrone2coco.py')
    proc = subprocess.run([sys.executable, tool, '--help'], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'usage:' in proc.stdout
