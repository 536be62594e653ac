"""Where a compiled program's time goes, from a `jax.profiler` trace.

`trace_self_times` runs a callable under ``jax.profiler.trace`` (with a
Perfetto JSON trace), reads the trace back and returns every XLA op's self time;
`markdown_table` groups them into categories (matmul, sort, element-wise
fusions, scan slicing, copies, loop overhead...). No trace viewer needed: the
numbers come straight from the trace events (`scripts/profile_step.py`).
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import time

# (category, exact op base names, op name prefixes): fusions are named after their root op by XLA.
CATEGORIES = (("matmul", ("dot", "convolution", "custom-call"), ("ynn_fusion",)),
              ("QR (haar filters)", ("geqrf", "householder", "orgqr"), ()),
              ("sort", ("sort",), ()),
              ("scan slicing", ("dynamic-slice", "dynamic-update-slice"),
               ("dynamic-slice_", "bitcast_dynamic-update-slice", "subtract_dynamic-update-slice")),
              ("gather / scatter", ("gather", "scatter"), ()),
              ("copy", ("copy",), ()),
              ("broadcast", ("broadcast", "wrapped_broadcast"), ()),
              ("loop overhead", ("while", "conditional"), ()))


def category(op: str) -> str:
  """The category of an XLA op name (``name.N``); any op not listed is element-wise work."""
  base = op.split(".")[0]
  return next((cat for cat, exact, prefixes in CATEGORIES if base in exact or base.startswith(prefixes or ("\0",))),
              "element-wise fusion")


def self_times(events: list[dict]) -> collections.Counter:
  """{op name: self time µs} over the complete ('X') events of XLA's worker threads.

  Events nest by time on one thread (a ``while`` contains its body's ops); an
  event's self time is its duration minus its direct children's. Python
  (``$``-prefixed) and runtime (``ThunkExecutor``, ``Pjit…``) events are skipped.
  """
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      name = e["name"]
      if name.startswith("$") or "::" in name or name.startswith(("Pjit", "PjRt")):
        continue
      by_thread[(e.get("pid"), e.get("tid"))].append((float(e["ts"]), float(e["dur"]), name))
  out = collections.Counter()
  for evs in by_thread.values():
    evs.sort(key=lambda t: (t[0], -t[1]))
    stack = []  # open events: [end, name, children's time, duration]

    def pop(until):
      while stack and stack[-1][0] <= until:
        end, name, child, dur = stack.pop()
        out[name] += dur - child
        if stack:
          stack[-1][2] += dur
    for ts, dur, name in evs:
      pop(ts)
      stack.append([ts + dur, name, 0.0, dur])
    pop(float("inf"))
  return out


def trace_self_times(run, steps: int, trace_dir: str) -> tuple[collections.Counter, float]:
  """Self time per op of `steps` calls of `run` (warmed up by the caller); also the wall µs per step."""
  import jax
  os.makedirs(trace_dir, exist_ok=True)
  before = set(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    t0 = time.perf_counter()
    for _ in range(steps):
      run()
    wall = (time.perf_counter() - t0) / steps * 1e6
  path = sorted(set(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)) - before)[-1]
  with gzip.open(path) as f:
    t = json.load(f)
  return self_times(t["traceEvents"] if isinstance(t, dict) else t), wall


def markdown_table(title: str, times: collections.Counter, wall_us: float, steps: int, top: int = 8) -> str:
  """Markdown: per-category and top-op milliseconds per step (`times`: µs over `steps` steps;
  `wall_us`: wall µs per step), each category's share of the op time."""
  times = collections.Counter(times)
  cats = collections.Counter()
  for op, us in times.items():
    cats[category(op)] += us
  total = sum(times.values())
  lines = [f"### {title}", "",
           f"wall {wall_us / 1e3:.1f} ms/step (traced), XLA ops {total / steps / 1e3:.1f} ms/step", "",
           "| category | ms/step | share of op time |", "|---|---|---|"]
  for cat, us in cats.most_common():
    lines.append(f"| {cat} | {us / steps / 1e3:.2f} | {100 * us / total:.1f} % |")
  lines += ["", "| op | category | ms/step |", "|---|---|---|"]
  for op, us in times.most_common(top):
    lines.append(f"| `{op}` | {category(op)} | {us / steps / 1e3:.2f} |")
  return "\n".join(lines)


