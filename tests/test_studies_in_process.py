"""Studies are library code: every `stable_training.studies` module imports without defining an absl flag, and
two tiny studies run one after the other in this one process (no subprocess) through their `run` / `table`."""
from __future__ import annotations

import importlib
import math
import os
import pkgutil
import re

import numpy as np
import pytest

import stable_training.studies


def _our_new_flags(before: set) -> list[str]:
  """The absl flags defined since `before` by this project's code (not by a library such as absl.logging or
  orbax, which define their own on import), with the module that defined each."""
  from absl import flags
  new = {n: flags.FLAGS.find_module_defining_flag(n) or "__main__" for n in set(flags.FLAGS) - before}
  return sorted(f"{n} ({m})" for n, m in new.items()
                if m.split(".")[0] in ("stable_training", "experiments", "scripts", "__main__"))


def test_every_study_module_imports_without_defining_flags():
  from absl import flags
  before = set(flags.FLAGS)
  names = [m.name for m in pkgutil.iter_modules(stable_training.studies.__path__)]
  assert {"sweep", "avg_grad", "glorot_table1", "tgelu_classification"} <= set(names)
  for name in names:
    importlib.import_module(f"stable_training.studies.{name}")
    assert not _our_new_flags(before), (name, _our_new_flags(before))


def _rows(md: str, first: str) -> dict[str, list[str]]:
  """The rows of the markdown table whose header starts with ``| FIRST |``: {first cell: other cells}."""
  lines = md.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    rows[cells[0] + (f" {cells[1]}" if first == "method" else "")] = cells[1:]
  return rows


