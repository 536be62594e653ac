"""Smoke test of scripts/reproduce_glorot_table1.py (subprocess, --tiny budget on generated Shapeset), then the
rerun that reads the finished run back, in process through `stable_training.studies.glorot_table1`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(out, runs):
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "reproduce_glorot_table1.py"), "--tiny",
       "--datasets=shapeset", "--activations=tanh", "--inits=normalized", "--num_generated=10400",
       f"--out={out}", f"--workdir_root={runs}", "--nokeep_checkpoints"],
      capture_output=True, text=True, timeout=900, cwd=ROOT,  # hang guard only
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_reproduce_glorot_tiny(tmp_path):
  out = tmp_path / "glorot"
  runs = tmp_path / "runs"
  _run(out, runs)
  table = (out / "table1_tiny.md").read_text()
  assert "Tanh N" in table and "Budget (tiny)" in table
  assert ("Regenerate: `python scripts/reproduce_glorot_table1.py --datasets=shapeset --activations=tanh "
          f"--inits=normalized --num_generated=10400 --tiny --out={out}`") in table
  res = json.loads((out / "table1_tiny.json").read_text())
  assert res["preset"] == "tiny" and res["budget"]["num_val"] == 200 and res["budget"]["num_generated"] == 10400
  assert len(res["runs"]) == 1 and len(res["best"]) == 1
  r = res["runs"][0]
  assert r["status"] == "ok" and r["workdir"] == str(runs / "shapeset_tanh_normalized_lr0.1")
  assert 0.0 <= r["test_error"] <= 100.0 and 0.0 <= r["val_error"] <= 100.0
  # The errors are the engine's: its summary's best validation step (the only evaluation, the last step).
  summary = json.loads((runs / "shapeset_tanh_normalized_lr0.1" / "summary.json").read_text())
  assert summary["best"]["step"] == r["best_step"] == r["num_steps"] == 40
  assert math.isclose(r["val_error"], 100 * (1 - summary["best"]["val_accuracy"]["mean"]))
  assert math.isclose(r["test_error"], 100 * (1 - summary["best"]["test_accuracy"]["mean"]))
  assert f"| Tanh N | {r['test_error']:.2f} | 0.1 | {r['val_error']:.2f} | 15.60 |" in table
  # Jacobian at init: finite, positive, and the normalized init has the larger
  # mean singular value for tanh (Glorot & Bengio 2010 §4.2.3).
  jac = {(j["activation"], j["init"]): j["mean_sv"] for j in res["jacobian_at_init"]}
  assert all(math.isfinite(v) and 0.0 < v < 3.0 for v in jac.values())
  assert jac[("tanh", "normalized")] > jac[("tanh", "standard")]
  assert 0.2 < jac[("tanh", "standard")] < 0.8 and 0.5 < jac[("tanh", "normalized")] < 1.2
  assert res["figures"] and all(os.path.exists(p) for p in res["figures"])
  # Learning curves of the table's run: training error % per logging interval (the validation error is
  # evaluated once), as the run's metrics.jsonl has it; the last point is the summary's final one.
  curves = res["curves"]
  assert curves["figure"] == str(out / "table1_tiny.png") and "`table1_tiny.png`: training error (%)" in table
  with open(out / "table1_tiny.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(out / "table1_tiny.png") > 10_000
  assert curves["metric"] == "train_accuracy"
  (panel,) = curves["panels"]
  assert math.isclose(panel["chance"], 100 * 8 / 9)
  curve = panel["curves"]["Tanh N (lr 0.1)"]
  workdir = runs / "shapeset_tanh_normalized_lr0.1"
  with open(workdir / "metrics.jsonl") as f:
    recs = [r for r in map(json.loads, f) if r["kind"] == "train"]
  assert curve["run"] == workdir.name and curve["step"] == [r["step"] for r in recs] == list(range(4, 41, 4))
  assert curve["values"] == [[100 * (1 - r["train_accuracy"]["per_seed"][0]) for r in recs]]
  assert curve["values"][0][-1] == 100 * (1 - summary["final"]["train_accuracy"]["per_seed"][0])
  # A rerun with the same workdirs (here the library's `run`, the settings the flags made) reads the finished
  # run (its checkpoints were deleted) instead of training it again, and keeps the table, its run times included.
  from stable_training.studies import glorot_table1 as glorot
  assert not (workdir / "checkpoints").exists()   # --nokeep_checkpoints
  mtime = (workdir / "metrics.jsonl").stat().st_mtime_ns
  s = glorot.tiny(datasets=("shapeset",), activations=("tanh",), inits=("normalized",), num_generated=10400,
                  keep_checkpoints=False)
  again = glorot.run(s, str(runs), str(out), "table1_tiny", log=lambda _: None)
  assert (workdir / "metrics.jsonl").stat().st_mtime_ns == mtime   # not retrained (nor rewritten)
  command = table.split("Regenerate: `")[1].split("`")[0]
  assert glorot.table(again, command, settings=s, out=str(out)) + "\n" == table
  assert again["runs"] == res["runs"] and again["seconds"] == res["seconds"] and again["curves"] == curves
  assert json.loads(json.dumps(again)) == res
