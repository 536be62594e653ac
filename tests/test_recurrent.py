"""The recurrent cell family (ROAF, Elman, LSTM, GRU, ...), RecurrentClassifier, hoisted projections."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stable_training.models import build_model
from stable_training.models.deep_rnn import DeepRNN, cell_module, layer_params
from stable_training.models.recurrent import (CELLS, ElmanCell, ROAFRNNCell, RecurrentClassifier,
                                              state_size)
from stable_training.models.roaf import critical_gain, layer_filter


def test_roaf_cell_step_matches_formula():
  alpha, beta, hdim = 0.8, 0.15, 6
  cell = ROAFRNNCell(hdim, alpha=alpha, beta=beta, filter_seed=3)
  h0 = jax.random.normal(jax.random.PRNGKey(0), (2, hdim))
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
  v = cell.init(jax.random.PRNGKey(2), h0, x)
  assert set(v) == {"params"}                      # the filter is no variable
  h1, y = cell.apply(v, h0, x)
  p = v["params"]
  o = cell.filter()
  np.testing.assert_allclose(o.T @ o, np.eye(hdim), atol=1e-5)
  np.testing.assert_allclose(o, layer_filter(3, 0, hdim), atol=1e-6)
  z = x @ p["wx"]["kernel"] + p["wx"]["bias"] + h0 @ p["wh"]["kernel"]
  np.testing.assert_allclose(h1, alpha * h0 @ o.T + beta * jnp.tanh(z), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(h1, y)
  # W_h starts orthogonal at 1.1·σ*.
  g = 1.1 * critical_gain(alpha, beta)
  np.testing.assert_allclose(p["wh"]["kernel"].T @ p["wh"]["kernel"], g ** 2 * np.eye(hdim),
                             rtol=1e-4, atol=1e-3)


def test_roaf_cell_perm_filter_matches_formula_and_classifier():
  """filter_mode='perm': O = diag(s) P (exactly orthogonal, a permutation with signs), the step
  α O h + β tanh(z) done by a gather; a whole classifier equals the dense-O recurrence written out."""
  alpha, beta, hdim = 0.8, 0.15, 6
  cell = ROAFRNNCell(hdim, alpha=alpha, beta=beta, filter_seed=3, filter_mode="perm")
  o = np.asarray(cell.filter())
  np.testing.assert_array_equal(o.T @ o, np.eye(hdim))
  assert set(np.abs(o).sum(0).tolist()) == {1.0} and set(np.unique(o).tolist()) <= {-1.0, 0.0, 1.0}
  m = RecurrentClassifier(cell="roaf", hidden=hdim, num_classes=2, alpha=alpha, beta=beta, filter_seed=3,
                          filter_mode="perm")
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 3))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  def hand(p, x):
    c = p["cell"]
    h = jnp.zeros((2, hdim))
    for t in range(7):
      z = x[:, t] @ c["wx"]["kernel"] + c["wx"]["bias"] + h @ c["wh"]["kernel"]
      h = alpha * h @ o.T + beta * jnp.tanh(z)
    return h @ p["output"]["kernel"] + p["output"]["bias"]
  np.testing.assert_allclose(jax.jit(m.apply)({"params": p}, x), jax.jit(hand)(p, x), rtol=1e-5, atol=1e-6)
  # The custom derivative (its reverse mode an inverse-permutation gather) equals autodiff of the dense-O
  # recurrence.
  loss = lambda f: (lambda p, x: jnp.sum(jnp.sin(f(p, x))))
  g_model = jax.jit(jax.grad(loss(lambda p, x: m.apply({"params": p}, x)), argnums=(0, 1)))(p, x)
  g_hand = jax.jit(jax.grad(loss(hand), argnums=(0, 1)))(p, x)
  for a, b in zip(jax.tree.leaves(g_model), jax.tree.leaves(g_hand)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="filter_mode 'svd'"):
    ROAFRNNCell(hdim, filter_mode="svd").filter()


def test_elman_step_matches_formula():
  cell = ElmanCell(5)
  h0 = jnp.full((1, 5), 0.3)
  x = jnp.ones((1, 2))
  p = cell.init(jax.random.PRNGKey(0), h0, x)["params"]
  h1, _ = cell.apply({"params": p}, h0, x)
  want = jnp.tanh(x @ p["wx"]["kernel"] + p["wx"]["bias"] + h0 @ p["wh"]["kernel"])
  np.testing.assert_allclose(h1, want, rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_classifier_shapes_and_last_readout(cell):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 2))
  m = RecurrentClassifier(cell=cell, hidden=4, num_classes=5)
  v = m.init(jax.random.PRNGKey(1), x)
  assert m.apply(v, x).shape == (3, 5)
  m_all = RecurrentClassifier(cell=cell, hidden=4, num_classes=5, readout="all")
  per_step = m_all.apply(v, x)
  assert per_step.shape == (3, 7, 5)
  # readout='last' is the last step of readout='all' (same params).
  np.testing.assert_allclose(per_step[:, -1], m.apply(v, x), rtol=1e-5, atol=1e-6)


def test_2d_inputs_are_one_feature_per_step():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7))
  m = RecurrentClassifier(cell="elman", hidden=4, num_classes=2)
  v = m.init(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(m.apply(v, x), m.apply(v, x[..., None]), rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_hoisted_input_projection_equals_per_step_cell_loop(cell):
  """The models' hoisted W_x x_t + b (one matmul before the scan) equals stepping the cell.

  Reference: a Python loop over t of the standalone cell's `__call__`, which
  projects x_t inside each step (the unhoisted computation), and `nn.RNN`
  over the same cell (flax's scan, per-step projection).
  """
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
  m = RecurrentClassifier(cell=cell, hidden=4, num_classes=3, alpha=0.7, readout="all")
  # Every model call below is jitted: run eagerly, each scan and each op was an XLA compile of its own.
  p = jax.jit(m.init)(jax.random.PRNGKey(1), x)["params"]
  c = m.cell_module(parent=None)
  s = c.initialize_carry(None, x[:, 0].shape)
  assert s.shape == (2, state_size(cell, 4))
  ys = []
  cell_step = jax.jit(lambda cp, s, xt: c.apply({"params": cp}, s, xt))   # one compile, not 5 eager traces
  for t in range(5):
    s, y = cell_step(p["cell"], s, x[:, t])
    ys.append(y)
  want = jnp.stack(ys, 1) @ p["output"]["kernel"] + p["output"]["bias"]
  np.testing.assert_allclose(jax.jit(m.apply)({"params": p}, x), want, rtol=1e-5, atol=1e-5)
  by_flax = jax.jit(nn.RNN(m.cell_module(parent=None)).apply)({"params": {"cell": p["cell"]}}, x)
  np.testing.assert_allclose(by_flax, jnp.stack(ys, 1), rtol=1e-5, atol=1e-5)
  # readout='last' takes the final carry without stacking the states: same logits.
  last = jax.jit(RecurrentClassifier(cell=cell, hidden=4, num_classes=3, alpha=0.7).apply)({"params": p}, x)
  np.testing.assert_allclose(last, want[:, -1], rtol=1e-5, atol=1e-5)
  # D = 1 with readout='last' (psMNIST) projects inside the scan step instead: same logits and gradients
  # as the hoisted readout='all' path's last step.
  x1 = x[..., :1]
  m_last = RecurrentClassifier(cell=cell, hidden=4, num_classes=3, alpha=0.7)
  m_all = RecurrentClassifier(cell=cell, hidden=4, num_classes=3, alpha=0.7, readout="all")
  p1 = jax.jit(m_last.init)(jax.random.PRNGKey(2), x1)["params"]
  f_last = lambda q: m_last.apply({"params": q}, x1)
  f_all = lambda q: m_all.apply({"params": q}, x1)[:, -1]
  np.testing.assert_allclose(jax.jit(f_last)(p1), jax.jit(f_all)(p1), rtol=1e-5, atol=1e-6)
  g_last, g_all = (jax.jit(jax.grad(lambda q: jnp.sum(jnp.tanh(f(q)))))(p1) for f in (f_last, f_all))
  for a, b in zip(jax.tree.leaves(g_last), jax.tree.leaves(g_all)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_deep_rnn_hoisted_projection_equals_per_step_loop():
  """DeepRNN (3 layers, hoisted projections in every layer) against stepping each layer's cell."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
  for cell in ("lstm", "gru", "tanh_rnn", "alif", "lru"):
    m = DeepRNN(cell=cell, depth=3, hidden=4, num_classes=2)
    p = jax.jit(m.init)(jax.random.PRNGKey(1), x)["params"]
    c = cell_module(m)
    cell_step = jax.jit(lambda cp, s, xt: c.apply({"params": cp}, s, xt))   # one compile, not 18 eager traces
    first, rest = layer_params(p)
    seq = x
    for l in range(3):
      cp = first if l == 0 else jax.tree.map(lambda a: a[l - 1], rest)
      s, ys = jnp.zeros((2, state_size(cell, 4))), []
      for t in range(6):
        s, y = cell_step(cp, s, seq[:, t])
        ys.append(y)
      seq = jnp.stack(ys, 1)
    want = seq[:, -1] @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(jax.jit(m.apply)({"params": p}, x), want, rtol=1e-5, atol=1e-5)


def test_validation_errors():
  x = jnp.ones((1, 3, 1))
  with pytest.raises(ValueError, match="cell"):
    RecurrentClassifier(cell="transformer", hidden=2, num_classes=2).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="readout"):
    RecurrentClassifier(cell="roaf", hidden=2, num_classes=2, readout="mean").init(
        jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="alpha"):
    RecurrentClassifier(cell="roaf", hidden=2, num_classes=2, alpha=1.2).init(
        jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="beta"):
    RecurrentClassifier(cell="roaf", hidden=2, num_classes=2, beta=0.0).init(
        jax.random.PRNGKey(0), x)


