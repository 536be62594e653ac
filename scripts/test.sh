#!/usr/bin/env bash
# Creates .venv if missing, installs the package with test extras, runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip runs when this .venv lacks this pyproject.toml's install (a stamp named by its sha256; a new
# .venv or an edited pyproject.toml installs again): 4-6 s saved on every later local run. An
# editable install needs nothing for source edits. rm .venv/.installed-* forces a reinstall.
stamp=".venv/.installed-test-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-test-*
  touch "$stamp"
fi
export JAX_PLATFORMS=cpu
# Bytecode caches on (some images set PYTHONDONTWRITEBYTECODE): without them every test worker and
# each of the ~100 launcher/study subprocesses recompiles the package's sources (0.08–0.2 s a process, measured)
# and pytest re-rewrites the test modules' asserts at every collection.
unset PYTHONDONTWRITEBYTECODE
# One persistent XLA cache for the whole run, every program in it (threshold 0): the two workers
# and the ~100 launcher/study subprocesses compile many of the same programs, most of them the
# ~10-30 ms eager single-op programs of tests and model inits (≈ 6,000 per run). Cached from 0 s
# instead of 0.05 s, four in-process test files (recurrent, avg_grad, lsc, roaf; -n 2, alternating,
# 4 runs each) took 157 s of user CPU instead of 170 s (wall 77-98 s vs 92-96 s).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$(mktemp -d -t st_jax_cache.XXXXXX)}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"
# The suite checks numbers, not speed, and is ~70 % XLA compile time: LLVM's
# optimisation passes (measured: a tiny config's init 5.4 → 1.2 s, its train
# chunk 8.6 → 5.8 s) and XLA:CPU's new MLIR fusion emitters (the legacy
# emitters compile the 9 LSC time-radius tests in 10.6 instead of 26.1 s of
# backend compile) are off. Results agree within the tests' tolerances.
# Each compile is also one LLVM module, not split for parallel codegen: the workers
# already keep every core busy, so the split's threads only add work (measured at -n 2,
# alternating: test_lsc + test_avg_grad + test_recurrent 63.7 / 64.0 s wall against
# 78.2 / 72.1 s; test_train + test_configs + test_launcher + test_scripts 73.9 / 70.2 s
# against 77.6 / 86.1 s). Idle, one process, the split pays: outside the suite it stays on.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
# NumPy's OpenBLAS on one thread: the tests' reference computations (eigenvalues, SVDs, matmuls of small
# matrices) gain nothing from a second thread when both cores already run a worker, and OpenBLAS's
# threads spin while they wait (measured: four numpy-heavy files at -n 2, 4 alternating runs each,
# 56.1 / 50.1 / 51.3 / 50.1 s wall against 62.6 / 53.9 / 52.8 / 55.2 s; the same tests pass).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
# Launcher and study subprocesses would re-execute themselves with tcmalloc where it
# is installed (stable_training/allocator.py): a second interpreter start each, for
# no change in any number (the compile-bound suite is no faster with it, measured).
# tests/test_allocator.py turns it back on for itself.
export STABLE_TRAINING_ALLOCATOR="${STABLE_TRAINING_ALLOCATOR:-system}"
# Every core by default (pytest-xdist), as a newcomer runs it bare; an explicit -n (CI: -n 2) wins.
case " $* " in
  *" -n "*|*" -n="*|*" --numprocesses"*|*" -p no:xdist "*) ;;
  *) set -- -n auto "$@" ;;
esac
exec .venv/bin/python -m pytest "$@"
