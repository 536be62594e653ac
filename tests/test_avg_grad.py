"""Tests for the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt and avg-grad RMSProp."""
from __future__ import annotations

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
  return jax.jit(lambda p, d: optim.averaged_gradient(
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
  loss, aux, g = jax.jit(lambda p, d: optim.averaged_gradient(
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
    sec = jax.jit(lambda p, d: optim.averaged_gradient(loss_fn, p, d, method="secant")[2])
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
  with pytest.raises(ValueError, match="AvgGradState"):
    optim.find_delta(optax.adam(0.1).init({"w": jnp.ones(2)}))


def test_find_delta_through_optax_wrappers():
  # The engine may wrap the chain in apply_if_finite; Δw is the applied update.
  tx = optax.apply_if_finite(optax.chain(optim.clip_output_layer(1.0),
                                         optim.avg_grad_rmsprop(0.1)), 5)
  p = {"output": {"kernel": jnp.ones(2)}, "h": {"k": jnp.ones(3)}}
  s = tx.init(p)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(optim.find_delta(s)))
  u, s = tx.update(p, s, p)
  for a, b in zip(jax.tree.leaves(optim.find_delta(s)), jax.tree.leaves(u)):
    np.testing.assert_array_equal(a, b)
  # RMSProp first step on an unclipped leaf: −η g/√((1−ρ)g² + ε), g = 1.
  np.testing.assert_allclose(u["h"]["k"], -0.1 / np.sqrt(0.1 + 1e-8), rtol=1e-6)


@pytest.mark.parametrize("method", ["secant", "midpoint"])
def test_avg_grad_rmsprop_step_under_jit_and_vmap(method):
  model = DeepMLP(width=8, depth=3, num_classes=3)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((12, 5)), jnp.float32)
  y = jnp.arange(12) % 3

  def loss_fn(p, batch, rng):
    del rng
    logits = model.apply({"params": p}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), {}

  cfg = ml_collections.ConfigDict(dict(
      name="avg_grad_rmsprop", learning_rate=0.05, decay=0.9, eps=1e-8, clip_output_norm=1.0,
      avg_grad=dict(method=method, num_points=2)))
  tx = optim.make_optimizer(cfg)
  grad_fn = optim.make_grad_fn(cfg, loss_fn)

  def step(p, s):
    (loss, _), g = grad_fn(p, s, (x, y), None)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, g, u

  p0 = jax.tree.map(lambda a, b: jnp.stack([a, b]), _init_like(model, x, 1), _init_like(model, x, 2))
  s0 = jax.vmap(tx.init)(p0)
  vstep = jax.jit(jax.vmap(step))
  p1, s1, g1, u1 = vstep(p0, s0)
  p2, s2, g2, u2 = vstep(p1, s1)
  for a, b in zip(jax.tree.leaves(optim.find_delta(s1)), jax.tree.leaves(u1)):
    np.testing.assert_array_equal(a, b)
  f = lambda p: loss_fn(p, (x, y), None)
  plain = jax.jit(jax.grad(lambda p: f(p)[0]))
  avg = jax.jit(lambda p, d: optim.averaged_gradient(f, p, d, method=method)[2])
  ref = optax.chain(optim.clip_output_layer(1.0), optax.rmsprop(0.05, decay=0.9, eps=1e-8))
  ref_update = jax.jit(lambda g, p: ref.update(g, ref.init(p), p)[0])
  for i in range(2):
    sel = lambda t: jax.tree.map(lambda a: a[i], t)
    # Step 0: Δw = 0 ⇒ the plain gradient; first update = clipped RMSProp.
    for a, b in zip(jax.tree.leaves(sel(g1)), jax.tree.leaves(plain(sel(p0)))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(sel(u1)), jax.tree.leaves(ref_update(sel(g1), sel(p0)))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # Step 1: the averaged gradient at w₁ over Δw = u₁ (the first update).
    for a, b in zip(jax.tree.leaves(sel(g2)), jax.tree.leaves(avg(sel(p1), sel(u1)))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(p2))
