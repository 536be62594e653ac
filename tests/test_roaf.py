"""ROAF feedforward layers (Ceni 2022): filters, formula, gradients through depth."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stable_training.models import build_model, hidden_stack
from stable_training.models.roaf import (ROAFLayer, ROAFMLP, critical_gain, fast_filter,
                                         fast_filter_tables, haar_orthogonal, inverse_permutation, layer_filter,
                                         perm_filter, signed_permute, validate_alpha_beta)


def test_filters_are_orthogonal_and_distinct():
  for n in (8, 64):
    o = layer_filter(0, 5, n)
    np.testing.assert_allclose(o.T @ o, np.eye(n), atol=1e-5)
    np.testing.assert_allclose(o @ o.T, np.eye(n), atol=1e-5)
  # Different layers get different filters; the same (seed, layer) the same one.
  assert float(jnp.abs(layer_filter(0, 1, 16) - layer_filter(0, 2, 16)).max()) > 0.1
  np.testing.assert_array_equal(layer_filter(3, 7, 16), layer_filter(3, 7, 16))


def test_fast_filters_are_orthogonal_and_match_layer():
  perm, sign = jax.jit(fast_filter_tables, static_argnums=(0, 2))(0, jnp.arange(1, 4), 8)
  assert perm.shape == (3, 8) and sign.shape == (3, 8)
  assert all(sorted(np.asarray(p).tolist()) == list(range(8)) for p in perm)
  assert set(np.unique(np.asarray(sign)).tolist()) <= {-1.0, 1.0}
  o = fast_filter(0, perm[1], sign[1])
  np.testing.assert_allclose(o.T @ o, np.eye(8), atol=1e-5)
  layer = ROAFLayer(8, alpha=0.6, beta=0.3, filter_mode="fast")
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8))
  p = jax.jit(layer.init)(jax.random.PRNGKey(0), x, 2)["params"]
  w, b = p["dense"]["kernel"], p["dense"]["bias"]
  want = 0.6 * x @ o.T + 0.3 * jnp.tanh(x @ w + b)
  got = jax.jit(layer.apply)({"params": p}, x, 2)          # layer index 2 = row 1 of the tables
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_perm_filters_are_orthogonal_distinct_and_match_a_hand_loop():
  """filter_mode='perm': O_l = diag(s_l) P_l, exactly orthogonal, different per layer; the whole
  MLP equals h_l = α O_l h_{l−1} + β tanh(W_l h_{l−1} + b_l) written out with dense O_l."""
  perm, sign = jax.jit(fast_filter_tables, static_argnums=(0, 2))(0, jnp.arange(1, 6), 16)
  os_ = [np.asarray(perm_filter(p, s)) for p, s in zip(perm, sign)]
  for o in os_:
    np.testing.assert_array_equal(o.T @ o, np.eye(16))
  assert all(np.abs(os_[i] - os_[j]).max() > 0 for i in range(5) for j in range(i))
  m = ROAFMLP(width=16, depth=6, num_classes=3, alpha=0.9, filter_mode="perm")
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 7))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  h = jnp.tanh(x @ p["input"]["dense"]["kernel"] + p["input"]["dense"]["bias"])
  hid = p["hidden"]["layer"]["dense"]
  for l in range(5):
    h = 0.9 * h @ os_[l].T + 0.1 * jnp.tanh(h @ hid["kernel"][l] + hid["bias"][l])
  want = h @ p["output"]["kernel"] + p["output"]["bias"]
  np.testing.assert_allclose(m.apply({"params": p}, x), want, rtol=1e-5, atol=1e-6)
  # The gradient through the gather equals the dense-matrix one.
  g = jax.grad(lambda x: jnp.sum(m.apply({"params": p}, x) ** 2))(x)
  def dense(x):
    h = jnp.tanh(x @ p["input"]["dense"]["kernel"] + p["input"]["dense"]["bias"])
    for l in range(5):
      h = 0.9 * h @ os_[l].T + 0.1 * jnp.tanh(h @ hid["kernel"][l] + hid["bias"][l])
    return jnp.sum((h @ p["output"]["kernel"] + p["output"]["bias"]) ** 2)
  np.testing.assert_allclose(g, jax.grad(dense)(x), rtol=1e-4, atol=1e-6)
  # 'identity' (the no-filter ablation): O_l = I, same parameters.
  ident = ROAFMLP(width=16, depth=6, num_classes=3, alpha=0.9, filter_mode="identity")
  h = jnp.tanh(x @ p["input"]["dense"]["kernel"] + p["input"]["dense"]["bias"])
  for l in range(5):
    h = 0.9 * h + 0.1 * jnp.tanh(h @ hid["kernel"][l] + hid["bias"][l])
  np.testing.assert_allclose(ident.apply({"params": p}, x), h @ p["output"]["kernel"] + p["output"]["bias"],
                             rtol=1e-5, atol=1e-6)


def test_haar_sign_correction_mean_trace():
  # For Haar O, E[tr O] = 0 and E[O_11²] = 1/n; without the sign fix tr O is biased.
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  os_ = jax.vmap(lambda k: haar_orthogonal(k, 6))(keys)
  tr = jnp.trace(os_, axis1=1, axis2=2)
  assert abs(float(tr.mean())) < 0.25          # std of the mean ≈ 1/√400 = 0.05
  assert abs(float(jnp.mean(os_[:, 0, 0] ** 2)) - 1 / 6) < 0.03


def test_layer_matches_formula_and_filter_not_trained():
  width, alpha, beta = 8, 0.7, 0.2
  layer = ROAFLayer(width, alpha=alpha, beta=beta, activation="tanh", kernel_init="glorot_normalized")
  x = jax.random.normal(jax.random.PRNGKey(1), (3, width))
  v = layer.init(jax.random.PRNGKey(0), x, 4)
  p = v["params"]
  # Only W and b are parameters: the filter is no variable at all.
  assert set(jax.tree.leaves(jax.tree.map(lambda a: a.shape, p), is_leaf=lambda t: isinstance(t, tuple))) \
      == {(width, width), (width,)}
  assert set(v.keys()) <= {"params", "perturbations"}
  w, b = p["dense"]["kernel"], p["dense"]["bias"]
  o = layer_filter(0, 4, width)
  want = alpha * x @ o.T + beta * jnp.tanh(x @ w + b)
  np.testing.assert_allclose(layer.apply({"params": p}, x, 4), want, rtol=1e-5, atol=1e-6)
  # d out/d x = α O + β D W exactly (checked on one example).
  jac = jax.jacfwd(lambda u: layer.apply({"params": p}, u[None], 4)[0])(x[0])
  d = 1 - jnp.tanh(x[0] @ w + b) ** 2
  np.testing.assert_allclose(jac, alpha * o + beta * (w * d[None, :]).T, rtol=1e-5, atol=1e-6)


def test_validation_errors():
  for a in (0.0, 1.0, -0.1, 1.5):
    with pytest.raises(ValueError, match="alpha"):
      validate_alpha_beta(a, None)
  for b in (0.0, -0.5):
    with pytest.raises(ValueError, match="beta"):
      validate_alpha_beta(0.5, b)
  assert validate_alpha_beta(0.9, None) == (0.9, pytest.approx(0.1))
  with pytest.raises(ValueError, match="alpha"):
    ROAFMLP(8, 3, 2, alpha=1.0).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
  with pytest.raises(ValueError, match="filter_mode"):
    ROAFMLP(8, 3, 2, filter_mode="svd").init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
  with pytest.raises(ValueError, match="depth"):
    ROAFMLP(8, 0, 2).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
  assert critical_gain(0.99) == pytest.approx(np.sqrt(1.99 / 0.01))


@pytest.fixture(scope="module", params=[("haar", 1000), ("fast", 300)], ids=["haar1000", "fast300"])
def deep(request):
  """A deep ROAF MLP (width 32): params, logits, loss, gradients and taps, one compile."""
  mode, depth = request.param
  model = ROAFMLP(width=32, depth=depth, num_classes=4, alpha=0.99, filter_mode=mode)
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 12))
  y = jnp.arange(8) % 4
  params = model.init(jax.random.PRNGKey(0), x)["params"]

  def loss(p):
    logits, st = model.apply({"params": p}, x, mutable=["intermediates"])
    lv = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
    return lv, (logits, hidden_stack(st["intermediates"]))
  (val, (logits, acts)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return depth, params, logits, acts, val, grads


def test_deep_forward_backward_finite_and_balanced(deep):
  depth, params, logits, _, val, grads = deep
  assert params["hidden"]["layer"]["dense"]["kernel"].shape == (depth - 1, 32, 32)
  assert logits.shape == (8, 4)
  assert np.isfinite(float(val))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  k = grads["hidden"]["layer"]["dense"]["kernel"]
  norms = jnp.sqrt(jnp.sum(k.reshape(k.shape[0], -1) ** 2, axis=1))
  ratio = float(norms[0] / norms[-1])
  assert 0.1 <= ratio <= 10, ratio
  assert float(norms.min()) > 1e-6            # no layer's gradient vanished


def test_taps_stack_over_depth(deep):
  depth, _, _, acts, _, _ = deep
  assert acts.shape == (depth, 8, 32)
  assert float(jnp.abs(acts).max()) <= 1.0    # tanh outputs


def test_registry_builder():
  cfg = ml_collections.ConfigDict(dict(name="roaf_mlp", width=8, depth=5, activation="tanh",
                                       activation_kwargs={}, kernel_init="roaf_critical",
                                       remat=True, alpha=0.9, beta=None))
  model = build_model(cfg, num_classes=3, input_shape=(6,))
  assert isinstance(model, ROAFMLP) and model.alpha == 0.9 and model.beta is None
  out, _ = model.init_with_output(jax.random.PRNGKey(0), jnp.ones((2, 6)))
  assert out.shape == (2, 3)
  # Critical init: orthogonal W with gain 1.1·σ*, i.e. WᵀW = (1.1σ*)² I.
  p = model.init(jax.random.PRNGKey(0), jnp.ones((2, 6)))["params"]
  w = p["hidden"]["layer"]["dense"]["kernel"][0]
  g = 1.1 * critical_gain(0.9)
  np.testing.assert_allclose(w.T @ w, g ** 2 * np.eye(8), rtol=1e-4, atol=1e-3)


def test_diagnostics_layer_jacobians():
  """`compute_diagnostics` finds the ROAF layer maps; σ(α O + β D W) ∈ [α − β‖W‖, α + β‖W‖]."""
  import optax
  from stable_training.diagnostics import compute_diagnostics
  alpha = 0.9
  m = ROAFMLP(width=8, depth=4, num_classes=3, alpha=alpha, filter_mode="fast")
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  loss = lambda lg, y: optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()
  d = compute_diagnostics(m, p, x, jnp.arange(6) % 3, loss, activation_name="tanh")
  sv = np.asarray(d["layer_jac_sv"])
  assert sv.shape == (3, 8)
  w_norm = float(np.linalg.norm(np.asarray(p["hidden"]["layer"]["dense"]["kernel"][0]), 2))
  beta = 1 - alpha
  assert np.all(sv <= alpha + beta * w_norm + 1e-4)
  assert np.all(sv >= max(alpha - beta * w_norm, 0.0) - 1e-4)


def test_layer_unroll_gives_the_same_function_and_gradient():
  # 9 hidden ROAF layers, unrolled 4 per loop iteration (a remainder of 1):
  # the same network as the rolled scan, parameters interchangeable.
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 12))
  kw = dict(width=8, depth=10, num_classes=4, filter_mode="fast")
  rolled, unrolled = ROAFMLP(**kw), ROAFMLP(**kw, layer_unroll=4)
  p = rolled.init(jax.random.PRNGKey(1), x)["params"]
  loss = lambda m: (lambda p: jnp.sum(jnp.tanh(m.apply({"params": p}, x))))
  np.testing.assert_allclose(unrolled.apply({"params": p}, x), rolled.apply({"params": p}, x),
                             rtol=1e-5, atol=1e-6)
  g1, g2 = jax.grad(loss(rolled))(p), jax.grad(loss(unrolled))(p)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["perm", "fast"])
def test_filter_tables_compiled_in_as_constants_give_the_same_step_without_a_sort(mode, monkeypatch):
  """Up to CONSTANT_TABLE_ENTRIES the (perm, sign[, inverse]) tables are constants of the compiled step
  (no sort left in it); above, drawn inside the step. Same outputs and gradients either way; the
  inverse permutation (a scatter) equals argsort."""
  from stable_training.models import roaf as R
  m = ROAFMLP(width=16, depth=9, num_classes=3, alpha=0.9, filter_mode=mode)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  loss = lambda p: jnp.sum(m.apply({"params": p}, x) ** 2)
  step = lambda: jax.jit(jax.value_and_grad(loss))
  hlo_const = step().lower(p).compile().as_text()
  v_const, g_const = step()(p)
  monkeypatch.setattr(R, "CONSTANT_TABLE_ENTRIES", 0)
  hlo_drawn = step().lower(p).compile().as_text()
  v_drawn, g_drawn = step()(p)
  assert " sort(" in hlo_drawn and " sort(" not in hlo_const
  np.testing.assert_array_equal(v_const, v_drawn)
  for a, b in zip(jax.tree.leaves(g_const), jax.tree.leaves(g_drawn)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  perm, _ = fast_filter_tables(3, jnp.arange(1, 40), 32)
  np.testing.assert_array_equal(R.inverse_permutation(perm), jnp.argsort(perm, axis=-1))
  np.testing.assert_array_equal(jnp.take_along_axis(perm, R.inverse_permutation(perm), -1),
                                jnp.broadcast_to(jnp.arange(32), perm.shape))


def test_signed_permute_forward_and_reverse_mode_are_the_dense_filter():
  # (O x)ᵀ with O = diag(s) P: the value, J v (forward mode: the check-up, LSC and Jacobian diagnostics
  # use it; a custom_vjp had none) and Jᵀ g (reverse mode: a gather at P⁻¹, no scatter in the program).
  rng = np.random.default_rng(0)
  perm = jnp.asarray(rng.permutation(8), jnp.int32)
  sign = jnp.asarray(rng.choice([-1.0, 1.0], 8), jnp.float32)
  inv = inverse_permutation(perm)
  o = np.asarray(perm_filter(perm, sign))
  x, v, g = (jnp.asarray(rng.normal(size=(3, 8)), jnp.float32) for _ in range(3))
  f = lambda x: signed_permute(x, perm, sign, inv)
  np.testing.assert_allclose(f(x), x @ o.T, rtol=1e-6)
  y, jv = jax.jvp(f, (x,), (v,))
  np.testing.assert_allclose(jv, v @ o.T, rtol=1e-6)
  np.testing.assert_allclose(jax.vjp(f, x)[1](g)[0], g @ o, rtol=1e-6)
  np.testing.assert_allclose(jax.linearize(f, x)[1](v), v @ o.T, rtol=1e-6)
  hlo = jax.jit(jax.grad(lambda x: jnp.sum(jnp.tanh(f(x)) ** 2))).lower(x).as_text()
  assert "scatter" not in hlo and "gather" in hlo


@pytest.mark.parametrize("mode", ["fast", "perm"])
def test_remat_keeps_the_preactivation_and_recomputes_no_matmul(mode):
  """remat=True (`models.mlp.REMAT_POLICY`): SGD steps give bitwise the params of remat=False, and
  the compiled backward loop holds exactly the backward's matmuls (∂x through W, ∂W, and for 'fast'
  ∂x through O_l): none re-derives W h, which a plain remat recomputes."""
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 16))
  y = jnp.arange(8) % 10

  def train(remat, steps=3):
    model = ROAFMLP(width=16, depth=12, num_classes=10, remat=remat, filter_mode=mode)
    p = model.init(jax.random.PRNGKey(0), x)["params"]

    def step(p):
      g = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
          model.apply({"params": p}, x), y).mean())(p)
      return jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    step = jax.jit(step)
    hlo = step.lower(p).compile().as_text()
    for _ in range(steps):
      p = step(p)
    return p, hlo
  p_remat, hlo = train(True)
  p_plain, _ = train(False)
  for a, b in zip(jax.tree.leaves(p_remat), jax.tree.leaves(p_plain)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  backward_loop_dots = [l for l in hlo.splitlines() if " dot(" in l and "transpose(jvp(ROAFMLP))/while/" in l]
  assert len(backward_loop_dots) == (3 if mode == "fast" else 2), backward_loop_dots
