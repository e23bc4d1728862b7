"""Utilities of the command-line tools.

- :mod:`.cli`: one-line user errors (``UserError``, ``run_cli``, file and
  checkpoint checks); imports only the standard library at import time.
- :mod:`.flops`: parameters and FLOPs with the selective scans counted.

Nothing is imported here, so ``semillie_mm.utils.cli`` stays light.
"""
