"""Tests for the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt and avg-grad RMSProp.

ICLR 2025 submission "Efficient Gradient-Based Algorithm for Training Deep
Learning Models With Many Nonlinear Activations".
"""
from __future__ import annotations

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stable_training import activations as acts
from stable_training import optim
from stable_training.models.mlp import DeepMLP
from stable_training.optim import avg_grad as ag
from stable_training.train import steps


def _dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _rand_like(tree, seed, scale):
  """Normal(0, scale²) pytree like `tree` (NumPy RNG: no per-shape compiles)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), tree)


def _init_like(model, x, seed):
  """Glorot-scaled normal params for `model` from its shapes (no init compile)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  rng = np.random.default_rng(seed)

  def draw(s):
    if len(s.shape) == 1:
      return jnp.zeros(s.shape, s.dtype)
    fan_in, fan_out = s.shape[-2], s.shape[-1]
    return jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(2.0 / (fan_in + fan_out)), s.dtype)
  return jax.tree.map(draw, shapes)


def _to64(tree):
  return jax.tree.map(lambda x: x.astype(jnp.float64), tree)


def _mlp_problem(depth, width, *, f64, delta_scale, activation="tanh", seed=0):
  """(loss_fn(params) -> (loss, aux), params, delta) for a DeepMLP with CE loss."""
  model = DeepMLP(width=width, depth=depth, num_classes=3, activation=activation)
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((16, 5)), jnp.float32)
  y = jnp.arange(16) % 3
  params = _init_like(model, x, seed + 100)
  if f64:
    x, params = x.astype(jnp.float64), _to64(params)
  delta = _rand_like(params, seed + 200, delta_scale)

  def loss_fn(p):
    logits = model.apply({"params": p}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"logits": logits}
  return loss_fn, params, delta


def _avg(loss_fn, params, delta, method, num_points=2):
  """Jitted `averaged_gradient` (eager op-by-op dispatch is far slower)."""
  return jax.jit(lambda p, d: optim.estimate_averaged_gradient(
      loss_fn, p, d, method=method, num_points=num_points))(params, delta)


_JIT_LOSS = {}


def _jit_loss(loss_fn):
  """jit(loss) cached per loss_fn, so repeated gap checks compile once."""
  if loss_fn not in _JIT_LOSS:
    _JIT_LOSS[loss_fn] = jax.jit(lambda p: loss_fn(p)[0])
  return _JIT_LOSS[loss_fn]


def _identity_gap(loss_fn, params, delta, g):
  """|L(w + Δw) − L(w) − ḡ·Δw| and |L(w + Δw) − L(w)|."""
  f = _jit_loss(loss_fn)
  l0, l1 = f(params), f(jax.tree.map(jnp.add, params, delta))
  return float(jnp.abs(l1 - l0 - _dot(g, delta))), float(jnp.abs(l1 - l0))


def test_gauss_legendre_nodes_on_unit_interval():
  t, w = ag.gauss_legendre_01(3)
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-14)
  assert np.all((t > 0) & (t < 1))
  # Exact for degree 2n − 1 = 5: ∫₀¹ t⁵ dt = 1/6.
  np.testing.assert_allclose(np.dot(w, t ** 5), 1.0 / 6.0, rtol=1e-13)


@pytest.mark.parametrize("method,num_points", [("midpoint", 1), ("gauss_legendre", 2)])
def test_quadratic_loss_identity_is_exact(method, num_points):
  # L(w) = ½ wᵀAw + bᵀw + cubic-free ⇒ ∇L linear along the segment: both rules exact.
  with jax.enable_x64(True):
    r = np.random.default_rng(0)
    m = jnp.asarray(r.standard_normal((6, 6)))
    a = m @ m.T + jnp.eye(6)
    b = jnp.asarray(r.standard_normal(6))
    w = {"w": jnp.asarray(r.standard_normal(6))}
    d = {"w": jnp.asarray(r.standard_normal(6))}
    loss_fn = lambda p: (0.5 * p["w"] @ a @ p["w"] + b @ p["w"], None)
    loss, _, g = _avg(loss_fn, w, d, method, num_points)
    lhs = loss_fn({"w": w["w"] + d["w"]})[0] - loss
    np.testing.assert_allclose(float(_dot(g, d)), float(lhs), rtol=1e-6)
    np.testing.assert_allclose(loss, loss_fn(w)[0])


