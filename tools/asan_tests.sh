#!/usr/bin/env bash
# The C++ CPU extension's tests under AddressSanitizer + UndefinedBehaviorSanitizer.
#   bash tools/asan_tests.sh [pytest args]
# Builds a second, instrumented binary of the extension (csrc/, -O1; 3.5 min on 2 busy cores) into a cache
# folder of its own ($SEMILLIE_ASAN_CACHE, default ~/.cache/semillie-mm-asan; the normal build, its
# flags and its cache key are untouched), then runs tests/ops/ against it with the ASan runtime
# preloaded (python itself is not instrumented). Any heap/stack overflow, use-after-free or
# undefined behaviour in the kernels aborts the run with a report. pytest args are added (-x, -k).
# Not part of CI (build + tests ~6 min; see docs/install.md, "Sanitizer run of the C++ extension").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CXX="${CXX:-c++}"
export SEMILLIE_CACHE="${SEMILLIE_ASAN_CACHE:-$HOME/.cache/semillie-mm-asan}"
# -O1 (after the build's -O3): the usual level for sanitizer runs, and a far shorter compile
export SEMILLIE_EXT_EXTRA_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
export SEMILLIE_EXT_EXTRA_LDFLAGS="-fsanitize=address,undefined"
LIBASAN="$("$CXX" -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
  echo "asan_tests: no libasan.so next to $CXX (install the compiler's sanitizer runtime)" >&2
  exit 2
fi
# libstdc++ with it: python does not link it, and ASan's __cxa_throw interceptor needs it loaded
# first (else the first C++ exception of any extension, e.g. triton's import, aborts)
LIBSTDCXX="$(readlink -f "$("$CXX" -print-file-name=libstdc++.so)")"
# reports go to files (pytest's capture would swallow a report printed just before an abort)
LOGS="$(mktemp -d)"
# detect_leaks=0: CPython, torch (and the compiler) keep their allocations until exit by design
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$LOGS/asan:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$LOGS/ubsan:${UBSAN_OPTIONS:-}"
export SEMILLIE_REQUIRE_NATIVE=1
# preloaded for the build too: the build imports the binary it made
export LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
rc=0
"$PY" semillie_mm/ops/cpu_ext/build.py --build || rc=$?
if [ "$rc" = 0 ]; then
  "$PY" -m pytest tests/ops -p no:cacheprovider "$@" || rc=$?
fi
for f in "$LOGS"/*; do
  [ -e "$f" ] || continue
  echo "asan_tests: sanitizer report $f:" >&2
  cat "$f" >&2
  rc=${rc/#0/1}
done
rm -rf "$LOGS"
echo "asan_tests: exit status $rc" >&2
exit "$rc"
