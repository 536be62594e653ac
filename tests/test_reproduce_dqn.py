"""The DQN study (Ramaswamy et al. 2023): `studies.dqn`'s statistics and report on made-up returns, and
scripts/reproduce_dqn.py --tiny as a subprocess (cleanrl style)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from stable_training.studies import dqn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _md_rows(md: str) -> dict[str, list[str]]:
  rows = {}
  for line in md.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| ") and cells[0] != "arm":
      rows[cells[0]] = cells[1:]
  return rows


def test_summarize_returns_counts_after_warmup():
  """Steps to threshold read only evaluations after learning_starts: the untrained net's lucky 500 at step
  100 does not count; seed 0 reaches 475 at step 300, seed 1 never; the mean curve first at 400."""
  steps = [100, 200, 300, 400]
  ret = [[500.0, 10.0, 480.0, 500.0],
         [500.0, 20.0, 100.0, 460.0]]
  s = dqn.summarize_returns(steps, ret, 475.0, learning_starts=100)
  assert s["untrained_return_mean"] == 500.0
  assert s["steps_to_threshold_per_seed"] == [300, None] and s["seeds_reaching_threshold"] == 1
  assert s["steps_to_threshold_mean_curve"] == 400 and s["median_steps_to_threshold"] == 300.0
  assert s["final_return_mean"] == 480.0 and s["final_return_std"] == 20.0
  assert s["last3_return_mean"] == pytest.approx((10 + 480 + 500 + 20 + 100 + 460) / 6)
  assert s["mean_across_seed_std"] == pytest.approx((5 + 190 + 20) / 3)
  assert s["eval_return_mean"] == [500.0, 15.0, 290.0, 480.0]
  none = dqn.summarize_returns(steps, ret, 475.0, learning_starts=0)
  assert none["untrained_return_mean"] is None and none["steps_to_threshold_per_seed"] == [100, 100]


def test_settings_validate():
  assert dqn.tiny().setting == "tiny" and dqn.quick(seeds=3).seeds == 3
  assert dqn.stem(dqn.tiny()) == "tiny" and dqn.stem(dqn.Settings(env="CartPole-3a")) == "full_CartPole-3a"
  with pytest.raises(ValueError, match=r"^setting 'huge'; valid: full, quick, tiny$"):
    dqn.Settings(setting="huge")
  with pytest.raises(ValueError, match=r"^env 'Pong'"):
    dqn.tiny(env="Pong")
  with pytest.raises(ValueError, match=r"^unknown arms \['relu'\]"):
    dqn.arm_names(dqn.tiny(arms=("tgelu_none", "relu")))
  assert dqn.arm_names(dqn.tiny())[0] == "gelu_target"  # () = every arm of experiments/configs/dqn.py


def test_table_and_resummarize(tmp_path):
  """The report's row of an arm from its statistics; `resummarize` recomputes them from the per-seed returns
  and rewrites the same files."""
  stats = dqn.summarize_returns([100, 200, 300], [[20.0, 300.0, 500.0], [30.0, 480.0, 490.0]], 475.0, 100)
  arm = {"config": {"learning_starts": 100}, **stats, "final_q_mean": 12.34, "final_loss_mean": 0.5, "finite": True,
         "first_nonfinite_step": [-1, -1], "memory_bytes": 69640, "compile_seconds": 3.21, "run_seconds": 1.0,
         "env_steps_per_sec": 1234.4, "seeds": 2, "workdir": None}
  payload = {"meta": {"setting": "tiny", "env": "CartPole-v1", "seeds": 2, "total_steps": 300, "threshold": 475.0,
                      "workdir_root": None, "command": "CMD", "jax_version": "x", "backend": "cpu"},
             "arms": {"tgelu_none": arm}}
  md = dqn.table(payload)
  assert md.startswith("# DQN with/without target network — tiny setting, CartPole-v1\n\n"
                       "2 seeds, 300 env steps per seed, threshold 475. Command: `CMD`")
  assert _md_rows(md)["tgelu_none"] == ["25.0", "300", "2/2", "250", "495.0 ± 5.0", "303.3", "47.5", "12.3", "69640",
                                        "1234", "3.2"]
  assert dqn.write_outputs(payload, str(tmp_path), "tiny") == md
  assert (tmp_path / "tiny.md").read_text() == md + "\n" and (tmp_path / "tiny.png").stat().st_size > 1000
  data = json.loads((tmp_path / "tiny.json").read_text())
  for k in ("steps_to_threshold_mean_curve", "median_steps_to_threshold"):
    data["arms"]["tgelu_none"][k] = None
  (tmp_path / "tiny.json").write_text(json.dumps(data))
  assert dqn.resummarize(str(tmp_path / "tiny.json")) == md
  assert json.loads((tmp_path / "tiny.json").read_text()) == json.loads(json.dumps(payload))


@pytest.mark.slow
def test_reproduce_dqn_tiny(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "reproduce_dqn.py"),
         "--tiny", "--arms", "tgelu_none,gelu_target", "--out", str(tmp_path),
         "--workdir_root", str(tmp_path / "runs")]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                        cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  data = json.loads((tmp_path / "tiny.json").read_text())
  md = (tmp_path / "tiny.md").read_text()
  assert (tmp_path / "tiny.png").stat().st_size > 1000
  assert list(data["arms"]) == ["tgelu_none", "gelu_target"]
  meta = data["meta"]
  assert (meta["setting"], meta["seeds"], meta["total_steps"], meta["workdir_root"]) == ("tiny", 2, 300,
                                                                                         str(tmp_path / "runs"))
  assert meta["command"] == f"python scripts/reproduce_dqn.py --arms=tgelu_none,gelu_target --out={tmp_path} --tiny"
  assert f"Command: `{meta['command']}`" in md
  # 128-128 MLP on 4 inputs, 2 actions: 17,410 float32 parameters; SGD and
  # clipping are stateless; the Polyak target doubles the parameters.
  n_params = 4 * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2
  assert data["arms"]["tgelu_none"]["memory_bytes"] == 4 * n_params
  assert data["arms"]["gelu_target"]["memory_bytes"] == 8 * n_params
  rows = _md_rows(md)
  assert list(rows) == ["tgelu_none", "gelu_target"]
  for name, r in data["arms"].items():
    # Each arm ran through the dqn trainer in its kept workdir.
    wd = tmp_path / "runs" / "tiny" / name
    assert r["workdir"] == str(wd) and (wd / "summary.json").exists()
    assert [json.loads(l)["step"] for l in open(wd / "metrics.jsonl")] == [100, 200, 300]
    assert r["first_nonfinite_step"] == [-1, -1]
    assert r["finite"]
    assert len(r["eval_steps"]) == len(r["eval_return_mean"]) == 3
    for v in r["eval_return_mean"] + [r["final_return_mean"]]:
      assert 1.0 <= v <= 200.0  # episodes of ≥ 1 step, capped at 200
    assert 0.0 <= r["final_return_std"] <= 100.0
    assert math.isfinite(r["final_q_mean"]) and abs(r["final_q_mean"]) < 100
    assert 0 < r["env_steps_per_sec"] < 1e8
    assert r["threshold"] == 475.0
    # the table row is this arm's statistics
    assert rows[name][4] == f"{r['final_return_mean']:.1f} ± {r['final_return_std']:.1f}"
    assert rows[name][0] == f"{r['untrained_return_mean']:.1f}" and rows[name][8] == str(r["memory_bytes"])