def test_deep_tanh_gauss_legendre_converges():
  with jax.enable_x64(True):
    loss_fn, params, delta = _mlp_problem(6, 16, f64=True, delta_scale=0.1)
    _, _, g8 = _avg(loss_fn, params, delta, "gauss_legendre", 8)
    _, _, g256 = _avg(loss_fn, params, delta, "gauss_legendre", 256)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g256)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))
    # ... and the 256-point average satisfies the exact identity.
    gap, change = _identity_gap(loss_fn, params, delta, g256)
    assert gap < 1e-8 * max(change, 1.0), (gap, change)


@pytest.mark.parametrize("method", ag.METHODS)
def test_zero_delta_gives_plain_gradient(method):
  loss_fn, params, _ = _mlp_problem(3, 8, f64=False, delta_scale=0.0)
  zero = jax.tree.map(jnp.zeros_like, params)
  (loss_ref, _), g_ref = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  loss, aux, g = jax.jit(lambda p, d: optim.estimate_averaged_gradient(
      loss_fn, p, d, method=method, num_points=3))(params, zero)
  np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
  assert aux["logits"].shape == (16, 3)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_secant_on_linear_model_equals_exact_average():
  # Linear model (through the registry's identity, so the secant hook is on
  # the path) + squared loss: L quadratic in w ⇒ exact average = ∇L(w + Δw/2).
  with jax.enable_x64(True):
    model = nn.Dense(3)
    r = np.random.default_rng(1)
    x = jnp.asarray(r.standard_normal((10, 4)))
    y = jnp.asarray(r.standard_normal((10, 3)))
    params = {"kernel": jnp.asarray(r.standard_normal((4, 3))), "bias": jnp.asarray(r.standard_normal(3))}
    delta = _rand_like(params, 4, 0.5)
    loss_fn = lambda p: (0.5 * jnp.mean((acts.identity(model.apply({"params": p}, x)) - y) ** 2),
                         None)
    _, _, g_sec = _avg(loss_fn, params, delta, "secant")
    g_exact = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(
        jax.tree.map(lambda a, b: a + 0.5 * b, params, delta))
    for a, b in zip(jax.tree.leaves(g_sec), jax.tree.leaves(g_exact)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_secant_exact_for_activation_layers_with_linear_readout():
  # L = c·σ(W₂σ(W₁x + b₁) + b₂): secant slopes and shared cotangents give the
  # exact discrete chain rule, so L(w + Δw) − L(w) = ḡ·Δw to rounding; the
  # midpoint rule is only second-order accurate.
  with jax.enable_x64(True):
    r = np.random.default_rng(5)
    x = jnp.asarray(r.standard_normal((7, 4)))
    c = jnp.asarray(r.standard_normal((7, 3)))
    params = {"w1": jnp.asarray(r.standard_normal((4, 5))),
              "b1": jnp.zeros((5,), jnp.float64),
              "w2": jnp.asarray(r.standard_normal((5, 3))) / 2,
              "b2": jnp.zeros((3,), jnp.float64)}
    delta = _rand_like(params, 9, 0.5)
    f1, f2 = acts.get_activation("tgelu"), acts.tanh

    def loss_fn(p):
      h = f1(x @ p["w1"] + p["b1"])
      return jnp.sum(c * f2(h @ p["w2"] + p["b2"])), None
    _, _, g_sec = _avg(loss_fn, params, delta, "secant")
    _, _, g_mid = _avg(loss_fn, params, delta, "midpoint")
    gap_sec, change = _identity_gap(loss_fn, params, delta, g_sec)
    gap_mid, _ = _identity_gap(loss_fn, params, delta, g_mid)
    assert change > 0.1
    assert gap_sec < 1e-10 * change, (gap_sec, change)
    assert gap_mid > 1e3 * gap_sec, (gap_mid, gap_sec)


def test_secant_beats_plain_gradient_on_tanh_net():
  # 1-hidden-layer tanh net, CE loss: the identity gap |L(w+Δw) − L(w) − g·Δw|
  # is O(|Δw|²) for the plain gradient and O(|Δw|³) for the secant estimator.
  with jax.enable_x64(True):
    loss_fn, params, delta = _mlp_problem(1, 16, f64=True, delta_scale=0.025, seed=2)
    half = jax.tree.map(lambda d: 0.5 * d, delta)
    sec = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method="secant")[2])
    g_plain = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(params)
    gaps = {}
    for name, d in (("full", delta), ("half", half)):
      gap_sec, change = _identity_gap(loss_fn, params, d, sec(params, d))
      gap_plain, _ = _identity_gap(loss_fn, params, d, g_plain)
      gaps[name] = (gap_sec, gap_plain)
      assert change > 1e-3
      assert gap_sec < 0.2 * gap_plain, (name, gap_sec, gap_plain, change)
    assert gaps["full"][0] / gaps["half"][0] > 6.0, gaps   # ≈ 2³
    assert gaps["full"][1] / gaps["half"][1] < 5.0, gaps   # ≈ 2²


