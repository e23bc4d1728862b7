"""Shared test set-up: CPU only, few threads, the plugin registered."""
import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Models built directly in tests resolve their parts (e.g. mmagic's
# DataPreprocessor) in the mmagic scope, as the runner does from the config.
import semillie_mm  # noqa: E402,F401
from mmengine.registry import init_default_scope  # noqa: E402

init_default_scope('mmagic')
