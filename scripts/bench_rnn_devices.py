r"""Benchmark: one seed's RNN gradient on both CPU cores — explicit data parallelism vs XLA's partitioner.

The psMNIST-shape gradient of `RecurrentClassifier` (∇_θ Σ f_θ(x), T steps, H hidden, batch B) three ways,
on a process whose CPU platform exposes ``--devices`` devices
(``--xla_force_host_platform_device_count``, set here before JAX starts):

* ``one device``: ``jit(grad)`` on the default device (what a one-seed run does today);
* ``shard_map``: each device the gradient of its 1/D of the batch, then one ``psum``
  (``jax.shard_map(..., check_vma=False)``: Flax's scan carry is not marked as varying);
* ``partitioner``: ``jit(grad)`` with the batch sharded and the parameters replicated, XLA's
  SPMD partitioner deciding the rest (the engine's ``mesh_splits = 'batch'``);
* ``torch.nn.RNN`` (Elman only, where PyTorch is installed): the same inputs, a seeded
  ``nn.RNN`` + ``nn.Linear`` read-out, forward and backward of the summed logits, timed at 1 thread and
  at PyTorch's default in the same rounds and the faster taken per round (as `scripts/bench_roaf.py`
  does), float32 subnormals flushed as XLA:CPU's (`benchmarking.set_torch_subnormals`).

Prints the median seconds of ``--reps`` interleaved rounds (`benchmarking.interleaved`), the per-round
speed-up over one device [min–max], and each split's largest gradient difference from one device,
relative to that leaf's largest entry (float summation order only).

  python scripts/bench_rnn_devices.py                 # Elman and ROAF perm, H = B = 128, T = 784
  python scripts/bench_rnn_devices.py --tiny          # seconds: a smoke test
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import sys

from absl import app, flags

flags.DEFINE_integer("devices", 2, "CPU devices (the batch is split in as many parts).")
flags.DEFINE_list("cells", ["elman", "roaf_perm"], "RNN cells: elman, roaf (Haar filter), roaf_perm.")
flags.DEFINE_integer("hidden", 128, "Hidden units.")
flags.DEFINE_integer("batch", 128, "Batch size (a multiple of --devices).")
flags.DEFINE_integer("seq_len", 784, "Sequence length (one input feature per step).")
flags.DEFINE_integer("reps", 7, "Interleaved rounds (after one warm-up call of each).")
flags.DEFINE_bool("tiny", False, "Seconds-long smoke settings (H = B = 8, T = 16, 2 rounds).")
flags.DEFINE_bool("torch", True, "Time torch.nn.RNN in the same rounds (Elman rows; skipped if PyTorch is missing).")
FLAGS = flags.FLAGS

CELLS = {"elman": ("elman", {}), "roaf": ("roaf", {}), "roaf_perm": ("roaf", {"filter_mode": "perm"})}


def _runners(cell: str, mesh, x):
  """{way: no-argument callable} for `cell` and the largest relative gradient gap of each split."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from stable_training.models.recurrent import RecurrentClassifier
  name, kw = CELLS[cell]
  m = RecurrentClassifier(cell=name, hidden=FLAGS.hidden, num_classes=10, **kw)
  p = jax.jit(m.init)(jax.random.PRNGKey(0), x[:1])["params"]
  loss = lambda p, x: jnp.sum(m.apply({"params": p}, x))
  one = jax.jit(jax.grad(loss))
  dp = jax.jit(jax.shard_map(lambda p, x: jax.lax.psum(jax.grad(loss)(p, x), "data"), mesh=mesh,
                             in_specs=(P(), P("data")), out_specs=P(), check_vma=False))
  part = jax.jit(jax.grad(loss), out_shardings=NamedSharding(mesh, P()))
  xs, ps = jax.device_put(x, NamedSharding(mesh, P("data"))), jax.device_put(p, NamedSharding(mesh, P()))
  ref = jax.tree.leaves(one(p, x))
  gaps = {}
  for way, g in (("shard_map", dp), ("partitioner", part)):
    out = jax.tree.leaves(g(ps, xs))
    gaps[way] = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30)) for a, b in zip(ref, out))
  runs = {"one device": lambda: jax.block_until_ready(one(p, x)),
          "shard_map": lambda: jax.block_until_ready(dp(ps, xs)),
          "partitioner": lambda: jax.block_until_ready(part(ps, xs))}
  return runs, gaps