def test_secant_slope_is_nan_free_and_falls_back_to_derivative():
  z0 = jnp.array([0.0, 1.0, -2.0, 3.0])
  z1 = jnp.array([0.0, 1.0 + 1e-9, 0.0, 3.0])
  s = ag.secant_slope(jnp.tanh, z0, z1)
  assert np.all(np.isfinite(s))
  np.testing.assert_allclose(s[:2], 1.0 - np.tanh([0.0, 1.0]) ** 2, rtol=1e-6)
  np.testing.assert_allclose(s[2], (np.tanh(0.0) - np.tanh(-2.0)) / 2.0, rtol=1e-6)
  np.testing.assert_allclose(s[3], 1.0 - np.tanh(3.0) ** 2, rtol=1e-5)


def test_activation_hook_is_noop_outside_context():
  x = jnp.linspace(-3, 3, 7)
  f = acts.get_activation("tgelu", t_left=-1.0, t_right=2.0)
  seen = []
  with acts.activation_hook(lambda fn, z: (seen.append(fn), fn(z) * 0.0)[1]):
    np.testing.assert_array_equal(f(x), 0.0)
  assert len(seen) == 1
  np.testing.assert_allclose(f(x), acts.tgelu(x, t_left=-1.0, t_right=2.0))
  assert acts.get_activation("tanh") is acts.tanh


def test_bad_method_and_points():
  with pytest.raises(ValueError, match="secant"):
    optim.avg_grad_rmsprop(0.1, method="simpson")
  with pytest.raises(ValueError, match="num_points"):
    optim.avg_grad_rmsprop(0.1, method="gauss_legendre", num_points=0)
  with pytest.raises(ValueError, match="num_points"):
    optim.averaged_gradient_estimator("gauss_legendre", num_points=1.5)


def test_estimator_needs_grad_fn_and_params():
  tx = optim.averaged_gradient_estimator("midpoint")
  p = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="grad_fn"):
    tx.update(p, tx.init(p), p)
  with pytest.raises(ValueError, match="params"):
    tx.update(p, tx.init(p), None, grad_fn=lambda q: q)


# ---------------------------------------------------------------- the engine path
_X = jnp.asarray(np.random.default_rng(0).standard_normal((12, 5)), jnp.float32)
_Y = jnp.arange(12) % 3
_MODEL = DeepMLP(width=8, depth=3, num_classes=3)


def _engine_run(tx, params0, num_steps, model=_MODEL, seeds_axis=True):
  """`num_steps` engine steps (make_train_step → make_chunk_fn, vmapped seeds)."""
  step = steps.make_train_step(model, steps.cross_entropy, tx)
  chunk = jax.jit(steps.make_chunk_fn(step, stop_on_nonfinite=False,
                                      make_batch=lambda data, xs: data))
  n = jax.tree.leaves(params0)[0].shape[0]
  state = steps.TrainState(step=jnp.zeros((n,), jnp.int32), params=params0,
                           opt_state=jax.vmap(tx.init)(params0),
                           rng=jnp.stack([jax.random.PRNGKey(i) for i in range(n)]))
  state, _, metrics = chunk(state, (_X, _Y), jnp.zeros((num_steps, n), jnp.int32))
  return state, metrics


