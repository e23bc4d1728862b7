# Copyright (c) semillie-mm contributors. All rights reserved.
"""The selective-scan backends, one module each, all with the signature of
:func:`semillie_mm.ops.selective_scan`:

- :mod:`.cuda`: mamba-ssm's CUDA kernel (``'cuda'``; :mod:`.cuda_ext` wraps
  a standalone build of its extension);
- :mod:`.native`: the C++ CPU kernel of :mod:`semillie_mm.ops.cpu_ext`
  (``'native'``);
- :mod:`.numba`: numba CPU kernels (``'numba'``, the fallback where the
  extension is not built; kernels in :mod:`.numba_kernels`);
- :mod:`.reference`: the plain PyTorch loop (``'reference'``, any device).
- :mod:`.exportable`: the same recurrence in standard operators for ONNX
  export (SS2D's ``export_mode``, not a dispatch choice).

Which one runs is decided by :mod:`..dispatch`. Nothing here imports numba
or mamba-ssm, or loads the extension, before a scan needs it.
"""
