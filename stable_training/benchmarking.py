"""Side-by-side timing for the benchmark scripts: interleaved rounds, ratios with their spread, and a
header that says what machine and settings produced them.

A ratio is a claim about two programs on one machine, so both run in the same
process, alternately (A, B, A, B, …): a change of load or clock then falls on
both, and each round gives one ratio t_B / t_A. We report the median of those
per-round ratios with their range (min–max), not a ratio of separately taken
medians, and print with it what decides it: the CPU model and cores, the
backend, the allocator (`stable_training.allocator`) and each side's thread
settings. No timing here is a test: the suite only smoke-tests the scripts.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Mapping


def cpu_model() -> str:
  """The CPU's model name with its family/model numbers and widest SIMD (Linux ``/proc/cpuinfo``; else
  `platform.processor()`): virtual machines often report only the vendor's brand (``AMD EPYC``)."""
  fields = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if not line.strip():
          break   # the first processor's block is enough
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    return platform.processor() or platform.machine()
  simd = next((s for s in ("avx512f", "avx2", "avx", "sse4_2") if s in fields.get("flags", "").split()), "")
  ident = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
  extra = ", ".join(p for p in (ident, simd) if p)
  name = fields.get("model name", platform.processor() or platform.machine())
  return f"{name} ({extra})" if extra else name


def usable_cores() -> int:
  """Cores this process may run on (its affinity mask where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def header(torch_threads: int | str | None = None) -> str:
  """One line: CPU model and cores, JAX backend and version, allocator, each side's threads.

  `torch_threads`: the thread count PyTorch was timed at (None: PyTorch not in this benchmark).
  """
  import jax
  from stable_training import allocator
  dev = jax.devices()[0]
  xla = os.environ.get("XLA_FLAGS", "").strip()
  parts = [f"CPU {cpu_model()}, {usable_cores()} usable cores",
           f"JAX {jax.__version__} on {jax.default_backend()} ({dev.device_kind}, {jax.device_count()} device(s); "
           f"XLA flags: {xla or 'none'})",
           f"allocator: {allocator.describe()}"]
  if torch_threads is not None:
    import torch
    parts.append(f"PyTorch {torch.__version__} at {torch_threads} thread(s)")
  env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
         if k in os.environ]
  parts.append("thread env: " + (", ".join(env) if env else "unset"))
  return "; ".join(parts)


def interleaved(runs: Mapping[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
  """Wall seconds of `reps` calls of each callable, one call of each per round, the order reversed
  every other round (A, B, C, then C, B, A, …): a cost that falls on a round's first or last call
  (another call's freed buffers, the core's clock) weighs on every callable alike.

  Each callable must block until its work is done (``jax.block_until_ready``).
  """
  if reps < 1:
    raise ValueError(f"reps={reps}: must be >= 1")
  times = {k: [] for k in runs}
  items = list(runs.items())
  for r in range(reps):
    for k, run in (items[::-1] if r % 2 else items):
      t = time.perf_counter()
      run()
      times[k].append(time.perf_counter() - t)
  return times


def ratio(slow: list[float], fast: list[float]) -> dict:
  """Per-round ratios slow[i] / fast[i] (how many times faster `fast` is): median, min, max."""
  if len(slow) != len(fast) or not slow:
    raise ValueError(f"ratio needs two equally long, non-empty timing lists, got {len(slow)} and {len(fast)}")
  r = [s / f for s, f in zip(slow, fast)]
  return {"median": statistics.median(r), "min": min(r), "max": max(r), "rounds": len(r)}


def fmt_ratio(r: Mapping) -> str:
  """``1.62× [1.55–1.70]``: the median per-round ratio and its range."""
  return f"{r['median']:.2f}× [{r['min']:.2f}–{r['max']:.2f}]"
