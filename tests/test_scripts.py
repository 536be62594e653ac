"""Smoke tests: the default study and the tGELU classification study run end to end (--tiny, digits)."""
import json
import os
import re
import subprocess
import sys

import numpy as np

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
    assert f"[stability] {arm}: workdir {tmp_path / 'runs' / arm}" in out  # what runs where, as it runs
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


def test_tgelu_classification_tiny(tmp_path):
  out = _run(["scripts/reproduce_tgelu_classification.py", "--tiny", "--arms=tgelu-clip,gelu",
              f"--out={tmp_path}", f"--workdir_root={tmp_path / 'runs'}"])
  assert f"[tgelu_classification] gelu: workdir {tmp_path / 'runs' / 'gelu'}" in out
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
  # seed per device when there are 2 cores; --host_devices=0 keeps one device, same numbers.
  from stable_training.train.sharding import auto_host_devices, usable_cores
  want = auto_host_devices([2], usable_cores()) or 1
  assert json.load(open(tmp_path / "runs" / "gelu" / "summary.json"))["info"]["devices"] == want
  _run(["scripts/reproduce_tgelu_classification.py", "--tiny", "--arms=gelu", "--host_devices=0",
        f"--out={tmp_path / 'one'}", f"--workdir_root={tmp_path / 'runs1'}"])
  assert json.load(open(tmp_path / "runs1" / "gelu" / "summary.json"))["info"]["devices"] == 1
  one = json.load(open(tmp_path / "one" / "table_tiny.json"))["rows"]["gelu"]
  np.testing.assert_allclose(one["per_epoch"][0]["per_seed"], res["rows"]["gelu"]["per_epoch"][0]["per_seed"],
                             atol=1e-6)
  np.testing.assert_allclose(one["final_train_loss"], res["rows"]["gelu"]["final_train_loss"], rtol=1e-5)
  p = subprocess.run([sys.executable, "scripts/reproduce_tgelu_classification.py", "--tiny", "--host_devices=two"],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert p.returncode != 0 and "--host_devices=two: must be auto or an integer >= 0" in p.stderr


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
