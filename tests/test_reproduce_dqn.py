"""Smoke test: scripts/reproduce_dqn.py --tiny as a subprocess (cleanrl style)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  assert set(data["arms"]) == {"tgelu_none", "gelu_target"}
  # 128-128 MLP on 4 inputs, 2 actions: 17,410 float32 parameters; SGD and
  # clipping are stateless; the Polyak target doubles the parameters.
  n_params = 4 * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2
  assert data["arms"]["tgelu_none"]["memory_bytes"] == 4 * n_params
  assert data["arms"]["gelu_target"]["memory_bytes"] == 8 * n_params
  for name, r in data["arms"].items():
    # Each arm ran through the dqn trainer in its kept workdir.
    wd = tmp_path / "runs" / "tiny" / name
    assert r["workdir"] == str(wd) and (wd / "summary.json").exists()
    assert [json.loads(l)["step"] for l in open(wd / "metrics.jsonl")] == [100, 200, 300]
    assert r["first_nonfinite_step"] == [-1, -1]
    assert name in md
    assert r["finite"]
    assert len(r["eval_steps"]) == len(r["eval_return_mean"]) == 3
    for v in r["eval_return_mean"] + [r["final_return_mean"]]:
      assert 1.0 <= v <= 200.0  # episodes of ≥ 1 step, capped at 200
    assert 0.0 <= r["final_return_std"] <= 100.0
    assert math.isfinite(r["final_q_mean"]) and abs(r["final_q_mean"]) < 100
    assert 0 < r["env_steps_per_sec"] < 1e8
    assert r["threshold"] == 475.0
