"""Tiny configs through the CLI as users run them (default flags, --host_devices=auto) on 2 CPU devices.

With seeds split over devices, the per-layer diagnostics used to deadlock at the step-0 measurement
(jaxlib's batched LAPACK kernels blocking every thread of XLA's shared CPU pool); a subprocess timeout
turns such a hang into a failure.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_GUARD = 300  # seconds


def _finite_numbers(tree):
  if isinstance(tree, dict):
    return [x for v in tree.values() for x in _finite_numbers(v)]
  if isinstance(tree, list):
    return [x for v in tree for x in _finite_numbers(v)]
  return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.parametrize("args", [
    # diagnostics (Jacobian SVDs) with the seeds split over the 2 devices
    ["--config=experiments/configs/default.py:tiny", "--config.diagnostics.enabled=True", "--config.num_seeds=2"],
    # every method at once: LSC pre-training, averaged-gradient RMSProp, output clipping, diagnostics
    ["--config=experiments/configs/compose.py:tiny-mlp", "--config.num_seeds=2", "--config.num_steps=10",
     "--config.log_every=10", "--config.eval_every=10", "--config.checkpoint_every=10",
     "--config.diagnostics.every=10", "--config.lsc.steps=2"],
], ids=["default-diagnostics", "compose-mlp"])
def test_tiny_config_finishes_with_seeds_split_over_two_devices(tmp_path, args):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
  p = subprocess.run([sys.executable, "-m", "experiments.main", *args, f"--workdir={tmp_path}"], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=HANG_GUARD)
  assert p.returncode == 0, p.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["info"]["devices"] == 2 and summary["info"]["mesh_splits"] == "seeds"
  final = summary["final"]
  for key in ("train_loss", "test_loss", "test_accuracy"):
    assert len(final[key]["per_seed"]) == 2 and all(math.isfinite(v) for v in final[key]["per_seed"]), key
  assert (tmp_path / "diagnostics.npz").exists()
  assert all(math.isfinite(x) for x in _finite_numbers(final))
