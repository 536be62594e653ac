#!/usr/bin/env bash
# The default experiment: the deep-MLP stability study (scripts/stability_study.py).
# Creates .venv if missing, installs the package, then runs every arm of
# experiments/configs/stability.py through the engine, printing each arm and its workdir.
#
#   scripts/run.sh                # quick setting (600 steps, 2 seeds per arm, LSC 50 steps): 2.2 min on 2 loaded cores (measured);
#                                 # the table goes to a temporary folder (printed), never results/
#   scripts/run.sh --full         # the full study (3000 steps, 3 seeds; ≈ 20 min): writes results/stability/
#   scripts/run.sh --tiny         # seconds-long smoke run on digits
#   scripts/run.sh --arms=tanh-standard,roaf-tanh   # other flags go to stability_study.py
#
# JAX uses the accelerator when one is installed: nothing here or in the study sets JAX_PLATFORMS
# (scripts/test.sh sets it to cpu for the tests only). On a GPU: pip install -e . "jax[cuda13]" first.
# Each step is announced with "==>"; then the study prints each arm, its workdir and a progress bar.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
setting=(--quick)
args=()
for a in "$@"; do
  case "$a" in
    --full) setting=() ;;
    --quick|--tiny) setting=("$a") ;;
    *) args+=("$a") ;;
  esac
done
step() { echo "==> $*"; }
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  step "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "could not install dataset-fashion-mnist; the study falls back to scikit-learn digits"
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $PY"
  "$PY" -m venv .venv
fi
# pip runs when this .venv lacks this pyproject.toml's install (a stamp named by its sha256, as in
# scripts/test.sh): a new .venv or an edited pyproject.toml installs again; rm .venv/.installed-* forces it.
stamp=".venv/.installed-run-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  step "package already installed in .venv for this pyproject.toml (pip skipped)"
else
  step "installing the package into .venv (pip install -e .)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  pip_log=$(mktemp -t st_pip.XXXXXX)   # pip's build banners stay out of the console unless it fails
  if ! .venv/bin/python -m pip install -q -e . >"$pip_log" 2>&1; then
    cat "$pip_log"; echo "pip install failed (log above)"; exit 1
  fi
  rm -f "$pip_log" .venv/.installed-run-*
  touch "$stamp"
fi
step "JAX backend (JAX_PLATFORMS=${JAX_PLATFORMS:-<unset>}: JAX picks the accelerator when one is installed)"
.venv/bin/python -c 'import jax; print(jax.default_backend(), jax.devices())' || echo "could not import jax"
step "python scripts/stability_study.py ${setting[*]-} ${args[*]-}"
exec .venv/bin/python scripts/stability_study.py ${setting[@]+"${setting[@]}"} ${args[@]+"${args[@]}"}
