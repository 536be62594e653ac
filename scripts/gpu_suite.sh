#!/usr/bin/env bash
# Every claim of the reproduction ledger on one NVIDIA H200 in ≤ 9 minutes (scripts/reproduce_all.py --scale=gpu).
#
#   scripts/gpu_suite.sh OUTDIR [reproduce_all flags]      # e.g. --only=stability,dqn
#   GPU_SUITE_SKIP_INSTALL=1 PYTHON=.venv/bin/python scripts/gpu_suite.sh /tmp/s --scale=tiny --only=lsc_spectrum
#                                                          # the CPU check of this script (tests/test_reproduce_all.py)
#
# For a machine with JAX + CUDA already installed and no network (ENVIRONMENT.md: Python 3.12, jax with the
# CUDA plugin, flax, optax, chex, orbax-checkpoint, absl-py, numpy, scikit-learn, matplotlib, tqdm,
# tensorboard, threadpoolctl; NOT ml-collections, flashbax, tensorboardX, mnist1d). Steps, each announced
# with "==>":
#  1. install without network: the wheels in .whl/ (the dependencies the image lacks), then the package
#     (pip install --no-deps --no-build-isolation -e .); PYTHONPATH also gets the checkout, so the scripts
#     run even if the editable install fails. GPU_SUITE_SKIP_INSTALL=1 skips the installs (a CPU test in
#     an existing venv).
#  2. check imports: one "MISSING: ..." line per dependency that does not import.
#  3. Fashion-MNIST: /usr/share/datasets/fashion-mnist, else the four .gz files of data/fashion-mnist/ in
#     the checkout (FASHION_MNIST_SRC) copied there; missing: the studies on it fail ("not run"), the
#     others run.
#  4. print JAX's backend and devices (JAX_PLATFORMS is left alone).
#  5. run reproduce_all.py --scale=gpu --jobs=4 --time_budget_s=420 into a work folder: four studies at
#     a time, longest first; whatever still runs at 420 s is stopped and its claims read "not run".
#  6. OUTDIR receives 4 files: summary.md, summary.json, gpu_suite.log (this script's output) and
#     studies.tar.gz (every study's table, JSON, figures and log; untar it next to summary.md and its
#     links work).
# Time on the H200: install ≈ 20 s, import check and devices ≈ 20 s, studies ≤ 420 s (+ ≤ 20 s to stop
# the last ones), summary and tarball ≈ 5 s: ≤ 8 min. The per-study budgets and the step-time assumptions
# behind them are in stable_training/studies/claims.py (STUDIES, the "gpu" settings).
#
# --scale=tiny (or GPU_SUITE_SCALE=tiny) runs the tiny budgets instead, one study at a time, without a time
# budget: the CPU smoke test of this script.
#
# Preparing the wheels here (pure-Python wheels; .whl/ is not committed: it travels with the checkout as an
# untracked folder or `carry`):
#   pip download --no-deps -d .whl ml-collections==1.1.0 flashbax==0.1.3 tensorboardX==2.6.5 mnist1d==0.0.2.post1
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?usage: scripts/gpu_suite.sh OUTDIR [reproduce_all flags]}
shift
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
exec > >(tee "$OUTDIR/gpu_suite.log") 2>&1
PY=${PYTHON:-python3}
scale=${GPU_SUITE_SCALE:-gpu}
args=()
for a in "$@"; do
  case "$a" in
    --scale=*) scale=${a#--scale=} ;;
    *) args+=("$a") ;;
  esac
done
step() { echo "==> $(date +%T) $*"; }
t0=$(date +%s)

if [ "${GPU_SUITE_SKIP_INSTALL:-0}" = 1 ]; then
  step "install skipped (GPU_SUITE_SKIP_INSTALL=1); python: $PY"
else
  if compgen -G ".whl/*.whl" >/dev/null; then
    step "pip install --no-index --no-deps .whl/*.whl ($(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' '))"
    "$PY" -m pip install -q --no-index --no-deps .whl/*.whl || echo "FAILED: pip install of .whl/*.whl"
  else
    echo "no .whl/ folder: the dependencies the image lacks must already be installed (see the import check)"
  fi
  step "pip install --no-deps --no-build-isolation -e ."
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
    || echo "FAILED: editable install (setuptools missing?); the scripts still import the package through PYTHONPATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step "checking imports"
"$PY" - <<'EOF'
import importlib
need = ["jax", "flax", "optax", "chex", "absl", "numpy", "sklearn", "matplotlib", "tqdm", "threadpoolctl", "yaml",
        "orbax.checkpoint", "ml_collections", "flashbax", "tensorboardX", "stable_training", "experiments.configs.default"]
missing = []
for mod in need + ["mnist1d"]:
  try:
    importlib.import_module(mod)
  except Exception as e:
    optional = " (optional: only the mnist1d dataset uses it)" if mod == "mnist1d" else ""
    print(f"MISSING: {mod}{optional}: {type(e).__name__}: {e}")
    missing += [] if optional else [mod]
print("imports ok" if not missing else f"{len(missing)} required module(s) missing: the studies that import them fail")
EOF

FM=/usr/share/datasets/fashion-mnist
SRC=${FASHION_MNIST_SRC:-data/fashion-mnist}
if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  step "Fashion-MNIST: $FM"
elif [ -f "$SRC/train-images-idx3-ubyte.gz" ] && mkdir -p "$FM" 2>/dev/null && cp "$SRC"/*-ubyte.gz "$FM"/; then
  step "Fashion-MNIST: copied $SRC/*.gz to $FM"
else
  echo "MISSING: Fashion-MNIST (no $FM/*.gz, nor $SRC/*.gz to copy there): the studies on it fail or fall back to digits"
fi

step "JAX backend (JAX_PLATFORMS=${JAX_PLATFORMS:-<unset>})"
"$PY" -c 'import jax; print(jax.__version__, jax.default_backend(), jax.devices())' || echo "FAILED: import jax"

# Four processes share one GPU: allocate on demand instead of 75 % each. float32 matmuls as on the CPU
# ledger (TF32 would change the deep-Jacobian spectra).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}
work=$(mktemp -d -t gpu_suite.XXXXXX)
if [ "$scale" = gpu ]; then
  run=(--scale=gpu --jobs=4 --time_budget_s=420)
else
  run=(--scale="$scale")
fi
step "python scripts/reproduce_all.py ${run[*]} --out=$work ${args[*]-}"
"$PY" scripts/reproduce_all.py "${run[@]}" --out="$work" ${args[@]+"${args[@]}"}
rc=$?

step "collecting into $OUTDIR"
cp "$work"/summary.md "$work"/summary.json "$OUTDIR"/ 2>/dev/null || echo "no summary written (reproduce_all exit status $rc)"
tar -czf "$OUTDIR/studies.tar.gz" -C "$work" --exclude=./summary.md --exclude=./summary.json . && rm -rf "$work"
step "done in $(( $(date +%s) - t0 )) s, exit status $rc: $OUTDIR/summary.md"
exit $rc
