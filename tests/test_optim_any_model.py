"""The optax transforms on a user's own Flax model, optax chain and plain jitted loop.

Output-layer clipping (Ramaswamy, Bhatnagar & Saxena 2023) finds the output
layer from the model; the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt (ICLR 2025
submission "Efficient Gradient-Based Algorithm for Training Deep Learning
Models With Many Nonlinear Activations") wraps the user's optimizer, and its
secant method works on jnp / jax.nn / flax activations (issue 22, frictions
2–4).
"""
from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stable_training import activations as acts
from stable_training import optim


def _one_line(excinfo) -> str:
  msg = str(excinfo.value)
  assert "\n" not in msg, msg
  return msg


class _Block(nn.Module):
  @nn.compact
  def __call__(self, h):
    h = acts.tgelu(nn.Dense(8)(h))
    return nn.Dense(3, name="head")(h)


class _UserMLP(nn.Module):
  """6 layers with tGELU; a decoy top-level 'output' applied first; the head nested in `block`."""

  @nn.compact
  def __call__(self, x):
    h = acts.tgelu(nn.Dense(8, name="output")(x))    # named 'output', but the first layer
    for _ in range(4):
      h = acts.tgelu(nn.Dense(8)(h))
    return _Block(name="block")(h)


_X = jnp.asarray(np.random.default_rng(0).standard_normal((6, 5)), jnp.float32)


def _big_grads(params, seed=0):
  r = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(10.0 * r.standard_normal(p.shape), p.dtype), params)


def _norm(leaves):
  return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in leaves)))


# ------------------------------------------------------------------ clipping
def test_clip_finds_the_nested_head_from_the_model():
  model = _UserMLP()
  params = jax.eval_shape(model.init, jax.random.key(0), _X)["params"]
  assert optim.find_output_layer(model, _X) == "block/head"
  g = _big_grads(params)
  tx = optim.clip_output_layer(0.5, model=model, sample_input=_X)
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  assert _norm(jax.tree.leaves(g["block"]["head"])) > 0.5
  np.testing.assert_allclose(_norm(jax.tree.leaves(out["block"]["head"])), 0.5, rtol=1e-6)
  for k in ("kernel", "bias"):   # one joint scale factor
    np.testing.assert_allclose(out["block"]["head"][k] / g["block"]["head"][k],
                               0.5 / _norm(jax.tree.leaves(g["block"]["head"])), rtol=1e-5)
  for path, a, b in zip(optim.param_paths(g), jax.tree.leaves(g), jax.tree.leaves(out)):
    if not path.startswith("block/head/"):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)


@pytest.mark.parametrize("layer", ["block/head", "head", r".*/head", re.compile(r"block/head/(kernel|bias)"),
                                   lambda path: path.startswith("block/head/")])
def test_clip_selects_by_path_regex_or_predicate(layer):
  params = jax.eval_shape(_UserMLP().init, jax.random.key(0), _X)["params"]
  mask = optim.output_layer_mask({"params": params}, layer)["params"]
  picked = [p for p, m in zip(optim.param_paths(mask), jax.tree.leaves(mask)) if m]
  assert picked == ["block/head/bias", "block/head/kernel"]


def test_clip_errors_are_one_line_and_say_how_to_name_the_layer():
  g = {"Dense_0": {"kernel": jnp.ones((2, 2))}, "block": {"head": {"kernel": jnp.ones((2, 2))}}}
  with pytest.raises(ValueError) as e:
    optim.clip_output_layer(1.0).init(g)           # no layer, no 'output'
  msg = _one_line(e)
  assert "Dense_0, block, block/head" in msg and "model=" in msg and "regex" in msg
  with pytest.raises(ValueError) as e:
    optim.clip_output_layer(1.0, "nope").init(g)
  assert "no module 'nope'" in _one_line(e)
  with pytest.raises(ValueError) as e:
    optim.clip_output_layer(1.0, r".*/tail").init(g)
  assert "selects no parameter" in _one_line(e)
  with pytest.raises(ValueError) as e:
    optim.clip_output_layer(1.0, model=_UserMLP())
  assert "sample_input" in _one_line(e)


# ------------------------------------------------ the averaged gradient: a user's loop
class _TanhNet(nn.Module):
  """A user's model: jnp.tanh hidden layers (outside stable_training.activations), head `head`."""
  act: object = jnp.tanh

  @nn.compact
  def __call__(self, x):
    h = self.act(nn.Dense(6)(x))
    h = self.act(nn.Dense(6)(h))
    return nn.Dense(3, name="head")(h)


def _problem(act=jnp.tanh, seed=0):
  model = _TanhNet(act=act)
  r = np.random.default_rng(seed)
  x = jnp.asarray(r.standard_normal((8, 4)))
  y = jnp.arange(8) % 3
  params = jax.tree.map(lambda p: p.astype(jnp.float64),
                        model.init(jax.random.key(seed), x.astype(jnp.float32))["params"])

  def loss_fn(p, batch):
    xb, yb = batch
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb), yb).mean()
  return model, loss_fn, params, (x, y)


