#!/usr/bin/env bash
# Creates .venv if missing, installs the package with test extras, runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[test]"
export JAX_PLATFORMS=cpu
exec .venv/bin/python -m pytest "$@"
