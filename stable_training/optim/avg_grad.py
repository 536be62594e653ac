"""The averaged gradient over the update segment, and RMSProp driven by it.

From the ICLR 2025 submission "Efficient Gradient-Based Algorithm for Training
Deep Learning Models With Many Nonlinear Activations". For a step Δw the
averaged gradient

    ḡ(w, Δw) = ∫₀¹ ∇L(w + tΔw) dt

satisfies L(w + Δw) − L(w) = ḡ·Δw exactly (fundamental theorem of calculus
along the segment), whereas ∇L(w)·Δw is only first-order accurate: in a deep
network of saturating activations the loss changes along the step in ways the
gradient at one end does not see. Δw is not known before the step, so it is
*predicted* by the previous update (one param-sized buffer in the optimizer
state; zero at step 0, where every estimator reduces to ∇L(w)).

Estimators (`averaged_gradient(loss_fn, params, delta, method=...)`):

- ``midpoint``: ∇L(w + Δw/2) — one extra forward (for L(w)) plus one
  forward+backward; exact for quadratic L.
- ``gauss_legendre``: Σᵢ wᵢ ∇L(w + tᵢΔw) with the `num_points` Gauss–Legendre
  nodes mapped to [0, 1] (weights sum to 1), gradients at the nodes computed
  one after another with `jax.lax.map` (one gradient's memory; measured ≈ 2.5×
  faster on CPU than `jax.vmap`, whose batched matmuls over nodes with
  different weights are slow there), plus one forward for L(w); exact for L
  polynomial of degree ≤ 2n along the segment.
- ``secant``: the gradient is back-propagated with every activation
  derivative σ′(z) replaced by the averaged slope over the segment,
  s = (σ(z + Δz) − σ(z)) / Δz, where Δz is the change of that pre-activation
  caused by Δw (½(σ′(z) + σ′(z + Δz)) where |Δz| is tiny, selected with a
  safe `where`, so no NaN).

How ``secant`` reaches the activations of any model built from
`stable_training.activations` (design):

1. The loss and its gradient are evaluated on a two-lane `jax.vmap` over the
   parameters [w, w + Δw] with a named axis (`PAIR_AXIS`): the forward passes
   at both ends run jointly, in one compiled program, layer by layer — also
   inside `nn.scan` / `lax.scan` depth loops — and so does the backward pass
   (the gradient is taken *inside* the vmap so the lane axis stays bound).
2. Inside that vmap, `activations.activation_hook` (a trace-time context in
   `stable_training.activations`) makes every registered activation call
   `_secant_hook(fn, z)`: σ(z) through a `jax.custom_vjp` whose forward
   gathers both lanes' (z, σ(z), σ′(z)) with one `lax.all_gather(...,
   PAIR_AXIS)` and forms s, and whose backward maps the incoming cotangent g
   to mean_lanes(g)·s — both lanes carry the same cotangent below every
   activation.
3. ḡ = ½(g̃(w) + g̃(w + Δw)), the lane average. Because the cotangent δ at
   each pre-activation z = W a + b is shared, the layer below receives the
   exact discrete chain rule of the bilinear map, ½Σ_ℓ δ a_ℓᵀ = δ āᵀ and
   ½Σ_ℓ W_ℓᵀ δ = W̄ᵀ δ, and each activation its exact secant slope. So every
   layer below the last activation is treated exactly; only the output layer
   and the loss on top of it enter by the trapezoid rule (second order). For
   activation layers followed by a linear loss, L(w + Δw) − L(w) = ḡ·Δw holds
   to rounding; for a model with no activations (linear model) ``secant`` is
   the trapezoid rule, exact for a squared loss.
   Cost ≈ 2 forward + 2 backward passes (vectorised), like 2-point
   Gauss–Legendre. Activations that are not from the registry (user
   callables) keep their derivative and the per-lane cotangent.

RMSProp with the averaged gradient (`avg_grad_rmsprop`): the averaged gradient
replaces ∇L in RMSProp, feeding both the second-moment estimate and the step,

    ν ← ρν + (1 − ρ)ḡ²,   u = −η ḡ / √(ν + ε),   Δw_pred ← u,

an optax `GradientTransformation` whose state (`AvgGradState`) also holds the
last update u as the next step's Δw prediction. Because ḡ needs loss
evaluations, which an optax update cannot make, the estimator runs before
`tx.update` through `make_avg_grad_fn` (or `optim.make_grad_fn(opt_cfg, ...)`),
which reads Δw from the optimizer state with `find_delta`. Chain
`avg_grad_rmsprop` last, so the recorded update is the update applied.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training import activations as acts

METHODS = ("midpoint", "gauss_legendre", "secant")
PAIR_AXIS = "stable_training_secant_pair"

LossFn = Callable[[Any], tuple[jax.Array, Any]]


def _check(method: str, num_points: int) -> None:
  if method not in METHODS:
    raise ValueError(
        f"unknown averaged-gradient method {method!r}; valid: {', '.join(METHODS)}")
  if method == "gauss_legendre" and (not isinstance(num_points, (int, np.integer))
                                     or num_points < 1):
    raise ValueError(
        f"gauss_legendre num_points must be an integer >= 1, got {num_points!r}")


def gauss_legendre_01(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """Gauss–Legendre nodes tᵢ ∈ (0, 1) and weights wᵢ (Σwᵢ = 1) for ∫₀¹ f(t) dt.

  The [−1, 1] rule of `numpy.polynomial.legendre.leggauss` mapped by
  t = (x + 1)/2, w = w_x/2; exact for polynomials of degree ≤ 2n − 1.
  """
  x, w = np.polynomial.legendre.leggauss(num_points)
  return (x + 1.0) / 2.0, w / 2.0


def _slope(z0, z1, y0, y1, d0, d1):
  """Secant slope from both ends' inputs z, outputs y = σ(z) and derivatives d = σ′(z)."""
  dz = z1 - z0
  tol = float(jnp.finfo(dz.dtype).eps) ** (1.0 / 3.0)
  tiny = jnp.abs(dz) <= tol * jnp.maximum(1.0, jnp.abs(z0 + 0.5 * dz))
  safe_dz = jnp.where(tiny, jnp.ones_like(dz), dz)
  return jnp.where(tiny, 0.5 * (d0 + d1), (y1 - y0) / safe_dz)


