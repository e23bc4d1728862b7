#!/usr/bin/env bash
# Prepare the files the GPU check (benchmarks/gpu_check.sh) needs on a device machine that has
# no network: Python 3.12 wheels of the OpenMMLab stack and mmagic's other imports, and the
# source packages of mmcv 2.1.0 and mamba-ssm (compiled there). Run once, here, with network:
#
#   bash tools/prepare_gpu_carry.sh [DEST]        # DEST defaults to .gpu_carry (git-ignored)
#
# Layout of DEST (docs/benchmarks.md, "GPU check"):
#   wheels/*.whl                 benchmarks/gpu/carry_requirements.txt, for CPython 3.12 x86_64
#   src/mmcv-2.1.0.tar.gz        compiled there with CPU ops (mmdet/mmagic import mmcv._ext)
#   src/mamba_ssm-*.tar.gz       only its csrc/selective_scan is compiled there
#   MANIFEST.txt                 sha256 of every file above
#   prebuilt/                    prebuilt_{mmcv,selective_scan}.tar.gz: built here when
#                                PREBUILD_PYTHON names a Python 3.12 with the device's torch
#                                (2.11.0+cu130 from the index) and nvcc 13 is installed
#                                (benchmarks/gpu/prebuild.py), or returned by a device run;
#                                kept when this script runs again
# Wheels come from the package index with `pip download` (binary wheels for cp312 manylinux;
# a package that has only a source package, e.g. adamp, is built into a pure-Python wheel
# here). The folder is written next to DEST and moved into place when complete.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.gpu_carry}"
REQ="$ROOT/benchmarks/gpu/carry_requirements.txt"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
LIMIT_MIB="${CARRY_LIMIT_MIB:-56}"   # the device call carries 64 MiB with the working tree
MMCV_VERSION="$(sed -n 's/^mmcv==//p' "$ROOT/requirements/mminstall.txt")"
MAMBA_VERSION="$(sed -n 's/^mamba-ssm==//p' "$ROOT/requirements/optional.txt")"

log() { echo "[prepare_gpu_carry] $*" >&2; }
[ -x "$PY" ] || { log "$PY not found: run tools/setup_env.sh first (or set PYTHON)"; exit 1; }
[ -f "$REQ" ] || { log "$REQ not found"; exit 1; }

TMP="$(mktemp -d "$(dirname "$DEST")/.gpu_carry.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/wheels" "$TMP/src" "$TMP/build"
PIP=("$PY" -m pip --disable-pip-version-check)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)

grep -v '^\s*#' "$REQ" | grep -v '^\s*$' | while read -r spec; do
  if "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${PLATFORMS[@]}" -d "$TMP/wheels" "$spec" 2>"$TMP/err"; then
    continue
  fi
  # no wheel: build one from the source package, and accept it only if it is pure Python
  log "$spec: no cp312 wheel on the index, building a wheel from its source package"
  "${PIP[@]}" wheel -q --no-deps --no-binary :all: -w "$TMP/build" "$spec" \
    || { cat "$TMP/err" >&2; log "$spec: neither a wheel nor a buildable source package"; exit 1; }
  for w in "$TMP"/build/*.whl; do
    case "$w" in
      *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$w" "$TMP/wheels/" ;;
      *) log "$spec: built $(basename "$w"), which is not pure Python"; exit 1 ;;
    esac
  done
done

# source packages (their setup.py imports torch: run with the project's venv python)
"${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$TMP/src" \
  "mmcv==$MMCV_VERSION"
MAMBA_SKIP_CUDA_BUILD=TRUE "${PIP[@]}" download -q --no-deps --no-binary :all: \
  --no-build-isolation -d "$TMP/src" "mamba-ssm==$MAMBA_VERSION"
listing="$(tar -tzf "$TMP"/src/mamba_ssm-*.tar.gz)"
[[ "$listing" == *csrc/selective_scan/selective_scan.cpp* ]] \
  || { log "the mamba-ssm source package has no csrc/selective_scan"; exit 1; }
rm -rf "$TMP/build" "$TMP/err"

# one version of each wheel: two would stop the install there
dups="$(ls "$TMP/wheels" | sed 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)"
[ -z "$dups" ] || { log "two versions of: $dups"; exit 1; }

(cd "$TMP" && find wheels src -type f | sort | xargs sha256sum) > "$TMP/MANIFEST.txt"
size_mib=$(( $(du -sb "$TMP" | cut -f1) / 1048576 ))
log "$(ls "$TMP/wheels" | wc -l) wheels, $(ls "$TMP/src" | wc -l) source packages, ${size_mib} MiB"
[ "$size_mib" -le "$LIMIT_MIB" ] || { log "${size_mib} MiB is over ${LIMIT_MIB} MiB"; exit 1; }

# binaries prebuilt earlier (here, or returned by a device run) are kept
[ ! -d "$DEST/prebuilt" ] || cp -a "$DEST/prebuilt" "$TMP/prebuilt"
rm -rf "$DEST.old"
[ ! -e "$DEST" ] || mv "$DEST" "$DEST.old"
mv "$TMP" "$DEST"
rm -rf "$DEST.old"
trap - EXIT

# nothing compiles on the device: mmcv's CPU ops and the selective-scan CUDA kernel are built
# here by a Python that matches the device image (benchmarks/gpu/prebuild.py)
if [ -n "${PREBUILD_PYTHON:-}" ]; then
  log "prebuilding mmcv and selective_scan_cuda with $PREBUILD_PYTHON (once; kept when the key matches)"
  "$PREBUILD_PYTHON" "$ROOT/benchmarks/gpu/prebuild.py" --carry "$DEST" >&2
  size_mib=$(( $(du -sb "$DEST" | cut -f1) / 1048576 ))
  log "with the prebuilt binaries: ${size_mib} MiB"
  [ "$size_mib" -le "$LIMIT_MIB" ] || { log "${size_mib} MiB is over ${LIMIT_MIB} MiB"; exit 1; }
else
  log "PREBUILD_PYTHON not set: the device compiles mmcv and the kernel itself (minutes of device time) unless $DEST/prebuilt has them"
fi
log "ready: $DEST (carry it as '$(basename "$DEST")'; see docs/benchmarks.md, GPU check)"