def _torch_runners(x, counts) -> dict:
  """{'torch@N': run}: torch.nn.RNN (tanh) + a linear read-out of the last step, forward and backward of
  the summed logits, at each of `counts` intra-op threads (`benchmarking.at_threads`)."""
  import numpy as np
  import torch
  from stable_training import benchmarking
  benchmarking.set_torch_subnormals("flush")
  torch.manual_seed(0)
  rnn, head = torch.nn.RNN(1, FLAGS.hidden, nonlinearity="tanh", batch_first=True), torch.nn.Linear(FLAGS.hidden, 10)
  xt = torch.from_numpy(np.array(x))   # a writable copy

  def run():
    rnn.zero_grad(set_to_none=True)
    head.zero_grad(set_to_none=True)
    ys, _ = rnn(xt)
    head(ys[:, -1]).sum().backward()
  return {f"torch@{n}": benchmarking.at_threads(run, n) for n in counts}


def main(argv):
  del argv
  if FLAGS.tiny:
    FLAGS.hidden, FLAGS.batch, FLAGS.seq_len, FLAGS.reps = 8, 8, 16, 2
  if FLAGS.devices < 2 or FLAGS.batch % FLAGS.devices:
    raise app.UsageError(f"--devices={FLAGS.devices}, --batch={FLAGS.batch}: need devices >= 2 dividing the batch")
  for c in FLAGS.cells:
    if c not in CELLS:
      raise app.UsageError(f"--cells: unknown {c!r}; valid: {', '.join(CELLS)}")
  from stable_training.train.sharding import with_host_devices
  os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS", ""), FLAGS.devices)
  import jax
  from stable_training import benchmarking
  if jax.device_count() != FLAGS.devices:
    raise app.UsageError(f"--devices={FLAGS.devices}: JAX has {jax.device_count()} (its backend started earlier?)")
  mesh = jax.make_mesh((FLAGS.devices,), ("data",))
  x = jax.random.normal(jax.random.PRNGKey(3), (FLAGS.batch, FLAGS.seq_len, 1))
  use_torch = FLAGS.torch and "elman" in FLAGS.cells and importlib.util.find_spec("torch") is not None
  counts = benchmarking.torch_thread_counts() if use_torch else []
  print(benchmarking.header(f"{' and '.join(map(str, counts))} (the faster per round)" if use_torch else None,
                           "flush"))
  print(f"RNN gradient, H={FLAGS.hidden}, B={FLAGS.batch}, T={FLAGS.seq_len}, {FLAGS.devices} CPU devices; "
        f"{FLAGS.reps} interleaved rounds after a warm-up call; speed-up = one device / split, per round")
  print("| cell | way | s | speed-up vs one device [range] | speed-up vs torch.nn.RNN [range] | "
        "max rel. gradient gap |")
  print("|---|---|---|---|---|---|")
  for cell in FLAGS.cells:
    runs, gaps = _runners(cell, mesh, x)
    if use_torch and cell == "elman":
      runs.update(_torch_runners(x, counts))
    for run in runs.values():
      run()
    ts = benchmarking.interleaved(runs, FLAGS.reps)
    if use_torch and cell == "elman":   # per round, the faster thread count
      ts["torch.nn.RNN"], _ = benchmarking.torch_best(ts, "torch", counts)
      for n in counts:
        del ts[f"torch@{n}"]
    for way, t in ts.items():
      sp = "—" if way == "one device" else benchmarking.fmt_ratio(benchmarking.ratio(ts["one device"], t))
      vs = "—" if "torch.nn.RNN" not in ts or way == "torch.nn.RNN" else benchmarking.fmt_ratio(
          benchmarking.ratio(ts["torch.nn.RNN"], t))
      gap = f"{gaps[way]:.1e}" if way in gaps else "—"
      print(f"| {cell} | {way} | {statistics.median(t):.4f} | {sp} | {vs} | {gap} |", flush=True)


if __name__ == "__main__":
  sys.exit(app.run(main))
