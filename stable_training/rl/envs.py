"""Pure-JAX CartPole environments, steppable inside `jax.lax.scan` / `jax.vmap`.

Physics are those of gymnasium's ``CartPole-v1`` (Barto, Sutton & Anderson
1983, as coded in gym/gymnasium and gymnax): explicit Euler
integration with τ = 0.02 s, force magnitude 10 N, pole half-length 0.5 m,
termination when |x| > 2.4 or |θ| > 12°, reward 1 on every step.

Two variants (Ramaswamy, Bhatnagar & Saxena 2023 use the second in their DQN
code):

* ``CartPole-v1``: 2 actions (0 → −10 N, 1 → +10 N), episodes truncated at
  500 steps, exactly as gymnasium / gymnax.
* ``CartPole-3a``: 3 actions (0 → −10 N, 1 → +10 N, 2 → 0 N, i.e. "do
  nothing"), and no time-limit truncation (``max_steps = 0``). Actions 0 and 1
  keep the gymnasium meaning so the two variants share a policy convention.

The implementation is our own (rather than gymnax's) so that the 3-action,
no-truncation variant is the same code path; ``tests/test_rl.py`` checks its
transitions against gymnax's ``CartPole-v1`` and against a hand-computed Euler
step.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class CartPoleState:
  """Physical state (x, ẋ, θ, θ̇) plus the step counter of the episode."""
  x: jax.Array
  x_dot: jax.Array
  theta: jax.Array
  theta_dot: jax.Array
  time: jax.Array


@dataclasses.dataclass(frozen=True)
class CartPole:
  """CartPole as pure functions ``reset(key)`` and ``step(key, state, action)``.

  Static (hashable) configuration; all arrays live in `CartPoleState`.

  Attributes:
    num_actions: 2 (±force, gymnasium) or 3 (±force and 0).
    max_steps: episode truncation length; 0 means no truncation.
    gravity, masscart, masspole, length, force_mag, tau,
    theta_threshold_radians, x_threshold: gymnasium's constants.
  """
  num_actions: int = 2
  max_steps: int = 500
  gravity: float = 9.8
  masscart: float = 1.0
  masspole: float = 0.1
  length: float = 0.5  # half the pole's length
  force_mag: float = 10.0
  tau: float = 0.02
  theta_threshold_radians: float = 12 * 2 * math.pi / 360
  x_threshold: float = 2.4

  def __post_init__(self):
    if self.num_actions not in (2, 3):
      raise ValueError(
          f"CartPole num_actions must be 2 or 3, got {self.num_actions}")
    if self.max_steps < 0:
      raise ValueError(
          f"CartPole max_steps must be >= 0 (0 = no limit), got {self.max_steps}")

  @property
  def obs_size(self) -> int:
    return 4

  def reset(self, key: jax.Array) -> tuple[jax.Array, CartPoleState]:
    """Initial state: each of (x, ẋ, θ, θ̇) ~ U(−0.05, 0.05), as gymnasium."""
    s = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
    state = CartPoleState(x=s[0], x_dot=s[1], theta=s[2], theta_dot=s[3],
                          time=jnp.zeros((), jnp.int32))
    return self.obs(state), state

  def obs(self, state: CartPoleState) -> jax.Array:
    return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])

  def force(self, action: jax.Array) -> jax.Array:
    """Force on the cart: action 0 → −F, 1 → +F, 2 → 0 (3-action variant)."""
    table = jnp.array([-self.force_mag, self.force_mag, 0.0][:self.num_actions],
                      jnp.float32)
    return table[action]

  def terminated(self, state: CartPoleState) -> jax.Array:
    """True when the pole fell (|θ| > 12°) or the cart left the track (|x| > 2.4)."""
    return ((jnp.abs(state.x) > self.x_threshold)
            | (jnp.abs(state.theta) > self.theta_threshold_radians))

  def truncated(self, state: CartPoleState) -> jax.Array:
    """True when the time limit is reached (never for ``max_steps = 0``)."""
    if self.max_steps == 0:
      return jnp.zeros((), bool)
    return state.time >= self.max_steps

  def step(self, key: jax.Array, state: CartPoleState, action: jax.Array
           ) -> tuple[jax.Array, CartPoleState, jax.Array, jax.Array]:
    """One Euler step of the cart-pole ODE (gymnasium ``CartPole-v1``).

    With F the force, m = m_c + m_p, and l the half-length::

      temp = (F + m_p l θ̇² sin θ) / m
      θ̈ = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos² θ / m))
      ẍ = temp − m_p l θ̈ cos θ / m
      x ← x + τ ẋ,  ẋ ← ẋ + τ ẍ,  θ ← θ + τ θ̇,  θ̇ ← θ̇ + τ θ̈

    No automatic reset (see `auto_reset_step`). ``key`` is unused (the
    dynamics are deterministic) but kept for the common env signature.

    Returns:
      (obs, new_state, reward = 1, done = terminated or truncated).
    """
    del key
    total_mass = self.masscart + self.masspole
    polemass_length = self.masspole * self.length
    force = self.force(action)
    cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
    temp = (force + polemass_length * state.theta_dot**2 * sin) / total_mass
    thetaacc = (self.gravity * sin - cos * temp) / (
        self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass))
    xacc = temp - polemass_length * thetaacc * cos / total_mass
    new = CartPoleState(
        x=state.x + self.tau * state.x_dot,
        x_dot=state.x_dot + self.tau * xacc,
        theta=state.theta + self.tau * state.theta_dot,
        theta_dot=state.theta_dot + self.tau * thetaacc,
        time=state.time + 1)
    done = self.terminated(new) | self.truncated(new)
    return self.obs(new), new, jnp.ones((), jnp.float32), done


def auto_reset_step(env: CartPole, key: jax.Array, state: CartPoleState,
                    action: jax.Array):
  """`env.step` followed by a reset wherever the episode ended.

  Returns:
    (next_obs, obs, state, reward, terminated, done): ``next_obs`` is the true
    successor observation (used for the TD target), ``obs``/``state`` are those
    the agent continues from (the reset ones when ``done``). ``terminated``
    excludes time-limit truncation, so DQN bootstraps through truncation.
  """
  key_step, key_reset = jax.random.split(key)
  next_obs, next_state, reward, done = env.step(key_step, state, action)
  terminated = env.terminated(next_state)
  reset_obs, reset_state = env.reset(key_reset)
  state = jax.tree.map(lambda r, n: jnp.where(done, r, n), reset_state,
                       next_state)
  obs = jnp.where(done, reset_obs, next_obs)
  return next_obs, obs, state, reward, terminated, done


ENVS = {
    "CartPole-v1": dict(num_actions=2, max_steps=500),
    "CartPole-3a": dict(num_actions=3, max_steps=0),
}


def make(name: str) -> CartPole:
  """Environment by name: ``CartPole-v1`` (2 actions, 500-step limit) or
  ``CartPole-3a`` (3 actions, no limit; Ramaswamy et al. 2023's code)."""
  if name not in ENVS:
    raise ValueError(f"unknown env {name!r}; valid: {sorted(ENVS)}")
  return CartPole(**ENVS[name])
