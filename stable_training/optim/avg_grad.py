"""The averaged gradient over the update segment, and RMSProp driven by it.

From the ICLR 2025 submission "Efficient Gradient-Based Algorithm for Training
Deep Learning Models With Many Nonlinear Activations". For a step Δw the
averaged gradient

    ḡ(w, Δw) = ∫₀¹ ∇L(w + tΔw) dt

satisfies L(w + Δw) − L(w) = ḡ·Δw exactly (fundamental theorem of calculus
along the segment), whereas ∇L(w)·Δw is only first-order accurate: in a deep
network of saturating activations the loss changes along the step in ways the
gradient at one end does not see. Δw is not known before the step, so it is
*predicted* by the previous applied update w_t − w_{t−1} (the previous
parameters are one param-sized buffer in the transform's state; Δw = 0 at
step 0, where every estimator reduces to ∇L(w)).

For users: `averaged_gradient(inner, method, loss_fn=...)` wraps any optax
optimizer so it steps on ḡ (the order is right by construction, in any
loop); `estimate_averaged_gradient(loss_fn, params, delta, method=...)` is ḡ
itself. Estimators:

- ``midpoint``: ∇L(w + Δw/2) — one forward+backward (plus, in
  `estimate_averaged_gradient`, one forward for L(w)); exact for quadratic L.
- ``gauss_legendre``: Σᵢ wᵢ ∇L(w + tᵢΔw) with the `num_points` Gauss–Legendre
  nodes mapped to [0, 1] (weights sum to 1), gradients at the nodes computed
  one after another with `jax.lax.map` (one gradient's memory; measured ≈ 2.5×
  faster on CPU than `jax.vmap`, whose batched matmuls over nodes with
  different weights are slow there); exact for L polynomial of degree ≤ 2n
  along the segment.
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
   to rounding. A model with no registered activation at all raises (see
   below); route a linear model's output through `activations.identity` to
   get the trapezoid rule, exact for a squared loss.
   Cost ≈ 2 forward + 2 backward passes (vectorised), like 2-point
   Gauss–Legendre. Activations that are not from the registry (user
   callables) keep their derivative and the per-lane cotangent.

Accuracy against ∫₀¹ ∇L(w + tΔw) dt by dense quadrature (tests, a 1-hidden
tanh layer + linear output + softmax cross-entropy, float64): the error of
``midpoint`` and of ``secant`` is O(|Δw|²) (halving Δw divides it by ≈ 4;
secant's constant is ≈ 2× midpoint's: the cross-entropy on the output enters
by the trapezoid rule, −f″/12 against +f″/24), that of 2-point
``gauss_legendre`` O(|Δw|⁴) (≈ 16). Secant's advantage is the identity
L(w + Δw) − L(w) = ḡ·Δw through the activations, not the gradient error.

Two ways to reach the activations. From the *loss* (`averaged_gradient` with
``loss_fn``, `estimate_averaged_gradient`, or ``grad_fn.loss_fn``), the
jaxpr transformation of `optim.secant` finds them in any model (``jnp.tanh``,
``jax.nn.*``, flax activations, hand-written compositions) and routes each
through `_secant_hook`; registry activations are traced as single units, so
both ways give the same ḡ on this project's models. From a *gradient
function* alone (the engine's ``grad_fn``), only the trace-time hook above
exists: if no registered activation is called, ``secant`` would silently be
the trapezoid rule, so it raises a ValueError naming the activation
primitives it found and where the model calls them. The hook is a trace-time
`contextvars.ContextVar` (`activations.activation_hook`), set only while the
estimator traces its two lanes: scoped to that trace (and thread).

The averaged gradient as one optax transform (`averaged_gradient_estimator`,
an `optax.GradientTransformationExtraArgs`, built like `optax.contrib.sam`'s
opaque mode): its ``update(updates, state, params, *, grad_fn)`` receives the
loss gradient ``grad_fn(params) -> ∇L(params)`` at the step's batch as an
extra argument, forms Δw = w_t − w_{t−1} from the parameters it saw at the
previous call (its state; Δw = 0 at the first step) and replaces the
incoming ∇L(w) by ḡ(w, Δw). Because Δw is measured on the parameters, it is
the update that was *applied*, whatever the transforms after it did (clipping,
weight decay, RMSProp, a skipped non-finite step): ordering after it is
irrelevant. It must come *first*: a transform before it would act on ∇L(w),
whose value ḡ replaces, so its effect would be lost. It checks this in any
loop: the engine's ``grad_fn.at_params`` is the gradient it passed (leaf
identity, at trace time); outside jit the values are compared with
grad_fn(params); under jit without ``at_params`` it cannot check and raises,
pointing to the wrapper `averaged_gradient`, which users should call instead.

    tx = optax.chain(averaged_gradient_estimator("secant"),
                     clip_output_layer(1.0), optax.rmsprop(1e-3))
    updates, state = tx.update(grads, state, params, grad_fn=grad_fn)

`avg_grad_rmsprop(η, ρ, ε, method)` is the estimator followed by RMSProp,

    ν ← ρν + (1 − ρ)ḡ²,   u = −η ḡ / √(ν + ε),

and `optim.make_optimizer` builds ``estimator → [clipping, weight decay] →
RMSProp`` from the config. Plain optax transforms ignore the extra argument
inside `optax.chain` (`optax.with_extra_args_support` drops it), so the engine
passes it to every optimizer and only this estimator ever calls it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training import activations as acts
from stable_training.optim import secant as secant_lib
from stable_training.optim.schema import METHODS  # noqa: F401  (re-exported: optim.METHODS)
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


def estimate_averaged_gradient(loss_fn: LossFn, params: Any, delta: Any, *,
                               method: str = "secant", num_points: int = 2
                               ) -> tuple[jax.Array, Any, Any]:
  """ḡ(w, Δw) ≈ ∫₀¹ ∇L(w + tΔw) dt, with L(w + Δw) − L(w) = ḡ·Δw (ICLR 2025 submission).

  Args:
    loss_fn: ``loss_fn(params) -> (loss, aux)`` (batch and rng bound); any
      JAX model.
    params: w.
    delta: Δw, a pytree like `params` (the predicted update).
    method: ``midpoint`` (∇L(w + Δw/2)), ``gauss_legendre`` (Σ wᵢ∇L(w + tᵢΔw),
      `num_points` nodes on [0, 1]) or ``secant`` (backward pass with secant
      activation slopes, found in `loss_fn`'s jaxpr by `optim.secant`).
    num_points: Gauss–Legendre nodes (``gauss_legendre`` only).

  Returns:
    (L(w), aux at w, ḡ). With Δw = 0 every method gives ∇L(w).

  Raises:
    ValueError: unknown method or bad num_points; ``secant`` on a loss with
      no activation, or one it cannot reach (`optim.secant.SecantError`).
  """
  _check(method, num_points)
  if method == "secant":
    (losses, auxs), gs = _secant_loss_lanes(loss_fn, params, delta, (), has_aux=True)
    aux = jax.tree.map(lambda a: a[0], auxs)
    return losses[0], aux, jax.tree.map(lambda x: 0.5 * (x[0] + x[1]), gs)
  loss, aux = loss_fn(params)
  return loss, aux, _quadrature(jax.grad(lambda p: loss_fn(p)[0]), params, delta,
                                method, num_points)


def _secant_loss_lanes(loss_fn: Callable, params: Any, delta: Any, args: tuple,
                       has_aux: bool) -> Any:
  """value_and_grad of ``loss_fn(p, *args)`` on the lanes [w, w + Δw], activations by secant slopes."""
  f = secant_lib.secant_transform(loss_fn, params, *args, hook=_secant_hook)
  ends = jax.tree.map(lambda x, d: jnp.stack([x, x + d.astype(x.dtype)]), params, delta)
  return jax.vmap(jax.value_and_grad(f, has_aux=has_aux), axis_name=PAIR_AXIS)(ends)


def _quadrature(grad_fn: Callable, params: Any, delta: Any, method: str,
                num_points: int) -> Any:
  """ḡ by the midpoint rule ∇L(w + Δw/2) or Gauss–Legendre Σᵢ wᵢ∇L(w + tᵢΔw)."""
  if method == "midpoint":
    return grad_fn(_axpy(0.5, delta, params))
  t, w = gauss_legendre_01(num_points)
  nodes = jax.tree.map(
      lambda p, d: p[None] + jnp.asarray(t, p.dtype).reshape((-1,) + (1,) * p.ndim) * d[None],
      params, delta)
  gs = jax.lax.map(grad_fn, nodes)  # one node at a time: one gradient's memory
  return jax.tree.map(lambda x: jnp.tensordot(jnp.asarray(w, x.dtype), x, axes=1), gs)


# Elementwise primitives through which an activation called outside the
# registry shows up in a jaxpr (tanh, sigmoid, erf-GELU, sin/cos). exp/log are
# left out: the softmax cross-entropy on top of the output uses them.
_ACTIVATION_PRIMITIVES = ("tanh", "logistic", "erf", "erfc", "sin", "cos")


def _user_frame(eqn) -> str:
  """``file:line (function)`` of the innermost frame outside JAX/Flax that traced `eqn` ("?" if none)."""
  tb = getattr(getattr(eqn, "source_info", None), "traceback", None)
  try:
    frames = list(tb.frames) if tb is not None else []
  except Exception:  # pylint: disable=broad-except  (only improves an error message)
    frames = []
  inside = ("/jax/", "/jaxlib/", "/flax/", "/optax/")
  user = [f for f in frames if not any(d in f.file_name for d in inside)]
  f = (user or frames or [None])[0]
  return f"{f.file_name}:{f.line_num} ({f.function_name})" if f is not None else "?"


def _direct_activation_sites(fn: Callable, params: Any, limit: int = 6) -> list[str]:
  """'primitive at file:line (function)' for activation primitives in fn's jaxpr."""
  try:
    import jax.extend.core as jcore
    closed = jax.make_jaxpr(fn)(params)
  except Exception:  # pylint: disable=broad-except  (only improves an error message)
    return []
  sites: list[str] = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in _ACTIVATION_PRIMITIVES:
        where = _user_frame(eqn)
        site = f"{eqn.primitive.name} at {where}"
        if site not in sites:
          sites.append(site)
      for sub in jcore.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(closed.jaxpr)
  return sites[:limit]


def _secant_lanes(fn: Callable, params: Any, delta: Any) -> Any:
  """`fn` on the two lanes [w, w + Δw] under the secant hook; outputs stacked [2, ...].

  `fn` must take the gradient itself (so the custom VJP's backward runs where
  the lane axis is bound); see the module docstring.

  Raises:
    ValueError: no registered activation was called while tracing `fn`
      (the secant slopes would silently be the plain derivative).
  """
  fired: list[str] = []

  def hook(f, z):
    fired.append(getattr(f, "__name__", None) or getattr(getattr(f, "func", None), "__name__", "?"))
    return _secant_hook(f, z)

  def lane(p):
    with acts.activation_hook(hook):
      return fn(p)

  ends = jax.tree.map(lambda x, d: jnp.stack([x, x + d.astype(x.dtype)]), params, delta)
  out = jax.vmap(lane, axis_name=PAIR_AXIS)(ends)
  if not fired:
    sites = _direct_activation_sites(fn, params)
    found = ("; activation primitives called directly: " + ", ".join(sites)) if sites else ""
    raise ValueError(
        "averaged gradient method='secant' from a gradient function alone sees only "
        "stable_training.activations, and none was called while differentiating the loss"
        f"{found}; give the loss instead (averaged_gradient(inner, 'secant', loss_fn=...), "
        "or grad_fn.loss_fn = lambda p: L(p)), which works on any model, or use method="
        "'midpoint' or 'gauss_legendre'")
  return out


class AvgGradState(NamedTuple):
  """State of `averaged_gradient_estimator`: the parameters seen at the previous update.

  Δw = params − prev_params is the update applied since then (zero at init).
  """
  prev_params: Any


_RIGHT_ORDER = ("st.averaged_gradient(optax.chain(clip_output_layer(1.0), optax.rmsprop(lr)), "
                "loss_fn=loss_fn) with tx.update(grads, state, params, batch=batch)")


def _check_first(updates: Any, grad_fn: Callable, params: Any) -> None:
  """Raises (one line) unless `updates` is provably the plain gradient ∇L(w).

  The averaged gradient replaces its input, so a transform before it would
  act on ∇L(w) and be lost. Proof, in any loop: ``grad_fn.at_params`` is the
  very gradient the caller passed (the engine sets it; identity of leaves,
  checked at trace time), or, outside jit, the values equal grad_fn(params).
  Under jit with neither, the order cannot be checked, so it raises too.
  """
  at = getattr(grad_fn, "at_params", None)
  got = jax.tree.leaves(updates)
  if at is not None:
    want = jax.tree.leaves(at)
    if len(got) == len(want) and all(a is b for a, b in zip(got, want)):
      return
  elif got and not any(isinstance(x, jax.core.Tracer) for x in got):
    want = jax.tree.leaves(grad_fn(params))
    if len(got) == len(want) and all(
        np.shape(a) == np.shape(b) and np.allclose(
            np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6 * (1.0 + float(np.max(np.abs(b), initial=0.0))))
        for a, b in zip(got, want)):
      return
  else:
    raise ValueError(
        "averaged_gradient_estimator cannot check under jit that it comes first in the chain "
        "(a transform before it would act on ∇L(w), which it replaces): in your own loop wrap "
        f"the optimizer instead, {_RIGHT_ORDER} — or set grad_fn.at_params = grads")
  raise ValueError(
      "averaged_gradient_estimator must come first: a transform before it changed ∇L(w), which "
      "the averaged gradient replaces, so its effect would be lost; wrap the optimizer instead, "
      f"{_RIGHT_ORDER} (or optax.chain(averaged_gradient_estimator(m), clip_output_layer(c), "
      "optax.rmsprop(lr)) in the engine)")


def averaged_gradient_estimator(method: str = "secant", num_points: int = 2
                                ) -> optax.GradientTransformationExtraArgs:
  """Replaces ∇L(w) by the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt (ICLR 2025 submission).

  From "Efficient Gradient-Based Algorithm for Training Deep Learning Models
  With Many Nonlinear Activations": ḡ satisfies L(w + Δw) − L(w) = ḡ·Δw
  exactly, where the gradient at one end is only first-order accurate. Δw is
  predicted by the previous applied update,

    Δw = w_t − w_{t−1}   (w_{t−1}: the params at the previous call; Δw = 0 at t = 0),

  measured on the parameters, so it is the update actually applied whatever
  comes after this stage in the chain (RMSProp, clipping, weight decay, a
  skipped non-finite step, `optax.apply_if_finite`). ḡ is estimated by
  `method` (``midpoint``, ``gauss_legendre`` with `num_points` nodes, or
  ``secant``; see `averaged_gradient` and the module docstring) from the loss
  gradient the caller passes as an extra argument, as in
  `optax.contrib.sam(..., opaque_mode=True)`::

    updates, state = tx.update(grads, state, params, grad_fn=grad_fn)

  with ``grad_fn(params, *unused) -> ∇L(params)`` at the step's batch (and
  rng). The incoming `updates` (∇L(w)) are replaced, so this must be the
  first transform of the chain, and it proves so or raises (one line): with
  ``grad_fn.at_params`` (the engine's `make_train_step` sets it to the
  gradient it passes as `updates`) by leaf identity; outside jit by value
  against grad_fn(params); under jit without it, never (use the wrapper
  `averaged_gradient` in your own loop). ``secant`` reaches any model's
  activations when ``grad_fn.loss_fn`` (``p -> L(p)``) is set, else only
  `stable_training.activations` (the hook). Extra cost per step:
  one gradient (midpoint), `num_points` gradients (Gauss–Legendre) or two
  lanes of forward+backward (secant); transforms that never call `grad_fn`
  cost nothing extra.

  Args:
    method: ``secant`` (default), ``midpoint`` or ``gauss_legendre``.
    num_points: Gauss–Legendre nodes (``gauss_legendre`` only).

  Returns:
    An `optax.GradientTransformationExtraArgs`; state `AvgGradState`.

  Raises:
    ValueError: unknown method or bad num_points (at construction); at update,
      no `grad_fn` or `params`, a transform before this one changed the
      gradient, or ``secant`` on a model whose activations bypass the registry.
  """
  _check(method, num_points)

  def init_fn(params):
    # A copy: params and state must not share buffers (the engine donates the state).
    return AvgGradState(prev_params=jax.tree.map(lambda p: jnp.array(p, copy=True), params))

  def update_fn(updates, state, params=None, *, grad_fn=None, **extra_args):
    del extra_args
    if grad_fn is None:
      raise ValueError(
          "averaged_gradient_estimator needs the loss gradient as an extra argument: "
          "tx.update(grads, state, params, grad_fn=lambda p: ∇L(p)) "
          "(stable_training.train.make_train_step passes it)")
    if params is None:
      raise ValueError("averaged_gradient_estimator needs params (Δw = params − previous params)")
    _check_first(updates, grad_fn, params)
    delta = jax.tree.map(lambda p, q: p - q, params, state.prev_params)
    g = _from_grad_fn(grad_fn, params, delta, method, num_points)
    g = jax.tree.map(lambda a, u: a.astype(u.dtype), g, updates)
    return g, AvgGradState(prev_params=params)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def avg_grad_rmsprop(learning_rate: optax.ScalarOrSchedule, decay: float = 0.9,
                     eps: float = 1e-8, method: str = "secant",
                     num_points: int = 2) -> optax.GradientTransformationExtraArgs:
  """RMSProp on the averaged gradient (ICLR 2025 submission, "… Many Nonlinear Activations").

  ``optax.chain(averaged_gradient_estimator(method, num_points),
  scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate))``: with ḡ
  the averaged gradient over the previous applied update Δw::

    ν ← ρν + (1 − ρ)ḡ²,  u = −η ḡ / √(ν + ε)

  i.e. `optax.rmsprop` (ε inside the square root) fed with ḡ. Call
  ``tx.update(grads, state, params, grad_fn=grad_fn)`` (the engine does).
  Since the estimator replaces its input it goes first: to clip, write
  ``optax.chain(averaged_gradient_estimator(m), clip_output_layer(c),
  optax.rmsprop(η, ρ, ε))`` (what `optim.make_optimizer` builds);
  ``optax.chain(clip_output_layer(c), avg_grad_rmsprop(η))`` raises under the
  engine, since the clipping would act on the discarded ∇L(w).

  Raises:
    ValueError: unknown method or bad num_points.
  """
  return optax.chain(averaged_gradient_estimator(method, num_points),
                     optax.scale_by_rms(decay=decay, eps=eps),
                     optax.scale_by_learning_rate(learning_rate))


def _from_grad_fn(grad_fn: Callable, params: Any, delta: Any, method: str,
                  num_points: int) -> Any:
  """ḡ from a gradient function; ``secant`` through ``grad_fn.loss_fn`` if set, else the hook."""
  if method != "secant":
    return _quadrature(grad_fn, params, delta, method, num_points)
  loss_fn = getattr(grad_fn, "loss_fn", None)
  if loss_fn is not None:  # any model: the jaxpr transformation needs the loss itself
    _, gs = _secant_loss_lanes(loss_fn, params, delta, (), has_aux=False)
  else:                    # a gradient only: registry activations through the hook
    gs = _secant_lanes(grad_fn, params, delta)
  return jax.tree.map(lambda x: 0.5 * (x[0] + x[1]), gs)


class AveragedGradientState(NamedTuple):
  """State of `averaged_gradient`: the previous parameters (Δw = w − prev) and the inner state."""
  prev_params: Any
  inner_state: Any


class AveragedGradientTransformation(optax.GradientTransformation):
  """An optimizer wrapped by `averaged_gradient`: ``update(grads, state, params, *, batch=...)``.

  Deliberately not an `optax.GradientTransformationExtraArgs`: nested inside
  `optax.chain` (or `apply_if_finite`, `MultiSteps`) its extra arguments are
  dropped, so a transform placed before it — which would act on the
  discarded ∇L(w) — is an error at the first update, never silent.
  """


_NO_BATCH = object()


def averaged_gradient(inner: optax.GradientTransformation, method: str = "secant", *,
                      loss_fn: Callable | None = None, has_aux: bool = False,
                      num_points: int = 2) -> AveragedGradientTransformation:
  """Wraps an optimizer so it steps on the averaged gradient (ICLR 2025 submission).

  From "Efficient Gradient-Based Algorithm for Training Deep Learning Models
  With Many Nonlinear Activations": the gradient at one end of a step is only
  first-order accurate along it, while the averaged gradient over the step

    ḡ = ∫₀¹ ∇L(w + tΔw) dt   satisfies   L(w + Δw) − L(w) = ḡ·Δw  exactly.

  Δw is predicted by the previous applied update, Δw = w_t − w_{t−1} (the
  parameters at the previous call, kept in the state; Δw = 0 at the first
  step, where ḡ = ∇L(w)), so it is the update that was applied whatever
  `inner` did. Each step::

    ḡ = estimate(L(·; batch), w_t, Δw)     # `method`, below
    updates, s = inner.update(ḡ, s, w_t)   # e.g. clip_output_layer → RMSProp

  The wrapper owns the order: every transform of `inner` acts on ḡ (with
  `inner = optax.rmsprop(lr)` this is the paper's averaged-gradient RMSProp,
  ν ← ρν + (1 − ρ)ḡ², u = −η ḡ/√(ν + ε)). Methods: ``midpoint`` ∇L(w + Δw/2)
  (one gradient; exact for quadratic L); ``gauss_legendre`` Σᵢ wᵢ∇L(w + tᵢΔw)
  (`num_points` gradients; exact to degree 2n − 1 along the segment);
  ``secant``: one backward pass on the two ends [w, w + Δw] with each
  activation's σ′ replaced by the secant slope (σ(z₁) − σ(z₀))/(z₁ − z₀),
  found in any model's jaxpr (`optim.secant`); ≈ 2 forward + 2 backward.

  In a plain loop (the wrapper must be the outermost transform)::

    tx = averaged_gradient(optax.chain(clip_output_layer(1.0), optax.rmsprop(1e-3)),
                           "midpoint", loss_fn=loss_fn)   # loss_fn(params, batch)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params, batch=batch)

  `grads` (∇L(w)) is not used — ḡ is computed from `loss_fn` — and may be
  None; under jit an unused gradient costs nothing. Instead of `loss_fn` +
  ``batch``, ``grad_fn=`` (``grad_fn(p) -> ∇L(p)`` at this step's batch, the
  engine's and `optax.contrib.sam`'s protocol) may be passed to update; then
  ``secant`` needs ``grad_fn.loss_fn`` (``p -> L(p)``) for a model outside
  `stable_training.activations`. Other extra arguments go on to `inner`.

  Args:
    inner: the optimizer (any optax transform or chain) applied to ḡ.
    method: ``secant`` (default), ``midpoint`` or ``gauss_legendre``.
    loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with
      `has_aux`); ``loss_fn(params)`` when update gets ``batch=None``.
    has_aux: whether `loss_fn` returns (loss, aux).
    num_points: Gauss–Legendre nodes.

  Returns:
    An `AveragedGradientTransformation`; state `AveragedGradientState`.

  Raises:
    ValueError (one line): unknown method or bad num_points (here); at update,
      neither ``batch=`` nor ``grad_fn=`` (e.g. the wrapper nested inside
      `optax.chain`: the message gives the right order), ``batch`` without
      `loss_fn`, or ``secant`` on a model it cannot handle (`SecantError`).
  """
  _check(method, num_points)
  _check_inner(inner)
  inner_tx = optax.with_extra_args_support(inner)

  def init_fn(params):
    # A copy: params and state must not share buffers (a donated state).
    return AveragedGradientState(jax.tree.map(lambda p: jnp.array(p, copy=True), params),
                                 inner_tx.init(params))

  def update_fn(updates, state, params=None, *, batch=_NO_BATCH, grad_fn=None, **extra_args):
    _check_update_args(batch, grad_fn, params)
    delta = jax.tree.map(lambda p, q: p - q, params, state.prev_params)
    if grad_fn is not None:
      g = _from_grad_fn(grad_fn, params, delta, method, num_points)
    else:
      g = _from_loss_fn(loss_fn, has_aux, batch, params, delta, method, num_points)
    g = jax.tree.map(lambda a, p: a.astype(p.dtype), g, params)
    new_updates, inner_state = inner_tx.update(g, state.inner_state, params, **extra_args)
    return new_updates, AveragedGradientState(params, inner_state)

  return AveragedGradientTransformation(init_fn, update_fn)


def _check_inner(inner: Any) -> None:
  """TypeError (one line) unless `inner` is an optax transform (has init and update)."""
  if not (hasattr(inner, "init") and hasattr(inner, "update")):
    raise TypeError(
        f"averaged_gradient(inner, ...) wraps an optax optimizer, got {type(inner).__name__}; "
        "for ḡ itself from (loss_fn, params, delta) call estimate_averaged_gradient")


def _check_update_args(batch: Any, grad_fn: Callable | None, params: Any) -> None:
  """ValueError (one line) for an `averaged_gradient` update without batch= / grad_fn= or params."""
  if batch is _NO_BATCH and grad_fn is None:
    raise ValueError(
        "averaged_gradient got neither batch= nor grad_fn=: it must be the outermost transform "
        "(inside optax.chain / apply_if_finite its extra arguments are dropped, and a transform "
        f"before it would act on ∇L(w), which it replaces); write {_RIGHT_ORDER}")
  if params is None:
    raise ValueError("averaged_gradient needs params: tx.update(grads, state, params, batch=batch)")


def _from_loss_fn(loss_fn: Callable | None, has_aux: bool, batch: Any, params: Any, delta: Any,
                  method: str, num_points: int) -> Any:
  """ḡ from ``loss_fn(params, batch)`` (``loss_fn(params)`` for batch None) over the segment [w, w + Δw]."""
  if loss_fn is None:
    raise ValueError("averaged_gradient got batch= but no loss_fn: construct it with "
                     "averaged_gradient(inner, method, loss_fn=lambda params, batch: loss)")
  args = () if batch is None else (batch,)
  if method == "secant":
    _, gs = _secant_loss_lanes(loss_fn, params, delta, args, has_aux)
    return jax.tree.map(lambda x: 0.5 * (x[0] + x[1]), gs)
  grad = jax.grad(lambda p: loss_fn(p, *args), has_aux=has_aux)
  return _quadrature((lambda p: grad(p)[0]) if has_aux else grad, params, delta, method, num_points)
