"""The ROAF recurrent studies (psMNIST, long-lag memory) through the engine: `studies.roaf_rnn_psmnist`,
`studies.roaf_rnn_memory` (configs, tables) and their thin scripts (--tiny)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from stable_training.studies import roaf_rnn_memory, roaf_rnn_psmnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, out, *extra):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny",
                         "--out", str(out), "--workdir_root", str(out / "runs"), *extra],
                        capture_output=True, text=True, timeout=900, cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _quiet(_):
  pass


def test_memory_tiny(tmp_path):
  _run("reproduce_roaf_memory.py", tmp_path, "--cells=roaf")
  res = json.loads((tmp_path / "memory_tiny.json").read_text())
  assert list(res) == ["setting", "rows"] and res["setting"] == "tiny"
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
  assert "hidden 8, Adam 0.003 + global-norm clipping 1.0, batch 8, 20 steps, ROAF α = 0.5, 1 seed(s)" in md
  for r in rows:   # the table shows the JSON's numbers
    assert (f"| {r['task']} | 10 | roaf | {r['ratio']:.3f} | {r['solved_seeds']}/1 | {r['steps_per_sec']:.1f} |"
            in md)
  assert "| task | roaf |" in md and "| adding | none |" in md and "| copy | none |" in md
  assert (tmp_path / "memory_tiny.png").stat().st_size > 0
  # The library study on the same root reads the runs back: the same rows.
  s = roaf_rnn_memory.tiny(cells=("roaf",))
  payload = roaf_rnn_memory.run(s, str(tmp_path / "runs"), log=_quiet)
  assert json.loads(json.dumps(payload)) == res


def test_psmnist_tiny(tmp_path):
  _run("reproduce_roaf_psmnist.py", tmp_path, "--cells=roaf,lstm")
  res = json.loads((tmp_path / "psmnist_tiny.json").read_text())
  assert res["setting"] == "tiny" and list(res["flags"]) == list(roaf_rnn_psmnist.FLAG_FIELDS)
  assert res["flags"]["cells"] == ["roaf", "lstm"] and res["flags"]["hidden"] == 128   # flags, not the tiny budget
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
  md = (tmp_path / "psmnist_tiny.md").read_text()
  assert md.startswith("# Permuted sequential digits through the engine (`roaf.py:psmnist-CELL`), hidden 8, "
                       "256 train / 100 test images, Adam 0.002 + global-norm clipping 1.0, batch 32, ROAF α = 0.5")
  assert "Regenerate: `python scripts/reproduce_roaf_psmnist.py" in md
  for r in rows.values():   # the table shows the JSON's numbers
    accs = ", ".join(f"{a:.4f}" for a in r["test_acc_per_epoch"])
    assert f"| {r['cell']} | {r['num_params']} | {accs} | {r['test_acc_last']:.4f} ± 0.0000 |" in md
  # The library study on the same root reads the runs back: the same payload, the same table.
  payload = roaf_rnn_psmnist.run(roaf_rnn_psmnist.tiny(cells=("roaf", "lstm")), str(tmp_path / "runs"), log=_quiet)
  assert json.loads(json.dumps(payload)) == res
  command = next(l for l in md.splitlines() if l.startswith("Regenerate: "))[len("Regenerate: `"):-1]
  assert roaf_rnn_psmnist.table(res, command) + "\n" == md


def test_psmnist_settings_and_configs():
  c = roaf_rnn_psmnist.make_config(roaf_rnn_psmnist.Settings(hidden=32, alpha=0.9, epochs=3, lr=1e-3), "roaf")
  assert (c.model.width, c.model.alpha, c.model.beta, c.model.filter_mode) == (32, 0.9, None, "haar")
  assert (c.num_epochs, c.optimizer.learning_rate, c.batch_size) == (3, 1e-3, 128)
  q = roaf_rnn_psmnist.make_config(roaf_rnn_psmnist.quick(epochs=7), "gru")   # quick replaces the budget
  assert (q.dataset.num_train, q.dataset.num_test, q.num_epochs, q.batch_size) == (2000, 1000, 2, 64)
  t = roaf_rnn_psmnist.make_config(roaf_rnn_psmnist.tiny(hidden=64), "elman")
  assert (t.dataset.name, t.model.width, t.num_epochs, t.progress) == ("digits", 8, 2, "none")
  payload = {"setting": "quick", "flags": {**{k: getattr(roaf_rnn_psmnist.Settings(), k)
                                              for k in roaf_rnn_psmnist.FLAG_FIELDS}, "cells": ["gru"]}}
  assert roaf_rnn_psmnist.settings_of(payload) == roaf_rnn_psmnist.quick(cells=("gru",))
  with pytest.raises(ValueError, match="cells: \\('rnn',\\); valid: one or more of roaf, elman, lstm, gru"):
    roaf_rnn_psmnist.Settings(cells=("rnn",))
  with pytest.raises(ValueError, match="setting: 'huge'"):
    roaf_rnn_psmnist.Settings(setting="huge")


def test_memory_settings_configs_and_table():
  s = roaf_rnn_memory.Settings(lags=(200, 100), steps=500, eval_every=100, alpha=0.99)
  assert roaf_rnn_memory.lags(s) == [200, 100] and roaf_rnn_memory.lags(roaf_rnn_memory.quick()) == [50, 100]
  assert roaf_rnn_memory.lags(roaf_rnn_memory.tiny(lags=(5000,))) == [10]
  c = roaf_rnn_memory.make_config(s, "copy", "roaf", 100)
  assert (c.dataset.name, c.dataset.lag, c.model.alpha, c.model.beta, c.num_steps) == ("copy", 100, 0.99, None, 500)
  assert c.eval_every == c.checkpoint_every == 100 and c.log_every == 50
  q = roaf_rnn_memory.make_config(roaf_rnn_memory.quick(steps=10), "adding", "gru", 50)
  assert (q.num_steps, q.eval_every, q.log_every) == (600, 200, 50)
  with pytest.raises(ValueError, match="tasks: \\('sum',\\)"):
    roaf_rnn_memory.Settings(tasks=("sum",))
  # The largest T solved by every seed, per task and cell (cells in the settings' order).
  row = lambda task, cell, lag, solved: {"task": task, "cell": cell, "lag": lag, "seeds": 2, "solved_seeds": solved,
                                         "ratio": 0.05, "steps_per_sec": 10.0, "curve": [(10, 1.0), (20, 0.05)]}
  rows = [row("adding", "roaf", 100, 2), row("adding", "gru", 100, 2), row("adding", "roaf", 200, 1),
          row("adding", "gru", 200, 2)]
  s = roaf_rnn_memory.Settings(tasks=("adding",), lags=(100, 200), cells=("roaf", "gru"))
  md = roaf_rnn_memory.table({"setting": "full", "rows": rows}, s, "python x")
  assert "| task | roaf | gru |" in md and "| adding | 100 | 200 |" in md
  assert "| adding | 200 | roaf | 0.050 | 1/2 | 10.0 |" in md
  assert "Regenerate: `python x`" in md and "hidden 64, Adam 0.003" in md and "3000 steps" in md
