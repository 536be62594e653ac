"""LSC radii and pre-training (Herranz-Celotti & Rouat 2023/24): numbers vs numpy / formulas."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training import lsc
from stable_training.models.deep_rnn import DeepRNN, cell_module, layer_params, layer_trajectories
from stable_training.models.mlp import DeepMLP

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ radius ---
def test_radius_matches_numpy_square():
  J = RNG.normal(size=(5, 6, 6)).astype(np.float32)
  r = np.asarray(lsc.radius(jnp.asarray(J), "spectral_radius"))
  np.testing.assert_allclose(r, np.abs(np.linalg.eigvals(J)).max(-1), rtol=1e-4)
  s = np.asarray(lsc.radius(jnp.asarray(J), "spectral_norm"))
  np.testing.assert_allclose(s, np.linalg.svd(J, compute_uv=False)[:, 0], rtol=1e-4)


@pytest.mark.parametrize("kind", ["spectral_radius", "spectral_norm"])
def test_radius_and_gradient_of_a_large_batch_split_across_threads(kind):
  # 37 matrices: above the threading threshold and not divisible by the
  # worker count, so the split-and-concatenate path must keep the order.
  from stable_training.lsc import spectral
  assert 37 >= spectral._MIN_SPLIT
  A = RNG.normal(size=(37, 6, 6))
  ref = (lambda M: np.abs(np.linalg.eigvals(M)).max(-1)) if kind == "spectral_radius" else \
      (lambda M: np.linalg.svd(M, compute_uv=False)[..., 0])
  J = jnp.asarray(A, jnp.float32)
  np.testing.assert_allclose(np.asarray(lsc.radius(J, kind)), ref(A), rtol=1e-4)
  # Gradient of each radius w.r.t. its own matrix, against the unsplit path.
  fn = spectral._radius_and_grad_f64 if kind == "spectral_radius" else spectral._norm_and_grad_f64
  g_ref = fn(A)[1]
  g = np.asarray(jax.grad(lambda M: lsc.radius(M, kind).sum())(J))
  np.testing.assert_allclose(g, g_ref, atol=1e-4)


@pytest.mark.parametrize("shape", [(9, 4), (3, 7)])
def test_radius_non_square_subsamples_longer_axis(shape):
  J = RNG.normal(size=shape).astype(np.float32)
  key = jax.random.PRNGKey(3)
  m, n = shape
  k = min(m, n)
  idx = np.sort(np.asarray(jax.random.permutation(key, max(m, n)))[:k])
  sq = J[idx] if m > n else J[:, idx]
  np.testing.assert_allclose(np.asarray(lsc.square_subsample(jnp.asarray(J), key)), sq)
  r = float(lsc.radius(jnp.asarray(J), "spectral_radius", key))
  np.testing.assert_allclose(r, np.abs(np.linalg.eigvals(sq)).max(), rtol=1e-4)
  # The spectral norm needs no subsampling.
  s = float(lsc.radius(jnp.asarray(J), "spectral_norm"))
  np.testing.assert_allclose(s, np.linalg.svd(J, compute_uv=False)[0], rtol=1e-4)


@pytest.mark.parametrize("kind", ["spectral_radius", "spectral_norm"])
def test_radius_gradient_matches_finite_differences(kind):
  A = RNG.normal(size=(2, 4, 4))
  ref = (lambda M: np.abs(np.linalg.eigvals(M)).max(-1)) if kind == "spectral_radius" else \
      (lambda M: np.linalg.svd(M, compute_uv=False)[..., 0])
  g = np.asarray(jax.grad(lambda J: lsc.radius(J, kind).sum())(jnp.asarray(A, jnp.float32)))
  eps, fd = 1e-5, np.zeros_like(A)
  for idx in np.ndindex(A.shape):
    d = np.zeros_like(A)
    d[idx] = eps
    fd[idx] = (ref(A + d).sum() - ref(A - d).sum()) / (2 * eps)
  np.testing.assert_allclose(g, fd, atol=2e-4)


def test_radius_of_map_power_iteration():
  # A with a real dominant eigenvalue 1.5 (others ≤ 0.9 in modulus) and a tanh map.
  n = 10
  V = np.eye(n) + 0.3 * RNG.normal(size=(n, n)) / np.sqrt(n)
  S = V @ np.diag(np.r_[1.5, RNG.uniform(-0.9, 0.9, n - 1)]) @ np.linalg.inv(V)
  A = jnp.asarray(S, jnp.float32)
  f = lambda v: A @ v
  x = jnp.ones((n,))
  r = float(lsc.radius_of_map(f, x, "spectral_radius", num_iters=200))
  np.testing.assert_allclose(r, np.abs(np.linalg.eigvals(S)).max(), rtol=1e-2)
  s = float(lsc.radius_of_map(f, x, "spectral_norm", num_iters=200))
  np.testing.assert_allclose(s, np.linalg.svd(S, compute_uv=False)[0], rtol=1e-3)
  # Non-linear map: Jacobian diag(1 − tanh²(A x)) A.
  g = lambda v: jnp.tanh(0.5 * A @ v)
  J = np.asarray(jax.jacfwd(g)(x))
  s = float(lsc.radius_of_map(g, x, "spectral_norm", num_iters=300))
  np.testing.assert_allclose(s, np.linalg.svd(J, compute_uv=False)[0], rtol=1e-3)


def test_bad_kind_preset_target_raise():
  with pytest.raises(ValueError, match="spectral_radius"):
    lsc.radius(jnp.eye(2), "frobenius")
  with pytest.raises(ValueError, match="rho=1"):
    lsc.preset("rho=2", 3, 10)
  with pytest.raises(ValueError, match="rho_time=-0.5"):
    lsc.lsc_pretrain(None, None, jnp.zeros((1, 2, 1)), rho_time=-0.5)
  with pytest.raises(ValueError, match="rho=0"):
    lsc.lsc_pretrain_ffn(None, None, jnp.zeros((1, 2)), rho=0.0)


def test_presets():
  assert lsc.preset("rho=1", 3, 10) == {"rho_time": 1.0, "rho_depth": 1.0, "rho_readout": 1.0}
  assert lsc.preset("0.5", 3, 10)["rho_depth"] == 0.5
  u = lsc.preset("unbalanced", 3, 9)
  assert u["rho_depth"] == pytest.approx(3 / 12) and u["rho_time"] == pytest.approx(9 / 12)


# ------------------------------------------------------------- transitions ---
def test_rnn_time_and_depth_radii_match_analytic_jacobian():
  # tanh RNN: s_t = tanh(W x_t + U s_{t-1} + b) ⇒ ∂s_t/∂s_{t-1} = diag(1 − s_t²) Uᵀ,
  # ∂s^1_t/∂s^0_t = diag(1 − (s^1_t)²) W₁ᵀ.
  m = DeepRNN(cell="tanh_rnn", depth=2, hidden=5, num_classes=3, step_features=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  key = jax.random.PRNGKey(7)
  r = jax.jit(lambda p, x: lsc.rnn_radii(m, p, x, key, time_samples=4))(p, x)
  k_t = jax.random.split(key, 3)[0]
  t_idx = np.asarray(jax.random.choice(k_t, 4, (4,), replace=False))
  _, s0, _, sh = layer_trajectories(m, p, x)
  U0 = np.asarray(p["input"]["cell"]["wh"]["kernel"])
  U1 = np.asarray(p["hidden"]["layer"]["cell"]["wh"]["kernel"][0])
  W1 = np.asarray(p["hidden"]["layer"]["cell"]["wx"]["kernel"][0])
  s0, s1 = np.asarray(s0), np.asarray(sh[0])
  for b in range(2):
    for k, t in enumerate(t_idx):
      for l, (s, U) in enumerate(((s0, U0), (s1, U1))):
        J = np.diag(1 - s[b, t] ** 2) @ U.T
        np.testing.assert_allclose(r["time"][l, b, k], np.abs(np.linalg.eigvals(J)).max(), rtol=1e-4)
      Jd = np.diag(1 - s1[b, t] ** 2) @ W1.T
      np.testing.assert_allclose(r["depth"][0, b, k], np.abs(np.linalg.eigvals(Jd)).max(), rtol=1e-4)
  assert r["readout"].shape == (2,)


def test_ffn_radii_match_analytic():
  m = DeepMLP(width=6, depth=3, num_classes=3, activation="tanh")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  r = jax.jit(lambda p, x: lsc.ffn_radii(m, p, x, jax.random.PRNGKey(0)))(p, x)
  _, inter = m.apply({"params": p}, x, mutable=["intermediates"])
  from stable_training.models.mlp import hidden_stack
  h = np.asarray(hidden_stack(inter["intermediates"]))
  K = np.asarray(p["hidden"]["layer"]["dense"]["kernel"])
  for l in range(2):
    for b in range(2):
      J = np.diag(1 - h[l + 1, b] ** 2) @ K[l].T
      np.testing.assert_allclose(r["depth"][l, b], np.abs(np.linalg.eigvals(J)).max(), rtol=1e-4)


# --------------------------------------------------------------- pre-train ---
@pytest.fixture(scope="module")
def lstm_pretrained():
  m = DeepRNN(cell="lstm", depth=3, hidden=4, num_classes=3, step_features=2)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 12))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  targets = lsc.preset("rho=0.5", 3, 6)
  p2, hist = lsc.lsc_pretrain(m, p, x, **targets, max_steps=300, key=jax.random.PRNGKey(2),
                              time_samples=3, patience=30, tol=0.05)
  return m, x, p, p2, hist, targets


def test_lstm_pretrain_reaches_targets(lstm_pretrained):
  m, x, p, p2, hist, targets = lstm_pretrained
  before = lsc.mean_radii(m, p, x, jax.random.PRNGKey(9), time_samples=6)
  after = lsc.mean_radii(m, p2, x, jax.random.PRNGKey(9), time_samples=6)
  assert hist["loss"].shape == (hist["steps"],) and np.all(np.isfinite(hist["loss"]))
  assert hist["time"].shape == (hist["steps"], 3) and hist["depth"].shape == (hist["steps"], 2)
  # Before: depth radii far from 0.5 (they start small); after: within 0.1 of every target.
  assert np.max(np.abs(np.asarray(before["depth"]) - 0.5)) > 0.1
  np.testing.assert_allclose(after["time"], targets["rho_time"], atol=0.1)
  np.testing.assert_allclose(after["depth"], targets["rho_depth"], atol=0.1)
  np.testing.assert_allclose(after["readout"], targets["rho_readout"], atol=0.1)


def test_pretrain_at_target_changes_little(lstm_pretrained):
  m, x, _, p2, hist, targets = lstm_pretrained
  p3, h3 = lsc.lsc_pretrain(m, p2, x, **targets, max_steps=300, key=jax.random.PRNGKey(2),
                            time_samples=3, patience=30, tol=0.05)
  num = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(p3), jax.tree.leaves(p2)))
  den = sum(float(jnp.sum(a ** 2)) for a in jax.tree.leaves(p2))
  assert np.sqrt(num / den) < 0.05
  assert h3["best_loss"] <= hist["best_loss"] + 1e-6 or h3["best_loss"] < 0.01


def test_pretrain_ffn_and_config_hook():
  import ml_collections
  m = DeepMLP(width=8, depth=4, num_classes=3, activation="relu", kernel_init="glorot_normalized")
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  cfg = ml_collections.ConfigDict({"enabled": True, "rho": 1.0, "steps": 300, "batch": 6})
  p2, radii = lsc.pretrain_from_config(m, p, x, cfg, jax.random.PRNGKey(3))
  assert set(radii) >= {"before", "after"}
  assert np.max(np.abs(np.asarray(radii["before"]["depth"]) - 1.0)) > 0.1
  np.testing.assert_allclose(radii["after"]["depth"], 1.0, atol=0.1)
  np.testing.assert_allclose(radii["after"]["readout"], 1.0, atol=0.15)


def test_pretrain_ffn_with_random_example_subsets_reaches_target():
  # batch_samples=2 of 6 examples per step: a stochastic estimate of the same
  # loss, so the full-batch radii after pre-training must still be at ρ = 1.
  m = DeepMLP(width=8, depth=4, num_classes=3, activation="tanh", kernel_init="glorot_standard")
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  p2, hist = lsc.lsc_pretrain_ffn(m, p, x, rho=1.0, max_steps=400, batch_samples=2)
  assert hist["depth"].shape[1] == 3
  after = lsc.mean_radii(m, p2, x)
  np.testing.assert_allclose(after["depth"], 1.0, atol=0.12)
  with pytest.raises(ValueError, match="batch_samples=-1"):
    lsc.lsc_pretrain_ffn(m, p, x, batch_samples=-1)


def test_ffn_layer_spectra_match_numpy_on_explicit_jacobians():
  m = DeepMLP(width=6, depth=3, num_classes=2, activation="tanh", kernel_init="glorot_normalized")
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  s = lsc.ffn_layer_spectra(m, p, x)
  # Layer l+1 maps h_l to tanh(h_l W + b): J = diag(1 − h_{l+1}²) Wᵀ.
  f64 = lambda a: np.asarray(a, np.float64)
  W, b = f64(p["hidden"]["layer"]["dense"]["kernel"]), f64(p["hidden"]["layer"]["dense"]["bias"])
  h = np.tanh(f64(x) @ f64(p["input"]["dense"]["kernel"]) + f64(p["input"]["dense"]["bias"]))
  ref = {k: [] for k in s}
  for l in range(W.shape[0]):
    z = h @ W[l] + b[l]
    hn = np.tanh(z)
    J = (1 - hn ** 2)[:, :, None] * W[l].T[None]
    ev = -np.sort(-np.abs(np.linalg.eigvals(J)), axis=-1)
    sv = np.linalg.svd(J, compute_uv=False)
    ref["max_abs_eig"].append(ev[:, 0].mean())
    ref["second_abs_eig"].append(ev[:, 1].mean())
    ref["median_abs_eig"].append(np.median(ev, -1).mean())
    ref["rms_sv"].append(np.sqrt((sv ** 2).mean(-1)).mean())
    h = hn
  for k in s:
    np.testing.assert_allclose(s[k], ref[k], rtol=2e-4, atol=1e-6)


# ------------------------------------------- the protocol: any declaring model ---
from stable_training.models.recurrent import RecurrentClassifier  # noqa: E402
from stable_training.models.roaf import ROAFMLP, fast_filter, fast_filter_perm_sign, layer_filter  # noqa: E402

f64 = lambda a: np.asarray(a, np.float64)
sig = lambda a: 1.0 / (1.0 + np.exp(-a))
dW = lambda v, W: v[:, :, None] * W.T[None]          # diag(v) Wᵀ per example (flax kernel W [in, out])


def _roaf_mlp_jacobians(m, p, x):
  """Layer Jacobians J_l = α O_l + β diag(1 − tanh² z_l) W_lᵀ of a tanh ROAFMLP, numpy float64."""
  alpha, beta = m.alpha, 1.0 - m.alpha
  h = np.tanh(f64(x).reshape(x.shape[0], -1) @ f64(p["input"]["dense"]["kernel"]) + f64(p["input"]["dense"]["bias"]))
  W, b = f64(p["hidden"]["layer"]["dense"]["kernel"]), f64(p["hidden"]["layer"]["dense"]["bias"])
  Js = []
  for l in range(1, m.depth):
    if m.filter_mode == "haar":
      O = f64(layer_filter(m.filter_seed, l, m.width))
    else:
      O = f64(fast_filter(m.filter_seed, *fast_filter_perm_sign(m.filter_seed, l, m.width)))
    z = h @ W[l - 1] + b[l - 1]
    Js.append(alpha * O[None] + beta * dW(1 - np.tanh(z) ** 2, W[l - 1]))
    h = alpha * h @ O.T + beta * np.tanh(z)
  return np.stack(Js), h


@pytest.mark.parametrize("filter_mode", ["haar", "fast"])
def test_roaf_mlp_radii_equal_eigvals_of_explicit_layer_jacobians(filter_mode):
  m = ROAFMLP(width=6, depth=4, num_classes=3, alpha=0.6, kernel_init="glorot_normalized",
              filter_mode=filter_mode, filter_seed=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  key = jax.random.PRNGKey(4)
  r = jax.jit(lambda p, x: lsc.transition_radii(m, p, x, key))(p, x)
  J, h_last = _roaf_mlp_jacobians(m, p, x)
  assert r["depth"].shape == (3, 3)
  np.testing.assert_allclose(r["depth"], np.abs(np.linalg.eigvals(J)).max(-1), rtol=1e-4)
  # Read-out: W_outᵀ (3 × 6) square-subsampled with one key per example.
  Wo = jnp.asarray(p["output"]["kernel"]).T
  keys = jax.random.split(jax.random.split(key)[1], 3)
  ref = [np.abs(np.linalg.eigvals(f64(lsc.square_subsample(Wo, k)))).max() for k in keys]
  np.testing.assert_allclose(r["readout"], ref, rtol=1e-4)
  # The spectra helper sees the same matrices.
  s = lsc.layer_spectra(m, p, x)
  np.testing.assert_allclose(s["max_abs_eig"], np.abs(np.linalg.eigvals(J)).max(-1).mean(-1), rtol=1e-4)
  np.testing.assert_allclose(s["rms_sv"], np.sqrt((np.linalg.svd(J, compute_uv=False) ** 2).mean(-1)).mean(-1),
                             rtol=1e-4)


def _rnn_jacobians(m, p, x):
  """∂s_t/∂s_{t−1} [B, T, S, S] of a RecurrentClassifier (numpy float64); s = h, or [h, c] for lstm.

  Cell params: ``wx`` (W [D, G·H], b) and ``wh`` (U [H, G·H]), gates in the
  order i, f, g, o (lstm, forget bias +1) / r, z, n (gru).
  """
  x = f64(x)
  B, T, _ = x.shape
  H = m.hidden
  c = p["cell"]
  G = {"lstm": "ifgo", "gru": "rzn"}.get(m.cell, "a")
  W = dict(zip(G, np.split(f64(c["wx"]["kernel"]), len(G), axis=1)))
  b = dict(zip(G, np.split(f64(c["wx"]["bias"]), len(G))))
  U = dict(zip(G, np.split(f64(c["wh"]["kernel"]), len(G), axis=1)))
  h, cc = np.zeros((B, H)), np.zeros((B, H))
  Js = []
  for t in range(T):
    xt = x[:, t]
    if m.cell in ("elman", "roaf"):
      z = xt @ W["a"] + b["a"] + h @ U["a"]
      if m.cell == "elman":
        h = np.tanh(z)
        J = dW(1 - h ** 2, U["a"])
      else:
        a, be = m.alpha, 1.0 - m.alpha
        O = f64(layer_filter(m.filter_seed, 0, H))
        J = a * O[None] + be * dW(1 - np.tanh(z) ** 2, U["a"])
        h = a * h @ O.T + be * np.tanh(z)
    elif m.cell == "gru":
      r = sig(xt @ W["r"] + b["r"] + h @ U["r"])
      zg = sig(xt @ W["z"] + b["z"] + h @ U["z"])
      u = h @ U["n"]
      n = np.tanh(xt @ W["n"] + b["n"] + r * u)
      dn = (1 - n ** 2)[:, :, None] * (u[:, :, None] * dW(r * (1 - r), U["r"]) + dW(r, U["n"]))
      J = (1 - zg)[:, :, None] * dn + (h - n)[:, :, None] * dW(zg * (1 - zg), U["z"]) + \
          np.eye(H)[None] * zg[:, :, None]
      h = (1 - zg) * n + zg * h
    else:  # lstm, flat state [h, c]
      pre = {g: xt @ W[g] + b[g] + h @ U[g] for g in "ifgo"}
      i, f, o, g = sig(pre["i"]), sig(pre["f"] + 1.0), sig(pre["o"]), np.tanh(pre["g"])
      c_new = f * cc + i * g
      dc_dh = dW(cc * f * (1 - f), U["f"]) + dW(g * i * (1 - i), U["i"]) + dW(i * (1 - g ** 2), U["g"])
      dc_dc = np.eye(H)[None] * f[:, :, None]
      k = o * (1 - np.tanh(c_new) ** 2)
      dh_dh = dW(np.tanh(c_new) * o * (1 - o), U["o"]) + k[:, :, None] * dc_dh
      dh_dc = k[:, :, None] * dc_dc
      J = np.concatenate([np.concatenate([dh_dh, dh_dc], 2), np.concatenate([dc_dh, dc_dc], 2)], 1)
      h, cc = o * np.tanh(c_new), c_new
    Js.append(J)
  return np.stack(Js, 1), h


@pytest.mark.parametrize("cell", ["elman", "roaf", "gru", "lstm"])
def test_recurrent_classifier_time_radii_equal_eigvals_of_explicit_jacobians(cell):
  m = RecurrentClassifier(cell=cell, hidden=5, num_classes=3, alpha=0.6, filter_seed=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  key = jax.random.PRNGKey(7)
  r = jax.jit(lambda p, x: lsc.transition_radii(m, p, x, key, time_samples=4))(p, x)
  t_idx = np.asarray(jax.random.choice(jax.random.split(key, 3)[0], 6, (4,), replace=False))
  J, h_last = _rnn_jacobians(m, p, x)
  assert set(r) == {"time", "readout"} and r["time"].shape == (1, 2, 4) and r["readout"].shape == (2,)
  np.testing.assert_allclose(r["time"][0], np.abs(np.linalg.eigvals(J[:, t_idx])).max(-1), rtol=1e-4)
  # The forward pass the points come from is the model's: its logits from our last h.
  logits = np.asarray(m.apply({"params": p}, x))
  np.testing.assert_allclose(logits, h_last @ f64(p["output"]["kernel"]) + f64(p["output"]["bias"]),
                             rtol=1e-4, atol=1e-5)


from stable_training.models.recurrent import CELLS, state_size  # noqa: E402


def _max_eig(J):
  return np.abs(np.linalg.eigvals(f64(J))).max(-1)


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_time_radii_equal_eigvals_of_autodiff_jacobians(cell):
  # Both models, every cell of the one family: the declared time (and depth)
  # radii are max |eig| of ∂step/∂s (jax.jacfwd of the cell's one-step map),
  # at states from a per-step loop of the cell (input projected inside each
  # step, independent of the models' hoisted scan).
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
  key, K = jax.random.PRNGKey(7), 3
  t_idx = np.asarray(jax.random.choice(jax.random.split(key, 3)[0], 6, (K,), replace=False))

  # The references run jitted, parameters as arguments (one compile per cell module and shape, not
  # one per closure or an eager trace per step); the math is unchanged.
  def make_loop(c):  # states [B, T, S] and outputs [B, T, Y] of a per-step Python loop
    @jax.jit
    def loop(p, xs):
      s, ss, ys = jnp.zeros((xs.shape[0], state_size(cell, 4))), [], []
      for t in range(xs.shape[1]):
        s, y = c.apply({"params": p}, s, xs[:, t])
        ss.append(s)
        ys.append(y)
      return jnp.stack(ss, 1), jnp.stack(ys, 1)
    return loop

  def make_time_ref(c):  # (p, xs, ss) -> [B, K]: ∂step/∂s at every sampled (b, t), one batched call
    step = lambda u, xt, p: c.apply({"params": p}, u, xt, method="step")
    jac = jax.jit(jax.vmap(jax.jacfwd(step), in_axes=(0, 0, None)))

    def time_ref(p, xs, ss):
      prev = np.concatenate([np.zeros_like(ss[:, :1]), ss[:, :-1]], 1)[:, t_idx]   # [B, K, S]
      J = np.asarray(jac(prev.reshape(-1, prev.shape[-1]), np.asarray(xs)[:, t_idx].reshape(-1, xs.shape[-1]), p))
      return _max_eig(J).reshape(2, K)
    return time_ref

  rc = RecurrentClassifier(cell=cell, hidden=4, num_classes=3, alpha=0.6)
  p = jax.jit(rc.init)(jax.random.PRNGKey(1), x)["params"]
  r = jax.jit(lambda p, x: lsc.transition_radii(rc, p, x, key, time_samples=K))(p, x)
  c = rc.cell_module(parent=None)
  ss, _ = make_loop(c)(p["cell"], x)
  assert np.all(np.isfinite(r["time"])) and np.all(np.isfinite(r["readout"]))
  np.testing.assert_allclose(r["time"][0], make_time_ref(c)(p["cell"], x, np.asarray(ss)), rtol=1e-4, atol=1e-6)

  m = DeepRNN(cell=cell, depth=2, hidden=4, num_classes=3)
  p = jax.jit(m.init)(jax.random.PRNGKey(1), x)["params"]
  r = jax.jit(lambda p, x: lsc.transition_radii(m, p, x, key, time_samples=K))(p, x)
  c = cell_module(m)
  p0, ph = layer_params(p)
  p1 = jax.tree.map(lambda a: a[0], ph)
  loop, time_ref = make_loop(c), make_time_ref(c)
  s0, y0 = loop(p0, x)
  s1, _ = loop(p1, y0)
  s0, s1, x1 = np.asarray(s0), np.asarray(s1), np.asarray(y0)
  np.testing.assert_allclose(r["time"][0], time_ref(p0, x, s0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(r["time"][1], time_ref(p1, x1, s1), rtol=1e-4, atol=1e-6)
  # depth: s^0_t ↦ step_1(s^1_{t−1}, output_0(s^0_t, x_t)).
  prev1 = np.concatenate([np.zeros_like(s1[:, :1]), s1[:, :-1]], 1)
  up = lambda u, sp, xt: c.apply({"params": p1}, sp, c.apply({"params": p0}, u, xt, method="output"),
                                 method="step")
  jac_up = jax.jit(jax.vmap(jax.jacfwd(up)))
  J = np.asarray(jac_up(*(np.asarray(a)[:, t_idx].reshape(2 * K, -1) for a in (s0, prev1, x))))
  np.testing.assert_allclose(r["depth"][0], _max_eig(J).reshape(2, K), rtol=1e-4, atol=1e-6)


def test_roaf_mlp_pretrain_reaches_rho_1():
  import ml_collections
  m = ROAFMLP(width=6, depth=4, num_classes=3, alpha=0.5, kernel_init="glorot_normalized", filter_mode="fast")
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  cfg = ml_collections.ConfigDict({"rho": 1.0, "steps": 300, "batch": 4})
  p2, radii = lsc.pretrain_from_config(m, p, x, cfg, jax.random.PRNGKey(3))
  assert np.max(np.abs(np.asarray(radii["before"]["depth"]) - 1.0)) > 0.1
  np.testing.assert_allclose(radii["after"]["depth"], 1.0, atol=0.1)
  np.testing.assert_allclose(radii["after"]["readout"], 1.0, atol=0.15)
  # The radii the hook reports are those of the returned parameters.
  J, _ = _roaf_mlp_jacobians(m, p2, x)
  np.testing.assert_allclose(np.abs(np.linalg.eigvals(J)).max(-1).mean(-1), radii["after"]["depth"], rtol=1e-4)


@pytest.mark.parametrize("cell", ["elman", "roaf"])
def test_recurrent_classifier_pretrain_reaches_rho_1(cell):
  m = RecurrentClassifier(cell=cell, hidden=6, num_classes=3, alpha=0.5)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 2))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  # Start off target: ROAF's critical init already puts ρ near 1, so shrink W_h.
  p = {**p, "cell": {**p["cell"], "wh": {"kernel": 0.2 * p["cell"]["wh"]["kernel"]}}}
  key = jax.random.PRNGKey(9)
  before = lsc.mean_radii(m, p, x, key, time_samples=8)
  p2, hist = lsc.pretrain(m, p, x, {"time": 1.0, "readout": 1.0}, max_steps=300, time_samples=3,
                          key=jax.random.PRNGKey(2), tol=0.05, patience=20)
  after = lsc.mean_radii(m, p2, x, key, time_samples=8)
  assert hist["time"].shape == (hist["steps"], 1) and "depth" not in hist
  assert abs(float(before["time"][0]) - 1.0) > 0.1
  np.testing.assert_allclose(after["time"], 1.0, atol=0.1)
  np.testing.assert_allclose(after["readout"], 1.0, atol=0.15)
  # Against the explicit Jacobians at every step of the new parameters.
  J, _ = _rnn_jacobians(m, p2, x)
  np.testing.assert_allclose(np.abs(np.linalg.eigvals(J)).max(-1).mean(), 1.0, atol=0.1)


def test_supports_and_unsupported_model_message():
  from stable_training.models.mlp import ConvNet
  assert lsc.supports(DeepMLP(width=4, depth=2, num_classes=2))
  assert lsc.supports(ROAFMLP(width=4, depth=2, num_classes=2))
  assert lsc.supports(RecurrentClassifier(cell="gru", hidden=4, num_classes=2))
  assert lsc.supports(DeepRNN(cell="lstm", depth=2, hidden=4, num_classes=2))
  conv = ConvNet(num_classes=2)
  assert not lsc.supports(conv)
  with pytest.raises(ValueError, match="ConvNet does not"):
    lsc.pretrain_from_config(conv, {}, jnp.zeros((1, 784)), {"rho": 1.0}, jax.random.PRNGKey(0))


def test_preset_targets_follow_the_declared_transitions():
  x = jnp.zeros((2, 9, 1))
  rc = RecurrentClassifier(cell="elman", hidden=3, num_classes=2)
  p = rc.init(jax.random.PRNGKey(0), x)["params"]
  assert lsc.declared_kinds(rc, p, x) == {"time": 9, "readout": 1}
  assert lsc.preset_targets(rc, p, x, "unbalanced") == {"time": 9 / 10, "readout": 1.0}
  rnn = DeepRNN(cell="tanh_rnn", depth=3, hidden=3, num_classes=2)
  pr = rnn.init(jax.random.PRNGKey(0), x)["params"]
  assert lsc.preset_targets(rnn, pr, x, "unbalanced") == {"time": 9 / 12, "depth": 3 / 12, "readout": 1.0}
  mlp = ROAFMLP(width=3, depth=3, num_classes=2)
  pm = mlp.init(jax.random.PRNGKey(0), x)["params"]
  assert lsc.preset_targets(mlp, pm, x, "unbalanced") == {"depth": 1.0, "readout": 1.0}
  assert lsc.preset_targets(mlp, pm, x, "0.5") == {"depth": 0.5, "readout": 1.0}


def test_single_layer_deep_rnn_and_host_loop():
  # depth 1: no depth transitions (an empty [0] mean), and the host-driven loop
  # (compiled_loop=False) takes the same steps as the compiled one.
  m = DeepRNN(cell="tanh_rnn", depth=1, hidden=4, num_classes=2, step_features=2)
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 8))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  r = lsc.mean_radii(m, p, x)
  assert r["depth"].shape == (0,) and r["time"].shape == (1,)
  kw = dict(max_steps=4, key=jax.random.PRNGKey(2), rho_time=1.0, rho_depth=1.0, patience=100)
  pa, ha = lsc.lsc_pretrain(m, p, x, **kw)
  pb, hb = lsc.lsc_pretrain(m, p, x, compiled_loop=False, **kw)
  np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_steps_lr_tol_and_patience_do_not_recompile():
  """The loop's budget and settings are run-time arguments: one compiled loop serves a 3- and a 6-step run
  and another lr/tol/patience; the 3-step run is the 6-step run's first 3 steps, and the lr is the one used."""
  import importlib
  pt = importlib.import_module("stable_training.lsc.pretrain")   # the module (lsc.pretrain is the function)
  m = DeepMLP(width=4, depth=3, num_classes=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  kw = dict(key=jax.random.PRNGKey(2), patience=100, tol=1e-6)
  _, h3 = lsc.pretrain(m, p, x, 1.0, max_steps=3, **kw)
  compiled = pt._run_compiled._cache_size()
  _, h6 = lsc.pretrain(m, p, x, 1.0, max_steps=6, **kw)
  _, h_lr = lsc.pretrain(m, p, x, 1.0, max_steps=6, **{**kw, "patience": 50, "tol": 1e-5}, lr=0.5)
  assert pt._run_compiled._cache_size() == compiled
  assert h3["steps"] == 3 and h6["steps"] == 6 and len(h6["loss"]) == 6
  np.testing.assert_array_equal(h3["loss"], h6["loss"][:3])
  assert h_lr["loss"][0] == h6["loss"][0] and h_lr["loss"][1] != h6["loss"][1]   # same start, another step
  assert pt._capacity(200) == 256 and pt._capacity(256) == 256 and pt._capacity(257) == 512


def test_memo_is_explicit():
  m = DeepMLP(width=4, depth=3, num_classes=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  cfg = {"rho": 1.0, "steps": 3, "batch": 3}
  memo = {}
  a = lsc.pretrain_from_config(m, p, x, cfg, jax.random.PRNGKey(2), memo=memo)
  assert len(memo) == 1
  assert lsc.pretrain_from_config(m, p, x, cfg, jax.random.PRNGKey(2), memo=memo) is a
  b = lsc.pretrain_from_config(m, p, x, cfg, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a[1]["after"]["depth"], b[1]["after"]["depth"])


@pytest.mark.parametrize("cfg,want", [
    ({"rho": 0.5}, {"time": 0.5, "depth": 0.5, "readout": 1.0}),
    ({"rho": 1.0}, {"time": 1.0, "depth": 1.0, "readout": 1.0}),
    # the paper's unbalanced split for L = 3 layers, T = 12 steps: ρ_t = T/(L+T), ρ_d = L/(L+T)
    ({"targets": "unbalanced"}, {"time": 12 / 15, "depth": 3 / 15, "readout": 1.0}),
])
def test_config_targets_are_explicit_numbers(cfg, want, monkeypatch):
  """``lsc.rho`` is a number and ``lsc.targets`` names the split (no string sentinels)."""
  import importlib
  pre = importlib.import_module("stable_training.lsc.pretrain")  # the module (the package re-exports a function of that name)
  seen = {}

  def fake_pretrain(model, params, x, targets, **kw):
    seen.update(targets)
    return params, {"steps": 0, "converged": True}
  monkeypatch.setattr(pre, "pretrain", fake_pretrain)
  m = DeepRNN(cell="tanh_rnn", depth=3, hidden=4, num_classes=3, step_features=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 12))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  lsc.pretrain_from_config(m, p, x, {"steps": 1, "batch": 2, **cfg}, jax.random.PRNGKey(2))
  assert set(seen) == set(want)
  for k, v in want.items():
    assert seen[k] == pytest.approx(v), k
  for bad, msg in (({"rho": "1"}, "LSC rho='1': must be a number > 0"), ({"targets": "rho=1"}, "valid choices")):
    with pytest.raises(ValueError, match=re.escape(msg) if "rho=" in msg else msg):
      lsc.pretrain_from_config(m, p, x, {"steps": 1, "batch": 2, **bad}, jax.random.PRNGKey(2))


def test_batch_samples_none_means_every_example_and_zero_is_refused():
  """``batch_samples=None`` (not the former 0 sentinel) uses every example: the same run as no sampling."""
  m = DeepMLP(width=6, depth=3, num_classes=3, activation="tanh", kernel_init="glorot_normalized")
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  kw = dict(rho=1.0, max_steps=5, key=jax.random.PRNGKey(2))
  a, _ = lsc.lsc_pretrain_ffn(m, p, x, batch_samples=None, **kw)
  b, _ = lsc.lsc_pretrain_ffn(m, p, x, batch_samples=4, **kw)   # >= the 4 inputs: all of them
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=1e-6)
  with pytest.raises(ValueError, match="batch_samples=0: must be an integer >= 1, or None"):
    lsc.lsc_pretrain_ffn(m, p, x, batch_samples=0, **kw)


