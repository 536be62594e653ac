"""Smoke test of scripts/bench_rnn_devices.py --tiny (no timing assertions): both splits of the batch over 2 CPU
devices give one device's gradient (float summation order only), and each speed-up is a median within its range."""
import importlib.util
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  # XLA_FLAGS passed on (the suite's compile settings); the script appends its device count.
  return subprocess.run([sys.executable, "scripts/bench_rnn_devices.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_tiny_splits_give_the_one_device_gradient():
  p = _run("--tiny", "--cells=elman")
  assert p.returncode == 0, p.stderr[-3000:]
  assert "2 device(s)" in p.stdout and "float32 subnormals flushed" in p.stdout
  rows = re.findall(r"^\| (\w+) \| ([\w. ]+) \| ([\d.]+) \| (.+?) \| (.+?) \| (.+?) \|$", p.stdout, re.M)
  torch = importlib.util.find_spec("torch") is not None      # its row where installed, flushing subnormals
  ways = ["one device", "shard_map", "partitioner"] + (["torch.nn.RNN"] if torch else [])
  assert [(c, w) for c, w, *_ in rows] == [("elman", w) for w in ways]
  assert "float32 subnormals flushed); allocator" in p.stdout and ("PyTorch" in p.stdout) == torch
  for cell, way, s, speedup, vs_torch, gap in rows:
    assert float(s) > 0
    for r in [speedup] * (way != "one device") + [vs_torch] * (torch and way != "torch.nn.RNN"):
      med, lo, hi = map(float, re.fullmatch(r"([\d.]+)× \[([\d.]+)–([\d.]+)\]", r).groups())
      assert lo <= med <= hi
    if way in ("shard_map", "partitioner"):
      assert float(gap) < 1e-5, (cell, way, gap)     # the same gradient, summed in another order


def test_bad_settings_are_one_line_errors():
  p = _run("--cells=gru", "--reps=1")
  assert p.returncode != 0 and "--cells: unknown 'gru'; valid: elman, roaf, roaf_perm" in p.stderr
  p = _run("--batch=9", "--reps=1")
  assert p.returncode != 0 and "need devices >= 2 dividing the batch" in p.stderr
