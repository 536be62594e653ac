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


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-d ``Mesh`` over `devices` (default: all, across hosts) with axis ``data``."""
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh, ndim: int, axis: int) -> NamedSharding:
  """Array of rank `ndim` split along `axis` over ``data``, replicated otherwise."""
  spec = [None] * ndim
  spec[axis] = "data"
  return NamedSharding(mesh, P(*spec))
