"""Shared test set-up: CPU only, few threads, the plugin registered."""
import os
import os.path as osp

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# One weight-gradient path for the dense convs in every test process (the
# shifted GEMMs, semillie_mm.ops.conv_wgrad): 'auto' times both per shape,
# and two processes a test compares could choose differently (the paths
# round differently). tests/ops/test_conv_wgrad.py sets it per test.
os.environ.setdefault('SEMILLIE_CONV_WGRAD', 'gemm')
# Tools run as child processes import the installed package (tools/setup_env.sh
# installs this checkout in editable mode); in another checkout of the same
# venv (a git worktree) they must still import the checkout under test.
_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
os.environ['PYTHONPATH'] = os.pathsep.join(
    [_ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Models built directly in tests resolve their parts (e.g. mmagic's
# DataPreprocessor) in the mmagic scope, as the runner does from the config.
import semillie_mm  # noqa: E402,F401

from mmengine.registry import init_default_scope  # noqa: E402

init_default_scope('mmagic')

# a tiny VisDrone-DET set for the converter and detection-study tests
from visdrone_test_data import visdrone_factory  # noqa: E402,F401
