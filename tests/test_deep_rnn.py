"""DeepRNN cells: one step against the formulas, shapes, surrogate gradient, LRU init."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stable_training.models import build_model
from stable_training.models import deep_rnn as dr

B, H, D = 3, 4, 5


@pytest.fixture(scope="module")
def steps():
  """(params, s_prev, x, s_next) for every cell, from one shared init."""
  out = {}
  x = jax.random.normal(jax.random.PRNGKey(0), (B, D))
  for cell in dr.CELLS:
    c = dr.make_cell(cell, H)
    S = dr.state_size(cell, H)
    s = jax.random.uniform(jax.random.PRNGKey(1), (B, S))
    if cell == "alif":  # spike part of the state is 0/1
      s = s.at[:, 2 * H:].set(jnp.round(s[:, 2 * H:]))
    p = c.init(jax.random.PRNGKey(2), s, x)["params"]
    out[cell] = (p, s, x, c.apply({"params": p}, s, x, method="step"))
  return out


@pytest.mark.parametrize("cell", dr.CELLS)
def test_step_finite_and_shapes(steps, cell):
  _, s, _, s1 = steps[cell]
  assert s1.shape == (B, dr.state_size(cell, H)) == s.shape
  assert bool(jnp.all(jnp.isfinite(s1)))


def _np(p, *path):
  for k in path:
    p = p[k]
  return np.asarray(p)


def test_lstm_step_formula(steps):
  p, s, x, s1 = steps["lstm"]
  s, x = np.asarray(s), np.asarray(x)
  h, c = s[:, :H], s[:, H:]
  z = x @ _np(p, "wx", "kernel") + _np(p, "wx", "bias") + h @ _np(p, "wh", "kernel")
  i, f, g, o = np.split(z, 4, axis=1)
  sig = lambda v: 1 / (1 + np.exp(-v))
  c1 = sig(f + 1) * c + sig(i) * np.tanh(g)
  np.testing.assert_allclose(np.asarray(s1), np.concatenate([sig(o) * np.tanh(c1), c1], 1), rtol=1e-5, atol=1e-6)


def test_gru_and_simple_rnn_formula(steps):
  p, h, x, h1 = steps["gru"]
  h, x = np.asarray(h), np.asarray(x)
  xr, xz, xn = np.split(x @ _np(p, "wx", "kernel") + _np(p, "wx", "bias"), 3, axis=1)
  hr, hz, hn = np.split(h @ _np(p, "wh", "kernel"), 3, axis=1)
  sig = lambda v: 1 / (1 + np.exp(-v))
  r, z = sig(xr + hr), sig(xz + hz)
  np.testing.assert_allclose(np.asarray(h1), (1 - z) * np.tanh(xn + r * hn) + z * h, rtol=1e-5, atol=1e-6)
  p, h, x, h1 = steps["relu_rnn"]
  ref = np.maximum(np.asarray(x) @ _np(p, "wx", "kernel") + _np(p, "wx", "bias") + np.asarray(h) @ _np(p, "wh", "kernel"), 0)
  np.testing.assert_allclose(np.asarray(h1), ref, rtol=1e-5, atol=1e-6)


def test_alif_step_formula(steps):
  p, s, x, s1 = steps["alif"]
  s, x = np.asarray(s), np.asarray(x)
  v, a, z = s[:, :H], s[:, H:2 * H], s[:, 2 * H:]
  cell = dr.ALIFCell(H)
  al, rho = np.exp(-1 / cell.tau_mem), np.exp(-1 / cell.tau_adapt)
  a1 = rho * a + (1 - rho) * z
  th = cell.thr + cell.beta * a1
  v1 = al * v + (1 - al) * (x @ _np(p, "wx", "kernel") + _np(p, "wx", "bias") + z @ _np(p, "wh", "kernel")) - th * z
  z1 = ((v1 - th) / th > 0).astype(np.float32)
  np.testing.assert_allclose(np.asarray(s1), np.concatenate([v1, a1, z1], 1), rtol=1e-5, atol=1e-6)


def test_alif_surrogate_gradient():
  xs = jnp.array([-1.5, -0.4, 0.0, 0.3, 0.99, 2.0])
  g = jax.vmap(jax.grad(dr.spike))(xs)
  np.testing.assert_allclose(np.asarray(g), 0.5 * np.maximum(0, 1 - np.abs(np.asarray(xs))), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(dr.spike(xs)), [0, 0, 0, 1, 1, 1])
  # Forward mode agrees (custom_jvp), as jacfwd in the LSC code needs.
  _, t = jax.jvp(dr.spike, (xs,), (jnp.ones_like(xs),))
  np.testing.assert_allclose(np.asarray(t), np.asarray(g), rtol=1e-6)


def test_lru_ring_init_and_time_jacobian(steps):
  p, s, x, _ = steps["lru"]
  c = dr.LRUCell(H)
  mod = np.exp(-np.exp(_np(p, "nu_log")))
  assert np.all(mod >= c.r_min - 1e-5) and np.all(mod <= c.r_max + 1e-5)
  np.testing.assert_allclose(np.exp(_np(p, "gamma_log")), np.sqrt(1 - mod ** 2), rtol=1e-5)
  J = jax.jacfwd(lambda u: c.apply({"params": p}, u, x[0], method="step"))(s[0])
  lam = mod * np.exp(1j * np.exp(_np(p, "theta_log")))
  np.testing.assert_allclose(np.sort(np.abs(np.linalg.eigvals(np.asarray(J)))),
                             np.sort(np.r_[np.abs(lam), np.abs(lam)]), rtol=1e-4)


def test_latency_encode():
  x = jnp.array([[1.0, 0.5, 0.1, 0.2005]])
  sp = np.asarray(dr.latency_encode(x, num_steps=20, tau=4.0, threshold=0.2))
  assert sp.shape == (1, 20, 4)
  t1, t2 = round(4 * np.log(1 / 0.8)), round(4 * np.log(0.5 / 0.3))
  assert sp[0, t1, 0] == 1 and sp[0, :, 0].sum() == 1
  assert sp[0, t2, 1] == 1 and sp[0, :, 1].sum() == 1
  assert sp[0, :, 2].sum() == 0                       # below threshold: silent
  assert sp[0, :, 3].sum() == 0                       # t* = 4 log(401) ≈ 24 ≥ T: dropped


def test_deep_rnn_registry_and_trajectories():
  cfg = ml_collections.ConfigDict({"name": "deep_rnn", "cell": "gru", "depth": 3, "width": 6,
                                   "step_features": 4, "kernel_init": "glorot_normalized"})
  m = build_model(cfg, num_classes=5, input_shape=(12,))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 12))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  assert p["hidden"]["layer"]["cell"]["wh"]["kernel"].shape == (2, 6, 18)
  logits = m.apply({"params": p}, x)
  x0, s0, xh, sh = dr.layer_trajectories(m, p, x)
  assert x0.shape == (2, 3, 4) and s0.shape == (2, 3, 6) and sh.shape == (2, 2, 3, 6)
  # The read-out is Dense(output) of the last layer's last state (GRU: y = h).
  ref = sh[-1][:, -1] @ p["output"]["kernel"] + p["output"]["bias"]
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-5, atol=1e-6)
  # Layer l+1's input sequence is layer l's output.
  np.testing.assert_allclose(np.asarray(xh[0]), np.asarray(s0), rtol=1e-6)
  with pytest.raises(ValueError, match="unknown cell"):
    dr.state_size("rnn", 3)


def test_one_cell_family_for_both_models():
  # DeepRNN and RecurrentClassifier build their cells from one registry.
  from stable_training.models import recurrent
  assert dr.make_cell is recurrent.make_cell and dr.CELLS == recurrent.CELLS
  assert dr.LSTMCell is recurrent.LSTMCell and dr.spike is recurrent.spike
  for cell in dr.CELLS:
    c = dr.make_cell(cell, H)
    assert type(c) is recurrent.CELL_CLASSES[cell] and c.state_size == dr.state_size(cell, H)
  assert dr.make_cell("relu_rnn", H).activation == "relu"
  with pytest.raises(ValueError, match="activation"):
    dr.make_cell("relu_rnn", H, activation="tanh")
