# Copyright (c) semillie-mm contributors. All rights reserved.
"""Build and load the shared C++ CPU extension (``csrc/``).

One binary holds the generic-layout selective scan of
:func:`semillie_mm.ops.selective_scan` (``selective_scan.cpp``), SS2D's fused
four-direction scan (``ss2d_scan.cpp``, which also defines the module), the
depth-wise conv of MSSM (``depthwise_conv.cpp``), SiLU and its gradient
(``pointwise.cpp``, :mod:`semillie_mm.ops.silu`), the caching CPU
allocator (``cpu_allocator.cpp``) and the op-mix floor of the benchmarks
(``opmix_floor.cpp``); ``scan_math.h`` holds the math they share.

The extension is compiled once, by ``tools/setup_env.sh`` (which runs
``python semillie_mm/ops/cpu_ext/build.py --build``, which imports
only torch), with ``-O3 -march=native -ffp-contract=fast
-falign-functions=64 -fopenmp`` (and the flags in ``CFLAGS``) against
torch's own libgomp; it is never compiled at run time.
The binary is stored under ``$SEMILLIE_CACHE`` (default
``~/.cache/semillie-mm``) in ``ss2d_scan/<key>/``, where ``key`` hashes what
makes a binary fit: the torch build (version, commit, C++ ABI), the Python
ABI, the source text, the compile and link flags (without paths) and the
CPU's model name and instruction-set flags. Where the environment lies, or
the path it is reached by (a symbolic link, a moved venv), is not part of it.
A machine with other flags, another torch or an edited source finds no
binary under its key and falls back (numba, then the reference loop) instead
of loading an incompatible one; the fallback is a WARNING that names the
reason, its cost and the build command (:func:`fallback_message`), and an
error when ``SEMILLIE_REQUIRE_NATIVE=1`` (CI sets it). A read-only package
directory does not matter: nothing is written next to the source.

``SEMILLIE_EXT_EXTRA_CFLAGS`` / ``SEMILLIE_EXT_EXTRA_LDFLAGS`` (unset by
default) append compile / link flags to both the build and the cache key,
for a second, instrumented binary next to the normal one: the sanitizer
run, ``bash tools/asan_tests.sh``, sets them to ``-fsanitize=address,undefined``
(with ``SEMILLIE_CACHE`` pointing at a folder of its own). Unset, the flags
and the key are those above.
"""
import argparse
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shlex
import shutil
import sys
import sysconfig
import tempfile
from typing import Optional

import torch

_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
#: the fused SS2D scan (and the module definition) ...
SOURCE = os.path.join(_CSRC, 'ss2d_scan.cpp')
#: ... and every source of the extension: the generic-layout scan of
#: selective_scan(), the depth-wise conv of MSSM, the caching allocator
SOURCES = (SOURCE, os.path.join(_CSRC, 'selective_scan.cpp'),
           os.path.join(_CSRC, 'depthwise_conv.cpp'),
           os.path.join(_CSRC, 'cpu_allocator.cpp'),
           os.path.join(_CSRC, 'opmix_floor.cpp'),
           os.path.join(_CSRC, 'pointwise.cpp'))
#: headers the sources include (part of the cache key)
HEADERS = (os.path.join(_CSRC, 'scan_math.h'), )
# -fopenmp: ATen's at::parallel_for is an inline OpenMP template, serial
# when the including code is compiled without OpenMP. The OpenMP runtime is
# torch's own libgomp (torch/lib), so that the kernels share torch's thread
# pool and thread count.
# -falign-functions=64: every function starts on a cache line, so that
# where a kernel's loops fall relative to the 64-byte fetch blocks depends
# on its own code only, not on the size of the code linked before it (a
# change to selective_scan.cpp alone moved the fused SS2D functions by 32
# bytes, and the fused backward timed 3-11 % slower in two in-process
# A/B runs; with the flag in both builds they were level. Builds of the
# same code have also differed by up to 20 % in single runs on the shared
# Zen 5 VM, so the flag's own gain is not resolved; -falign-loops=32 on
# top was 10-15 % slower)
CFLAGS = ('-O3', '-march=native', '-ffp-contract=fast', '-fno-math-errno',
          '-fno-trapping-math', '-falign-functions=64', '-fopenmp',
          '-std=c++20')