def _old_path(params, num_steps, method, lr, clip):
  """The previous design, re-implemented (vmapped over the seed axis of `params`):
  ḡ = averaged_gradient(w, Δw = the previous update) computed before the
  optimizer, then clip_output_layer → RMSProp (ε in the sqrt)."""
  ref = optax.chain(optim.clip_output_layer(clip), optax.rmsprop(lr, decay=0.9, eps=1e-8))
  f = lambda p: (steps.cross_entropy(_MODEL.apply({"params": p}, _X), _Y), None)

  def run(p):
    def body(carry, _):
      p, s, prev = carry
      loss, _, g = optim.estimate_averaged_gradient(f, p, prev, method=method)
      u, s = ref.update(g, s, p)
      return (optax.apply_updates(p, u), s, u), loss
    (p, _, _), losses = jax.lax.scan(body, (p, ref.init(p), jax.tree.map(jnp.zeros_like, p)),
                                     None, length=num_steps)
    return p, losses
  return jax.jit(jax.vmap(run, out_axes=(0, 1)))(params)


def _two_seeds():
  return jax.tree.map(lambda a, b: jnp.stack([a, b]), _init_like(_MODEL, _X, 1), _init_like(_MODEL, _X, 2))


@pytest.mark.parametrize("method", ag.METHODS)
def test_engine_with_one_transform_equals_old_estimator_plus_optimizer(method):
  # (a) The transform, driven by the engine's train step (vmapped seeds,
  # scanned steps), reproduces the old two-part path: estimator before the
  # optimizer, Δw read from the optimizer state. Clipping is active
  # (c = 0.05 < the output gradient norm), so its order relative to ḡ matters.
  # float64: in float32 the two differ by the rounding of Δw = w_t − w_{t−1}
  # (vs. the stored update), which RMSProp's ḡ/√ν amplifies on tiny entries.
  lr, clip, n = 0.05, 0.05, 3
  cfg = ml_collections.ConfigDict(dict(
      name="avg_grad_rmsprop", learning_rate=lr, decay=0.9, eps=1e-8, clip_output_norm=clip,
      avg_grad=dict(method=method, num_points=2)))
  with jax.enable_x64(True):
    p0 = _to64(_two_seeds())
    by_config, m_cfg = _engine_run(optim.make_optimizer(cfg), p0, n)
    if method == "secant":  # what a user writes by hand is what the config builds
      by_hand, _ = _engine_run(optax.chain(optim.averaged_gradient_estimator(method),
                                           optim.clip_output_layer(clip),
                                           optax.rmsprop(lr, decay=0.9, eps=1e-8)), p0, n)
      chex.assert_trees_all_close(by_config.params, by_hand.params, rtol=1e-12, atol=1e-14)
    want, want_losses = _old_path(p0, n, method, lr, clip)
    chex.assert_trees_all_close(by_config.params, want, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(m_cfg["loss"], want_losses, rtol=1e-12)
    moved = jnp.abs(by_config.params["output"]["kernel"] - p0["output"]["kernel"])
    assert float(jnp.max(moved)) > 1e-2


def test_transform_before_the_estimator_is_an_error():
  # chain(clip, avg_grad_rmsprop): the clipping would act on ∇L(w), which the
  # estimator replaces by ḡ — lost; the engine's grad_fn.at_params lets it say so.
  tx = optax.chain(optim.clip_output_layer(1.0), optim.avg_grad_rmsprop(1e-3, method="midpoint"))
  with pytest.raises(ValueError, match="must come first"):
    _engine_run(tx, _two_seeds(), 1)


def test_delta_is_the_applied_update_whatever_follows():
  # Transforms after the estimator (a scaling, apply_if_finite) do not change
  # what Δw means: the update applied at the previous step, w₁ − w₀.
  with jax.enable_x64(True):
    loss_fn, p0, _ = _tiny_classifier()
    grad_fn = jax.grad(lambda p: loss_fn(p)[0])
    tx = optax.apply_if_finite(optax.chain(optim.averaged_gradient_estimator("midpoint"),
                                           optax.scale(-0.05)), 3)

    @jax.jit
    def step(p, s):
      g = grad_fn(p)
      certified = lambda q: grad_fn(q)
      certified.at_params = g   # the engine's protocol: the estimator sees ∇L(w) unchanged
      u, s = tx.update(g, s, p, grad_fn=certified)
      return optax.apply_updates(p, u), s, u
    p1, s, u1 = step(p0, tx.init(p0))
    chex.assert_trees_all_close(u1, jax.tree.map(lambda g: -0.05 * g, grad_fn(p0)))  # Δw = 0
    _, _, u2 = step(p1, s)
    g_bar = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method="midpoint")[2])(
        p1, jax.tree.map(jnp.subtract, p1, p0))
    chex.assert_trees_all_close(u2, jax.tree.map(lambda g: -0.05 * g, g_bar), rtol=1e-12)


