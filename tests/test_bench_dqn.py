"""Smoke test of scripts/bench_dqn.py (no timing assertions): interleaved whole runs, a header naming the
machine and allocator, a row per implementation whose rate is its env steps over its median run time."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_dqn_ours_only(tmp_path):
  p = subprocess.run([sys.executable, "scripts/bench_dqn.py", "--seeds", "1", "--steps", "300", "--warmup", "256",
                      "--reps", "2", "--skip", "torch,rejax", "--out", str(tmp_path), "--tag", "t"],
                     cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  md = (tmp_path / "bench_t.md").read_text()
  rows = json.loads((tmp_path / "bench_t.json").read_text())["rows"]
  assert "CPU " in md and "allocator: " in md and "--tag t" in md
  (row,) = rows
  assert row["seeds"] == 1 and len(row["times"]) == 2 and row["vs_rejax"] is None
  assert abs(row["steps_per_s"] - 300 / row["run_s"]) < 1e-6 * row["steps_per_s"]
  assert f"| {row['impl']} | 1 | {row['steps_per_s']:.0f} |" in md