#: extra compile / link flags (e.g. sanitizers), space-separated; unset
#: by default
EXTRA_CFLAGS_ENV = 'SEMILLIE_EXT_EXTRA_CFLAGS'
EXTRA_LDFLAGS_ENV = 'SEMILLIE_EXT_EXTRA_LDFLAGS'


def _extra_flags(env: str) -> list:
    return shlex.split(os.environ.get(env, ''))


def _ldflags():
    lib = os.path.join(os.path.dirname(torch.__file__), 'lib')
    gomp = os.path.join(lib, 'libgomp.so.1')
    if os.path.isfile(gomp):
        return [f'-L{lib}', '-l:libgomp.so.1']
    return ['-fopenmp']  # a torch without its own copy: the system's


def _ldflags_kind() -> str:
    """:func:`_ldflags` without the folder: which OpenMP runtime is linked
    (the folder depends on the path the environment is reached by)."""
    return ' '.join('-L<torch/lib>' if f.startswith('-L') else f
                    for f in _ldflags())


#: module name prefix and cache folder keep the extension's first name
#: (it began as the fused SS2D scan alone): renaming them would only strand
#: binaries built before
BASENAME = 'semillie_ss2d_scan'
#: set to 1 to make a fallback from the C++ extension an error
REQUIRE_ENV = 'SEMILLIE_REQUIRE_NATIVE'
BUILD_COMMAND = ('python semillie_mm/ops/cpu_ext/build.py --build '
                 '(tools/setup_env.sh runs it)')

_module = None
_tried = False
_error: Optional[str] = None


