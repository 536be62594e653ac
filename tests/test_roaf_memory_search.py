"""The long-lag memory study (Ceni 2022): the first-symbol task, the library study at `tiny()`, the thin script."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stable_training.data import sequence_tasks
from stable_training.studies import roaf_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_first_symbol_data():
  """x_0 = one-hot class y, x_1..x_{T−1} one-hot distractors (channels C..C+D−1); y ∈ {0..C−1}."""
  C, D, T, n = sequence_tasks.FIRST_CLASSES, sequence_tasks.FIRST_DISTRACTORS, 30, 2000
  x, y = jax.jit(sequence_tasks.first_symbol, static_argnums=(1, 2))(jax.random.PRNGKey(3), n, T)
  x, y = np.asarray(x), np.asarray(y)
  assert x.shape == (n, T, C + D) and x.dtype == np.float32 and y.shape == (n,) and y.dtype == np.int32
  np.testing.assert_array_equal(x.sum(-1), 1.0)                     # one-hot at every step
  np.testing.assert_array_equal(np.argmax(x[:, 0], -1), y)          # the label is the first element's class
  assert x[:, 1:, :C].sum() == 0 and x[:, 0, C:].sum() == 0          # classes only first, distractors only after
  assert set(np.unique(y)) == set(range(C)) and set(np.unique(np.argmax(x[:, 1:], -1))) == set(range(C, C + D))
  assert np.abs(np.bincount(y, minlength=C) / n - 1 / C).max() < 0.03    # uniform classes


def test_first_symbol_spec_and_baseline():
  """TaskSpec: cross-entropy at the last state, C outputs; baseline log C = the CE of the uniform prediction
  (the best without memory), independent of T."""
  spec = sequence_tasks.get_task("first")
  assert (spec.loss, spec.num_outputs, spec.readout) == ("cross_entropy", 8, "last")
  assert "first" in sequence_tasks.names()
  _, y = sequence_tasks.fixed_set("first", 64, 12, "test")
  uniform = optax.softmax_cross_entropy_with_integer_labels(jnp.zeros((64, 8)), jnp.asarray(y)).mean()
  for lag in (100, 10_000):
    assert spec.baseline(lag) == pytest.approx(math.log(8)) == pytest.approx(float(uniform), rel=1e-6)
  xt, yt = sequence_tasks.fixed_set("first", 64, 12, "test")
  xv, yv = sequence_tasks.fixed_set("first", 64, 12, "validation")
  np.testing.assert_array_equal(xt, sequence_tasks.fixed_set("first", 64, 12, "test")[0])   # fixed
  assert not np.array_equal(xt, xv)


@pytest.mark.parametrize("variant", ["first-roaf-1000", "first-lstm", "tiny-first", "adding-gru-10000",
                                     "copy-roaf-500"])
def test_roaf_config_variants_validate(variant):
  from experiments.configs import roaf
  from stable_training import config as config_lib
  c = roaf.get_config(variant)
  config_lib.validate(c)
  if variant.startswith(("first", "tiny-first")):
    assert c.dataset.name == "first" and c.loss == "cross_entropy" and c.model.readout == "last"


def test_best_by_validation_not_test():
  rows = [{"knobs": {"alpha": 0.5}, "val_loss": 0.9, "test_loss": 0.1},
          {"knobs": {"alpha": 1.0}, "val_loss": 0.2, "test_loss": 0.8},
          {"knobs": {"alpha": 0.99}, "val_loss": float("nan"), "test_loss": 0.0}]
  assert roaf_memory.best_by_validation(rows)["knobs"] == {"alpha": 1.0}


def test_budget_and_names():
  s = roaf_memory.Settings()
  assert roaf_memory.budget(s, 1000) == (s.steps, s.batch, s.eval_every)
  assert roaf_memory.budget(s, 10_000) == (s.long_steps, s.long_batch, s.long_eval_every)
  assert roaf_memory.run_name(s, "first", "roaf", 100, {"alpha": 1.0, "beta": 0.1}) == "first_T100_roaf_a1_b0.1_n3000"
  assert roaf_memory.run_name(s, "copy", "lstm", 10_000) == f"copy_T10000_lstm_n{s.long_steps}_b{s.long_batch}"
  c = roaf_memory.make_config(s, "first", "roaf", 10_000, alpha=1.0, beta=0.1, recurrent_gain=0.0)
  assert (c.num_steps, c.batch_size, c.model.alpha, c.model.beta, c.model.recurrent_gain) == \
      (s.long_steps, s.long_batch, 1.0, 0.1, 0.0)
  assert c.dataset.num_val == s.num_val and c.eval_every % c.log_every == 0
  order = roaf_memory._order(s)
  assert order[0] == (100, "elman", "first") and order[-1] == (10_000, "lstm", "copy")
  assert [lag for lag, _, _ in order] == sorted(lag for lag, _, _ in order)     # cheapest (shortest) first


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("memory") / "runs")
  s = roaf_memory.tiny(skip_unsolved=False)
  return s, root, roaf_memory.run(s, root, log=lambda _: None)


def test_study_tiny_payload(tiny_study):
  s, root, p = tiny_study
  assert set(p) >= {"settings", "search", "best", "runs", "largest_solved", "projected_long_seconds"}
  # search at the shortest lag, chosen by validation loss
  assert [r["knobs"] for r in p["search"]] == [{"alpha": 0.5, "beta": None}, {"alpha": 1.0, "beta": 0.5}]
  assert all(r["lag"] == 8 and r["cell"] == "roaf" for r in p["search"])
  assert p["best"]["first"] == min(p["search"], key=lambda r: r["val_loss"])["knobs"]
  assert [(r["lag"], r["cell"]) for r in p["runs"]] == [(8, "elman"), (8, "roaf"), (16, "elman"), (16, "roaf")]
  for r in p["runs"]:
    summ = json.load(open(os.path.join(root, r["run"], "summary.json")))
    base = summ["info"]["baseline_loss"]
    assert base == pytest.approx(math.log(8)) == pytest.approx(r["baseline"])
    assert r["ratio"] == pytest.approx(summ["final"]["test_loss"]["mean"] / base, rel=1e-6)
    assert r["val_ratio"] == pytest.approx(summ["final"]["val_loss"]["mean"] / base, rel=1e-6)
    assert r["solved"] == (r["ratio"] <= 0.1)
    steps = 20 if r["lag"] == 8 else 10                        # T = 16 = long_lag: the long budget
    assert r["steps"] == steps and [st for st, _ in r["curve"]["test"]] == list(range(10, steps + 1, 10))
    assert r["curve"]["train"][-1][0] == steps and all(np.isfinite(v) for _, v in r["curve"]["train"])
    if r["cell"] == "roaf":
      assert r["knobs"] == p["best"]["first"]
  # the best ROAF run at the shortest lag is the search's run, read back (one workdir)
  roaf8 = next(r for r in p["runs"] if r["cell"] == "roaf" and r["lag"] == 8)
  assert roaf8["run"] in {r["run"] for r in p["search"]}
  assert set(p["largest_solved"]["first"]) == {"elman", "roaf"}
  json.dumps(p)                                                   # JSON-able


def test_study_tiny_table_plot_and_readback(tiny_study, tmp_path):
  s, root, p = tiny_study
  table = roaf_memory.table(p, "python x.py --tiny")
  assert "**(best)**" in table and "Largest T solved" in table and "Regenerate: `python x.py --tiny`" in table
  png = roaf_memory.plot(p, str(tmp_path / "c.png"))
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  again = roaf_memory.run(s, root, log=lambda _: None)             # finished runs read back
  for key in ("ratio", "val_loss", "test_loss"):
    assert [r[key] for r in again["runs"]] == [r[key] for r in p["runs"]]
    assert [r[key] for r in again["search"]] == [r[key] for r in p["search"]]
  assert again["best"] == p["best"]


def test_script_tiny(tmp_path):
  """The thin script at --tiny --cells=roaf (skip_unsolved on) in a subprocess, with a hang guard."""
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "reproduce_roaf_memory_search.py"), "--tiny",
                         "--out", str(tmp_path), "--workdir_root", str(tmp_path / "runs"), "--cells=roaf"],
                        capture_output=True, text=True, timeout=300, cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  p = json.loads((tmp_path / "memory_search_tiny.json").read_text())
  by = {r["lag"]: r for r in p["runs"]}
  assert set(by) == {8, 16} and all(r["cell"] == "roaf" for r in p["runs"])
  assert by[16]["skipped"] == (not by[8]["solved"])                # unsolved at T = 8: not run at T = 16
  md = (tmp_path / "memory_search_tiny.md").read_text()
  assert "Regenerate: `python scripts/reproduce_roaf_memory_search.py" in md
  assert (tmp_path / "memory_search_tiny.png").stat().st_size > 0
