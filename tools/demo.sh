#!/usr/bin/env bash
# Quick-start command 1: set up .venv if needed (idempotent), build the embedded demo
# data on first use, train Semi-LLIE on it (CPU), evaluate against the un-enhanced
# input and save enhanced images plus side-by-side pictures.
#   bash tools/demo.sh [--work-dir DIR] [extra tools/run_demo.py options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" tools/run_demo.py "$@"
