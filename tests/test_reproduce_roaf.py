"""Smoke tests of the ROAF reproduction scripts (subprocess, --tiny budget)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, out, *extra):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny",
                         "--out", str(out), *extra],
                        capture_output=True, text=True, timeout=600, cwd=ROOT,   # a hang guard only
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_depth_tiny(tmp_path):
  # --tiny runs on scikit-learn digits, so this needs no Fashion-MNIST files.
  _run("reproduce_roaf_depth.py", tmp_path, f"--workdir_root={tmp_path / 'runs'}")
  res = json.loads((tmp_path / "depth_tiny.json").read_text())
  assert res["setting"]["dataset"] == "digits"
  md = (tmp_path / "depth_tiny.md").read_text()
  assert "| roaf |" in md and "Regenerate: `python scripts/reproduce_roaf_depth.py --tiny`" in md
  rows = {r["model"]: r for r in res["depth_sweep"]}
  assert set(rows) == {"roaf", "roaf_glorot", "tanh_mlp"}
  for r in rows.values():
    assert math.isfinite(r["log10_sigma_max"]) and r["log10_spread"] >= 0
    assert 0 < r["grad_ratio"] < 1e3
  # Depth 10, α = 0.99: the ROAF stack is close to an isometry (singular values
  # within a factor 10 of 1), the plain tanh stack is not better conditioned.
  assert abs(rows["roaf"]["log10_sigma_max"]) < 1 and rows["roaf"]["log10_spread"] < 1
  assert rows["tanh_mlp"]["log10_spread"] >= rows["roaf"]["log10_spread"]
  assert [t["model"] for t in res["training"]] == ["roaf", "tanh_mlp"]
  for t in res["training"]:
    assert t["finite"] and 0.0 <= t["test_accuracy"] <= 1.0
    assert 1.5 < t["first_loss"] < 3.5                  # ≈ ln 10 near init
    # Trained by the engine: its summary is in the run's workdir.
    summ = json.loads((tmp_path / "runs" / f"depth_{t['model']}_10" / "summary.json").read_text())
    assert summ["final"]["test_accuracy"]["mean"] == pytest.approx(t["test_accuracy"])
