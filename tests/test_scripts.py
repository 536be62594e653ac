"""Smoke tests: the default study and the tGELU classification study run end to end (--tiny, digits)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **env):
  p = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
                     capture_output=True, text=True, timeout=900)  # hang guard only
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def _table_rows(md: str) -> dict[str, list[str]]:
  """``| arm | c1 | c2 |`` lines of a markdown table → {arm: [c1, c2, ...]} (header and rule skipped)."""
  rows = {}
  for line in md.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| ") and cells[0] not in ("arm",) and not set(cells[0]) <= {"-"}:
      rows[cells[0]] = cells[1:]
  return rows


def test_stability_study_tiny(tmp_path):
  out = _run(["scripts/stability_study.py", "--tiny", f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs'}"])
  assert "dataset: digits" in out
  for arm in ("tanh-standard", "tanh-normalized"):
    assert f"[sweep] {arm}: workdir {tmp_path / 'runs' / arm}" in out  # what runs where, as it runs
    assert (tmp_path / "runs" / arm / "summary.json").exists()
  md = (tmp_path / "table_tiny.md").read_text()
  assert f"Regenerate: `python scripts/stability_study.py --tiny --out={tmp_path}`" in md
  res = json.load(open(tmp_path / "table_tiny.json"))
  assert res["dataset"] == "digits" and list(res["rows"]) == ["tanh-standard", "tanh-normalized"]
  table = _table_rows(md)
  assert list(table) == list(res["rows"])
  for arm, r in res["rows"].items():
    assert 0.0 <= r["test_accuracy_mean"] <= 1.0 and np.isfinite(r["train_loss_mean"])
    assert r["steps"] == 20 and r["seeds"] == 2 and r["depth"] == 20
    assert len(r["grad_ratio_first_last"]) == 2 and all(g > 0 for g in r["grad_ratio_first_last"])
    acc, loss, ratio, steps, seeds = table[arm]
    assert acc == f"{r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f}"
    assert loss == f"{r['train_loss_mean']:.4f}" and (steps, seeds) == ("20", "2")
    assert ratio == f"{np.mean(r['grad_ratio_first_last']):.3g}"
  # Glorot & Bengio: at depth 20 the standard init's gradients vanish toward the input.
  rows = res["rows"]
  assert max(rows["tanh-standard"]["grad_ratio_first_last"]) < 0.1 * min(rows["tanh-normalized"]["grad_ratio_first_last"])
  # --merge adds an arm (here ROAF, a different model family) and keeps the finished rows.
  _run(["scripts/stability_study.py", "--tiny", "--num_seeds=1", "--arms=roaf-tanh", "--merge",
        f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs2'}"])
  merged = json.load(open(tmp_path / "table_tiny.json"))["rows"]
  assert list(merged) == ["tanh-standard", "tanh-normalized", "roaf-tanh"]
  assert merged["tanh-standard"] == res["rows"]["tanh-standard"]
  assert merged["roaf-tanh"]["steps"] == 20 and merged["roaf-tanh"]["seeds"] == 1
  assert merged["roaf-tanh"]["grad_ratio_first_last"][0] > 0
  md = (tmp_path / "table_tiny.md").read_text()
  assert list(_table_rows(md)) == list(merged)
  assert "--arms=tanh-standard,tanh-normalized,roaf-tanh" in md and "merged rows of earlier runs" in md


def test_stability_settings_and_table():
  """`studies.stability` in-process: the presets' budgets, the table's header from the last arm's config,
  arms in `stability.ARMS` order, and the merge note when the payload holds arms not run now."""
  from experiments.configs import stability as arms_config
  from stable_training.studies import stability
  assert stability.arm_names(stability.Settings()) == list(arms_config.ARMS)
  assert stability.arm_names(stability.tiny()) == ["tanh-standard", "tanh-normalized"]
  assert stability.dataset_name(stability.tiny()) == "digits"
  c = stability.make_config(stability.quick(), "tanh-standard-lsc", "digits")
  assert (c.num_steps, c.num_seeds, c.lsc.steps, c.eval_batch_size, c.progress) == (600, 2, 50, 360, "auto")
  c = stability.make_config(stability.tiny(num_steps=7, num_seeds=1, data_dir="/d"), "roaf-tanh", "digits")
  assert (c.num_steps, c.num_seeds, c.model.name, c.dataset.data_dir, c.progress) == (7, 1, "roaf_mlp", "/d", "none")
  assert stability.seed_counts(stability.tiny()) == [2, 2]
  with pytest.raises(ValueError, match=r"unknown arm 'relu-he' of stability.py"):
    stability.arm_names(stability.tiny(arms=("tanh-standard", "relu-he")))
  row = lambda acc, ratios, seeds: {"test_accuracy_mean": acc, "test_accuracy_std": 0.01, "train_loss_mean": 1.5,
                                    "grad_ratio_first_last": ratios, "steps": 20, "seeds": seeds}
  payload = {"dataset": "digits", "rows": {"roaf-tanh": row(0.5, [2.0, 4.0], 1), "tanh-standard": row(0.25, [0.01], 2)}}
  s = stability.tiny(arms=("roaf-tanh",))
  assert stability.order(payload) == ["tanh-standard", "roaf-tanh"] and stability.merged(payload, s)
  md = stability.table(payload, "CMD", s)
  assert md.startswith("Deep MLP stability study on digits: depth 20, width 16, SGD lr 0.01, batch 32 ")
  assert "Regenerate: `CMD` (this table merged rows of earlier runs" in md
  assert _table_rows(md) == {"tanh-standard": ["0.2500 ± 0.0100", "1.5000", "0.01", "20", "2"],
                             "roaf-tanh": ["0.5000 ± 0.0100", "1.5000", "3", "20", "1"]}
  assert not stability.merged(payload, stability.tiny(arms=("roaf-tanh", "tanh-standard")))


def test_tgelu_classification_tiny(tmp_path):
  out = _run(["scripts/reproduce_tgelu_classification.py", "--tiny", "--arms=tgelu-clip,gelu",
              f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs'}"])
  assert f"[sweep] gelu: workdir {tmp_path / 'runs' / 'gelu'}" in out
  res = json.load(open(tmp_path / "table_tiny.json"))
  md = (tmp_path / "table_tiny.md").read_text()
  assert md.startswith("ConvNet on digits (1024 train examples)")
  assert (tmp_path / "table_tiny.png").stat().st_size > 10_000 and "Learning curves: `table_tiny.png`" in md
  assert "Regenerate: `python scripts/reproduce_tgelu_classification.py --arms=tgelu-clip,gelu --tiny" in md
  assert res["dataset"] == "digits" and list(res["rows"]) == ["tgelu-clip", "gelu"]
  table = _table_rows(md)
  for arm, r in res["rows"].items():
    ep = r["per_epoch"]
    assert len(ep) == 1 and ep[0]["epoch"] == 1 and 0.0 <= ep[0]["mean"] <= 1.0
    assert len(ep[0]["per_seed"]) == 2 and np.isclose(ep[0]["mean"], np.mean(ep[0]["per_seed"]))
    assert r["seeds"] == 2 and r["steps"] == 1024 // 64
    assert r["update_var"] > 0 and np.isfinite(r["loss_abs_diff"]) and r["loss_abs_diff"] >= 0
    assert 0.5 < r["final_train_loss"] < 5.0
    # The learning curve's data: per-seed losses of every logging window, ending at the final loss.
    curve = np.asarray(r["train_loss_curve"]["values"])
    assert curve.shape == (2, len(r["train_loss_curve"]["step"])) and r["train_loss_curve"]["step"][-1] == r["steps"]
    np.testing.assert_allclose(curve[:, -1].mean(), r["final_train_loss"], rtol=1e-6)
    assert table[arm] == [f"{ep[0]['mean']:.4f} ± {ep[0]['std']:.4f}", f"{r['update_var']:.3e}",
                          f"{r['loss_abs_diff']:.4f}", f"{r['final_train_loss']:.4f}"]
  # --host_devices=auto (default): the 2 seeds of every arm split over the cores as devices, one
  # seed per device when there are 2 cores; one device gives the same numbers.
  from stable_training.train.sharding import auto_host_devices, usable_cores
  want = auto_host_devices([2], usable_cores()) or 1
  assert json.load(open(tmp_path / "runs" / "gelu" / "summary.json"))["info"]["devices"] == want
  # The one-device reference: the library's study in this process (one device, asserted).
  import jax
  from stable_training.studies import tgelu_classification
  assert jax.device_count() == 1
  one = tgelu_classification.run(tgelu_classification.tiny(arms=("gelu",)), str(tmp_path / "runs1"),
                                 log=lambda _: None)["rows"]["gelu"]
  assert json.load(open(tmp_path / "runs1" / "gelu" / "summary.json"))["info"]["devices"] == 1
  np.testing.assert_allclose(one["per_epoch"][0]["per_seed"], res["rows"]["gelu"]["per_epoch"][0]["per_seed"],
                             atol=1e-6)
  np.testing.assert_allclose(one["final_train_loss"], res["rows"]["gelu"]["final_train_loss"], rtol=1e-5)
  p = subprocess.run([sys.executable, "scripts/reproduce_tgelu_classification.py", "--tiny", "--host_devices=two"],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert p.returncode != 0 and "--host_devices=two: must be auto or an integer >= 0" in p.stderr


def test_tgelu_classification_settings_and_table():
  """`studies.tgelu_classification` in-process: each setting's budget (the config's steps, seeds, training prefix),
  the arms of experiments/configs/tgelu.py, and the table's rows from a payload."""
  import pytest
  from experiments.configs import tgelu
  from stable_training.studies import tgelu_classification as study
  assert study.ARMS == tuple(tgelu.ARMS) and study.Settings().arms == study.ARMS
  budgets = {"full": (study.Settings(), "fashion_mnist"), "quick": (study.quick(), "fashion_mnist"),
             "tiny": (study.tiny(), "digits"), "digits": (study.Settings(), "digits"),
             "30720": (study.Settings(epochs=2, num_train=30720), "fashion_mnist")}
  got = {k: (c.num_steps, c.num_seeds, c.dataset.num_train, c.batch_size, c.eval_every, c.log_every)
         for k, c in ((k, study.make_config(s, "gelu", ds)) for k, (s, ds) in budgets.items())}
  assert got == {"full": (1170, 8, 0, 256, 234, 39), "quick": (48, 4, 12288, 256, 48, 24),
                 "tiny": (16, 2, 1024, 64, 16, 16), "digits": (100, 8, 1437, 256, 5, 5),
                 "30720": (240, 8, 30720, 256, 120, 30)}
  with pytest.raises(ValueError, match="unknown arm 'relu' of tgelu.py"):
    study.tiny(arms=("gelu", "relu"))
  ep = lambda m, sd: [{"epoch": 1, "mean": m, "std": sd, "per_seed": [m - sd, m + sd]}]
  row = lambda m: {"per_epoch": ep(m, 0.01), "update_var": 2.5e-11, "loss_abs_diff": 0.05, "final_train_loss": 1.25}
  md = study.table({"dataset": "digits", "rows": {"tgelu-clip": row(0.75), "gelu": row(0.5)}}, "CMD",
                   settings=study.tiny(), figure="table_tiny.png")
  assert md.startswith("ConvNet on digits (1024 train examples), SGD lr 0.003, batch 64, 2 seeds per arm in one "
                       "vmapped run, 16 steps.")
  assert "Regenerate: `CMD`" in md and md.endswith("Learning curves: `table_tiny.png` (test accuracy per epoch, "
                                                   "training loss per step; bands: min–max over seeds).")
  assert _table_rows(md) == {"tgelu-clip": ["0.7500 ± 0.0100", "2.500e-11", "0.0500", "1.2500"],
                             "gelu": ["0.5000 ± 0.0100", "2.500e-11", "0.0500", "1.2500"]}


