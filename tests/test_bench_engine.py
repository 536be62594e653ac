"""Smoke test of scripts/bench_engine.py --tiny: it runs and prints a ratio per model (no timing assertions)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_engine_tiny_prints_ratios():
  out = subprocess.run([sys.executable, "scripts/bench_engine.py", "--tiny"], cwd=ROOT,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert re.search(r"^CPU .+; JAX .+; allocator: ", out.stdout, re.M), out.stdout
  rows = re.findall(r"^(rnn|mlp) .*ratio \(engine / hand\) (\S+) \[(\S+)–(\S+)\] \(median of the engine-first rounds (\S+), hand-first (\S+)\);.*max \|Δloss\| (\S+)$",
                    out.stdout, re.M)
  assert [r[0] for r in rows] == ["rnn", "mlp"], out.stdout
  for _, ratio, lo, hi, first_engine, first_hand, gap in rows:
    assert 0 < float(lo) <= float(ratio) <= float(hi)   # the median of the per-round ratios, within their range
    # --tiny runs 2 rounds, one of each order (the order alternates by round): each order's median is that round's.
    assert {float(first_engine), float(first_hand)} == {float(lo), float(hi)}
    assert float(gap) < 1e-3  # same batches and initial parameters: the same math
