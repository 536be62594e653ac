"""Smoke tests: the LSC sweeps run end to end through the engine with --tiny (subprocess, scikit-learn digits)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _run(script, tmp_path):
  out = tmp_path / "out"
  r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny", f"--out={out}",
                      f"--workdir_root={tmp_path / 'runs'}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=600,   # a hang guard only
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr[-3000:]
  return out


def _train_records(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["kind"] == "train"]


def _check_curve(curve, workdir, row):
  """A learning curve of the JSON is its run's training loss per seed, as the run's metrics.jsonl has it."""
  recs = _train_records(workdir)
  assert curve["run"] == workdir.name and len(recs) == 5          # --tiny logs 5 records
  assert curve["step"] == [r["step"] for r in recs] == [2, 4, 6, 8, 10]
  assert curve["values"] == [[r["train_loss"]["per_seed"][s] for r in recs] for s in range(len(curve["values"]))]
  # the last point is the run's final training loss (the table row's, averaged over seeds)
  summ = json.load(open(workdir / "summary.json"))
  assert [v[-1] for v in curve["values"]] == summ["final"]["train_loss"]["per_seed"]
  assert sum(v[-1] for v in curve["values"]) / len(curve["values"]) == pytest.approx(row["train_loss"])


def _check_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 10_000


def test_reproduce_lsc_rnn_tiny(tmp_path):
  out = _run("reproduce_lsc_rnn.py", tmp_path)
  d = json.load(open(out / "rnn_tiny.json"))
  assert d["dataset"] == "digits"
  (row,) = d["rows"]
  assert row["cell"] == "lstm" and row["arm"] == "1"
  assert 0.0 <= row["test_accuracy"] <= 1.0 and math.isfinite(row["train_loss"])
  for k in ("time", "depth", "readout"):
    # ρ = 1 pre-training (30 steps, tolerance 0.08 per layer) moves every radius to near its target 1.
    assert 0.0 < row[f"{k}_before"] < 3.0
    assert abs(row[f"{k}_after"] - 1) < 0.15, (k, row)
    assert abs(row[f"{k}_after"] - 1) <= abs(row[f"{k}_before"] - 1) + 1e-6, (k, row)
  # The run went through the engine, which logged the same radii in its summary.
  summ = json.load(open(tmp_path / "runs" / "rnn-lstm-2-1" / "summary.json"))
  assert summ["lsc"]["lsc_after"][0]["readout"] == pytest.approx(row["readout_after"])
  md = (out / "rnn_tiny.md").read_text()
  assert "| lstm | 2 | LSC ρ=1 |" in md
  assert "Regenerate: `python scripts/reproduce_lsc_rnn.py --tiny`" in md
  # Learning curves: one panel per (cell, depth), one curve per arm; training loss (evaluated once).
  curves = d["curves"]
  assert curves["figure"] == str(out / "rnn_tiny.png") and "`rnn_tiny.png`" in md
  _check_png(out / "rnn_tiny.png")
  assert curves["metric"] == "train_loss" and curves["log_y"]
  (panel,) = curves["panels"]
  assert panel["title"] == "lstm, depth 2" and list(panel["curves"]) == ["LSC ρ=1"]
  _check_curve(panel["curves"]["LSC ρ=1"], tmp_path / "runs" / "rnn-lstm-2-1", row)


def test_reproduce_lsc_ffn_tiny(tmp_path):
  out = _run("reproduce_lsc_ffn.py", tmp_path)
  d = json.load(open(out / "ffn_tiny.json"))
  assert d["dataset"] == "digits"
  assert {(r["act"], r["arm"]) for r in d["best"]} == {("sin", "glorot"), ("sin", "lsc")}
  for r in d["runs"]:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
  (lsc_run,) = [r for r in d["runs"] if r["arm"] == "lsc"]
  (glorot_run,) = [r for r in d["runs"] if r["arm"] == "glorot"]
  assert "depth_before" not in glorot_run
  # ρ = 1 for every layer Jacobian: the mean radius ends near 1 and closer than it started.
  assert abs(lsc_run["depth_after"] - 1) < 0.1
  assert abs(lsc_run["depth_after"] - 1) < abs(lsc_run["depth_before"] - 1)
  assert abs(lsc_run["readout_after"] - 1) < abs(lsc_run["readout_before"] - 1)
  assert os.path.exists(tmp_path / "runs" / "ffn-sin-lsc-0.001" / "summary.json")
  md = (out / "ffn_tiny.md").read_text()
  assert "| sin | lsc |" in md and "Regenerate: `python scripts/reproduce_lsc_ffn.py --tiny`" in md
  # Learning curves: one panel per activation, each arm at its best lr; training loss (evaluated once).
  curves = d["curves"]
  assert curves["figure"] == str(out / "ffn_tiny.png") and "`ffn_tiny.png`" in md
  _check_png(out / "ffn_tiny.png")
  assert curves["metric"] == "train_loss" and curves["log_y"]
  (panel,) = curves["panels"]
  assert list(panel["curves"]) == ["glorot (lr 0.001)", "lsc (lr 0.001)"]
  _check_curve(panel["curves"]["glorot (lr 0.001)"], tmp_path / "runs" / "ffn-sin-glorot-0.001", glorot_run)
  _check_curve(panel["curves"]["lsc (lr 0.001)"], tmp_path / "runs" / "ffn-sin-lsc-0.001", lsc_run)
  # the two arms' curves differ (each is its own run's)
  assert panel["curves"]["glorot (lr 0.001)"]["values"] != panel["curves"]["lsc (lr 0.001)"]["values"]


def test_lsc_ffn_spectrum_tiny(tmp_path):
  out = _run("lsc_ffn_spectrum.py", tmp_path)
  d = json.load(open(out / "spectrum_tiny.json"))
  assert d["settings"]["dataset"] == "digits" and d["pretrain_steps"] >= 1
  for w in ("before", "after"):
    r = d[w]
    assert all(math.isfinite(r[k]) for k in r)
    assert r["max_abs_eig"] >= r["second_abs_eig"] >= r["median_abs_eig"] > 0
    assert len(d["per_layer"][w]["rms_sv"]) == d["settings"]["depth"] - 1
    # Π of the per-layer r.m.s. σ, recomputed from the per-layer values.
    assert math.isclose(r["rms_sv_product"], math.prod(d["per_layer"][w]["rms_sv"]), rel_tol=1e-6)
  # Pre-training moves the top eigenvalue to near its target 1 (from ≈ 0.6 for the standard init).
  assert abs(d["after"]["max_abs_eig"] - 1) < abs(d["before"]["max_abs_eig"] - 1)
  assert abs(d["after"]["max_abs_eig"] - 1) < 0.1
  md = (out / "spectrum_tiny.md").read_text()
  assert "| after |" in md and "Regenerate: `python scripts/lsc_ffn_spectrum.py --tiny`" in md