def _counting_loss():
  calls = []

  def loss_fn(logits, y):
    calls.append(1)   # once per trace of the objective
    return steps.cross_entropy(logits, y)
  return loss_fn, calls


@pytest.mark.parametrize("name,traces", [("sgd", 1), ("adam", 1), ("rmsprop", 1),
                                         ("avg_grad_rmsprop", 2)])
def test_plain_optimizers_trace_one_gradient(name, traces):
  # The extra-arg gradient is traced only when a transform calls it: the plain
  # optimizers' step holds exactly one forward+backward, as before.
  cfg = ml_collections.ConfigDict(dict(name=name, learning_rate=0.01, clip_output_norm=1.0,
                                       avg_grad=dict(method="midpoint", num_points=2)))
  loss_fn, calls = _counting_loss()
  tx = optim.make_optimizer(cfg)
  step = steps.make_train_step(_MODEL, loss_fn, tx)
  p = _init_like(_MODEL, _X, 0)
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                           rng=jax.random.PRNGKey(0))
  jax.eval_shape(step, state, (_X, _Y))
  assert len(calls) == traces, (name, len(calls))


def test_sam_opaque_mode_runs_through_the_engine():
  # The same extra-arg protocol serves optax.contrib.sam: grad_fn(params, i).
  tx = optax.contrib.sam(optax.sgd(0.1), optax.sgd(0.05), sync_period=2, opaque_mode=True)
  state, m = _engine_run(tx, _two_seeds(), 2)
  assert bool(jnp.all(m["finite"]))
  assert float(jnp.max(jnp.abs(state.params["output"]["kernel"] - _two_seeds()["output"]["kernel"]))) > 0


# ------------------------------------------------------------ accuracy against the math
def _tiny_classifier():
  """1 hidden tanh layer (registry tanh) + linear output, softmax CE, float64."""
  r = np.random.default_rng(0)
  x = jnp.asarray(r.standard_normal((16, 4)))
  y = jnp.arange(16) % 3
  params = {"w1": jnp.asarray(r.standard_normal((4, 8))) / 2, "b1": jnp.asarray(0.1 * r.standard_normal(8)),
            "w2": jnp.asarray(r.standard_normal((8, 3))) / np.sqrt(8), "b2": jnp.zeros(3)}
  direction = jax.tree.map(lambda p: jnp.asarray(r.standard_normal(p.shape)), params)

  def loss_fn(p):
    logits = acts.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), None
  return loss_fn, params, direction


def _dense_average(loss_fn, params, delta, n=2000):
  """∫₀¹ ∇L(w + tΔw) dt by composite Simpson on n intervals (error O(n⁻⁴), ≈ rounding here)."""
  grad = jax.grad(lambda p: loss_fn(p)[0])
  t = jnp.linspace(0.0, 1.0, n + 1)
  gs = jax.vmap(lambda ti: grad(jax.tree.map(lambda a, b: a + ti * b, params, delta)))(t)
  w = jnp.ones(n + 1).at[1:-1:2].set(4.0).at[2:-1:2].set(2.0) / (3.0 * n)
  return jax.tree.map(lambda g: jnp.tensordot(w, g, 1), gs)


def _err(a, b):
  return float(jnp.sqrt(sum(jnp.sum((u - v) ** 2) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))))


