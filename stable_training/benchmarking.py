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


SUBNORMAL_MODES = ("flush", "keep")


def jax_flushes_subnormals() -> bool:
  """Whether a jitted float32 computation on the default backend flushes subnormals to zero.

  Measured, not assumed: 1e-39 (below float32's least normal 2⁻¹²⁶ ≈ 1.18e-38) times 1.5 comes back 0
  under flush-to-zero / denormals-are-zero, 1.5e-39 under IEEE gradual underflow. XLA:CPU flushes.
  """
  import jax
  import jax.numpy as jnp
  return float(jax.jit(lambda a: a * 1.5)(jnp.float32(1e-39))) == 0.0


def set_torch_subnormals(mode: str) -> None:
  """PyTorch's float32 subnormal mode for the comparison: ``flush`` (flush-to-zero and
  denormals-are-zero, ``torch.set_flush_denormal(True)``: the arithmetic XLA:CPU does, see
  `jax_flushes_subnormals`) or ``keep`` (IEEE gradual underflow, PyTorch's default).

  Why it matters: a product that underflows below 2⁻¹²⁶ (a gradient through 10,000 layers of
  0.99 · an orthogonal filter is ≈ 0.99¹⁰⁰⁰⁰ ≈ 2e-44; a saturated tanh RNN's backward) takes a
  slow microcode path on many x86 cores when kept. Measured on an Intel Xeon (2 cores): PyTorch's
  depth-10,000 ROAF MLP step 19–20 s kept vs 4.6–5.4 s flushed, `torch.nn.RNN` at the psMNIST shape
  0.44–0.59 s vs 0.21–0.27 s depending on its (random) initialization: a JAX/PyTorch ratio with the
  modes unequal measures that, not the code.

  Raises:
    ValueError: `mode` is not one of `SUBNORMAL_MODES`, or this CPU cannot flush.
  """
  if mode not in SUBNORMAL_MODES:
    raise ValueError(f"torch subnormal mode {mode!r}: valid are {', '.join(SUBNORMAL_MODES)}")
  import torch
  if not torch.set_flush_denormal(mode == "flush") and mode == "flush":
    raise ValueError("torch subnormal mode 'flush': this CPU does not support flushing subnormals; use 'keep'")


def torch_thread_counts() -> list[int]:
  """The PyTorch thread counts timed: 1 and torch's default (on 2 shared cores its default threads were
  once 6× slower than one thread; on an idle machine 2 threads can be faster)."""
  import torch
  return sorted({1, torch.get_num_threads()})


def at_threads(run, n: int):
  """`run` with PyTorch at `n` intra-op threads (set before each call)."""
  import torch

  def timed():
    torch.set_num_threads(n)
    run()
  return timed


def torch_best(ts: dict, name: str, counts: list[int]) -> tuple[list[float], int]:
  """Per round, the faster PyTorch thread count's time (the comparison PyTorch wins whenever either
  count would), and the count that won most rounds."""
  series = [ts[f"{name}@{n}"] for n in counts]
  best = [min(zip(col, counts)) for col in zip(*series)]
  used = [n for _, n in best]
  return [t for t, _ in best], max(set(used), key=used.count)


def header(torch_threads: int | str | None = None, torch_subnormals: str | None = None) -> str:
  """One line: CPU model and cores, JAX backend and version, allocator, each side's threads and
  subnormal arithmetic (`jax_flushes_subnormals`, `set_torch_subnormals`).

  `torch_threads`: the thread count PyTorch was timed at (None: PyTorch not in this benchmark);
  `torch_subnormals`: the mode `set_torch_subnormals` set (None: PyTorch's default, ``keep``).
  """
  import jax
  from stable_training import allocator
  dev = jax.devices()[0]
  xla = os.environ.get("XLA_FLAGS", "").strip()
  parts = [f"CPU {cpu_model()}, {usable_cores()} usable cores",
           f"JAX {jax.__version__} on {jax.default_backend()} ({dev.device_kind}, {jax.device_count()} device(s); "
           f"XLA flags: {xla or 'none'}; float32 subnormals {'flushed' if jax_flushes_subnormals() else 'kept'})",
           f"allocator: {allocator.describe()}"]
  if torch_threads is not None:
    import torch
    kept = (torch_subnormals or "keep") == "keep"
    parts.append(f"PyTorch {torch.__version__} at {torch_threads} thread(s), float32 subnormals "
                 f"{'kept' if kept else 'flushed'}")
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
