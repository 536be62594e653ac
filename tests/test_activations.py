"""Activations: tGELU against its piecewise formula, gradients, registry errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from stable_training import activations as A


def tgelu_ref(x, tl, tr):
  x = np.asarray(x, np.float64)
  Phi = norm.cdf
  return np.where(x >= tr, tr * Phi(tr) + (x - tr) * (1 - Phi(x - tr)),
         np.where(x >= 0, x * Phi(x),
         np.where(x >= tl, x * Phi(-x), tl * Phi(-tl) + (x - tl) * Phi(x - tl))))


@pytest.mark.parametrize("tl,tr", [(-1.0, 3.0), (-1.0, 1.0), (-0.5, 2.0)])
def test_tgelu_matches_piecewise_formula(tl, tr):
  x = np.linspace(-20, 20, 4001)
  np.testing.assert_allclose(A.tgelu(jnp.asarray(x, jnp.float32), tl, tr), tgelu_ref(x, tl, tr),
                             rtol=1e-5, atol=1e-5)


def test_tgelu_continuous_at_thresholds_and_bounded():
  tl, tr = -1.0, 3.0
  for t in (tl, 0.0, tr):
    lo, hi = A.tgelu(jnp.float32(t - 1e-4), tl, tr), A.tgelu(jnp.float32(t + 1e-4), tl, tr)
    assert abs(float(lo) - float(hi)) < 1e-3
  lo_lim, hi_lim = A.tgelu_range(tl, tr)
  assert lo_lim == pytest.approx(tl * norm.cdf(-tl))
  assert hi_lim == pytest.approx(tr * norm.cdf(tr))
  big = A.tgelu(jnp.array([-1e6, 1e6]), tl, tr)
  np.testing.assert_allclose(big, [lo_lim, hi_lim], rtol=1e-5)


def test_tgelu_gradient_finite_and_jumps_at_thresholds():
  tl, tr = -1.0, 3.0
  g = jax.vmap(jax.grad(lambda x: A.tgelu(x, tl, tr)))
  x = jnp.array([-1e30, -50.0, -1.0001, -0.9999, 0.0, 2.9999, 3.0001, 50.0, 1e30])
  gv = np.asarray(g(x))
  assert np.all(np.isfinite(gv))
  # Inside (0, t_r) the derivative is GELU's Φ(x) + xφ(x).
  np.testing.assert_allclose(gv[5], norm.cdf(2.9999) + 2.9999 * norm.pdf(2.9999), rtol=1e-4)
  # Right of t_r: 1 − Φ(u) − u·φ(u) at u = x − t_r → 0.5 just past t_r: a jump.
  assert gv[6] == pytest.approx(0.5, abs=1e-3)
  assert abs(gv[5] - gv[6]) > 0.4
  # Left of t_l: Φ(u) + u·φ(u) at u = x − t_l → 0.5; inside: Φ(−x) − xφ(x).
  assert gv[2] == pytest.approx(0.5, abs=1e-3)
  assert gv[3] == pytest.approx(norm.cdf(0.9999) + 0.9999 * norm.pdf(0.9999), rel=1e-3)


def test_tgelu_gradient_exactly_at_thresholds_is_the_one_sided_branch_derivative():
  # x = t belongs to the region on its right (x ≥ t), so the gradient there is that
  # branch's derivative — not half of it (a clip/max tie would halve it).
  tl, tr = -1.0, 3.0
  gv = np.asarray(jax.vmap(jax.grad(lambda x: A.tgelu(x, tl, tr)))(jnp.array([tl, 0.0, tr])))
  np.testing.assert_allclose(gv, [norm.cdf(-tl) - tl * norm.pdf(tl), 0.5, 0.5], rtol=1e-5)


@pytest.mark.parametrize("tl,tr", [(0.0, 3.0), (-1.0, 0.0), (1.0, 3.0), (-1.0, -0.5)])
def test_tgelu_rejects_bad_range(tl, tr):
  with pytest.raises(ValueError, match="t_left < 0 < t_right"):
    A.tgelu(jnp.ones(3), tl, tr)


def test_named_activations_match_formulas():
  x = jnp.linspace(-4, 4, 101)
  xn = np.asarray(x, np.float64)
  refs = {"softsign": xn / (1 + np.abs(xn)), "sigmoid": 1 / (1 + np.exp(-xn)), "tanh": np.tanh(xn),
          "relu": np.maximum(xn, 0), "gelu": xn * norm.cdf(xn), "sin": np.sin(xn),
          "cos": np.cos(xn), "identity": xn, "tgelu": tgelu_ref(xn, -1.0, 3.0)}
  assert set(refs) == set(A.names())
  for name, ref in refs.items():
    np.testing.assert_allclose(A.get_activation(name)(x), ref, rtol=1e-5, atol=1e-6, err_msg=name)


def test_get_activation_binds_kwargs_and_errors():
  f = A.get_activation("tgelu", t_left=-1.0, t_right=1.0)
  np.testing.assert_allclose(f(jnp.float32(5.0)), tgelu_ref(5.0, -1.0, 1.0), rtol=1e-5)
  with pytest.raises(ValueError, match="unknown activation 'swish'.*softsign"):
    A.get_activation("swish")
  with pytest.raises(ValueError, match="takes no arguments"):
    A.get_activation("tanh", t_left=-1.0)
  with pytest.raises(ValueError, match="t_left < 0 < t_right"):
    A.get_activation("tgelu", t_left=1.0)
