#!/usr/bin/env bash
# Security audit of the pinned dependency stack (docs/install.md, "Security audit").
#   bash tools/audit_requirements.sh [--service pypi|osv] [--offline-db DIR] [pip-audit args]
# Audits what the pins resolve to: `pip freeze` of the project's venv (.venv, or $PYTHON's
# environment; mmcv's locally built wheel counts as mmcv==2.1.0) plus the fully pinned files that
# tools/setup_env.sh does not install (requirements/optional.txt, requirements/benchmarks.txt).
# pip-audit runs from a throwaway venv ($SEMILLIE_CACHE/pip-audit-venv), not the project's, with
# --strict: a package the service cannot look up fails the audit instead of passing silently.
# --offline-db DIR: no service is reachable; match the pins against a checkout of the PyPA advisory
# database (https://github.com/pypa/advisory-database, its vulns/ folder; tools/audit_offline.py).
# Accepted findings are passed as --ignore-vuln ID (listed, with reasons, in docs/install.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${SEMILLIE_CACHE:-$HOME/.cache/semillie-mm}"
AUDIT_VENV="${AUDIT_VENV:-$CACHE/pip-audit-venv}"
PIP_AUDIT_VERSION=2.10.1
SERVICE=pypi
OFFLINE_DB=
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --service) SERVICE="$2"; shift 2 ;;
    --offline-db) OFFLINE_DB="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# exact pins of the installed stack; a wheel installed from a file (mmcv) becomes name==version
"$PY" -m pip freeze --all --exclude-editable 2>/dev/null \
  | sed -E 's#^([A-Za-z0-9_.-]+) @ file://.*/[A-Za-z0-9_]+-([0-9][^-]*)-.*\.whl.*#\1==\2#' \
  | grep '==' > "$WORK/pins.txt"
grep -h '^[A-Za-z0-9].*==' "$ROOT/requirements/optional.txt" "$ROOT/requirements/benchmarks.txt" \
  >> "$WORK/pins.txt"
echo "audit: $(wc -l < "$WORK/pins.txt") pinned distributions" >&2
if [ -n "$OFFLINE_DB" ]; then
  echo "audit: offline, advisories of $OFFLINE_DB" >&2
  exec "$PY" "$ROOT/tools/audit_offline.py" -r "$WORK/pins.txt" --db "$OFFLINE_DB" "${ARGS[@]}"
fi
if [ ! -x "$AUDIT_VENV/bin/pip-audit" ]; then
  python3 -m venv "$AUDIT_VENV"
  "$AUDIT_VENV/bin/pip" install -q "pip-audit==$PIP_AUDIT_VERSION"
fi
"$AUDIT_VENV/bin/pip-audit" -r "$WORK/pins.txt" --no-deps --disable-pip --strict \
  -s "$SERVICE" --desc on --aliases on "${ARGS[@]}"
