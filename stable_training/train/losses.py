"""Loss registry: ``config.loss`` names how outputs are scored (train and eval).

A `Loss` gives per-example values, so training takes their mean and
evaluation sums them over padded, masked chunks:

- ``cross_entropy``: ℓ_b = −log softmax(z_b)[y_b] for integer labels; for
  sequence outputs z ``[B, T, C]`` with labels ``[B, T]``, the mean over the T
  steps. Metric: accuracy (per example, the fraction of correct steps).
- ``mse``: ℓ_b = mean_j (f_b,j − y_b,j)² over the output units (a ``[B, 1]``
  output against ``[B]`` targets is the scalar regression case). No extra
  metric.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Loss(NamedTuple):
  """``per_example(outputs, targets) -> [B]`` and ``metrics(outputs, targets) -> {name: [B]}``."""
  per_example: Callable[[jax.Array, jax.Array], jax.Array]
  metrics: Callable[[jax.Array, jax.Array], dict]


def _ce_per_example(logits, labels):
  per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return per.reshape(per.shape[0], -1).mean(axis=1)


def _ce_metrics(logits, labels):
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"accuracy": correct.reshape(correct.shape[0], -1).mean(axis=1)}


def _mse_per_example(outputs, targets):
  b = outputs.shape[0]
  diff = outputs.reshape(b, -1) - targets.reshape(b, -1).astype(outputs.dtype)
  return jnp.mean(jnp.square(diff), axis=1)


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(_ce_per_example, _ce_metrics),
    "mse": Loss(_mse_per_example, lambda o, t: {}),
}


def names() -> list[str]:
  """Registered loss names, sorted."""
  return sorted(LOSSES)


def get_loss(name: str) -> Loss:
  """The `Loss` registered under `name`; ValueError listing the valid names otherwise."""
  if name not in LOSSES:
    raise ValueError(f"config.loss={name!r}: valid choices are {', '.join(names())}")
  return LOSSES[name]


def mean_loss(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The batch objective (1/B) Σ_b ℓ_b of loss `name` (what the train step differentiates)."""
  loss = get_loss(name)
  return lambda outputs, targets: jnp.mean(loss.per_example(outputs, targets))
