"""Smoke test of scripts/reproduce_glorot_table1.py (subprocess, --tiny budget)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reproduce_glorot_tiny(tmp_path):
  out = tmp_path / "glorot"
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "reproduce_glorot_table1.py"), "--tiny",
       "--datasets", "shapeset", "--activations", "tanh", "--inits", "normalized",
       "--out", str(out), "--workroot", str(tmp_path / "runs")],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = (out / "table1.md").read_text()
  assert "Tanh N" in table and "Budget (tiny)" in table
  res = json.loads((out / "table1.json").read_text())
  assert len(res["runs"]) == 1
  for r in res["runs"]:
    assert r["status"] == "ok"
    assert 0.0 <= r["test_error"] <= 100.0 and 0.0 <= r["val_error"] <= 100.0
  # Jacobian at init: finite, positive, and the normalized init has the larger
  # mean singular value for tanh (Glorot & Bengio 2010 §4.2.3).
  jac = {(j["activation"], j["init"]): j["mean_sv"] for j in res["jacobian_at_init"]}
  assert all(math.isfinite(v) and 0.0 < v < 3.0 for v in jac.values())
  assert jac[("tanh", "normalized")] > jac[("tanh", "standard")]
  assert 0.2 < jac[("tanh", "standard")] < 0.8 and 0.5 < jac[("tanh", "normalized")] < 1.2
  assert res["figures"] and all(os.path.exists(p) for p in res["figures"])