def secant_slope(fn: Callable[[jax.Array], jax.Array], z0: jax.Array,
                 z1: jax.Array) -> jax.Array:
  """The averaged slope of σ = `fn` over [z0, z1], elementwise.

  s = (σ(z1) − σ(z0)) / (z1 − z0) = ∫₀¹ σ′(z0 + t(z1 − z0)) dt. Where
  |z1 − z0| ≤ ε^{1/3}·max(1, |z̄|) (ε the dtype's machine epsilon, z̄ the
  midpoint) the difference quotient loses digits to cancellation, so the
  trapezoid value ½(σ′(z0) + σ′(z1)) is used instead (error O(Δz²)); the
  division is guarded so that no branch produces inf/NaN.
  """
  one = jnp.ones_like(z0)
  y0, d0 = jax.jvp(fn, (z0,), (one,))
  y1, d1 = jax.jvp(fn, (z1,), (one,))
  return _slope(z0, z1, y0, y1, d0, d1)


def _secant_hook(fn: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
  """Activation hook: σ(z) whose VJP is g ↦ mean_lanes(g)·s, s the secant slope.

  The forward evaluates σ and σ′ once per lane (one `jax.jvp`) and exchanges
  (z, σ(z), σ′(z)) between the two lanes with one `all_gather`, so both lanes
  hold the same slope. Sharing one cotangent between the lanes makes the layer
  below see the exact discrete chain rule of a bilinear map:
  ½Σ_ℓ δ a_ℓᵀ = δ āᵀ and ½Σ_ℓ W_ℓᵀ δ = W̄ᵀ δ.
  """
  @jax.custom_vjp
  def f(z):
    return fn(z)

  def fwd(z):
    y, dy = jax.jvp(fn, (z,), (jnp.ones_like(z),))
    both = jax.lax.all_gather(jnp.stack([z, y, dy]), PAIR_AXIS)  # [lane, (z, y, σ′), ...]
    slope = _slope(both[0, 0], both[1, 0], both[0, 1], both[1, 1], both[0, 2], both[1, 2])
    return y, slope

  def bwd(slope, g):
    g_mean = jnp.mean(jax.lax.all_gather(g, PAIR_AXIS), axis=0)
    return (g_mean * slope,)

  f.defvjp(fwd, bwd)
  return f(z)


@contextlib.contextmanager
def secant_activations():
  """Context (at trace time) in which registered activations back-propagate secant slopes.

  Must be entered inside a `jax.vmap(..., axis_name=PAIR_AXIS)` over the two
  ends [w, w + Δw] of the segment; see the module docstring.
  """
  with acts.activation_hook(_secant_hook):
    yield


def _axpy(a, x, y):
  """y + a·x over pytrees (a scalar)."""
  return jax.tree.map(lambda xi, yi: yi + jnp.asarray(a, yi.dtype) * xi, x, y)


def averaged_gradient(loss_fn: LossFn, params: Any, delta: Any, *,
                      method: str = "secant", num_points: int = 2
                      ) -> tuple[jax.Array, Any, Any]:
  """ḡ(w, Δw) ≈ ∫₀¹ ∇L(w + tΔw) dt, with L(w + Δw) − L(w) = ḡ·Δw (ICLR 2025 submission).

  Args:
    loss_fn: ``loss_fn(params) -> (loss, aux)`` (batch and rng bound).
    params: w.
    delta: Δw, a pytree like `params` (the predicted update).
    method: ``midpoint`` (∇L(w + Δw/2)), ``gauss_legendre`` (Σ wᵢ∇L(w + tᵢΔw),
      `num_points` nodes on [0, 1]) or ``secant`` (backward pass with secant
      activation slopes; see the module docstring).
    num_points: Gauss–Legendre nodes (``gauss_legendre`` only).

  Returns:
    (L(w), aux at w, ḡ). With Δw = 0 every method gives ∇L(w).

  Raises:
    ValueError: unknown method or bad num_points.
  """
  _check(method, num_points)
  loss_only = lambda p: loss_fn(p)[0]
  if method == "midpoint":
    loss, aux = loss_fn(params)
    g = jax.grad(loss_only)(_axpy(0.5, delta, params))
    return loss, aux, g
  if method == "gauss_legendre":
    t, w = gauss_legendre_01(num_points)
    loss, aux = loss_fn(params)
    nodes = jax.tree.map(
        lambda p, d: p[None] + jnp.asarray(t, p.dtype).reshape((-1,) + (1,) * p.ndim) * d[None],
        params, delta)
    gs = jax.lax.map(jax.grad(loss_only), nodes)
    g = jax.tree.map(lambda x: jnp.tensordot(jnp.asarray(w, x.dtype), x, axes=1), gs)
    return loss, aux, g

  # secant: two lanes [w, w + Δw] evaluated jointly; see the module docstring.
  # The gradient is taken inside the vmap so that the custom VJP's backward,
  # which averages cotangents across lanes, runs where the lane axis is bound.
  def lane(p):
    with secant_activations():
      (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    return loss, aux, g

  ends = jax.tree.map(lambda x, d: jnp.stack([x, x + d]), params, delta)
  losses, auxs, gs = jax.vmap(lane, axis_name=PAIR_AXIS)(ends)
  aux = jax.tree.map(lambda a: a[0], auxs)
  g = jax.tree.map(lambda x: 0.5 * (x[0] + x[1]), gs)
  return losses[0], aux, g


class AvgGradState(NamedTuple):
  """State of `avg_grad_rmsprop`: the RMSProp state and the Δw prediction."""
  inner: Any        # optax state of scale_by_rms → scale_by_learning_rate
  prev_update: Any  # the last update u, the next step's Δw (zeros at init)


def avg_grad_rmsprop(learning_rate: optax.ScalarOrSchedule, decay: float = 0.9,
                     eps: float = 1e-8, method: str = "secant",
                     num_points: int = 2) -> optax.GradientTransformation:
  """RMSProp on the averaged gradient (ICLR 2025 submission, "… Many Nonlinear Activations").

  With ḡ the averaged gradient (the ``grads`` passed to update, computed by
  `make_avg_grad_fn` with Δw = state.prev_update)::

    ν ← ρν + (1 − ρ)ḡ²,  u = −η ḡ / √(ν + ε),  prev_update ← u

  i.e. `optax.rmsprop` (ε inside the square root) fed with ḡ, plus the update
  kept as the next Δw prediction. `method` / `num_points` are the estimator's
  settings, validated here; the estimator itself runs in
  `make_avg_grad_fn(loss_fn, method=, num_points=)` (what
  `optim.make_grad_fn` builds from the config).

  Raises:
    ValueError: unknown method or bad num_points.
  """
  _check(method, num_points)
  inner = optax.chain(optax.scale_by_rms(decay=decay, eps=eps),
                      optax.scale_by_learning_rate(learning_rate))

  def init_fn(params):
    return AvgGradState(inner=inner.init(params),
                        prev_update=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    updates, inner_state = inner.update(updates, state.inner, params)
    return updates, AvgGradState(inner=inner_state, prev_update=updates)

  return optax.GradientTransformation(init_fn, update_fn)


def find_delta(opt_state: Any) -> Any:
  """The Δw prediction (``prev_update``) of the one `AvgGradState` inside `opt_state`.

  Works through optax wrappers (chain, masked, apply_if_finite, ...).

  Raises:
    ValueError: no or several `AvgGradState` in `opt_state`.
  """
  is_state = lambda x: isinstance(x, AvgGradState)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(x)]
  if len(found) != 1:
    raise ValueError(
        f"expected one AvgGradState (avg_grad_rmsprop) in the optimizer state, "
        f"found {len(found)}")
  return found[0].prev_update


def make_avg_grad_fn(loss_fn: Callable, *, method: str = "secant",
                     num_points: int = 2) -> Callable:
  """Averaged-gradient estimator for the train step.

  Args:
    loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)``.
    method, num_points: see `averaged_gradient`.

  Returns:
    ``grad_fn(params, opt_state, batch, rng) -> ((L(w), aux), ḡ(w, Δw))`` with
    Δw = `find_delta(opt_state)`, the previous update of `avg_grad_rmsprop`.
  """
  _check(method, num_points)

  def grad_fn(params, opt_state, batch, rng):
    delta = find_delta(opt_state)
    loss, aux, g = averaged_gradient(lambda p: loss_fn(p, batch, rng), params, delta,
                                     method=method, num_points=num_points)
    return (loss, aux), g
  return grad_fn
