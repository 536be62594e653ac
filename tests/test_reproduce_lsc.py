"""Smoke tests: the LSC reproduction scripts run end-to-end with a tiny budget (subprocess)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _run(script, out_dir):
  r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny", "--out_dir", str(out_dir)],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]


def test_reproduce_lsc_rnn_tiny(tmp_path):
  _run("reproduce_lsc_rnn.py", tmp_path)
  d = json.load(open(tmp_path / "rnn_tiny.json"))
  (row,) = d["rows"]
  assert row["cell"] == "lstm" and row["arm"] == "1"
  assert 0.0 <= row["test_accuracy"] <= 1.0 and math.isfinite(row["train_loss"])
  for k in ("time", "depth", "readout"):
    assert 0.0 < row[f"{k}_before"] < 3.0 and 0.0 < row[f"{k}_after"] < 3.0
  # Pre-training moves the read-out radius toward its target 1.
  assert abs(row["readout_after"] - 1) <= abs(row["readout_before"] - 1) + 1e-6
  assert "| lstm | 2 | LSC ρ=1 |" in (tmp_path / "rnn_tiny.md").read_text()


def test_reproduce_lsc_ffn_tiny(tmp_path):
  _run("reproduce_lsc_ffn.py", tmp_path)
  d = json.load(open(tmp_path / "ffn_tiny.json"))
  assert {(r["act"], r["arm"]) for r in d["best"]} == {("sin", "glorot"), ("sin", "lsc")}
  for r in d["runs"]:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
  (lsc_run,) = [r for r in d["runs"] if r["arm"] == "lsc"]
  assert abs(lsc_run["depth_after"] - 1) < abs(lsc_run["depth_before"] - 1)
  assert "| sin | lsc |" in (tmp_path / "ffn_tiny.md").read_text()


def test_lsc_ffn_spectrum_tiny(tmp_path):
  _run("lsc_ffn_spectrum.py", tmp_path)
  d = json.load(open(tmp_path / "spectrum_tiny.json"))
  for w in ("before", "after"):
    r = d[w]
    assert r["max_abs_eig"] >= r["second_abs_eig"] >= r["median_abs_eig"] > 0
    # Π of the per-layer r.m.s. σ, recomputed from the per-layer values.
    assert math.isclose(r["rms_sv_product"], math.prod(d["per_layer"][w]["rms_sv"]), rel_tol=1e-6)
  # Pre-training moves the top eigenvalue toward its target 1.
  assert abs(d["after"]["max_abs_eig"] - 1) < abs(d["before"]["max_abs_eig"] - 1)
  assert "| after |" in (tmp_path / "spectrum_tiny.md").read_text()