def _snapshot(folder):
  """{relative path: (size, mtime_ns)} of every file under `folder`."""
  snap = {}
  for dirpath, _, files in os.walk(folder):
    for name in files:
      p = os.path.join(dirpath, name)
      st = os.stat(p)
      snap[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
  return snap


def test_tiny_without_out_leaves_results_untouched(tmp_path):
  """A --tiny run with no --out writes to a fresh temporary folder, never over results/."""
  results = os.path.join(ROOT, "results")
  before = _snapshot(results)
  out = _run(["scripts/stability_study.py", "--tiny", "--arms=tanh-normalized", "--num_seeds=1",
              f"--workdir_root={tmp_path / 'runs'}"], TMPDIR=str(tmp_path))
  assert _snapshot(results) == before
  written = re.search(r"^wrote (.+\.md)$", out, re.M).group(1)
  assert os.path.isabs(written) and written.startswith(str(tmp_path) + os.sep), written
  assert os.path.basename(os.path.dirname(written)).startswith("stability_tiny_")
  assert "| tanh-normalized |" in open(written).read()


def test_checkup_examples_tiny(tmp_path):
  """A check-up report of WORKSPACE.md at a tiny size: the standard-init tanh MLP reads vanishing, its
  first-ranked remedy is measured healthy, and the JSON agrees with the printed verdict."""
  out = _run(["scripts/checkup_examples.py", "--tiny", "--models=tanh30", f"--out={tmp_path}"])
  r = json.load(open(tmp_path / "tanh30" / "checkup.json"))
  assert f"tanh30: {r['verdict_line']}" in out
  assert (tmp_path / "tanh30" / "checkup.png").stat().st_size > 1000
  report = (tmp_path / "tanh30" / "report.md").read_text()
  assert "Regenerate: `python scripts/checkup_examples.py --models=tanh30`" in report
  assert r["verdict"] == "vanishing"
  ranked = sorted((e for e in r["remedies"] if "rank" in e), key=lambda e: e["rank"])
  assert ranked[0]["verdict"] == "healthy" and ranked[0]["score"] < r["measure"]["score"]
