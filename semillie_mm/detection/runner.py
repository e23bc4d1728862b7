"""Training and testing one row's detector with mmengine's Runner, in a fresh Python process.

Each row's training and testing runs in a child process (:func:`run_row_subprocess` starts
:func:`run_row`: ``Runner.from_cfg(cfg)``, ``runner.train()``, ``runner.test()``): mmengine keeps
process-wide named instances (DefaultScope, MessageHub, the visualizer named ``visualizer`` in
mmdet's runtime config, loggers) that a second Runner in the same process would pick up again,
and a separate process also returns all memory between rows.
"""
import json
import os
import os.path as osp
import subprocess
import sys

from ._io import dump_json_atomic


def run_row(cfg_path: str, metrics_path: str) -> None:
    """Train and test one detector with mmengine's Runner; write the test metrics (child side).

    Args:
        cfg_path (str): the row's dumped detector config.
        metrics_path (str): where the test metrics go (JSON, atomically).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(cfg_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    dump_json_atomic({k: float(v) for k, v in metrics.items()}, metrics_path)


_CHILD = ('import sys; from semillie_mm.detection.runner import run_row; '
          'run_row(sys.argv[1], sys.argv[2])')


def run_row_subprocess(cfg_path: str, metrics_path: str) -> dict:
    """Run :func:`run_row` in a fresh Python process and return its metrics.

    Args:
        cfg_path (str): the row's dumped detector config.
        metrics_path (str): where the child writes the metrics.

    Returns:
        dict: the test metrics.

    Raises:
        RuntimeError: the child process failed (its output is on the console and in the
            mmengine log under the config's work_dir).
    """
    if osp.exists(metrics_path):
        os.remove(metrics_path)
    cmd = [sys.executable, '-c', _CHILD, cfg_path, metrics_path]
    proc = subprocess.run(cmd)
    if proc.returncode != 0 or not osp.isfile(metrics_path):
        raise RuntimeError(f'training/testing failed (exit code {proc.returncode}): '
                           f'{" ".join(cmd)}')
    with open(metrics_path, encoding='utf-8') as f:
        return json.load(f)