def test_config_hook_reads_the_declared_defaults(monkeypatch):
  """``pretrain_from_config`` takes an absent key's default from `config.LSC_KEYS` (one declared default:
  batch_samples 4, the value every study config holds), and keeps an explicit None (= every example)."""
  import importlib
  from stable_training.config import LSC_KEYS
  pre = importlib.import_module("stable_training.lsc.pretrain")
  seen = {}

  def fake_pretrain(model, params, x, targets, **kw):
    seen.clear()
    seen.update(kw)
    return params, {"steps": 0, "converged": True}
  monkeypatch.setattr(pre, "pretrain", fake_pretrain)
  m = DeepMLP(width=4, depth=3, num_classes=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  lsc.pretrain_from_config(m, p, x, {"rho": 1.0}, jax.random.PRNGKey(2))
  assert seen["batch_samples"] == LSC_KEYS["batch_samples"].default == 4
  assert (seen["max_steps"], seen["lr"], seen["tol"], seen["patience"], seen["method"], seen["time_samples"]) == (
      200, 7e-3, 0.08, 20, "exact", 2)
  assert seen["kind"] == "spectral_radius"
  lsc.pretrain_from_config(m, p, x, {"rho": 1.0, "batch_samples": None}, jax.random.PRNGKey(2))
  assert seen["batch_samples"] is None


@pytest.mark.parametrize("fn", ["pretrain", "lsc_pretrain", "lsc_pretrain_ffn"])
def test_public_pretrain_defaults_are_the_config_defaults(fn):
  """`st.lsc.pretrain` (and the two preset wrappers) called without options trains as ``config.lsc``
  does: every default is the one `config.LSC_KEYS` declares (batch_samples was None here, 4 there)."""
  import inspect
  from stable_training.config import LSC_KEYS
  params = inspect.signature(getattr(lsc, fn)).parameters
  names = {"max_steps": "steps", "lr": "lr", "tol": "tol", "patience": "patience", "method": "method",
           "batch_samples": "batch_samples", "time_samples": "time_samples"}
  for arg, key in names.items():
    if arg in params:
      assert params[arg].default == LSC_KEYS[key].default, (fn, arg)
  assert params["batch_samples"].default == 4
