"""Diagnostics of any flax model, no taps (stable_training.diagnostics.generic; Glorot & Bengio 2010)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training import diagnostics
from stable_training import initializers as inits
from stable_training.diagnostics import generic


class TanhMLP(nn.Module):
  """A user's plain model: nn.Dense + jnp.tanh, no taps, no project modules."""
  depth: int = 4
  width: int = 16

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = jnp.tanh(nn.Dense(self.width, kernel_init=inits.glorot_standard())(x))
    return nn.Dense(3)(x)


class LSTMStack(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.RNN(nn.LSTMCell(8))(x)
    return nn.Dense(3)(x).mean(1)      # a head on every step


def loss_fn(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _mlp_setup():
  model = TanhMLP()
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8))
  y = jnp.arange(6) % 3
  return model, model.init(jax.random.PRNGKey(0), x)["params"], x, y


def test_mlp_layers_jacobians_and_gradients_match_independent_computation():
  model, params, x, y = _mlp_setup()
  assert generic.layer_names(model, params, x) == [f"Dense_{i}" for i in range(5)]
  d = jax.device_get(generic.generic_diagnostics_jit(model, params, x, y, loss_fn, num_jacobian_examples=2))
  dense = lambda i, h: h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
  hs = [jnp.tanh(dense(0, x))]
  for i in range(1, 4):
    hs.append(jnp.tanh(dense(i, hs[-1])))            # h_1..h_4 = inputs of Dense_1..Dense_4
  # J_k = ∂h_{k+1}/∂h_k by jax.jacfwd + numpy SVD, averaged over the first 2 examples
  want = np.stack([np.mean([np.linalg.svd(np.asarray(jax.jacfwd(lambda h: jnp.tanh(dense(k + 1, h)))(hs[k][e])),
                                          compute_uv=False) for e in range(2)], 0) for k in range(3)])
  np.testing.assert_allclose(d["layer_jac_sv"], want, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(d["layer_jac_sv_logmean"], np.log(want).mean(-1), rtol=1e-4)
  # end-to-end ∂h_4/∂h_1
  def through(h):
    for k in range(1, 4):
      h = jnp.tanh(dense(k, h))
    return h
  e2e = np.mean([np.linalg.svd(np.asarray(jax.jacfwd(through)(hs[0][e])), compute_uv=False) for e in range(2)], 0)
  np.testing.assert_allclose(d["hidden_jac_sv"], e2e, rtol=1e-4, atol=1e-7)
  # ‖∂L/∂h_k‖ through zero perturbations of an independent forward pass
  def loss_of(eps):
    h = x
    for i in range(4):
      h = jnp.tanh(dense(i, h)) + eps[i]
    return loss_fn(dense(4, h), y)
  g = jax.grad(loss_of)(jnp.zeros((4, 6, 16)))
  np.testing.assert_allclose(d["state_grad_norm"], np.linalg.norm(np.asarray(g).reshape(4, -1), axis=1), rtol=1e-4)
  # per-layer param gradient norms, activation statistics and saturation (tanh identified)
  gp = jax.grad(lambda p: loss_fn(model.apply({"params": p}, x), y))(params)
  want_pg = [np.sqrt(sum(np.sum(np.square(l)) for l in jax.tree.leaves(gp[f"Dense_{i}"]))) for i in range(5)]
  np.testing.assert_allclose(d["param_grad_norm"], want_pg, rtol=1e-4)
  np.testing.assert_allclose(d["act_std"], [float(jnp.std(h)) for h in hs], rtol=1e-5)
  assert [generic.CANDIDATE_NAMES[i] for i in d["act_kind"]] == ["tanh"] * 4
  np.testing.assert_allclose(d["act_saturation"], [float(jnp.mean(jnp.abs(h) >= 0.9)) for h in hs], atol=1e-6)
  assert d["act_hist"].shape == (4, 50) and (d["act_hist"].sum(1) == 6 * 16).all()


def test_lstm_stack_per_layer_and_per_time_step():
  model = LSTMStack()
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 5, 3))
  y = jnp.arange(4) % 3
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  assert generic.layer_names(model, params, x) == ["RNN_0", "RNN_1", "Dense_0"]
  d = jax.device_get(generic.generic_diagnostics_jit(model, params, x, y, loss_fn, num_jacobian_examples=1))
  # states: inputs of RNN_1 and of the head, both [B, T, 8]
  assert d["state_grad_norm_t"].shape == (2, 5)             # ‖∂L/∂h^l_t‖ per layer and step
  np.testing.assert_allclose(np.linalg.norm(d["state_grad_norm_t"], axis=1), d["state_grad_norm"], rtol=1e-5)
  assert d["layer_jac_sv"].shape == (1, 40)                 # the whole-sequence map RNN_1: [5·8] → [5·8]
  assert d["layer_jac_sv_t"].shape == (1, 5, 8)             # per-step blocks ∂h^2_t/∂h^1_t
  # RNN_1 is causal: its Jacobian is block lower-triangular, so its determinant is the
  # product of the diagonal blocks' determinants (= products of their σ; one example)
  np.testing.assert_allclose(np.sum(np.log(d["layer_jac_sv"][0])), np.sum(np.log(d["layer_jac_sv_t"][0])),
                             rtol=1e-3)
  for k in ("state_grad_norm", "param_grad_norm", "act_saturation"):
    assert np.isfinite(d[k]).all(), k
  assert (d["param_grad_norm"] > 0).all()                  # the cells' params belong to their RNN layer


def test_compute_diagnostics_takes_a_user_model_without_taps():
  """The friction `compute_diagnostics(MyNet(), …)` → KeyError: 'perturbations' is gone."""
  model, params, x, y = _mlp_setup()
  d = diagnostics.compute_diagnostics(model, params, x, y, loss_fn, num_jacobian_examples=2)
  assert d["act_mean"].shape == (4,) and d["layer_jac_sv"].shape == (3, 16) and d["grad_std"].shape == (4,)
  np.testing.assert_allclose(d["act_saturation"], generic.generic_diagnostics_jit(
      model, params, x, y, loss_fn, num_jacobian_examples=0)["act_saturation"], rtol=1e-6)
