#!/usr/bin/env bash
# The prepared GPU check (docs/benchmarks.md, "GPU check"). On a device machine:
#
#   bash benchmarks/gpu_check.sh                 # set-up from .gpu_carry/, then the checks
#   bash benchmarks/gpu_check.sh --dry-run       # here: what runs on CPU, small sizes
#
# Reports go to $OUT when set (the device tool's folder), else work_dirs/gpu_check[_dry]:
# gpu_check.json, gpu_check.md, gpu_check.log. Other options: python benchmarks/gpu_check.py -h.
# Python: $PYTHON, else .venv/bin/python for --dry-run, else python3 (the device image's, with
# torch and CUDA).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  case " $* " in
    *" --dry-run "*) [ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python" || PY=python3 ;;
    *) PY=python3 ;;
  esac
fi
export PYTHONUNBUFFERED=1
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
