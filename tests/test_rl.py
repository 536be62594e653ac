"""CartPole environments: dynamics against a hand-computed Euler step (float64
NumPy, gymnasium's formulas) and against gymnax's CartPole-v1 transitions."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training.rl import envs


def _euler_reference(s, force):
  """gymnasium CartPole-v1 `step` in float64 (Euler, τ = 0.02)."""
  x, x_dot, theta, theta_dot = [float(v) for v in s]
  g, mc, mp, l, tau = 9.8, 1.0, 0.1, 0.5, 0.02
  total = mc + mp
  ct, st = math.cos(theta), math.sin(theta)
  temp = (force + mp * l * theta_dot**2 * st) / total
  thetaacc = (g * st - ct * temp) / (l * (4.0 / 3.0 - mp * ct**2 / total))
  xacc = temp - mp * l * thetaacc * ct / total
  return np.array([x + tau * x_dot, x_dot + tau * xacc,
                   theta + tau * theta_dot, theta_dot + tau * thetaacc])


def _state(env, s, time=0):
  return envs.CartPoleState(*[jnp.float32(v) for v in s],
                            time=jnp.int32(time))


@pytest.mark.parametrize("name,action,force", [
    ("CartPole-v1", 0, -10.0), ("CartPole-v1", 1, 10.0),
    ("CartPole-3a", 0, -10.0), ("CartPole-3a", 1, 10.0),
    ("CartPole-3a", 2, 0.0)])
def test_step_matches_hand_computed_euler(name, action, force):
  env = envs.make(name)
  s = np.array([0.3, -0.7, 0.1, 1.3])
  obs, new, reward, done = env.step(jax.random.key(0), _state(env, s),
                                    jnp.int32(action))
  np.testing.assert_allclose(np.asarray(obs), _euler_reference(s, force),
                             rtol=1e-5, atol=1e-6)
  assert float(reward) == 1.0 and not bool(done) and int(new.time) == 1


def test_termination_and_truncation():
  v1, v3 = envs.make("CartPole-v1"), envs.make("CartPole-3a")
  key = jax.random.key(0)
  # |x| crosses 2.4 after one step with x_dot = 10 (x ← 2.35 + 0.2).
  s_out = [2.35, 10.0, 0.0, 0.0]
  assert bool(v1.step(key, _state(v1, s_out), jnp.int32(1))[3])
  assert bool(v3.terminated(v3.step(key, _state(v3, s_out), jnp.int32(2))[1]))
  # θ crosses 12° = 0.2094 rad.
  s_fall = [0.0, 0.0, 0.2, 1.0]
  assert bool(v1.step(key, _state(v1, s_fall), jnp.int32(0))[3])
  # time limit: v1 truncates at 500, the 3-action variant never does.
  s_ok = [0.0, 0.0, 0.0, 0.0]
  _, st, _, done = v1.step(key, _state(v1, s_ok, 499), jnp.int32(1))
  assert bool(done) and not bool(v1.terminated(st))
  _, st, _, done = v1.step(key, _state(v1, s_ok, 498), jnp.int32(1))
  assert not bool(done)
  _, _, _, done = v3.step(key, _state(v3, s_ok, 10**6), jnp.int32(1))
  assert not bool(done)


def test_reset_distribution():
  env = envs.make("CartPole-v1")
  obs, st = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 2000))
  obs = np.asarray(obs)
  assert obs.shape == (2000, 4) and np.all(np.abs(obs) <= 0.05)
  np.testing.assert_allclose(obs.mean(0), 0.0, atol=0.005)  # U(−.05,.05): sd .029/√2000
  np.testing.assert_allclose(obs.var(0), 0.1**2 / 12, rtol=0.15)
  assert np.all(np.asarray(st.time) == 0)


def test_matches_gymnax_rollout():
  gymnax = pytest.importorskip("gymnax")
  genv, gparams = gymnax.make("CartPole-v1")
  env = envs.make("CartPole-v1")
  key = jax.random.key(3)
  gobs, gstate = genv.reset_env(key, gparams)
  obs, state = env.reset(key)
  np.testing.assert_allclose(np.asarray(obs), np.asarray(gobs), rtol=1e-6)
  actions = jax.random.randint(jax.random.key(4), (40,), 0, 2)

  def ours(state, a):
    obs, state, r, d = env.step(key, state, a)
    return state, (obs, r, d)

  def theirs(state, a):
    obs, state, r, d, _ = genv.step_env(key, state, a, gparams)
    return state, (obs, r, d)

  _, (o1, r1, d1) = jax.lax.scan(ours, state, actions)
  _, (o2, r2, d2) = jax.lax.scan(theirs, gstate, actions)
  np.testing.assert_allclose(np.asarray(o1), np.asarray(o2), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(d1), np.asarray(d2))
  # gymnax pays 0 for steps taken after termination; compare up to the end.
  end = int(np.argmax(np.asarray(d1))) if np.any(np.asarray(d1)) else 40
  np.testing.assert_array_equal(np.asarray(r1)[:end + 1],
                                np.asarray(r2)[:end + 1])


def test_auto_reset_step_keeps_true_successor():
  env = envs.make("CartPole-v1")
  key = jax.random.key(5)
  s_fall = [0.0, 0.0, 0.2, 1.0]
  next_obs, obs, st, r, term, done = envs.auto_reset_step(
      env, key, _state(env, s_fall), jnp.int32(0))
  np.testing.assert_allclose(np.asarray(next_obs),
                             _euler_reference(s_fall, -10.0), rtol=1e-5)
  assert bool(term) and bool(done) and int(st.time) == 0
  assert np.all(np.abs(np.asarray(obs)) <= 0.05)  # the reset observation
  # Truncation is `done` but not `terminated` (DQN bootstraps through it).
  *_, term, done = envs.auto_reset_step(
      env, key, _state(env, [0.0] * 4, 499), jnp.int32(1))
  assert bool(done) and not bool(term)


def test_bad_input():
  with pytest.raises(ValueError, match="unknown env"):
    envs.make("Pendulum-v1")
  with pytest.raises(ValueError, match="num_actions"):
    envs.CartPole(num_actions=4)
