# Copyright (c) semillie-mm contributors. All rights reserved.
"""The shared C++ CPU extension: one binary for the generic selective scan
(``csrc/selective_scan.cpp``, the 'native' scan backend), SS2D's fused scan
(``csrc/ss2d_scan.cpp``), MSSM's depth-wise conv (``csrc/depthwise_conv.cpp``)
and the caching CPU allocator (``csrc/cpu_allocator.cpp``).

It is compiled by ``python semillie_mm/ops/cpu_ext/build.py --build`` (run by
``tools/setup_env.sh``) and only ever loaded at run time (:func:`load`), see
:mod:`.build`.
"""
from .build import (
                    BUILD_COMMAND,
                    REQUIRE_ENV,
                    available,
                    binary_path,
                    cache_key,
                    cache_root,
                    check_fallback,
                    fallback_message,
                    load,
                    require_native,
                    unavailable_reason,
)

# ``build`` stays the submodule (its function is ``build.build``)
__all__ = [
    'load', 'available', 'unavailable_reason', 'require_native',
    'fallback_message', 'check_fallback', 'cache_key', 'cache_root',
    'binary_path', 'BUILD_COMMAND', 'REQUIRE_ENV'
]
