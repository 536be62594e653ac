"""Smoke test: scripts/reproduce_avg_grad.py --tiny runs its arms through the engine and writes sane numbers."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reproduce_avg_grad_tiny(tmp_path):
  out = tmp_path / "out"
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "reproduce_avg_grad.py"), "--tiny",
         f"--out={out}", f"--workdir_root={tmp_path / 'runs'}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,  # hang guard only
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  # A quiet console: no JAX backend probe, no library INFO lines (absl format "I1202 00:44:52.08 ...").
  assert "Unable to initialize backend" not in proc.stderr
  assert not re.search(r"^I\d{4} ", proc.stderr, re.M), proc.stderr[:2000]
  table = (out / "table_tiny.md").read_text()
  assert (out / "table_tiny.png").stat().st_size > 1000  # the learning curves
  res = json.loads((out / "table_tiny.json").read_text())
  assert table.startswith("# Averaged-gradient RMSProp")
  assert f"Regenerate: `python scripts/reproduce_avg_grad.py --tiny --out={out}`" in table
  assert res["settings"]["dataset"] == "digits"
  arms = res["arms"]
  # rmsprop + secant at one rate, deep (4) and shallow (1) control, each one engine run.
  assert {(a["method"], a["depth"]) for a in arms} == {
      ("rmsprop", 4), ("secant", 4), ("rmsprop", 1), ("secant", 1)}
  for a in arms:
    assert (tmp_path / "runs" / f"{a['method']}-d{a['depth']}-lr0.001" / "summary.json").exists()
    assert not a["diverged"], a
    assert 0.0 < a["final_train_loss_median"] < 2.0 * math.log(10), a
    assert 0.0 <= a["test_accuracy_mean"] <= 1.0
    assert len(a["test_accuracy_per_seed"]) == 2
    assert a["ms_per_step"] > 0 and math.isfinite(a["ms_per_step"])
    assert [s for s, _ in a["curve"]] == [5, 10, 15, 20]
    losses = [l for _, l in a["curve"]]
    assert all(math.isfinite(l) for l in losses)
    assert losses[-1] < losses[0], a  # 20 steps of RMSProp lower the loss
    # the arm's row in the table shows the JSON's numbers
    assert (f"| {a['method']} | 0.001 | {a['iters_to_target']} | {a['final_train_loss_median']:.4f} | "
            f"{a['test_accuracy_mean']:.4f} ± {a['test_accuracy_std']:.4f} |") in table
  sections = {int(sec.split()[0]): sec for sec in table.split("## depth ")[1:]}
  assert sorted(sections) == [1, 4]
  for an in res["analysis"]:
    section = sections[an["depth"]]
    assert section.startswith(f"{an['depth']} — target training loss {an['target_loss']:.4f}")
    # The auto target is reached by every method (at its best rate).
    assert math.isfinite(an["target_loss"])
    base = an["methods"]["rmsprop"]
    for m, r in an["methods"].items():
      assert r["best_iters_to_target"] is not None and 0 < r["best_iters_to_target"] <= 20, (m, r)
      assert math.isclose(r["speedup_vs_rmsprop"], base["best_iters_to_target"] / r["best_iters_to_target"])
      assert math.isclose(r["cost_per_step_vs_rmsprop"], r["ms_per_step_median"] / base["ms_per_step_median"])
      row = re.search(rf"^\| {m} \| 0\.001 \| {r['best_iters_to_target']} \| ([\d.]+)× \| ([\d.]+)× \|",
                      section, re.M)
      assert row, (m, section)
      assert float(row.group(1)) == round(r["speedup_vs_rmsprop"], 2)
      assert float(row.group(2)) == round(r["cost_per_step_vs_rmsprop"], 2)
