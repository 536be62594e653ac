"""Smoke tests of the ROAF reproduction scripts (subprocess, --tiny budget)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
needs_fmnist = pytest.mark.skipif(not os.path.exists(FMNIST),
                                  reason="Fashion-MNIST IDX files not installed")


def _run(script, out, *extra):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny",
                         "--out", str(out), *extra],
                        capture_output=True, text=True, timeout=180, cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]


@needs_fmnist
def test_depth_tiny(tmp_path):
  _run("reproduce_roaf_depth.py", tmp_path)
  res = json.loads((tmp_path / "depth_tiny.json").read_text())
  assert "| roaf |" in (tmp_path / "depth_tiny.md").read_text()
  rows = {r["model"]: r for r in res["depth_sweep"]}
  assert set(rows) == {"roaf", "roaf_glorot", "tanh_mlp"}
  for r in rows.values():
    assert math.isfinite(r["log10_sigma_max"]) and r["log10_spread"] >= 0
    assert 0 < r["grad_ratio"] < 1e3
  # Depth 10, α = 0.99: the ROAF stack is close to an isometry (singular values
  # within a factor 10 of 1), the plain tanh stack is not better conditioned.
  assert abs(rows["roaf"]["log10_sigma_max"]) < 1 and rows["roaf"]["log10_spread"] < 1
  assert rows["tanh_mlp"]["log10_spread"] >= rows["roaf"]["log10_spread"]
  for t in res["training"]:
    assert t["finite"] and 0.0 <= t["test_accuracy"] <= 1.0
    assert 1.5 < t["first_loss"] < 3.5                  # ≈ ln 10 at init