def cache_root() -> str:
    """Folder of the compiled extensions.

    Returns:
        str: ``$SEMILLIE_CACHE/ss2d_scan`` (default
        ``~/.cache/semillie-mm/ss2d_scan``).
    """
    root = os.environ.get('SEMILLIE_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'semillie-mm')
    return os.path.join(root, 'ss2d_scan')


def _cpu_signature() -> str:
    model, flags = '', ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key = line.split(':', 1)[0].strip()
                if key == 'model name' and not model:
                    model = line.split(':', 1)[1].strip()
                elif key == 'flags' and not flags:
                    flags = ' '.join(sorted(line.split(':', 1)[1].split()))
                if model and flags:
                    break
    except OSError:
        pass
    return f'{platform.machine()}|{model}|{flags}'


def cache_key() -> str:
    """Key of the binary that fits this process: torch version, Python ABI,
    source, compile flags and CPU.

    Returns:
        str: 16 hex digits.
    """
    h = hashlib.sha256()
    for src in SOURCES + HEADERS:
        with open(src, 'rb') as f:
            h.update(f.read())
    for part in (torch.__version__, str(torch.version.git_version),
                 str(torch.compiled_with_cxx11_abi()),
                 sysconfig.get_config_var('SOABI') or '', ' '.join(CFLAGS),
                 _ldflags_kind(), _cpu_signature()):
        h.update(b'\0' + part.encode())
    extra = (_extra_flags(EXTRA_CFLAGS_ENV), _extra_flags(EXTRA_LDFLAGS_ENV))
    if any(extra):  # only then: the default key stays what it was
        h.update(b'\0extra\0' + repr(extra).encode())
    return h.hexdigest()[:16]


def module_name() -> str:
    return f'{BASENAME}_{cache_key()}'


def binary_path() -> str:
    """Where the binary for this process is (or would be) stored.

    Returns:
        str: path of the shared object.
    """
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return os.path.join(cache_root(), cache_key(), module_name() + suffix)


def _variants():
    """:mod:`.variants` (also when this file runs as a script, outside the
    package: it imports nothing of the package)."""
    if __package__:
        from . import variants
        return variants
    name = 'semillie_cpu_ext_variants'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               'variants.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


def load():
    """The compiled extension, or None when no binary fits (never compiles).

    Returns:
        module | None: the extension module.
    """
    global _module, _tried, _error
    if _tried:
        return _module
    _tried = True
    if os.environ.get('SEMILLIE_NO_SCAN_EXT', '') not in ('', '0'):
        _error = 'disabled by SEMILLIE_NO_SCAN_EXT'
        return None
    path = binary_path()
    if not os.path.isfile(path):
        _error = (f'no compiled binary at {path}; run tools/setup_env.sh '
                  '(or python semillie_mm/ops/cpu_ext/build.py --build)')
        return None
    try:
        name = module_name()
        loader = importlib.machinery.ExtensionFileLoader(name, path)
        spec = importlib.util.spec_from_file_location(name, path,
                                                      loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
    except Exception as e:  # e.g. a binary of another libtorch build
        _error = f'cannot load {path}: {e}'
        return None
    # the run-time kernel variant for this CPU (or SEMILLIE_KERNEL_VARIANT;
    # a malformed value is the user's error and raises ValueError)
    _variants().apply(mod)
    _module = mod
    return _module


def available() -> bool:
    """Whether the extension is built and loaded here.

    Returns:
        bool
    """
    return load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`load` found no extension (None when it did)."""
    load()
    return _error


def require_native() -> bool:
    """Whether ``SEMILLIE_REQUIRE_NATIVE`` forbids falling back."""
    return os.environ.get(REQUIRE_ENV, '').strip().lower() in (
        '1', 'true', 'yes', 'on')


def fallback_message(what: str) -> str:
    """The one-line warning of a fallback from the C++ extension.

    Args:
        what (str): what falls back (e.g. ``'SS2D'``).

    Returns:
        str: the reason, the expected cost and the build command.
    """
    return (f'{what}: the C++ CPU extension is not available '
            f'({unavailable_reason()}); falling back to a slower path (about '
            f'2-3x slower, 2x memory). Build it: {BUILD_COMMAND}')


def check_fallback(what: str) -> str:
    """Raise when ``SEMILLIE_REQUIRE_NATIVE=1``, else return the warning.

    Args:
        what (str): what falls back.

    Returns:
        str: :func:`fallback_message`.

    Raises:
        RuntimeError: the fallback is forbidden.
    """
    msg = fallback_message(what)
    if require_native():
        raise RuntimeError(f'{msg}. {REQUIRE_ENV}=1 forbids the fallback.')
    return msg


def build(verbose: bool = False) -> str:
    """Compile the extension into the cache (a no-op when it is there).

    The object is built in a temporary folder and moved into place
    atomically, so a concurrent or interrupted build never leaves a
    half-written binary under the key.

    Args:
        verbose (bool): show the compiler's output.

    Returns:
        str: path of the binary.
    """
    path = binary_path()
    if os.path.isfile(path):
        return path
    from torch.utils import cpp_extension
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        cpp_extension.load(
            name=module_name(),
            sources=list(SOURCES),
            extra_cflags=list(CFLAGS) + _extra_flags(EXTRA_CFLAGS_ENV),
            extra_ldflags=_ldflags() + _extra_flags(EXTRA_LDFLAGS_ENV),
            build_directory=tmp,
            verbose=verbose)
        built = [f for f in os.listdir(tmp) if f.startswith(module_name())
                 and f.endswith(('.so', '.pyd'))]
        if not built:
            raise RuntimeError(f'the build left no binary in {tmp}')
        staged = os.path.join(tmp, 'staged.so')
        shutil.copy2(os.path.join(tmp, built[0]), staged)
        os.replace(staged, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Build (into $SEMILLIE_CACHE) or locate the C++ CPU '
        'extension (scans, depth-wise conv, allocator).')
    parser.add_argument('--build', action='store_true',
                        help='compile it unless a fitting binary is cached')
    parser.add_argument('--verbose', action='store_true')
    parser.add_argument('--which', action='store_true',
                        help='say which CPU scan a fresh process will use')
    args = parser.parse_args(argv)
    if args.which:
        mod = load()
        if mod is not None:
            print(f'CPU scans of a fresh process: the C++ extension '
                  f'({binary_path()})')
            return 0
        print('CPU scans of a fresh process: ' + fallback_message(
            'the numba fallback'))
        return 1
    if args.build:
        try:
            path = build(verbose=args.verbose)
        except Exception as e:
            logging.basicConfig()
            print(f'C++ CPU extension: build failed ({e}); the slower '
                  'numba/reference scan will be used', file=sys.stderr)
            return 1
        print(path)
        return 0
    mod = load()
    print(binary_path() if mod is not None else unavailable_reason())
    return 0 if mod is not None else 1


if __name__ == '__main__':
    sys.exit(main())