def _loop(tx, params, batch, n, **kw):
  """A plain jitted loop; returns the list of updates."""
  @jax.jit
  def step(p, s):
    u, s = tx.update(None, s, p, batch=batch, **kw)
    return optax.apply_updates(p, u), s, u
  s, out = tx.init(params), []
  for _ in range(n):
    params, s, u = step(params, s)
    out.append(u)
  return out


def _close(a, b, rtol, atol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_wrapper_midpoint_in_a_plain_loop_equals_the_reference():
  with jax.enable_x64(True):
    model, loss_fn, p0, batch = _problem()
    inner = lambda: optax.chain(optim.clip_output_layer(0.05, model=model, sample_input=batch[0]),
                                optax.rmsprop(0.05))
    got = _loop(optim.averaged_gradient(inner(), "midpoint", loss_fn=loss_fn), p0, batch, 3)
    # Reference: ḡ = ∇L(w + Δw/2), Δw the previous update, then clip → RMSProp.
    ref, p, prev = inner(), p0, p0
    s, grad = ref.init(p0), jax.jit(jax.grad(loss_fn))
    for u_got in got:
      mid = jax.tree.map(lambda a, b: a + 0.5 * (a - b), p, prev)
      u, s = ref.update(grad(mid, batch), s, p)
      _close(u_got, u, rtol=1e-10, atol=1e-14)
      prev, p = p, optax.apply_updates(p, u)
    assert float(jnp.max(jnp.abs(got[2]["head"]["kernel"]))) > 1e-3


def test_wrapper_gauss_legendre_equals_dense_quadrature():
  # ḡ at step 2 (inner = identity exposes it) against ∫₀¹ ∇L(w + tΔw) dt by
  # composite Simpson on 200 intervals, Δw = w₁ − w₀ the applied update.
  with jax.enable_x64(True):
    _, loss_fn, p0, batch = _problem(seed=1)
    u0, g1 = _loop(optim.averaged_gradient(optax.chain(optax.identity()), "gauss_legendre",
                                           loss_fn=loss_fn, num_points=8), p0, batch, 2)
    p1 = optax.apply_updates(p0, u0)
    t = np.linspace(0.0, 1.0, 201)
    w = np.ones(201)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    gs = jax.jit(jax.vmap(lambda ti: jax.grad(loss_fn)(jax.tree.map(lambda a, d: a + ti * d, p1, u0), batch)))(t)
    dense = jax.tree.map(lambda g: jnp.tensordot(w / 600.0, g, 1), gs)
    _close(g1, dense, rtol=1e-6, atol=1e-9)
    end = jax.jit(jax.grad(loss_fn))(p1, batch)   # the plain gradient is measurably different
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(end), jax.tree.leaves(dense))) > 1e-3


def test_secant_on_jnp_tanh_equals_the_exact_integral():
  # One tanh layer, linear readout: along the segment ∇_W L = (c ⊙ tanh′(z₀ + tΔz)) xᵀ
  # with z linear in t, so ∫₀¹ is exactly the secant slope.
  with jax.enable_x64(True):
    r = np.random.default_rng(2)
    x, c = jnp.asarray(r.standard_normal((7, 4))), jnp.asarray(r.standard_normal((7, 5)))
    p = {"w": jnp.asarray(r.standard_normal((4, 5))), "b": jnp.zeros(5)}
    d = jax.tree.map(lambda a: jnp.asarray(0.7 * r.standard_normal(a.shape)), p)
    f = lambda q: (jnp.sum(c * jnp.tanh(x @ q["w"] + q["b"])), None)
    _, _, sec = jax.jit(lambda q, dd: optim.estimate_averaged_gradient(f, q, dd, method="secant"))(p, d)
    _, _, gl = jax.jit(lambda q, dd: optim.estimate_averaged_gradient(
        f, q, dd, method="gauss_legendre", num_points=64))(p, d)
    _close(sec, gl, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("act", [jnp.tanh, nn.gelu, nn.softplus, jax.nn.sigmoid,
                                 lambda z: z * jax.nn.sigmoid(z)], ids=["tanh", "gelu", "softplus",
                                                                        "sigmoid", "silu_by_hand"])
def test_secant_identity_is_exact_for_any_activation(act):
  # Activation layers + a linear loss: secant slopes and shared cotangents give
  # the exact discrete chain rule, L(w + Δw) − L(w) = ḡ·Δw to rounding, for a
  # composite activation (gelu's x·½(1 + tanh(…)), x·σ(x)) as a whole.
  with jax.enable_x64(True):
    r = np.random.default_rng(5)
    x, c = jnp.asarray(r.standard_normal((7, 4))), jnp.asarray(r.standard_normal((7, 3)))
    p = {"w1": jnp.asarray(r.standard_normal((4, 5))), "w2": jnp.asarray(r.standard_normal((5, 3))) / 2}
    d = jax.tree.map(lambda a: jnp.asarray(0.5 * r.standard_normal(a.shape)), p)
    loss = lambda q: jnp.sum(c * act(act(x @ q["w1"]) @ q["w2"]))
    _, _, g = jax.jit(lambda q, dd: optim.estimate_averaged_gradient(
        lambda z: (loss(z), None), q, dd, method="secant"))(p, d)
    change = float(loss(jax.tree.map(jnp.add, p, d)) - loss(p))
    gap = abs(change - sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d))))
    assert abs(change) > 0.1 and gap < 1e-10 * abs(change), (gap, change)


