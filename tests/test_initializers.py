"""Initializers: empirical variance of large draws against the formulas."""
import jax
import numpy as np
import pytest

from stable_training import initializers as I

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("shape", [(400, 300), (3, 3, 16, 32)])
def test_glorot_standard_uniform_bound_and_variance(shape):
  fan_in = shape[-2] * (np.prod(shape[:-2]) if len(shape) > 2 else 1)
  w = np.asarray(I.glorot_standard()(KEY, shape))
  bound = 1 / np.sqrt(fan_in)
  assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound
  assert w.var() == pytest.approx(1 / (3 * fan_in), rel=0.03)
  assert abs(w.mean()) < 3 * np.sqrt(w.var() / w.size)


@pytest.mark.parametrize("shape", [(400, 300), (3, 3, 16, 32)])
def test_glorot_normalized_variance(shape):
  rf = np.prod(shape[:-2]) if len(shape) > 2 else 1
  fan_in, fan_out = shape[-2] * rf, shape[-1] * rf
  w = np.asarray(I.glorot_normalized()(KEY, shape))
  bound = np.sqrt(6 / (fan_in + fan_out))
  assert np.abs(w).max() <= bound
  assert w.var() == pytest.approx(2 / (fan_in + fan_out), rel=0.03)


def test_he_and_lecun_variance():
  w = np.asarray(I.he_normal()(KEY, (500, 400)))
  assert w.var() == pytest.approx(2 / 500, rel=0.03)
  w = np.asarray(I.lecun_normal()(KEY, (500, 400)))
  assert w.var() == pytest.approx(1 / 500, rel=0.03)


def test_orthogonal_is_orthogonal_with_scale():
  w = np.asarray(I.orthogonal(scale=2.0)(KEY, (64, 64)), np.float64)
  np.testing.assert_allclose(w.T @ w, 4 * np.eye(64), atol=1e-4)
  w = np.asarray(I.orthogonal()(KEY, (64, 32)), np.float64)
  np.testing.assert_allclose(w.T @ w, np.eye(32), atol=1e-5)


def test_get_initializer_and_errors():
  a = I.get_initializer("glorot_normalized")(KEY, (10, 10))
  b = I.glorot_normalized()(KEY, (10, 10))
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="unknown initializer 'xavier'.*glorot_standard"):
    I.get_initializer("xavier")
  with pytest.raises(ValueError, match="rank >= 2"):
    I.glorot_standard()(KEY, (10,))