@pytest.mark.parametrize("method,num_points,ratio", [
    ("midpoint", 1, 4.0),         # error f″/24 · O(|Δw|²)
    ("gauss_legendre", 2, 16.0),  # error O(|Δw|⁴) (exact for degree ≤ 3 along the segment)
    ("secant", 2, 4.0),           # activations exact; the CE on the linear output by the
                                  # trapezoid rule: error −f″/12 · O(|Δw|²) (≈ 2× midpoint's)
])
def test_error_order_against_dense_quadrature(method, num_points, ratio):
  # (b) Halving Δw divides the error to the dense average by 2^order.
  with jax.enable_x64(True):
    loss_fn, params, direction = _tiny_classifier()
    est = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method=method,
                                                       num_points=num_points)[2])
    dense = jax.jit(lambda p, d: _dense_average(loss_fn, p, d))
    errs = []
    for s in (0.1, 0.05, 0.025):
      d = jax.tree.map(lambda a: s * a, direction)
      errs.append(_err(est(params, d), dense(params, d)))
    for big, small in zip(errs, errs[1:]):
      assert abs(big / small / ratio - 1.0) < 0.2, (method, errs)
    if method == "secant":  # the trapezoid constant: twice the midpoint error (to leading order)
      mid = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method="midpoint")[2])
      d = jax.tree.map(lambda a: 0.025 * a, direction)
      assert 1.5 < errs[-1] / _err(mid(params, d), dense(params, d)) < 2.5


