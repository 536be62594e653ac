"""Jacobian singular values: exact path vs numpy SVD, power iteration vs exact."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training.diagnostics import jacobian_singular_values, layer_jacobian_singular_values
from stable_training.diagnostics import jacobian as jac_lib


def _well_conditioned(m, n, lo, hi, seed):
  """A random m×n matrix with singular values linspace(hi, lo) (known spectrum)."""
  rng = np.random.default_rng(seed)
  k = min(m, n)
  u, _ = np.linalg.qr(rng.normal(size=(m, m)))
  v, _ = np.linalg.qr(rng.normal(size=(n, n)))
  s = np.linspace(hi, lo, k)
  return ((u[:, :k] * s) @ v[:, :k].T).astype(np.float32), s


@pytest.mark.parametrize("m,n", [(30, 40), (40, 30), (25, 25)])
def test_exact_matches_numpy_svd(m, n):
  a = np.random.default_rng(m * n).normal(size=(m, n)).astype(np.float32)
  x = jnp.ones((n,))
  sv = jacobian_singular_values(lambda v: jnp.asarray(a) @ v, x, method="auto")
  np.testing.assert_allclose(sv, np.linalg.svd(a, compute_uv=False), rtol=1e-4, atol=1e-5)


def test_exact_handles_shaped_inputs_and_outputs():
  a = np.random.default_rng(1).normal(size=(6, 12)).astype(np.float32)
  fn = lambda x: (jnp.asarray(a) @ x.reshape(-1)).reshape(2, 3)  # [3,4] → [2,3]
  sv = jacobian_singular_values(fn, jnp.zeros((3, 4)))
  np.testing.assert_allclose(sv, np.linalg.svd(a, compute_uv=False), rtol=1e-4)


@pytest.mark.parametrize("m,n", [(30, 40), (40, 30)])
def test_power_matches_known_spectrum(m, n):
  a, s = _well_conditioned(m, n, 1.0, 2.0, seed=m)
  sv = jax.jit(lambda x: jacobian_singular_values(lambda v: jnp.asarray(a) @ v, x, method="power",
                                                  num_iters=300))(jnp.ones((n,)))
  np.testing.assert_allclose(sv, [s.max(), s.min()], rtol=1e-3)


def _tanh_mlp(width, seed):
  """f(x) = tanh(W2 tanh(W1 x + b1) + b2) with orthogonal W (well-conditioned J)."""
  rng = np.random.default_rng(seed)
  w1, _ = np.linalg.qr(rng.normal(size=(width, width)))
  w2, _ = np.linalg.qr(rng.normal(size=(width, width)))
  b1, b2 = 0.1 * rng.normal(size=(2, width))
  w1, w2, b1, b2 = (jnp.asarray(t, jnp.float32) for t in (w1, w2, b1, b2))
  return lambda x: jnp.tanh(w2 @ jnp.tanh(w1 @ x + b1) + b2)


def test_tanh_mlp_exact_vs_numpy_and_power_vs_exact():
  width = 16
  f = _tanh_mlp(width, seed=3)
  x = 0.5 * jnp.asarray(np.random.default_rng(4).normal(size=width), jnp.float32)
  exact = jacobian_singular_values(f, x, method="exact")
  ref = np.linalg.svd(np.asarray(jax.jacrev(f)(x), np.float64), compute_uv=False)
  np.testing.assert_allclose(exact, ref, rtol=1e-4)
  power = jax.jit(lambda x: jacobian_singular_values(f, x, method="power", num_iters=2000))(x)
  # the well-conditioned case the brief asks for: both extremes within 1e-3
  assert ref.max() / ref.min() < 10
  np.testing.assert_allclose(power, [exact[0], exact[-1]], rtol=1e-3)


def test_layer_jacobians_are_per_layer_diag_times_weight():
  rng = np.random.default_rng(5)
  L, w = 3, 8
  ws = jnp.asarray(rng.normal(size=(L, w, w)) / np.sqrt(w), jnp.float32)
  hs = jnp.asarray(rng.normal(size=(L, w)), jnp.float32)
  layer_fn = lambda W, h: jnp.tanh(W @ h)
  sv = layer_jacobian_singular_values(layer_fn, ws, hs)
  for l in range(L):
    z = np.asarray(ws[l]) @ np.asarray(hs[l])
    j = (1 - np.tanh(z) ** 2)[:, None] * np.asarray(ws[l])   # diag(φ'(z)) W
    np.testing.assert_allclose(sv[l], np.linalg.svd(j, compute_uv=False), rtol=1e-4, atol=1e-6)


def test_auto_method_choice_and_bad_input():
  assert jac_lib.resolve_method("auto", 512, 10) == "exact"
  assert jac_lib.resolve_method("auto", 1000, 1000) == "power"
  with pytest.raises(ValueError, match="lanczos"):
    jacobian_singular_values(lambda v: v, jnp.ones(3), method="lanczos")
  with pytest.raises(ValueError, match="num_iters"):
    jacobian_singular_values(lambda v: v, jnp.ones(3), method="power", num_iters=0)


def test_lanczos_quadrature_is_exact_with_full_steps():
  rng = np.random.default_rng(7)
  a = rng.normal(size=(6, 6))
  g = a @ a.T
  v = rng.normal(size=6)
  evals, w = jac_lib._lanczos(lambda u: jnp.asarray(g, jnp.float32) @ u, jnp.asarray(v, jnp.float32), 6)
  lam, q = np.linalg.eigh(g)
  u = v / np.linalg.norm(v)
  want = u @ (q * np.sqrt(lam)) @ q.T @ u            # vᵀ√G v
  np.testing.assert_allclose(np.sum(np.asarray(w) * np.sqrt(np.maximum(evals, 0))), want, rtol=1e-3)


@pytest.mark.parametrize("m,n", [(150, 150), (80, 160)])
def test_slq_mean_singular_value_vs_svd(m, n):
  rng = np.random.default_rng(m + n)
  a = (rng.normal(size=(m, n)) / np.sqrt(n)).astype(np.float32)
  est = jax.jit(lambda x: jac_lib.jacobian_mean_singular_value(
      lambda v: jnp.asarray(a) @ v, x, num_probes=48, num_steps=24))(jnp.ones((n,)))
  np.testing.assert_allclose(est, np.linalg.svd(a, compute_uv=False).mean(), rtol=0.03)
