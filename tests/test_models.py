"""DeepMLP / ConvNet: forward against a hand-written reference, scan structure, taps."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stable_training import models
from stable_training.models import ConvNet, DeepMLP, hidden_stack


def _ref_mlp(params, x, act=np.tanh):
  h = act(x @ params["input"]["dense"]["kernel"] + params["input"]["dense"]["bias"])
  hs = [h]
  if "hidden" in params:
    k, b = params["hidden"]["layer"]["dense"]["kernel"], params["hidden"]["layer"]["dense"]["bias"]
    for l in range(k.shape[0]):
      h = act(h @ k[l] + b[l])
      hs.append(h)
  return h @ params["output"]["kernel"] + params["output"]["bias"], np.stack(hs)


@pytest.mark.parametrize("depth", [1, 5])
def test_deep_mlp_matches_reference_and_taps(depth):
  m = DeepMLP(width=8, depth=depth, num_classes=3, activation="tanh")
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
  params = m.init(jax.random.PRNGKey(0), x)["params"]
  if depth > 1:
    assert params["hidden"]["layer"]["dense"]["kernel"].shape == (depth - 1, 8, 8)
  out, st = m.apply({"params": params}, x, mutable=["intermediates"])
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  ref, hs = _ref_mlp(p64, np.asarray(x, np.float64))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(hidden_stack(st["intermediates"]), hs, rtol=1e-5, atol=1e-6)


def test_perturbations_give_preactivation_gradients():
  m = DeepMLP(width=5, depth=3, num_classes=2, activation="tanh")
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
  v = m.init(jax.random.PRNGKey(0), x)
  # Flax convention: init returns only params; the taps are created on request.
  assert set(v) == {"params"}
  _, taps = m.apply(v, x, mutable=["perturbations"])
  v = {**v, "perturbations": jax.tree.map(jnp.zeros_like, taps["perturbations"])}
  loss = lambda p, pert: jnp.sum(m.apply({"params": p, "perturbations": pert}, x) ** 2)
  g = jax.grad(loss, argnums=1)(v["params"], v["perturbations"])
  gz = hidden_stack(g, "preact")
  # Top layer by hand: dL/dz_L = (2·out · W_outᵀ) ⊙ tanh'(z_L).
  p = v["params"]
  out, st = m.apply({"params": p}, x, mutable=["intermediates"])
  a_top = hidden_stack(st["intermediates"])[-1]
  manual = (2 * out @ p["output"]["kernel"].T) * (1 - a_top ** 2)
  np.testing.assert_allclose(gz[-1], manual, rtol=1e-5, atol=1e-6)
  # Perturbations are zero, so they do not change the output.
  np.testing.assert_allclose(m.apply(v, x), m.apply({"params": p}, x), atol=0)


def test_compiled_program_size_flat_in_depth():
  def n_eqns(depth):
    m = DeepMLP(width=16, depth=depth, num_classes=10, remat=True)
    x = jnp.ones((2, 20))
    p = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"]
    f = lambda p: jnp.sum(m.apply({"params": p}, x))
    return len(str(jax.make_jaxpr(jax.grad(f))(p)).splitlines())
  assert n_eqns(10) == n_eqns(2000)


def test_remat_gives_same_gradients():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
  a, b = DeepMLP(8, 6, 3, remat=False), DeepMLP(8, 6, 3, remat=True)
  p = a.init(jax.random.PRNGKey(0), x)["params"]
  f = lambda m: jax.grad(lambda p: jnp.sum(m.apply({"params": p}, x) ** 2))(p)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7), f(a), f(b))


def test_convnet_structure_and_flat_input():
  m = ConvNet(num_classes=10)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 28, 28, 1))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  assert [p[f"conv{i}"]["kernel"].shape for i in range(3)] == [(3, 3, 1, 8), (3, 3, 8, 16), (3, 3, 16, 64)]
  assert p["dense0"]["dense"]["kernel"].shape == (4 * 4 * 64, 1024)
  assert p["dense1"]["dense"]["kernel"].shape == (1024, 256)
  assert p["output"]["kernel"].shape == (256, 10)
  np.testing.assert_allclose(m.apply({"params": p}, x), m.apply({"params": p}, x.reshape(2, -1)), atol=1e-6)


def test_registry_builds_and_rejects():
  cfg = ml_collections.ConfigDict(dict(name="deep_mlp", width=4, depth=2, activation="tgelu",
                                       activation_kwargs={"t_left": -1.0, "t_right": 1.0},
                                       kernel_init="glorot_standard", remat=False))
  m = models.build_model(cfg, num_classes=3, input_shape=(5,))
  assert isinstance(m, DeepMLP) and m.depth == 2
  cfg.name = "transformer"
  with pytest.raises(ValueError, match="config.model.name='transformer': valid choices are .*deep_mlp"):
    models.build_model(cfg, num_classes=3, input_shape=(5,))
  with pytest.raises(ValueError, match="depth must be >= 1"):
    DeepMLP(4, 0, 3).init(jax.random.PRNGKey(0), jnp.ones((1, 5)))


def test_dense_matmul_same_derivatives_and_plain_row_major_weight_gradient():
  """`dense_matmul` (the hidden layers' x W): value, VJP, JVP, Hessian-vector product and vmap equal plain
  ``x @ W``; on CPU its compiled ∂W is a row-major matmul on a materialized xᵀ (plain autodiff: a dot
  contracting x's first axis, XLA:CPU's slow path)."""
  from stable_training.models.mlp import Dense, dense_matmul
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  x, w = jax.random.normal(k[0], (3, 5, 8)), jax.random.normal(k[1], (8, 6))
  ours = lambda x, w: jnp.sum(jnp.tanh(dense_matmul(x, w)) ** 2)
  plain = lambda x, w: jnp.sum(jnp.tanh(x @ w) ** 2)
  np.testing.assert_allclose(dense_matmul(x, w), x @ w, rtol=1e-6)
  for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  tx, tw = jax.random.normal(k[2], x.shape), jax.random.normal(k[3], w.shape)
  np.testing.assert_allclose(jax.jvp(ours, (x, w), (tx, tw))[1], jax.jvp(plain, (x, w), (tx, tw))[1], rtol=1e-5)
  hvp = lambda f: jax.jvp(jax.grad(f, 1), (x, w), (tx, tw))[1]
  np.testing.assert_allclose(hvp(ours), hvp(plain), rtol=1e-4, atol=1e-5)
  xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
  np.testing.assert_allclose(jax.vmap(jax.grad(ours, 1))(xs, ws), jax.vmap(jax.grad(plain, 1))(xs, ws),
                             rtol=1e-5, atol=1e-6)
  # The layer: same params as nn.Dense, same output.
  layer, ref = Dense(6), nn.Dense(6)
  p = ref.init(k[0], x)
  assert jax.tree.structure(layer.init(k[0], x)) == jax.tree.structure(p)
  np.testing.assert_allclose(layer.apply(p, x), ref.apply(p, x), rtol=1e-6)

  def weight_grad_dots(f):
    hlo = jax.jit(jax.grad(f, 1)).lower(jnp.ones((128, 64)), jnp.ones((64, 32))).compile().as_text()
    return [l for l in hlo.splitlines() if " dot(" in l and "f32[64,32]" in l.split("=")[1][:12]]
  slow = [l for l in weight_grad_dots(plain) if "lhs_contracting_dims={0}" in l]
  assert slow, "plain autodiff no longer contracts x's first axis: dense_matmul may be unnecessary"
  assert not [l for l in weight_grad_dots(ours) if "lhs_contracting_dims={0}" in l]
  # Also inside a time loop, where the backward pass reads the stacked residuals (an RNN's U).
  def rnn(mm):
    def loss(u):
      h, _ = jax.lax.scan(lambda h, x: (jnp.tanh(mm(h, u) + x), None), jnp.zeros((16, 64)), jnp.ones((5, 16, 64)))
      return jnp.sum(h ** 2)
    hlo = jax.jit(jax.grad(loss)).lower(jnp.eye(64)).compile().as_text()
    return [l for l in hlo.splitlines() if " dot(" in l and "lhs_contracting_dims={0}" in l
            and "f32[64,64]" in l.split("=")[1][:12]]
  assert rnn(jnp.matmul) and not rnn(dense_matmul)
