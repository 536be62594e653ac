"""Smoke tests of the ROAF recurrent studies (psMNIST, long-lag memory) through the engine (--tiny)."""
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
                         "--out", str(out), "--workdir_root", str(out / "runs"), *extra],
                        capture_output=True, text=True, timeout=900, cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_memory_tiny(tmp_path):
  _run("reproduce_roaf_memory.py", tmp_path, "--cells=roaf")
  res = json.loads((tmp_path / "memory_tiny.json").read_text())
  rows = res["rows"]
  assert {(r["task"], r["cell"]) for r in rows} == {("adding", "roaf"), ("copy", "roaf")}
  for r in rows:
    want = 1 / 6 if r["task"] == "adding" else 10 * math.log(8) / (r["lag"] + 20)
    assert r["baseline_loss"] == pytest.approx(want)
    assert r["finite"] and r["ratio"] == pytest.approx(r["test_loss"] / r["baseline_loss"], rel=1e-6)
    assert r["solved_seeds"] == sum(x <= 0.1 for x in r["ratio_per_seed"])
    assert [s for s, _ in r["curve"]] == [10, 20]          # the learning curve: one point per eval
  # Every run went through the engine: its workdir holds the engine's files.
  for r in rows:
    wd = tmp_path / "runs" / f"{r['task']}_{r['cell']}_T{r['lag']}"
    assert (wd / "summary.json").exists() and (wd / "config.json").exists()
  md = (tmp_path / "memory_tiny.md").read_text()
  assert "Regenerate: `python scripts/reproduce_roaf_memory.py" in md and "Largest T solved" in md
  assert (tmp_path / "memory_tiny.png").stat().st_size > 0


def test_psmnist_tiny(tmp_path):
  _run("reproduce_roaf_psmnist.py", tmp_path, "--cells=roaf,lstm")
  res = json.loads((tmp_path / "psmnist_tiny.json").read_text())
  rows = {r["cell"]: r for r in res["rows"]}
  assert list(rows) == ["roaf", "lstm"]
  for r in rows.values():
    assert len(r["test_acc_per_epoch"]) == 2                 # evaluated after each of the 2 epochs
    assert all(0.0 <= a <= 1.0 for a in r["test_acc_per_epoch"])
    assert math.isfinite(r["train_loss_last"]) and 0.5 < r["train_loss_last"] < 5.0
  # Matched hidden size H = 8, F = 1 input, 10 classes: Elman/ROAF have
  # H + H + H² (W_x, b, W_h) + 10H + 10 parameters; the LSTM 4 gates of W_x, W_h, one bias.
  assert rows["roaf"]["num_params"] == 8 + 8 + 64 + 80 + 10
  assert rows["lstm"]["num_params"] == 4 * (8 + 64 + 8) + 90
