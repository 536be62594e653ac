"""Smoke tests of scripts/bench_roaf.py --tiny (no timing assertions): the header names what decides a
ratio, and every speed-up is the median of per-round ratios within their range."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *args):
  p = subprocess.run([sys.executable, "scripts/bench_roaf.py", "--tiny", f"--out={tmp_path}", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  with open(tmp_path / "bench_tiny.json") as f:
    return json.load(f), (tmp_path / "bench_tiny.md").read_text()


def test_compile_table_and_header(tmp_path):
  res, md = _run(tmp_path, "--skip=step,user,rnn", "--filter_modes=perm")
  assert [r["filter_mode"] for r in res["compile"]] == ["perm"] and res["compile"][0]["depth"] == 10
  assert res["compile"][0]["peak_mib"] >= res["compile"][0]["param_mib"] > 0
  for part in ("CPU ", "usable cores", "JAX ", "float32 subnormals flushed", "allocator: ", "thread env: "):
    assert part in res["header"], (part, res["header"])
  assert "PyTorch" not in res["header"] and res["header"] in md


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed (pip install -e '.[bench]')")
def test_interleaved_speedups_with_their_range(tmp_path):
  res, md = _run(tmp_path, "--skip=compile", "--filter_modes=perm,identity", "--reps=3")
  assert "PyTorch" in res["header"] and "float32 subnormals flushed" in res["header"].split("PyTorch")[1]
  assert "torch_subnormals" not in res["command"]   # the default (flush) is not a flag to repeat
  assert [r["filter_mode"] for r in res["user_loop"]] == ["perm"]
  for r in res["train_step"] + res["user_loop"]:
    assert r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
    assert f"{r['speedup']:.2f}× [{r['speedup_min']:.2f}–{r['speedup_max']:.2f}]" in md
  for k, v in res["rnn"].items():
    assert len(v["times"]) == 3
    if k != "torch_rnn":
      assert v["speedup"]["min"] <= v["speedup"]["median"] <= v["speedup"]["max"]
