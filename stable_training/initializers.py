"""Flax-compatible weight initializers: ``init(key, shape, dtype) -> array``.

Fan convention (the one `jax.nn.initializers` uses for a Dense kernel of shape
``[fan_in, fan_out]``): for an n-d kernel the last axis is the output axis,
the second-to-last the input axis, and the leading (receptive-field) axes
multiply both fans, so a 3×3 conv kernel ``[3, 3, c_in, c_out]`` has
fan_in = 9·c_in, fan_out = 9·c_out.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]


def _fans(shape) -> tuple[int, int]:
  if len(shape) < 2:
    raise ValueError(f"initializer needs a kernel of rank >= 2, got shape {tuple(shape)}")
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  return shape[-2] * receptive, shape[-1] * receptive


def glorot_standard() -> Initializer:
  """The "standard" init of Glorot & Bengio (2010), their eq. (1).

  W ~ U[−1/√n_in, 1/√n_in], so Var[W] = 1/(3·n_in): the variance of the
  back-propagated gradients shrinks layer after layer (their eq. 10 analysis).
  """
  def init(key, shape, dtype=jnp.float32):
    fan_in, _ = _fans(shape)
    limit = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def glorot_normalized() -> Initializer:
  """The "normalized" init of Glorot & Bengio (2010), their eq. (16).

  W ~ U[−√6/√(n_in + n_out), +√6/√(n_in + n_out)], so
  Var[W] = 2/(n_in + n_out): a compromise between keeping activation variance
  (n_in·Var = 1) and back-propagated gradient variance (n_out·Var = 1).
  """
  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def he_normal() -> Initializer:
  """He et al. (2015): W ~ N(0, 2/n_in), for ReLU networks."""
  return jax.nn.initializers.he_normal()


def lecun_normal() -> Initializer:
  """LeCun et al. (1998): W ~ N(0, 1/n_in) (truncated normal, as in JAX)."""
  return jax.nn.initializers.lecun_normal()


def orthogonal(scale: float = 1.0) -> Initializer:
  """Saxe et al. (2014): W = scale·Q with Q Haar-random orthogonal (WᵀW = scale²·I).

  For a non-square kernel the rows or columns are orthonormal, whichever are
  fewer; n-d kernels are reshaped to [∏ leading, last].
  """
  return jax.nn.initializers.orthogonal(scale=scale)


_REGISTRY: dict[str, Callable[..., Initializer]] = {
    "glorot_standard": glorot_standard,
    "glorot_normalized": glorot_normalized,
    "he_normal": he_normal,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal,
}


def names() -> list[str]:
  """The registered initializer names, sorted."""
  return sorted(_REGISTRY)


def get_initializer(name: str, **kwargs) -> Initializer:
  """Returns the initializer called `name` (``orthogonal`` takes ``scale``).

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown initializer {name!r}; valid names: {', '.join(names())}")
  return _REGISTRY[name](**kwargs)
