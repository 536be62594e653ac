"""Device mesh and shardings: data parallel over every device (the successor of pmap).

The batch axis is split over the mesh axis ``data``; params, optimizer state
and the on-device train set are replicated. The same jitted program runs on
1 CPU, 8 GPUs or a TPU slice; XLA inserts the gradient all-reduce.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def with_host_devices(xla_flags: str, n: int) -> str:
  """`xla_flags` plus the flag that makes XLA's CPU platform expose `n` devices.

  Takes effect only if set (in ``XLA_FLAGS``) before JAX starts its CPU backend,
  e.g. for a subprocess or at the top of a launcher; GPU/TPU backends ignore it.
  """
  return f"{xla_flags} --xla_force_host_platform_device_count={int(n)}".strip()


def auto_host_devices(seed_counts, cores: int) -> int:
  """CPU devices worth exposing for runs of `seed_counts` seeds on `cores` cores (0: leave one).

  The largest d <= `cores` dividing every count, so the engine splits each run's
  vmapped seeds over d devices (no cross-device traffic); 0 when d = 1. Never a
  split of one seed's batch over CPU devices: measured 2.5× slower at width 32
  (`scripts/bench_train_step.py --host_devices=1,2`), whereas 16 seeds on 2
  devices cost 12.5× one seed instead of 15.9×.
  """
  counts = [int(s) for s in seed_counts]
  if not counts or min(counts) < 2:
    return 0
  d = max(k for k in range(1, max(1, int(cores)) + 1) if all(s % k == 0 for s in counts))
  return d if d > 1 else 0


def usable_cores() -> int:
  """Cores this process may run on (its affinity mask where the OS has one)."""
  import os
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-d ``Mesh`` over `devices` (default: all, across hosts) with axis ``data``."""
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def on_one_device(tree):
  """`tree` gathered onto this process's first device (every seed, whatever the mesh split).

  For host-side measurements (diagnostics) with LAPACK custom calls: jaxlib
  0.10.2's batched CPU LAPACK kernels (SVD, eigh, ...) split their batch over
  XLA's intra-op thread pool and block a pool thread until the pieces are
  done. The pool has one thread per core and is shared by every CPU device, so
  as many devices running such a kernel at once as there are cores leave no
  thread to run the pieces: a deadlock (all threads asleep in
  ``ParallelBatchMap``). One device runs one such program at a time.
  """
  leaves = jax.tree.leaves(tree)
  if all(getattr(a, "is_fully_addressable", True) for a in leaves):
    return jax.device_put(tree, jax.local_devices()[0])
  from jax.experimental import multihost_utils  # multi-process: each host gets every shard
  return jax.device_put(multihost_utils.process_allgather(tree, tiled=True), jax.local_devices()[0])


def replicated(mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh, ndim: int, axis: int) -> NamedSharding:
  """Array of rank `ndim` split along `axis` over ``data``, replicated otherwise."""
  spec = [None] * ndim
  spec[axis] = "data"
  return NamedSharding(mesh, P(*spec))
