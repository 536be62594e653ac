"""The LSC studies (Herranz-Celotti & Rouat): `studies.lsc_ffn` in-process at `tiny()` (digits), the three thin
scripts (reproduce_lsc_ffn, reproduce_lsc_rnn, lsc_ffn_spectrum) through their CLI at --tiny."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from stable_training.studies import lsc_ffn, lsc_ffn_spectrum, lsc_rnn, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, tmp_path, *flags):
  out = tmp_path / "out"
  r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny", f"--out={out}",
                      f"--workdir_root={tmp_path / 'runs'}", *flags],
                     cwd=ROOT, capture_output=True, text=True, timeout=600,   # a hang guard only
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr[-3000:]
  return out


def _table_rows(md: str) -> list[list[str]]:
  """The cells of every markdown table row but headers and rules."""
  rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
  return [r for r in rows if not set(r[0]) <= {"-"} and r[0] not in ("activation", "cell", "")]


def _train_records(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["kind"] == "train"]


def _check_curve(curve, workdir, row):
  """A learning curve of the JSON is its run's training loss per seed, as the run's metrics.jsonl has it."""
  recs = _train_records(workdir)
  assert curve["run"] == workdir.name and len(recs) == 5          # tiny logs 5 records
  assert curve["step"] == [r["step"] for r in recs] == [2, 4, 6, 8, 10]
  assert curve["values"] == [[r["train_loss"]["per_seed"][s] for r in recs] for s in range(len(curve["values"]))]
  # the last point is the run's final training loss (the table row's, averaged over seeds)
  summ = json.load(open(workdir / "summary.json"))
  assert [v[-1] for v in curve["values"]] == summ["final"]["train_loss"]["per_seed"]
  assert sum(v[-1] for v in curve["values"]) / len(curve["values"]) == pytest.approx(row["train_loss"])


def _check_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 10_000


def test_settings_and_presets():
  """The presets are the Settings' budgets (the scripts' flags read them); bad lists name the field."""
  assert lsc_ffn.PRESETS["full"] == lsc_ffn.payload_settings(lsc_ffn.Settings())
  assert lsc_ffn.PRESETS["tiny"]["arms"] == "glorot,lsc" and lsc_ffn.PRESETS["quick"]["depth"] == 10
  assert list(lsc_rnn.PRESETS["full"]) == ["cells", "depths", "arms", "width", "num_steps", "num_train", "num_test",
                                           "lsc_steps", "seeds", "batch_size", "lr"]
  assert lsc_rnn.tiny(width=4).width == 4 and lsc_rnn.tiny().preset == "tiny"
  with pytest.raises(ValueError, match=r"^arms: unknown arm 'xavier'; valid: glorot, he, lsc$"):
    lsc_ffn.Settings(arms="glorot,xavier")
  with pytest.raises(ValueError, match=r"^lrs: 'fast' is not a learning rate"):
    lsc_ffn.tiny(lrs="1e-3,fast")
  with pytest.raises(ValueError, match=r"^depths: unknown depth '9'"):
    lsc_rnn.quick(depths="2,9")
  with pytest.raises(ValueError, match=r"^rho 0: the target radius must be > 0"):
    lsc_ffn_spectrum.tiny(rho=0)
  c = lsc_ffn.make_config(lsc_ffn.tiny(data_dir="/d"), "relu", "he", 0.01)
  assert (c.model.depth, c.model.width, c.model.kernel_init, c.lsc.enabled) == (4, 16, "he_normal", False)
  assert (c.optimizer.learning_rate, c.num_steps, c.log_every, c.dataset.data_dir) == (0.01, 10, 2, "/d")
  c = lsc_rnn.make_config(lsc_rnn.quick(), "gru", 5, "0.5")
  assert (c.model.cell, c.model.depth, c.model.width, c.lsc.rho, c.log_every) == ("gru", 5, 32, 0.5, 100)


@pytest.fixture(scope="module")
def ffn_tiny(tmp_path_factory):
  """`sweep.run_and_write` of lsc_ffn at tiny(): (runs root, out dir, payload)."""
  tmp = tmp_path_factory.mktemp("lsc_ffn")
  root, out = tmp / "runs", tmp / "out"
  sweep.run_and_write(lsc_ffn, lsc_ffn.tiny(), str(root), str(out), "ffn_tiny", "CMD", log=lambda _: None)
  return root, out, json.load(open(out / "ffn_tiny.json"))


def test_lsc_ffn_tiny(ffn_tiny):
  root, out, d = ffn_tiny
  assert d["dataset"] == "digits" and d["preset"] == "tiny" and d["command"] == "CMD"
  assert d["settings"] == lsc_ffn.PRESETS["tiny"]
  assert {(r["act"], r["arm"]) for r in d["best"]} == {("sin", "glorot"), ("sin", "lsc")}
  for r in d["runs"]:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"]) and r["seconds"] > 0
  (lsc_run,) = [r for r in d["runs"] if r["arm"] == "lsc"]
  (glorot_run,) = [r for r in d["runs"] if r["arm"] == "glorot"]
  assert "depth_before" not in glorot_run
  # ρ = 1 for every layer Jacobian: the mean radius ends near 1 and closer than it started.
  assert abs(lsc_run["depth_after"] - 1) < 0.1
  assert abs(lsc_run["depth_after"] - 1) < abs(lsc_run["depth_before"] - 1)
  assert abs(lsc_run["readout_after"] - 1) < abs(lsc_run["readout_before"] - 1)
  # the engine logged the same radii in the run's summary
  summ = json.load(open(root / "ffn-sin-lsc-0.001" / "summary.json"))
  assert summ["lsc"]["lsc_after"][0]["readout"] == pytest.approx(lsc_run["readout_after"])
  md = (out / "ffn_tiny.md").read_text()
  assert md.startswith("# LSC pre-training, 4×16 MLP on digits (tiny)\n") and "Regenerate: `CMD`" in md
  assert _table_rows(md) == [
      ["sin", "glorot", f"{glorot_run['test_accuracy']:.4f} ± 0.0000", "0.001", "—"],
      ["sin", "lsc", f"{lsc_run['test_accuracy']:.4f} ± 0.0000", "0.001",
       f"{lsc_run['depth_before']:.3f} → {lsc_run['depth_after']:.3f}"]]
  # Learning curves: one panel per activation, each arm at its best lr; training loss (evaluated once).
  curves = d["curves"]
  assert curves["figure"] == str(out / "ffn_tiny.png") and md.rstrip().endswith("`ffn_tiny.png`")
  _check_png(out / "ffn_tiny.png")
  assert curves["metric"] == "train_loss" and curves["log_y"] and "ncols" not in curves
  (panel,) = curves["panels"]
  assert list(panel["curves"]) == ["glorot (lr 0.001)", "lsc (lr 0.001)"]
  _check_curve(panel["curves"]["glorot (lr 0.001)"], root / "ffn-sin-glorot-0.001", glorot_run)
  _check_curve(panel["curves"]["lsc (lr 0.001)"], root / "ffn-sin-lsc-0.001", lsc_run)
  # the two arms' curves differ (each is its own run's)
  assert panel["curves"]["glorot (lr 0.001)"]["values"] != panel["curves"]["lsc (lr 0.001)"]["values"]


def test_lsc_ffn_rerun_keeps_times(ffn_tiny, tmp_path):
  """A rerun on the same root reads the finished runs back: same numbers, and each run's training time from
  the JSON it overwrites (not the read-back's); a JSON of other settings passes on no times."""
  root, out, d = ffn_tiny
  logs = []
  again = lsc_ffn.run(lsc_ffn.tiny(), str(root), command="CMD", figure=d["curves"]["figure"], previous=d,
                      log=logs.append)
  assert again == d
  assert [line for line in logs if line.startswith("[sweep]")] == [
      f"[sweep] ffn-sin-glorot-0.001: workdir {root / 'ffn-sin-glorot-0.001'}",
      f"[sweep] ffn-sin-lsc-0.001: workdir {root / 'ffn-sin-lsc-0.001'}"]
  other = {**d, "settings": {**d["settings"], "seeds": 2}}
  fresh = lsc_ffn.run(lsc_ffn.tiny(), str(root), previous=other, log=lambda _: None)
  assert [r["test_accuracy"] for r in fresh["runs"]] == [r["test_accuracy"] for r in d["runs"]]
  assert all(a["seconds"] != b["seconds"] for a, b in zip(fresh["runs"], d["runs"]))   # the read-back's own


def test_lsc_rnn_table_from_payload():
  """The RNN table's rows from a payload: arm labels, radii before → after, seconds; — without LSC."""
  rows = [{"cell": "gru", "depth": 5, "arm": "none", "test_accuracy": 0.5, "test_accuracy_std": 0.01,
           "train_loss": 1.0, "seconds": 12.4},
          {"cell": "gru", "depth": 5, "arm": "0.5", "test_accuracy": 0.625, "test_accuracy_std": 0.0, "train_loss": 1.0,
           "seconds": 7.6, **{f"{k}_{w}": v for k, w, v in [("time", "before", 0.9), ("time", "after", 0.5),
                                                           ("depth", "before", 0.2), ("depth", "after", 0.45),
                                                           ("readout", "before", 1.5), ("readout", "after", 0.52)]}}]
  payload = {"preset": "quick", "settings": lsc_rnn.PRESETS["quick"], "dataset": "fashion_mnist", "command": "C",
             "rows": rows, "curves": {"figure": "/x/rnn_quick.png", "metric": "test_accuracy"}}
  md = lsc_rnn.table(payload)
  assert md.startswith("# LSC pre-training, deep RNNs on sequential Fashion-MNIST (quick)\n\nRegenerate: `C`")
  assert _table_rows(md) == [["gru", "5", "no pre-training", "0.5000 ± 0.0100", "—", "—", "—", "12"],
                             ["gru", "5", "LSC ρ=0.5", "0.6250 ± 0.0000", "0.900 → 0.500", "0.200 → 0.450",
                              "1.500 → 0.520", "8"]]
  assert md.endswith("(per cell and depth, each arm; test accuracy, mean over seeds and min–max band): "
                     "`rnn_quick.png`")


@pytest.mark.slow
def test_reproduce_lsc_rnn_tiny(tmp_path):
  out = _run("reproduce_lsc_rnn.py", tmp_path)
  d = json.load(open(out / "rnn_tiny.json"))
  assert d["dataset"] == "digits" and d["settings"] == lsc_rnn.PRESETS["tiny"]
  (row,) = d["rows"]
  assert row["cell"] == "lstm" and row["arm"] == "1"
  assert 0.0 <= row["test_accuracy"] <= 1.0 and math.isfinite(row["train_loss"])
  for k in ("time", "depth", "readout"):
    # ρ = 1 pre-training (30 steps, tolerance 0.08 per layer) moves every radius to near its target 1.
    assert 0.0 < row[f"{k}_before"] < 3.0
    assert abs(row[f"{k}_after"] - 1) < 0.15, (k, row)
    assert abs(row[f"{k}_after"] - 1) <= abs(row[f"{k}_before"] - 1) + 1e-6, (k, row)
  # The run went through the engine, which logged the same radii in its summary.
  summ = json.load(open(tmp_path / "runs" / "rnn-lstm-2-1" / "summary.json"))
  assert summ["lsc"]["lsc_after"][0]["readout"] == pytest.approx(row["readout_after"])
  md = (out / "rnn_tiny.md").read_text()
  assert "Regenerate: `python scripts/reproduce_lsc_rnn.py --tiny`" in md
  radii = [f"{row[k + '_before']:.3f} → {row[k + '_after']:.3f}" for k in ("time", "depth", "readout")]
  assert _table_rows(md) == [["lstm", "2", "LSC ρ=1", f"{row['test_accuracy']:.4f} ± 0.0000", *radii,
                              f"{row['seconds']:.0f}"]]
  # Learning curves: one panel per (cell, depth), one curve per arm; training loss (evaluated once).
  curves = d["curves"]
  assert curves["figure"] == str(out / "rnn_tiny.png") and "`rnn_tiny.png`" in md
  _check_png(out / "rnn_tiny.png")
  assert curves["metric"] == "train_loss" and curves["log_y"] and curves["ncols"] == 1
  (panel,) = curves["panels"]
  assert panel["title"] == "lstm, depth 2" and list(panel["curves"]) == ["LSC ρ=1"]
  _check_curve(panel["curves"]["LSC ρ=1"], tmp_path / "runs" / "rnn-lstm-2-1", row)


@pytest.mark.slow
def test_reproduce_lsc_ffn_tiny(tmp_path):
  """The CLI at --tiny --arms=lsc (one run): files, Regenerate line, the row as the JSON has it."""
  out = _run("reproduce_lsc_ffn.py", tmp_path, "--arms=lsc")
  d = json.load(open(out / "ffn_tiny.json"))
  assert d["settings"] == {**lsc_ffn.PRESETS["tiny"], "arms": "lsc"} and d["command"] == \
      "python scripts/reproduce_lsc_ffn.py --tiny --arms=lsc"
  (r,) = d["runs"]
  assert d["best"] == [r] and abs(r["depth_after"] - 1) < 0.1
  md = (out / "ffn_tiny.md").read_text()
  assert "Regenerate: `python scripts/reproduce_lsc_ffn.py --tiny --arms=lsc`" in md
  assert _table_rows(md) == [["sin", "lsc", f"{r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f}", "0.001",
                              f"{r['depth_before']:.3f} → {r['depth_after']:.3f}"]]
  _check_png(out / "ffn_tiny.png")
  assert os.path.exists(tmp_path / "runs" / "ffn-sin-lsc-0.001" / "summary.json")


@pytest.mark.slow
def test_lsc_ffn_spectrum_tiny(tmp_path):
  out = _run("lsc_ffn_spectrum.py", tmp_path)
  d = json.load(open(out / "spectrum_tiny.json"))
  assert d["settings"] == {"dataset": "digits", "depth": 4, "width": 16, "steps": 20, "batch": 8,
                           "batch_samples": 4, "activation": "tanh", "kernel_init": "glorot_standard", "rho": 1.0,
                           "seed": 0}
  assert d["pretrain_steps"] >= 1 and d["preset"] == "tiny"
  for w in ("before", "after"):
    r = d[w]
    assert all(math.isfinite(r[k]) for k in r)
    assert r["max_abs_eig"] >= r["second_abs_eig"] >= r["median_abs_eig"] > 0
    assert len(d["per_layer"][w]["rms_sv"]) == d["settings"]["depth"] - 1
    # Π of the per-layer r.m.s. σ, recomputed from the per-layer values.
    assert math.isclose(r["rms_sv_product"], math.prod(d["per_layer"][w]["rms_sv"]), rel_tol=1e-6)
  # Pre-training moves the top eigenvalue to near its target 1 (from ≈ 0.6 for the standard init).
  assert abs(d["after"]["max_abs_eig"] - 1) < abs(d["before"]["max_abs_eig"] - 1)
  assert abs(d["after"]["max_abs_eig"] - 1) < 0.1
  md = (out / "spectrum_tiny.md").read_text()
  assert md.startswith("# LSC (ρ = 1) on a 4 × 16 tanh MLP, glorot_standard init (tiny)")
  assert "Regenerate: `python scripts/lsc_ffn_spectrum.py --tiny`" in md
  assert f"{d['pretrain_steps']} AdaBelief steps" in md and "Means over the 3 hidden-to-hidden" in md
  table = {r[0]: r[1:] for r in _table_rows(md)}
  for w in ("before", "after"):
    r = d[w]
    assert table[w] == [f"{r['max_abs_eig']:.3f}", f"{r['second_abs_eig']:.3f}", f"{r['median_abs_eig']:.3f}",
                        f"{r['rms_sv']:.3f}", f"{r['rms_sv_product']:.2e}"]
