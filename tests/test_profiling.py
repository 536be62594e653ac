"""The trace reader behind `scripts/profile_step.py`: self times, categories, and the script's smoke run."""
import os
import re
import subprocess
import sys

import pytest

from stable_training.train import profiling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _x(name, ts, dur, tid=1):
  return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 7, "tid": tid}


def test_self_times_subtract_nested_children_per_thread():
  events = [
      _x("ThunkExecutor::Execute", 0, 200),            # runtime wrapper: skipped
      _x("while.3", 0, 100), _x("dot.1", 10, 30), _x("fusion.2", 50, 10), _x("copy.4", 52, 4),
      _x("dot.1", 100, 25),                              # a second call of the same op, after the loop
      _x("sort.0", 0, 20, tid=2), _x("$script.py:1 run", 0, 500, tid=2),  # python frames: skipped
      {"ph": "M", "name": "thread_name", "pid": 7, "tid": 2, "args": {"name": "x"}},
  ]
  t = profiling.self_times(events)
  assert t == {"while.3": 100 - 30 - 10, "dot.1": 30 + 25, "fusion.2": 10 - 4, "copy.4": 4, "sort.0": 20}


@pytest.mark.parametrize("op, cat", [("dot.6", "matmul"), ("ynn_fusion.2", "matmul"), ("sort.0", "sort"),
                                     ("dynamic-slice_bitcast_fusion.1", "scan slicing"),
                                     ("bitcast_dynamic-update-slice_fusion", "scan slicing"),
                                     ("while.96", "loop overhead"), ("copy.105", "copy"),
                                     ("copy_add_fusion", "element-wise fusion"),
                                     ("broadcast_add_fusion.8", "element-wise fusion"),
                                     ("wrapped_broadcast", "broadcast"), ("multiply_add_fusion.7",
                                                                        "element-wise fusion"),
                                     ("geqrf.3", "QR (haar filters)"), ("gather.2", "gather / scatter")])
def test_categories(op, cat):
  assert profiling.category(op) == cat


def test_markdown_table_totals():
  times = {"dot.1": 3000.0, "ynn_fusion": 1000.0, "sort.0": 2000.0, "add_fusion": 2000.0}
  md = profiling.markdown_table("t", times, wall_us=4500.0, steps=2)  # wall: per step
  assert "wall 4.5 ms/step (traced), XLA ops 4.0 ms/step" in md
  assert "| matmul | 2.00 | 50.0 % |" in md and "| sort | 1.00 | 25.0 % |" in md
  assert "| element-wise fusion | 1.00 | 25.0 % |" in md


def test_profile_step_script_tiny(tmp_path):
  """A real trace of the tiny ROAF step: one section per mode; its categories add up to the op total."""
  p = subprocess.run([sys.executable, "scripts/profile_step.py", "--tiny", "--filter_modes=perm,identity",
                      f"--out={tmp_path}", f"--trace_dir={tmp_path / 'traces'}"], cwd=ROOT,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  md = (tmp_path / "profile_tiny.md").read_text()
  assert "Regenerate: `python scripts/profile_step.py --tiny --filter_modes=perm,identity`" in md
  sections = md.split("### ")[1:]
  assert [s.splitlines()[0] for s in sections] == [
      "ROAF MLP depth 10, width 16, batch 8, filter_mode=perm", "ROAF MLP depth 10, width 16, batch 8, filter_mode=identity"]
  for s in sections:
    total = float(re.search(r"XLA ops ([\d.]+) ms/step", s).group(1))
    cats = [float(v) for v in re.findall(r"^\| [^`|]+ \| ([\d.]+) \| [\d.]+ % \|$", s, re.M)]
    assert total > 0 and "matmul" in s and abs(sum(cats) - total) <= 0.01 * len(cats) + 0.01
  assert list((tmp_path / "traces").rglob("perfetto_trace.json.gz"))