def test_registry_builder():
  cfg = ml_collections.ConfigDict(dict(name="rnn_classifier", width=6, depth=1, cell="gru",
                                       readout="last", activation="tanh", activation_kwargs={},
                                       kernel_init="lecun_normal", alpha=0.9, beta=None))
  m = build_model(cfg, num_classes=4, input_shape=(10, 1))
  assert isinstance(m, RecurrentClassifier) and m.cell == "gru" and m.hidden == 6


def adding_problem(key, batch, length):
  """Hochreiter & Schmidhuber (1997): sum the two marked values of U(0,1) noise."""
  k1, k2, k3 = jax.random.split(key, 3)
  vals = jax.random.uniform(k1, (batch, length))
  i = jax.random.randint(k2, (batch,), 0, length // 2)
  j = jax.random.randint(k3, (batch,), length // 2, length)
  marks = jax.nn.one_hot(i, length) + jax.nn.one_hot(j, length)
  return jnp.stack([vals, marks], -1), jnp.sum(vals * marks, axis=1)


def test_roaf_rnn_learns_adding_problem():
  """Short adding problem (T = 30): MSE falls far below the trivial 1/6."""
  model = RecurrentClassifier(cell="roaf", hidden=32, num_classes=1, alpha=0.5)
  x, y = adding_problem(jax.random.PRNGKey(0), 64, 30)
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  tx = optax.adam(3e-3)

  def loss(p, x, y):
    return jnp.mean((model.apply({"params": p}, x)[:, 0] - y) ** 2)

  def step(carry, key):
    p, s = carry
    x, y = adding_problem(key, 64, 30)
    l, g = jax.value_and_grad(loss)(p, x, y)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), l

  (params, _), losses = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))(
      (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(2), 800))
  xt, yt = adding_problem(jax.random.PRNGKey(9), 512, 30)
  test_mse = float(loss(params, xt, yt))
  assert np.all(np.isfinite(np.asarray(losses)))
  assert test_mse < 0.06, test_mse            # trivial predictor (always 1): 1/6 ≈ 0.167
