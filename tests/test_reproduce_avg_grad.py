"""Smoke test: scripts/reproduce_avg_grad.py --tiny runs end to end and writes sane numbers."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reproduce_avg_grad_tiny(tmp_path):
  out = tmp_path / "out"
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "reproduce_avg_grad.py"), "--tiny",
         f"--out={out}", f"--workdir_root={tmp_path / 'runs'}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "results.json").read_text())
  assert (out / "table.md").read_text().startswith("# Averaged-gradient RMSProp")
  arms = res["arms"]
  # rmsprop + secant at one rate, deep (4) and shallow (1) control.
  assert {(a["method"], a["depth"]) for a in arms} == {
      ("rmsprop", 4), ("secant", 4), ("rmsprop", 1), ("secant", 1)}
  for a in arms:
    assert not a["diverged"], a
    assert 0.0 < a["final_train_loss_median"] < 2.0 * math.log(10), a
    assert 0.0 <= a["test_accuracy_mean"] <= 1.0
    assert len(a["test_accuracy_per_seed"]) == 2
    assert a["ms_per_step"] > 0 and math.isfinite(a["ms_per_step"])
    losses = [l for _, l in a["curve"]]
    assert all(math.isfinite(l) for l in losses)
    assert losses[-1] < losses[0], a  # 20 steps of RMSProp lower the loss
  for an in res["analysis"]:
    # The auto target is reached by every method (at its best rate).
    assert math.isfinite(an["target_loss"])
    for m, r in an["methods"].items():
      assert r["best_iters_to_target"] is not None and 0 < r["best_iters_to_target"] <= 20, (m, r)
      assert r["speedup_vs_rmsprop"] > 0
      assert r["cost_per_step_vs_rmsprop"] > 0