def test_secant_from_the_loss_equals_the_registry_hook():
  # Wrapper on a jnp.tanh model (jaxpr transformation, loss_fn + batch) vs. the
  # same model on the registry's tanh through the engine's protocol (grad_fn
  # only, the activation hook): the same updates over 3 steps.
  with jax.enable_x64(True):
    _, loss_fn, p0, batch = _problem()
    _, loss_reg, _, _ = _problem(act=acts.tanh)
    inner = lambda: optax.chain(optim.clip_output_layer(0.05, "head"), optax.rmsprop(0.05))
    got = _loop(optim.averaged_gradient(inner(), "secant", loss_fn=loss_fn), p0, batch, 3)
    tx = optim.averaged_gradient(inner(), "secant")

    @jax.jit
    def step(p, s):
      u, s = tx.update(None, s, p, grad_fn=lambda q: jax.grad(loss_reg)(q, batch))
      return optax.apply_updates(p, u), s, u
    p, s = p0, tx.init(p0)
    for u_got in got:
      p, s, u = step(p, s)
      _close(u_got, u, rtol=1e-9, atol=1e-13)


# ------------------------------------------------------------ wrong order: one line
@jax.enable_x64(True)
def test_wrapper_nested_after_a_transform_raises_the_right_order():
  _, loss_fn, p0, batch = _problem()
  tx = optax.chain(optim.clip_output_layer(1.0, "head"),
                   optim.averaged_gradient(optax.rmsprop(1e-3), "midpoint", loss_fn=loss_fn))
  g = jax.grad(loss_fn)(p0, batch)
  with pytest.raises(ValueError) as e:
    jax.jit(lambda p, s: tx.update(g, s, p, batch=batch))(p0, tx.init(p0))
  msg = _one_line(e)
  assert "outermost" in msg and "averaged_gradient(optax.chain(clip_output_layer(1.0), optax.rmsprop(lr))" in msg


@jax.enable_x64(True)
def test_estimator_after_clipping_in_a_plain_loop_raises():
  # Friction 3 verbatim: chain(clip, estimator, rmsprop) in the user's own jitted loop.
  _, loss_fn, p0, batch = _problem()
  grad_fn = lambda p: jax.grad(loss_fn)(p, batch)
  tx = optax.chain(optim.clip_output_layer(1e-3, "head"), optim.averaged_gradient_estimator("midpoint"),
                   optax.rmsprop(1e-3))
  with pytest.raises(ValueError) as e:
    jax.jit(lambda p, s: tx.update(grad_fn(p), s, p, grad_fn=grad_fn))(p0, tx.init(p0))
  assert "st.averaged_gradient(optax.chain(clip_output_layer(1.0), optax.rmsprop(lr))" in _one_line(e)
  # Outside jit the values are checked: clipping before the estimator changed ∇L(w).
  g = grad_fn(p0)
  with pytest.raises(ValueError) as e:
    tx.update(g, tx.init(p0), p0, grad_fn=grad_fn)
  assert "must come first" in _one_line(e)


@jax.custom_jvp
def _spike(z):
  return (z > 0).astype(z.dtype)


_spike.defjvp(lambda primals, tangents: (_spike(primals[0]), tangents[0] / (1.0 + jnp.abs(primals[0])) ** 2))


def test_secant_refuses_what_it_cannot_handle_in_one_line():
  p = {"w": jnp.ones((3, 2))}
  x = jnp.ones((4, 3))
  zero = jax.tree.map(jnp.zeros_like, p)
  with pytest.raises(optim.SecantError) as e:    # a surrogate-gradient spike
    optim.estimate_averaged_gradient(lambda q: (jnp.sum(_spike(x @ q["w"])), None), p, zero)
  assert "piecewise constant" in _one_line(e) and "midpoint" in str(e.value)
  with pytest.raises(optim.SecantError) as e:    # no activation at all: a linear model + MSE
    optim.estimate_averaged_gradient(lambda q: (jnp.sum((x @ q["w"]) ** 2), None), p, zero)
  assert "no activation" in _one_line(e)
