#!/usr/bin/env bash
# Creates .venv if missing, installs the package, and runs the default experiment
# (the deep-MLP stability study), printing its table and writing results/stability/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "could not install dataset-fashion-mnist; falling back to scikit-learn digits"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e .
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
exec .venv/bin/python scripts/stability_study.py "$@"
