"""Utilities of the command-line tools and the runtime.

- :mod:`.cli`: one-line user errors (``UserError``, ``run_cli``); imports
  only the standard library at import time.
- :mod:`.checks`: the tools' file checks (files, folders, configs, the weight
  files a config names, checkpoints), one-line errors.
- :mod:`.checkpoint`: checkpoint loading, weights-only unless trusted.
- :mod:`.flops`: parameters and FLOPs with the selective scans counted.
- :mod:`.cpu_threads`: ``CPUThreadGovernor``, torch's thread count follows
  the cores other jobs leave free.
- :mod:`.fileio`: atomic file writes (temporary dot-file, fsync, rename),
  a folder built aside then swapped in, and the one ``IMG_EXTENSIONS``;
  standard library only.

Nothing is imported here, so ``semillie_mm.utils.cli`` and ``.checks`` stay light.
"""
