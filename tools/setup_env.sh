#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment in .venv/ at the repository root.
#
#   bash tools/setup_env.sh          # create or update .venv (seconds when nothing changed)
#
# What it does, and why (the measured facts are in docs/install.md):
#   1. torch 2.14.1 + torchvision 0.29.1 (the pair whose torchvision ops work on CPU);
#   2. mmcv 2.1.0 compiled from its source package with CPU ops. mmdet 3.3.0 and mmagic 1.2.0
#      accept only mmcv < 2.2.0 and there is no wheel of it for this torch. Two fixes are applied
#      to the build: setuptools < 81 (mmcv's setup.py imports pkg_resources) and -std=c++20
#      instead of mmcv's hard-coded c++17 (torch >= 2.10 headers require C++20). The ~20 min
#      build runs once per torch version: the wheel is kept in $SEMILLIE_CACHE (default
#      ~/.cache/semillie-mm) under a folder named after the torch version, because pip's own
#      wheel cache would silently reuse a wheel built against another torch.
#   3. the rest of the runtime requirements, mmagic 1.2.0 with --no-deps, the test tools, onnx and
#      onnxruntime (requirements/deployment.txt: ONNX export and the onnxruntime backend), and
#      this package in editable mode.
#   4. the C++ CPU extension (semillie_mm/ops/cpu_ext/csrc: SS2D's fused scan, the generic
#      selective scan, MSSM's depth-wise convs, the caching allocator), compiled once into
#      $SEMILLIE_CACHE/ss2d_scan/<key> (key: torch version, sources, CPU flags; about 1 min), and
#      the numba fallback kernels' cache warmed; nothing compiles at run time. A failed build
#      only logs a warning: the scans then use the numba kernels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"
CACHE="${SEMILLIE_CACHE:-$HOME/.cache/semillie-mm}"
TORCH_VERSION="$(sed -n 's/^torch==//p' "$ROOT/requirements/runtime.txt")"
MMCV_VERSION="$(sed -n 's/^mmcv==//p' "$ROOT/requirements/mminstall.txt")"
MMAGIC_VERSION="$(sed -n 's/^mmagic==//p' "$ROOT/requirements/mminstall.txt")"
STAMP="$VENV/.semillie-setup-stamp"

log() { echo "[setup_env] $*" >&2; }

stamp_value() {
  cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1
}

mkdir -p "$CACHE"
exec 9>"$ROOT/.venv.setup-lock"
flock 9   # two commands started at once must not build into the same venv

# A headless browser for the web-demo test (tests/apis/test_webui.py): Debian's chromium and
# chromium-driver, installed when missing and we are root with apt-get (CI's fresh machine).
# Never fails the set-up: without them that one test is skipped and says why.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium and chromium-driver (for the web-demo test)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } >&2 \
      || log "could not install chromium/chromium-driver: the web-demo browser test will be skipped"
  else
    log "chromium/chromedriver missing (not root or no apt-get): the web-demo browser test will be skipped"
  fi
fi

# the C++ CPU extension: a no-op (about 2 s) when a binary for this torch, source and CPU
# is cached; build.py imports only torch. Never fails the set-up.
build_scan_extension() {
  SEMILLIE_CACHE="$CACHE" "$VENV/bin/python" "$ROOT/semillie_mm/ops/cpu_ext/build.py" --build >&2 \
    || log "WARNING: the C++ CPU extension did not build (see above); the CPU scans fall back to the slower numba kernels"
  # which backend a fresh process will use (the fallback is about 2-3x slower)
  log "$(SEMILLIE_CACHE="$CACHE" "$VENV/bin/python" "$ROOT/semillie_mm/ops/cpu_ext/build.py" --which 2>&1 | tail -n 1)"
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ]; then
  build_scan_extension
  log "environment up to date ($VENV)"
  exit 0
fi

# Disk pre-flight: a fresh .venv takes about 7.1 GB (torch 2.14.1's x86_64 wheel is a CUDA build,
# 5.5 GB with its nvidia-* libraries). Running out half-way leaves pip's "[Errno 28] No space
# left on device" after minutes of work, so say it first, naming the folder and the numbers.
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
have_torch() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; }
NEED_GB="${SEMILLIE_SETUP_NEED_GB:-$(have_torch && echo 1.5 || echo 7.5)}"
FREE_GB="$(free_gb "$ROOT")"
if awk -v f="$FREE_GB" -v n="$NEED_GB" 'BEGIN { exit !(f < n) }'; then
  log "ERROR: only $FREE_GB GB free on the disk of $ROOT; setting up $VENV needs about $NEED_GB GB (torch's CUDA wheel alone is 5.5 GB). Free some space and rerun (override: SEMILLIE_SETUP_NEED_GB=0)."
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"

log "installing torch==$TORCH_VERSION and torchvision"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "$(grep '^torchvision==' "$ROOT/requirements/runtime.txt")"

# --- mmcv, compiled once per torch version ------------------------------------------------
WHEEL_DIR="$CACHE/wheels/torch-$TORCH_VERSION"
mkdir -p "$WHEEL_DIR"
have_mmcv() {
  "$VENV/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version('mmcv') == '$MMCV_VERSION' else 1)
PY
}
if ! have_mmcv; then
  # one build at a time per cache (another checkout may be building it now)
  exec 8>"$CACHE/mmcv-build.lock"
  flock 8
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with CPU ops against torch $TORCH_VERSION (about 20 min on 2 cores, once)"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers: "#error C++20 or later compatible compiler is required to use ATen"
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    grep -q 'c++20' "$SRC/setup.py" || { log "could not patch mmcv's C++ standard flag"; exit 1; }
    ( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$BUILD/dist" . )
    # publish atomically: a half-written wheel is never picked up by a later run
    built="$(ls "$BUILD"/dist/mmcv-*.whl)"
    cp "$built" "$WHEEL_DIR/.tmp-$(basename "$built")"
    mv "$WHEEL_DIR/.tmp-$(basename "$built")" "$WHEEL_DIR/$(basename "$built")"
    WHEEL="$WHEEL_DIR/$(basename "$built")"
    rm -rf "$BUILD"
  else
    log "reusing $WHEEL"
  fi
  flock -u 8
  "${PIP[@]}" install -q --no-deps "$WHEEL"
fi

log "installing runtime requirements"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
  -r "$ROOT/requirements/deployment.txt"
"${PIP[@]}" install -q --no-deps "mmagic==$MMAGIC_VERSION"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmagic, semillie_mm" \
  || { log "the environment does not import; see the error above"; exit 1; }
log "compiling the C++ CPU extension and warming the numba scan cache (the fallback)"
build_scan_extension
"$VENV/bin/python" -c "from semillie_mm.ops.selective_scan.backends.numba import warm_up; warm_up()" >/dev/null 2>&1 \
  || log "WARNING: could not warm the numba scan cache: its first call will compile (1-2 min)"
stamp_value > "$STAMP"
log "environment ready ($VENV)"
