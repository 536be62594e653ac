"""Activation functions: pure `jnp` functions plus a by-name registry.

The squashing truncated GELU (tGELU) is from Ramaswamy, Bhatnagar & Saxena,
"Stable and consistent training" (2023); softsign, sigmoid and tanh are the
squashing nonlinearities compared by Glorot & Bengio (2010).

Every function maps an array to an array of the same shape and is safe under
`jax.grad` / `jax.jit` / `jax.vmap`.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Callable, Iterator

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

# Trace-time activation hook. While `activation_hook(h)` is active, every
# registered activation called as fn(x, **kw) returns h(partial(fn_raw, **kw), x)
# instead of fn(x, **kw) (fn_raw: the undecorated function). It exists for
# estimators that must change how activations differentiate without touching
# the models: the averaged-gradient "secant" method of `stable_training.optim`
# swaps σ′(z) for a secant slope through a `jax.custom_vjp`. It is read only
# while JAX traces, so it costs nothing at run time, and with no hook active
# every activation behaves exactly as before.
_HOOK: contextvars.ContextVar = contextvars.ContextVar(
    "stable_training_activation_hook", default=None)


@contextlib.contextmanager
def activation_hook(
    hook: Callable[[Activation, jax.Array], jax.Array]) -> Iterator[None]:
  """Within this context (at trace time), registered activations call `hook(fn, x)`.

  `fn` is the activation with its keyword arguments bound (undecorated, so
  calling it inside the hook does not recurse). Functions traced outside the
  context (e.g. an inner `jax.jit` compiled earlier) are not affected.
  """
  token = _HOOK.set(hook)
  try:
    yield
  finally:
    _HOOK.reset(token)


def _hookable(fn: Callable) -> Callable:
  """Makes `fn` dispatch through the active `activation_hook`, if any."""
  @functools.wraps(fn)
  def wrapper(x, *args, **kwargs):
    hook = _HOOK.get()
    if hook is None:
      return fn(x, *args, **kwargs)
    return hook(functools.partial(fn, *args, **kwargs) if (args or kwargs) else fn, x)
  return wrapper


@_hookable
def tgelu(x: jax.Array, t_left: float = -1.0, t_right: float = 3.0) -> jax.Array:
  """Truncated GELU with an explicit range (Ramaswamy, Bhatnagar & Saxena 2023).

  With Φ the standard normal CDF::

    x ≥ t_r:        t_r·Φ(t_r) + (x − t_r)·(1 − Φ(x − t_r))
    0 ≤ x < t_r:    x·Φ(x)                     (GELU)
    t_l ≤ x < 0:    x·Φ(−x)
    x < t_l:        t_l·Φ(−t_l) + (x − t_l)·Φ(x − t_l)

  The function is continuous; its derivative jumps at t_l and t_r by design
  (the paper's definition). As x → +∞ the output tends to t_r·Φ(t_r) and as
  x → −∞ to t_l·Φ(−t_l): the output is squashed into a bounded range (see
  `tgelu_range`).

  Args:
    x: input array.
    t_left: left threshold, must be < 0.
    t_right: right threshold, must be > 0.

  Raises:
    ValueError: unless ``t_left < 0 < t_right``.
  """
  t_left, t_right = _check_tgelu_range(t_left, t_right)
  # Every branch has the form c + u·Φ(s·u) (using 1 − Φ(u) = Φ(−u)):
  #   x ≥ t_r: u = x − t_r, s = −1, c = t_r·Φ(t_r);   0 ≤ x < t_r: u = x, s = +1, c = 0;
  #   t_l ≤ x < 0: u = x, s = −1, c = 0;              x < t_l: u = x − t_l, s = +1, c = t_l·Φ(−t_l).
  # Selecting (shift, s, c) per element and evaluating Φ once costs one erf
  # instead of four, and no branch is evaluated outside its region, so the
  # gradient never sees a value from an unused branch.
  x = jnp.asarray(x)
  hi, lo = x >= t_right, x < t_left
  shift = jnp.where(hi, t_right, jnp.where(lo, t_left, 0.0)).astype(x.dtype)
  sign = jnp.where(hi | ((x < 0.0) & ~lo), -1.0, 1.0).astype(x.dtype)
  const = jnp.where(hi, t_right * _ndtr_py(t_right),
                    jnp.where(lo, t_left * _ndtr_py(-t_left), 0.0)).astype(x.dtype)
  u = x - shift
  return const + u * (0.5 + 0.5 * jax.lax.erf(sign * u * _SQRT_HALF))


_SQRT_HALF = 0.7071067811865476


def _ndtr_py(t: float) -> float:
  """Φ(t) for a Python float (the branch constants), in double precision."""
  return 0.5 * math.erfc(-t * _SQRT_HALF)


def _check_tgelu_range(t_left, t_right):
  try:
    t_left, t_right = float(t_left), float(t_right)
  except TypeError as e:  # traced thresholds cannot be validated
    raise ValueError(
        f"tgelu thresholds must be Python numbers, got t_left={t_left!r}, "
        f"t_right={t_right!r}") from e
  if not t_left < 0.0 < t_right:
    raise ValueError(
        f"tgelu needs t_left < 0 < t_right, got t_left={t_left}, "
        f"t_right={t_right}")
  return t_left, t_right


def tgelu_range(t_left: float = -1.0, t_right: float = 3.0) -> tuple[float, float]:
  """The open output range (lim_{x→−∞}, lim_{x→+∞}) of `tgelu`.

  For x → +∞ the term (x − t_r)(1 − Φ(x − t_r)) → 0, and likewise for x → −∞
  the term (x − t_l)Φ(x − t_l) → 0, so the range is
  (t_l·Φ(−t_l), t_r·Φ(t_r)) — note the tails are not monotone near the
  thresholds: they reach t_r·Φ(t_r) + max_u u(1 − Φ(u)) ≈ t_r·Φ(t_r) + 0.17.
  """
  t_left, t_right = _check_tgelu_range(t_left, t_right)
  return (t_left * _ndtr_py(-t_left), t_right * _ndtr_py(t_right))


@_hookable
def softsign(x: jax.Array) -> jax.Array:
  """Softsign x / (1 + |x|) (Bergstra et al. 2009; Glorot & Bengio 2010)."""
  return x / (1.0 + jnp.abs(x))


@_hookable
def sigmoid(x: jax.Array) -> jax.Array:
  """Logistic sigmoid 1 / (1 + e^{−x})."""
  return jax.nn.sigmoid(x)


@_hookable
def tanh(x: jax.Array) -> jax.Array:
  """Hyperbolic tangent (e^x − e^{−x}) / (e^x + e^{−x})."""
  return jnp.tanh(x)


@_hookable
def relu(x: jax.Array) -> jax.Array:
  """Rectifier max(0, x)."""
  return jax.nn.relu(x)


@_hookable
def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU x·Φ(x) (Hendrycks & Gimpel 2016), not the tanh approximation."""
  return jax.nn.gelu(x, approximate=False)  # x·(1 + erf(x/√2))/2


@_hookable
def sin(x: jax.Array) -> jax.Array:
  """Sine, one of the activations of the LSC study (Herranz-Celotti & Rouat)."""
  return jnp.sin(x)


@_hookable
def cos(x: jax.Array) -> jax.Array:
  """Cosine, one of the activations of the LSC study (Herranz-Celotti & Rouat)."""
  return jnp.cos(x)


@_hookable
def identity(x: jax.Array) -> jax.Array:
  """Identity x (linear networks)."""
  return x


_REGISTRY: dict[str, Activation] = {
    "tgelu": tgelu,
    "softsign": softsign,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "gelu": gelu,
    "sin": sin,
    "cos": cos,
    "identity": identity,
}

# Output bounds of the squashing activations, used e.g. by the diagnostics to
# measure saturation (|a| within 10% of a bound). Unbounded ones are absent.
BOUNDS: dict[str, tuple[float, float]] = {
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "sin": (-1.0, 1.0),
    "cos": (-1.0, 1.0),
}


def names() -> list[str]:
  """The registered activation names, sorted."""
  return sorted(_REGISTRY)


def get_activation(name: str, **kwargs) -> Activation:
  """Returns the activation called `name`, with `kwargs` bound (tGELU's range).

  Raises:
    ValueError: for an unknown name (the message lists the valid ones) or
      keyword arguments the activation does not take.
  """
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown activation {name!r}; valid names: {', '.join(names())}")
  fn = _REGISTRY[name]
  if not kwargs:
    return fn
  if name != "tgelu":
    raise ValueError(
        f"activation {name!r} takes no arguments, got {sorted(kwargs)}")
  unknown = set(kwargs) - {"t_left", "t_right"}
  if unknown:
    raise ValueError(
        f"tgelu takes t_left and t_right, got unknown {sorted(unknown)}")
  _check_tgelu_range(kwargs.get("t_left", -1.0), kwargs.get("t_right", 3.0))
  return functools.partial(fn, **kwargs)
