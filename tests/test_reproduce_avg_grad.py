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


def _arm(method, lr, losses, diverged=False, ms=10.0):
  """A synthetic arm: median training loss `losses` at steps 25, 50, …"""
  if diverged:
    return {"method": method, "depth": 30, "lr": lr, "diverged": True}
  return {"method": method, "depth": 30, "lr": lr, "diverged": False,
          "curve": [[25 * (k + 1), l] for k, l in enumerate(losses)], "final_train_loss_median": losses[-1],
          "test_accuracy_mean": 0.9, "test_accuracy_std": 0.01, "ms_per_step": ms}


def test_analyse_target_iterations_and_speedups():
  """The auto target is 1.1 × the largest best final loss; iterations are the first window at or below it;
  speed-up = rmsprop's best iterations / the method's; cost = median ms/step ratio."""
  from stable_training.studies import avg_grad
  arms = [_arm("rmsprop", 1e-3, [2.0, 1.0, 0.5, 0.4]), _arm("rmsprop", 1e-2, [2.2, 2.3, 2.3, 2.3]),
          _arm("secant", 1e-3, [1.0, 0.42, 0.3, 0.2], ms=25.0), _arm("secant", 1e-2, None, diverged=True)]
  an = avg_grad.analyse(arms, 30, None)
  assert math.isclose(an["target_loss"], 1.1 * 0.4)   # rmsprop's best final (0.4) > secant's (0.2)
  assert [a["iters_to_target"] for a in arms] == [100, None, 50, None]
  assert [a["trains"] for a in arms] == [True, False, True, False]   # 2.3 > 0.75 ln 10 = 1.73
  r, s = an["methods"]["rmsprop"], an["methods"]["secant"]
  assert (r["best_lr"], r["best_iters_to_target"], r["lrs_that_train"]) == (1e-3, 100, [1e-3])
  assert (s["best_lr"], s["best_iters_to_target"], s["speedup_vs_rmsprop"]) == (1e-3, 50, 2.0)
  assert s["cost_per_step_vs_rmsprop"] == 2.5 and r["speedup_vs_rmsprop"] == 1.0
  md = avg_grad.table({"settings": avg_grad.record(avg_grad.Settings(dataset="fashion_mnist")), "arms": arms,
                       "analysis": [an]}, "python scripts/reproduce_avg_grad.py")
  assert "| secant | 0.01 | — | diverged | — | no | — |" in md
  assert "| secant | 0.001 | 50 | 2.00× | 2.50× | 0.9000 ± 0.0100 | 0.001 |" in md
  # A fixed target: what no arm reaches gives no iteration count and no speed-up.
  an = avg_grad.analyse(arms, 30, 0.25)
  assert an["methods"]["rmsprop"]["best_iters_to_target"] is None and an["methods"]["secant"]["speedup_vs_rmsprop"] is None


def test_settings_presets_and_record():
  """The presets (the dataset's own for mnist_5k) and the settings record's keys, in the committed JSONs' order."""
  import pytest
  from stable_training.studies import avg_grad
  assert list(avg_grad.record(avg_grad.tiny())) == ["num_steps", "log_every", "num_seeds", "depth", "width",
                                                    "num_train", "dataset", "methods", "lrs"]
  m5 = avg_grad.preset("full", dataset="mnist_5k")
  assert list(avg_grad.record(m5)) == ["num_steps", "log_every", "num_seeds", "depth", "width", "num_train",
                                       "batch_size", "methods", "lrs", "dataset"]
  assert (m5.num_steps, m5.batch_size, m5.lrs) == (1250, 128, (1e-4, 3e-4, 1e-3, 3e-3))
  assert avg_grad.quick(num_steps=7).num_steps == 7 and avg_grad.Settings().methods == avg_grad.METHODS
  from experiments.configs import avg_grad as cfg
  assert avg_grad.METHODS == tuple(cfg.METHODS)
  with pytest.raises(ValueError, match="methods: 'adam' is not one of"):
    avg_grad.tiny(methods=("adam",))
  with pytest.raises(ValueError, match="setting 'huge'"):
    avg_grad.preset("huge")
