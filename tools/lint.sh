#!/usr/bin/env bash
# Lint the whole tree with ruff (pycodestyle, pyflakes, isort rules; settings in ruff.toml).
#   bash tools/lint.sh            check
#   bash tools/lint.sh --fix      also apply ruff's safe fixes (import order, unused imports)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/ruff" check . "$@"
