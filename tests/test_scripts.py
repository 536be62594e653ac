"""Smoke tests: the default study and the tGELU classification study run end to end (tiny budgets)."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=400):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=timeout)
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def test_stability_study_smoke(tmp_path):
  out = _run(["scripts/stability_study.py", "--dataset=digits", "--num_steps=40", "--num_seeds=2",
              "--arms=tanh-standard,softsign-normalized", f"--out={tmp_path}",
              f"--workdir_root={tmp_path / 'runs'}"])
  assert "dataset: digits" in out and "| tanh-standard |" in out
  res = json.load(open(tmp_path / "results.json"))
  for r in res["rows"].values():
    assert 0.0 <= r["test_accuracy_mean"] <= 1.0 and np.isfinite(r["train_loss_mean"])
    assert len(r["grad_ratio_first_last"]) == 2 and all(g > 0 for g in r["grad_ratio_first_last"])
  assert (tmp_path / "table.md").read_text().count("\n| ") == 3
  # --merge adds an arm (here ROAF, a different model family) and keeps the finished rows.
  _run(["scripts/stability_study.py", "--dataset=digits", "--num_steps=20", "--num_seeds=1",
        "--arms=roaf-tanh", "--merge", f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs2'}"])
  merged = json.load(open(tmp_path / "results.json"))["rows"]
  assert list(merged) == ["tanh-standard", "softsign-normalized", "roaf-tanh"]
  assert merged["tanh-standard"] == res["rows"]["tanh-standard"]
  assert merged["roaf-tanh"]["steps"] == 20 and merged["roaf-tanh"]["grad_ratio_first_last"][0] > 0


def test_tgelu_classification_smoke(tmp_path):
  _run(["scripts/reproduce_tgelu_classification.py", "--tiny", "--dataset=digits",
        "--arms=tgelu-clip,gelu", "--epochs=1", f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs'}"])
  res = json.load(open(tmp_path / "results.json"))
  assert set(res["rows"]) == {"tgelu-clip", "gelu"}
  for r in res["rows"].values():
    ep = r["per_epoch"]
    assert len(ep) == 1 and 0.0 <= ep[0]["mean"] <= 1.0 and len(ep[0]["per_seed"]) == 2
    assert r["update_var"] > 0 and np.isfinite(r["loss_abs_diff"])