def test_two_tiny_studies_in_one_process(tmp_path):
  from absl import flags
  from stable_training.studies import avg_grad
  from stable_training.studies import glorot_table1 as glorot
  flags_before, env_before = set(flags.FLAGS), dict(os.environ)
  logs = []

  # 1. The averaged-gradient study on digits: rmsprop and secant at 1e-3, depth 4 (no shallow control).
  s = avg_grad.tiny(shallow=False)
  payload = avg_grad.run(s, str(tmp_path / "avg_runs"), log=logs.append)
  md = avg_grad.table(payload, "python scripts/reproduce_avg_grad.py --tiny --noshallow")
  assert payload["settings"] == {"num_steps": 20, "log_every": 5, "num_seeds": 2, "depth": 4, "width": 16,
                                 "num_train": 512, "dataset": "digits", "methods": ["rmsprop", "secant"],
                                 "lrs": [0.001]}
  assert "Regenerate: `python scripts/reproduce_avg_grad.py --tiny --noshallow`" in md
  assert sorted(os.listdir(tmp_path / "avg_runs")) == ["rmsprop-d4-lr0.001", "secant-d4-lr0.001"]
  rows = _rows(md, "method")
  assert set(rows) == {"rmsprop 0.001", "secant 0.001"}
  for a in payload["arms"]:
    assert not a["diverged"] and [st for st, _ in a["curve"]] == [5, 10, 15, 20]
    assert 0.0 < a["final_train_loss_median"] < 2 * math.log(10) and 0.0 <= a["test_accuracy_mean"] <= 1.0
    assert a["final_train_loss_median"] < a["curve"][0][1]   # 20 RMSProp steps lower the loss
    row = rows[f"{a['method']} 0.001"]
    assert row[1:4] == [str(a["iters_to_target"]), f"{a['final_train_loss_median']:.4f}",
                        f"{a['test_accuracy_mean']:.4f} ± {a['test_accuracy_std']:.4f}"]
  (an,) = payload["analysis"]
  assert an["depth"] == 4 and math.isfinite(an["target_loss"])
  assert math.isclose(an["target_loss"], 1.1 * max(a["final_train_loss_median"] for a in payload["arms"]))
  assert f"## depth 4 — target training loss {an['target_loss']:.4f}" in md
  assert any(line.startswith("[1/2] depth=4 rmsprop lr=0.001") for line in logs)

  # 2. Glorot & Bengio Table 1 on generated Shapeset: tanh, normalized init, lr 0.1, in the same process (the
  # Jacobians at init: tanh's two inits, always).
  g = glorot.tiny(activations=("tanh",), inits=("normalized",), keep_checkpoints=False)
  out = tmp_path / "glorot"
  gp = glorot.run(g, str(tmp_path / "glorot_runs"), str(out), "table1_tiny", log=logs.append)
  gmd = glorot.table(gp, "python scripts/reproduce_glorot_table1.py --activations=tanh --inits=normalized --tiny",
                     settings=g, out=str(out))
  assert gmd.startswith("# Glorot & Bengio (2010) Table 1 — test error %\n")
  assert "Regenerate: `python scripts/reproduce_glorot_table1.py --activations=tanh --inits=normalized --tiny`" in gmd
  assert "Budget (tiny): 5 hidden layers × 16 units" in gmd
  table1 = _rows(gmd, "activation / init")
  assert list(table1) == ["Tanh N"]
  for r in gp["runs"]:
    assert r["status"] == "ok" and r["num_steps"] == 40 and r["best_step"] == 40
    assert 0.0 <= r["val_error"] <= 100.0 and 0.0 <= r["test_error"] <= 100.0
    label = "Tanh N" if r["init"] == "normalized" else "Tanh"
    paper = glorot.PAPER["shapeset"][("tanh", r["init"])]
    assert table1[label] == [f"{r['test_error']:.2f}", "0.1", f"{r['val_error']:.2f}", f"{paper:.2f}"]
    assert not os.path.exists(os.path.join(r["workdir"], "checkpoints"))   # keep_checkpoints=False
  assert len(gp["best"]) == 1 and len(gp["runs"]) == 1
  jac = {j["init"]: j["mean_sv"] for j in gp["jacobian_at_init"]}
  assert jac["normalized"] > jac["standard"] > 0   # Glorot & Bengio 2010 §4.2.3
  assert re.search(r"^\| shapeset \| Tanh N \| " + re.escape(f"{jac['normalized']:.3f}") + r" \|", gmd, re.M)
  assert gp["curves"]["figure"] == str(out / "table1_tiny.png") and (out / "table1_tiny.png").stat().st_size > 10_000
  assert gp["figures"] and all(p.startswith(str(out / "figures")) and os.path.exists(p) for p in gp["figures"])
  assert all(np.isfinite(v) for c in gp["curves"]["panels"][0]["curves"].values() for v in c["values"][0])

  # No process-wide side effects: no flag defined, the XLA / JAX / project environment untouched (libraries
  # such as tensorstore set variables of their own on import).
  assert not _our_new_flags(flags_before)
  ours = lambda env: {k: v for k, v in env.items() if k.startswith(("XLA_", "JAX_", "STABLE_TRAINING"))}
  assert ours(os.environ) == ours(env_before)


def test_render_only_reads_old_payloads_and_refuses_bad_paths_in_one_line(tmp_path):
  """`study.render_json` (the scripts' --render_only): STEM or STEM.json; the committed pre-engine depth payload
  (no filter_mode) renders; a missing file or another study's JSON is one UsageError line, nothing written."""
  import shutil
  from absl import app
  from stable_training import study
  from stable_training.studies import roaf_depth
  src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "roaf")
  shutil.copy(os.path.join(src, "depth_quick_haar.json"), tmp_path / "old.json")
  table = study.render_json(roaf_depth, str(tmp_path / "old.json"))
  assert table.splitlines()[0].endswith("filters not recorded (an earlier revision)")
  assert (tmp_path / "old.md").read_text() == table + "\n"
  with pytest.raises(app.UsageError, match=r"cannot read .*nope\.json"):
    study.render_json(roaf_depth, str(tmp_path / "nope"))
  shutil.copy(os.path.join(src, "init_study.json"), tmp_path / "other.json")
  with pytest.raises(app.UsageError, match="has no field 'depth_sweep'"):
    study.render_json(roaf_depth, str(tmp_path / "other"))
  assert not (tmp_path / "nope.md").exists() and not (tmp_path / "other.md").exists()