class _DirectTanhNet(nn.Module):
  """Hidden layer through jnp.tanh directly: bypasses the registry."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3, name="output")(jnp.tanh(nn.Dense(8, name="layer")(x)))


def test_secant_on_activations_outside_the_registry():
  # (c) From the loss, secant finds jnp.tanh in the model's jaxpr (optim.secant);
  # the engine hands the estimator its loss too (grad_fn.loss_fn), so secant
  # runs there on a model outside the registry.
  model = _DirectTanhNet()
  p = _init_like(model, _X, 0)
  f = lambda q: (steps.cross_entropy(model.apply({"params": q}, _X), _Y), None)
  _, _, g = optim.estimate_averaged_gradient(f, p, _rand_like(p, 3, 0.1), method="secant")
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
  p2 = jax.tree.map(lambda a: jnp.stack([a, a]), p)
  s1, _ = _engine_run(optim.avg_grad_rmsprop(0.01, method="secant"), p2, 1, model=model)
  m1, _ = _engine_run(optim.avg_grad_rmsprop(0.01, method="midpoint"), p2, 1, model=model)
  # step 1: Δw = 0, every method's ḡ is ∇L(w), so both take the same step
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(m1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  s2, ms = _engine_run(optim.avg_grad_rmsprop(0.01, method="secant"), p2, 2, model=model)
  m2, mm = _engine_run(optim.avg_grad_rmsprop(0.01, method="midpoint"), p2, 2, model=model)
  assert bool(jnp.all(ms["finite"])) and bool(jnp.all(mm["finite"]))
  # step 2: secant and midpoint are different estimates of ∫∇L along the step
  assert any(not np.allclose(a, b, rtol=0, atol=1e-9)
             for a, b in zip(jax.tree.leaves(s2.params), jax.tree.leaves(m2.params)))


# ------------------------------------------------- recurrent cells through the hook
# Every nonlinearity of the recurrent cells (gates σ, the LSTM cell-state tanh,
# φ, the LRU's GELU and phase cos/sin) is a registry activation, so the secant
# estimator sees the activations inside the time scan of both RNN models.
_RNN_ACTIVATIONS = {
    "elman": {"tanh"}, "roaf": {"tanh"}, "tanh_rnn": {"tanh"}, "relu_rnn": {"relu"},
    "sigmoid_rnn": {"sigmoid"}, "lstm": {"sigmoid", "tanh"}, "gru": {"sigmoid", "tanh"},
    "lru": {"gelu", "cos", "sin"}}
_XS = jnp.asarray(np.random.default_rng(3).standard_normal((4, 6, 2)), jnp.float32)


def _rnn(cell, depth):
  """RecurrentClassifier (depth 0) or DeepRNN with `depth` stacked layers, 5 units, 3 outputs."""
  from stable_training.models.deep_rnn import DeepRNN
  from stable_training.models.recurrent import RecurrentClassifier
  if depth:
    return DeepRNN(cell=cell, depth=depth, hidden=5, num_classes=3)
  return RecurrentClassifier(cell=cell, hidden=5, num_classes=3, alpha=0.6)


@pytest.mark.parametrize("cell,depth", [(c, 0) for c in _RNN_ACTIVATIONS] + [("lstm", 2), ("gru", 2)])
def test_secant_hook_sees_every_rnn_activation(cell, depth):
  model = _rnn(cell, depth)
  params = model.init(jax.random.PRNGKey(0), _XS)["params"]
  y = jnp.arange(4) % 3
  loss_fn = lambda p: (steps.cross_entropy(model.apply({"params": p}, _XS), y), None)
  # With every registry activation replaced by a linear stand-in, no activation
  # primitive (tanh, logistic, erf, sin, cos) may remain in the gradient's
  # program: one that does was called around the registry.
  seen = []

  def linear(fn, z):
    seen.append(getattr(fn, "__name__", None) or fn.func.__name__)
    return 0.5 * z
  with acts.activation_hook(linear):
    direct = ag._direct_activation_sites(jax.grad(lambda p: loss_fn(p)[0]), params)
  assert direct == [], direct
  assert set(seen) == _RNN_ACTIVATIONS[cell], seen
  # The estimator runs (it raises when the hook never fires) and is not ∇L at either end.
  delta = _rand_like(params, 1, 0.2)
  _, _, g = _avg(loss_fn, params, delta, "secant")
  grad = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))
  for end in (params, jax.tree.map(jnp.add, params, delta)):
    assert _err(g, grad(end)) > 1e-3 * _err(g, jax.tree.map(jnp.zeros_like, g)), cell


def test_secant_on_alif_is_an_error():
  # The ALIF spike is a Heaviside with a surrogate derivative (a custom_jvp):
  # its secant slope would be 0 or 1/Δz, so secant raises, naming it, instead
  # of silently keeping the surrogate.
  model = _rnn("alif", 1)
  params = model.init(jax.random.PRNGKey(0), _XS)["params"]
  f = lambda q: (steps.cross_entropy(model.apply({"params": q}, _XS), jnp.arange(4) % 3), None)
  with pytest.raises(ValueError, match=r"custom_jvp_call\[spike\] is piecewise constant"):
    optim.estimate_averaged_gradient(f, params, _rand_like(params, 1, 0.1), method="secant")


def _rnn_linear_problem(cell, steps_, seed=0):
  """(loss_fn, params) in float64: L = Σ c ⊙ logits of a RecurrentClassifier on T = `steps_`."""
  model = _rnn(cell, 0)
  r = np.random.default_rng(seed)
  x = jnp.asarray(r.standard_normal((4, steps_, 2)))
  c = jnp.asarray(r.standard_normal((4, 3)))
  params = _to64(model.init(jax.random.PRNGKey(1), x.astype(jnp.float32))["params"])
  return (lambda p: (jnp.sum(c * model.apply({"params": p}, x)), None)), params


@pytest.mark.parametrize("cell,gate", [("elman", 0), ("roaf", 0), ("gru", 1), ("gru", 2), ("lstm", 3)])
def test_secant_equals_dense_quadrature_where_it_is_exact(cell, gate):
  # One step from s = 0 with a linear loss, moving only the input weights of
  # one nonlinearity: elman/roaf's tanh, the GRU's update gate z (gate 1) or
  # candidate tanh n (gate 2), the LSTM's output gate o (gate 3). Along the
  # segment that block's gradient is (fixed cotangent) · σ′(z₀ + tΔz) · xᵀ with
  # z linear in t, so ∫₀¹ is exactly the secant slope: secant = the average
  # (64-point Gauss–Legendre, exact to rounding here) to 1e-12, while ∇L at
  # the end point is off by percents.
  with jax.enable_x64(True):
    loss_fn, params = _rnn_linear_problem(cell, 1)
    H, r = 5, np.random.default_rng(1)
    cols = slice(gate * H, (gate + 1) * H)
    delta = jax.tree.map(jnp.zeros_like, params)
    wx = delta["cell"]["wx"]
    delta["cell"]["wx"] = {"kernel": wx["kernel"].at[:, cols].set(r.standard_normal((2, H))),
                           "bias": wx["bias"].at[cols].set(r.standard_normal(H))}
    _, _, g_sec = _avg(loss_fn, params, delta, "secant")
    _, _, g_gl = _avg(loss_fn, params, delta, "gauss_legendre", 64)
    g_end = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(jax.tree.map(jnp.add, params, delta))
    for leaf in ("kernel", "bias"):
      sec, gl, end = (np.asarray(g["cell"]["wx"][leaf])[..., cols] for g in (g_sec, g_gl, g_end))
      scale = np.abs(gl).max()
      np.testing.assert_allclose(sec, gl, rtol=0, atol=1e-12 * scale)
      assert np.abs(end - gl).max() > 1e-2 * scale, (leaf, np.abs(end - gl).max(), scale)


@pytest.mark.parametrize("cell", ["elman", "roaf", "gru", "lstm"])
def test_secant_on_rnn_against_dense_quadrature(cell):
  # T = 6 steps, every parameter moved, linear loss, float64. Against
  # ḡ = ∫₀¹ ∇L(w + tΔw) dt (64-point Gauss–Legendre, ≈ 1e-15 from 128 points):
  # secant's error is second order (halving Δw divides it by ≈ 4; the
  # recurrence makes the pre-activations nonlinear in t, so it is not exact),
  # ∇L(w + Δw)'s first order (≈ 2), and at Δw = 0.125·N(0, 0.3²) per weight
  # secant is ≥ 10× closer and within 0.5 % of |ḡ| (measured: 0.07–0.25 %). The identity
  # L(w + Δw) − L(w) = ḡ·Δw holds to rounding for elman/roaf (activation
  # layers and bilinear maps only, the documented exact case); the gated
  # cells multiply two lane-dependent factors (σ(f) ⊙ c, z ⊙ h), which the
  # lane average treats by the trapezoid rule: third order (halving ÷ ≈ 8).
  with jax.enable_x64(True):
    loss_fn, params = _rnn_linear_problem(cell, 6)
    direction = _rand_like(params, 1, 0.3)
    grad = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))
    sec = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method="secant")[2])
    gl = jax.jit(lambda p, d: optim.estimate_averaged_gradient(loss_fn, p, d, method="gauss_legendre",
                                                      num_points=64)[2])
    e_sec, e_end, gaps = [], [], []
    for s in (0.25, 0.125):
      d = jax.tree.map(lambda a: s * a, direction)
      g_sec, g_gl = sec(params, d), gl(params, d)
      e_sec.append(_err(g_sec, g_gl))
      e_end.append(_err(grad(jax.tree.map(jnp.add, params, d)), g_gl))
      gap, change = _identity_gap(loss_fn, params, d, g_sec)
      gaps.append(gap)
      if cell in ("elman", "roaf"):
        assert gap < 1e-12 * change, (gap, change)
    norm = _err(g_gl, jax.tree.map(jnp.zeros_like, g_gl))
    assert 3.0 < e_sec[0] / e_sec[1] < 5.0, e_sec
    assert 1.5 < e_end[0] / e_end[1] < 2.5, e_end
    assert e_sec[1] < 0.1 * e_end[1] and e_sec[1] < 5e-3 * norm, (e_sec, e_end, norm)
    if cell in ("gru", "lstm"):
      assert gaps[0] / gaps[1] > 6.0, gaps


def test_direct_activation_sites_name_the_callers_line():
  """The sites an error message lists: each activation primitive once, at the user's file:line (not JAX's)."""
  def f(p):
    return jnp.sum(jnp.tanh(p["w"] * 2.0)) + jnp.sum(jax.nn.sigmoid(p["w"]))
  sites = ag._direct_activation_sites(jax.grad(f), {"w": jnp.ones(3)})
  assert [s.split(" at ")[0] for s in sites] == ["tanh", "logistic"], sites
  assert all(os.path.basename(__file__) in s and s.endswith(".f)") for s in sites), sites
