"""The ROAF depth study: `stable_training.studies.roaf_depth` (configs, table) and its thin script (--tiny)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from stable_training.studies import roaf_depth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, out, *extra):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--tiny",
                         "--out", str(out), *extra],
                        capture_output=True, text=True, timeout=600, cwd=ROOT,   # a hang guard only
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _md_rows(md: str, n_cells: int) -> list[list[str]]:
  """The cells of every markdown table row with `n_cells` cells (header and rule lines excluded)."""
  out = []
  for line in md.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and len(cells) == n_cells and cells[0] in roaf_depth.KINDS:
      out.append(cells)
  return out


def test_depth_tiny(tmp_path):
  # --tiny runs on scikit-learn digits, so this needs no Fashion-MNIST files. --batch=16 over the tiny preset's
  # 8: a flag given on the command line wins, the preset fills the rest (width 16).
  _run("reproduce_roaf_depth.py", tmp_path, f"--workdir_root={tmp_path / 'runs'}", "--batch=16")
  res = json.loads((tmp_path / "depth_tiny.json").read_text())
  assert res["setting"]["dataset"] == "digits"
  assert (res["setting"]["batch"], res["setting"]["width"], res["setting"]["depths"]) == (16, 16, "10")
  assert list(res["setting"])[:len(roaf_depth.SETTING_FIELDS)] == list(roaf_depth.SETTING_FIELDS)
  md = (tmp_path / "depth_tiny.md").read_text()
  assert "| roaf |" in md and "Regenerate: `python scripts/reproduce_roaf_depth.py --tiny --batch=16`" in md
  assert "one batch of 16" in md and (tmp_path / "depth_tiny.png").stat().st_size > 0
  rows = {r["model"]: r for r in res["depth_sweep"]}
  assert set(rows) == {"roaf", "roaf_glorot", "tanh_mlp"}
  for r in rows.values():
    assert math.isfinite(r["log10_sigma_max"]) and r["log10_spread"] >= 0
    assert 0 < r["grad_ratio"] < 1e3
  # Depth 10, α = 0.99: the ROAF stack is close to an isometry (singular values
  # within a factor 10 of 1), the plain tanh stack is not better conditioned.
  assert abs(rows["roaf"]["log10_sigma_max"]) < 1 and rows["roaf"]["log10_spread"] < 1
  assert rows["tanh_mlp"]["log10_spread"] >= rows["roaf"]["log10_spread"]
  assert [t["model"] for t in res["training"]] == ["roaf", "tanh_mlp"]
  for t in res["training"]:
    assert t["finite"] and 0.0 <= t["test_accuracy"] <= 1.0
    assert 1.5 < t["first_loss"] < 3.5                  # ≈ ln 10 near init
    assert [s for s, _ in t["curve"]] == [2, 4] and t["log_every"] == 2
    # Trained by the engine: its summary is in the run's workdir.
    summ = json.loads((tmp_path / "runs" / f"depth_{t['model']}_10" / "summary.json").read_text())
    assert summ["final"]["test_accuracy"]["mean"] == pytest.approx(t["test_accuracy"])
  # The markdown tables show the JSON's numbers.
  at_init, trained = _md_rows(md, 7)[:3], _md_rows(md, 7)[3:]
  for cells in at_init:
    r = rows[cells[0]]
    assert cells[1:5] == ["10", f"{r['log10_sigma_max']:.2f}", f"{r['log10_sigma_min']:.2f}",
                          f"{r['log10_spread']:.2f}"]
    assert cells[5] == f"{r['grad_ratio']:.3g}" and cells[6] == f"{r['log10_grad_min']:.1f}"
  assert [c[0] for c in trained] == ["roaf", "tanh_mlp"]
  for cells, t in zip(trained, res["training"]):
    assert cells[3:6] == [f"{t['first_loss']:.3f}", f"{t['final_loss']:.3f}", f"{t['test_accuracy']:.4f}"]
  # The library study on the same root: the training runs are read back (the same numbers), the at-init
  # measurements repeat exactly.
  payload = roaf_depth.run(roaf_depth.tiny(batch=16), str(tmp_path / "runs"), command="c", log=lambda _: None)
  strip = lambda rr: [{k: v for k, v in r.items() if k not in ("seconds", "sec_per_step", "compile_s")} for r in rr]
  assert strip(payload["depth_sweep"]) == strip(res["depth_sweep"])
  assert strip(payload["training"]) == strip(res["training"])
  assert roaf_depth.table(payload).splitlines()[2] == "Regenerate: `c`"


def test_settings_and_configs():
  s = roaf_depth.tiny()
  assert s.tiny and not s.quick and s.depths == (10,) and s.width == 16
  assert roaf_depth.quick(width=8).width == 8 and roaf_depth.quick().depths == (10, 100, 1000)
  c = roaf_depth.make_config(s, "roaf_glorot", 10)
  assert (c.model.name, c.model.width, c.model.roaf_init, c.dataset.name) == ("roaf_mlp", 16, "kernel_init", "digits")
  assert (c.num_steps, c.log_every, c.eval_every, c.batch_size, c.optimizer.name) == (4, 2, 4, 16, "momentum")
  c = roaf_depth.make_config(roaf_depth.Settings(train_steps=6, train_log_every=4, optimizer="adam"), "tanh_mlp", 7)
  assert c.model.name == "deep_mlp" and c.model.depth == 7 and c.log_every == 2 and c.optimizer.name == "adam"
  rec = roaf_depth.setting_record(roaf_depth.Settings(depths=(10, 100), train_models=("roaf",)))
  assert (rec["depths"], rec["train_models"]) == ("10,100", "roaf")
  with pytest.raises(ValueError, match="train_models: unknown model 'mlp'; valid: roaf, roaf_glorot, tanh_mlp"):
    roaf_depth.Settings(train_models=("mlp",))
  with pytest.raises(ValueError, match="optimizer: 'sgd'"):
    roaf_depth.Settings(optimizer="sgd")
  with pytest.raises(ValueError, match="depths"):
    roaf_depth.Settings(depths=())


def _payload(**setting):
  base = dict(dataset="digits", width=16, alpha=0.99, filter_mode="fast", batch=8, train_depth=10, train_steps=4,
              train_batch=16, lr=0.01, train_loop="loop", num_train=512, tiny=True, test_images=360)
  under = roaf_depth.UNDERFLOW - 1
  rows = [{"model": "tanh_mlp", "depth": 50000, "log10_sigma_max": under, "log10_sigma_min": under,
           "log10_spread": 0.0, "grad_ratio": float("nan"), "grad_last": 0.0, "log10_grad_min": -45.0}]
  trains = [{"model": "roaf", "depth": 10, "steps": 4, "first_loss": 2.3, "final_loss": 2.1, "test_accuracy": 0.25,
             "sec_per_step": 0.05}]
  return {"setting": {**base, **setting}, "depth_sweep": rows, "training": trains}


def test_table_underflow_and_old_payloads():
  md = roaf_depth.table(_payload(train_log_every=2, command="python x"))
  assert "| tanh_mlp | 50000 | 0 (f32 underflow) | 0 (f32 underflow) | — | — (0/0) | 0 (underflow) |" in md
  assert "| roaf | 10 | 4 | 2.300 | 2.100 | 0.2500 | 0.05 |" in md and "Regenerate: `python x`" in md
  assert "mean loss first 2 steps | mean loss last 2 steps" in md and "test on 360 test images" in md
  old = _payload()   # a pre-engine payload: one loss per step, no command, no test-set size
  del old["setting"]["test_images"]
  md = roaf_depth.table(old)
  assert "| first loss | mean loss last 10 steps |" in md and "Regenerate" not in md
  assert "test on 1000 test images" in md
