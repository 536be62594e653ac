"""DQN with/without a target network (Ramaswamy, Bhatnagar & Saxena 2023)."""
from __future__ import annotations

import concurrent.futures
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stable_training.config import ConfigError
from stable_training.rl import dqn

TINY = dict(hidden=(8, 8), batch_size=8, buffer_size=64, learning_starts=16,
            total_steps=48, eval_every=16, eval_episodes=2, eval_max_steps=20,
            eps_decay_steps=32, learning_rate=1e-2)

ARMS = {
    "gelu_target": dict(activation="gelu", target="polyak"),
    # One arm runs the 3-action, no-time-limit variant (no extra compile).
    "gelu_none": dict(activation="gelu", target="none",
                      env_name="CartPole-3a"),
    "tgelu_target": dict(activation="tgelu", target="polyak"),
    "tgelu_none": dict(activation="tgelu", target="none"),
    "tgelu_none_noclip": dict(activation="tgelu", target="none",
                              clip_output_norm=0.0),
}


def _batch(key, b=16, obs=4, actions=2):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  return dqn.Transition(
      obs=jax.random.normal(k1, (b, obs)),
      action=jax.random.randint(k2, (b,), 0, actions),
      reward=jax.random.normal(k3, (b,)),
      next_obs=jax.random.normal(k4, (b, obs)),
      done=jnp.arange(b) % 3 == 0)


@pytest.fixture(scope="module")
def net_and_params():
  net = dqn.make_network(dict(TINY, activation="tgelu"))
  params = net.init(jax.random.key(0), jnp.zeros(4))
  # A jitted apply: tGELU op-by-op in eager mode is slow.
  return types.SimpleNamespace(apply=jax.jit(net.apply)), params


def test_td_target_formula(net_and_params):
  net, params = net_and_params
  b = _batch(jax.random.key(1))
  y = dqn.td_target(net.apply, params, b.reward, b.next_obs, b.done, 0.9)
  q_next = np.asarray(net.apply(params, b.next_obs))
  want = (np.asarray(b.reward)
          + 0.9 * (1 - np.asarray(b.done)) * q_next.max(-1))
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6, atol=1e-6)


def test_no_target_gradient_skips_td_target(net_and_params):
  """Without a target network y = r + γ(1−d) max Q(s′; sg(θ)): the gradient is
  2/B Σ (Q(s,a;θ) − y) ∂Q(s,a;θ)/∂θ, i.e. that of a loss with y held fixed."""
  net, params = net_and_params
  b = _batch(jax.random.key(2))
  g_none = jax.grad(lambda p: dqn.dqn_loss(p, None, net.apply, b, 0.99)[0])(
      params)
  y = dqn.td_target(net.apply, params, b.reward, b.next_obs, b.done, 0.99)

  def fixed_loss(p):
    q = net.apply(p, b.obs)
    q_sa = jnp.take_along_axis(q, b.action[:, None], axis=-1)[:, 0]
    return jnp.mean((q_sa - y) ** 2)

  g_fixed = jax.grad(fixed_loss)(params)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5,
                                                       atol=1e-7),
               g_none, g_fixed)
  # The TD target itself carries no gradient into θ.
  g_y = jax.grad(lambda p: dqn.td_target(net.apply, p, b.reward, b.next_obs,
                                         b.done, 0.99).sum())(params)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g_y))
  # Loss value equals the no-target value computed with an explicit copy.
  l_none, _ = dqn.dqn_loss(params, None, net.apply, b, 0.99)
  l_copy, _ = dqn.dqn_loss(params, params, net.apply, b, 0.99)
  np.testing.assert_allclose(float(l_none), float(l_copy), rtol=1e-6)


def test_epsilon_schedule():
  c = dqn.resolve_config(dict(eps_start=1.0, eps_end=0.1,
                              eps_decay_steps=100))
  np.testing.assert_allclose(
      [float(dqn.epsilon(c, t)) for t in (0, 50, 100, 1000)],
      [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def test_output_layer_clipping_in_optimizer(net_and_params):
  """SGD step on the output layer has norm lr·λ when ‖g_out‖ > λ; the hidden
  layers' step is lr·g (Ramaswamy et al. 2023's output-layer clipping)."""
  _, params = net_and_params
  tx = dqn.make_optimizer(dict(TINY, learning_rate=0.1, target="none"))
  grads = jax.tree.map(lambda p: 10.0 * jnp.ones_like(p), params)
  upd, _ = tx.update(grads, tx.init(params), params)
  out_norm = optax.tree.norm(upd["params"]["output"])
  np.testing.assert_allclose(float(out_norm), 0.1 * 1.0, rtol=1e-5)  # λ = 1
  np.testing.assert_allclose(np.asarray(upd["params"]["hidden_0"]["kernel"]),
                             -1.0, rtol=1e-6)
  tx2 = dqn.make_optimizer(dict(TINY, learning_rate=0.1, target="polyak"))
  upd2, _ = tx2.update(grads, tx2.init(params), params)
  np.testing.assert_allclose(float(optax.tree.norm(upd2["params"]["output"])),
                             0.1 * 2.0, rtol=1e-5)  # λ = 2 with a target


def test_config_validation():
  with pytest.raises(ValueError, match="target"):
    dqn.resolve_config(dict(target="hard"))
  with pytest.raises(ValueError, match="activation"):
    dqn.resolve_config(dict(activation="relu"))
  with pytest.raises(ValueError, match="eval_every"):
    dqn.resolve_config(dict(total_steps=10_001))
  with pytest.raises(ValueError, match=re.escape(
      "config.env_name='Acrobot-v1': valid choices are CartPole-3a, CartPole-v1")):
    dqn.resolve_config(dict(env_name="Acrobot-v1"))
  assert dqn.resolve_config(dict(target="none")).clip_output_norm == 1.0
  assert dqn.resolve_config(dict(target="polyak")).clip_output_norm == 2.0
  np.testing.assert_array_equal(dqn.eval_steps(TINY), [16, 32, 48])
  with pytest.raises(ValueError, match="learning_starts"):
    dqn.resolve_config(dict(learning_starts=10, batch_size=256))
  # One-line ConfigErrors (a ValueError) naming the key, from the schema's
  # one mechanism (`Key.check` / `check_group`, a key's doc appended); NaN/inf,
  # wrong types and unknown keys are rejected, the launcher's engine keys dropped.
  for bad, msg in ((dict(learning_rate=float("nan")), "config.learning_rate=nan: must be a finite number"),
                   (dict(tau=float("inf")), "config.tau=inf: must be a finite number"),
                   (dict(tau=0.0), "config.tau=0.0: must be in (0, 1] (Polyak rate)"),
                   (dict(total_steps=1e5), "config.total_steps=100000.0: must be an integer"),
                   (dict(hidden=(8, True)), "config.hidden=(8, True): must be a non-empty tuple of integers >= 1"),
                   (dict(lr=0.1), "unknown key config.lr; valid top-level keys: activation, batch_size"),
                   (dict(clip_output_norm=-2.0), "config.clip_output_norm=-2.0: must be in [0, inf)"),
                   # the former sentinel: None now means the paper's λ (the key's doc says so)
                   (dict(clip_output_norm=-1.0), "config.clip_output_norm=-1.0: must be in [0, inf) "
                    "(λ; 0 = off, None = the paper's λ: 2 with a target, 1 without)")):
    with pytest.raises(ConfigError, match=re.escape(msg)) as e:
      dqn.resolve_config(bad)
    assert "\n" not in str(e.value)
  c = dqn.resolve_config(dict(trainer="dqn", seed=3, num_seeds=2, progress="none",
                              on_nonfinite="continue", checkpoint_every=5_000))
  assert not set(dqn.ENGINE_KEYS) & set(c.keys())


# Tiny programs: XLA's backend optimizations cost more compile time than
# they save at run time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def arm_runs():
  """Each arm over seeds (k0, k1, k0) in one jit(vmap(train)) call.

  The five programs compile in two threads (XLA releases the GIL).
  """
  k0, k1 = jax.random.split(jax.random.key(0))
  keys = jnp.stack([k0, k1, k0])

  def run(arm):
    return _compile(jax.vmap(dqn.make_train(dict(TINY, **arm))), keys)(keys)

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    outs = list(pool.map(run, ARMS.values()))
  return dict(zip(ARMS, outs))


@pytest.mark.parametrize("arm", list(ARMS))
def test_arm_finite_and_deterministic(arm_runs, arm):
  state, m = arm_runs[arm]
  assert m["eval_return"].shape == (3, 3) and m["loss"].shape == (3, 3)
  # Chunk 0 is the warm-up (learning_starts = 16 = eval_every): no updates.
  np.testing.assert_array_equal(np.asarray(m["updates"]), [[0, 16, 16]] * 3)
  assert np.all(np.isnan(np.asarray(m["loss"])[:, 0]))
  for k in ("eval_return", "loss", "q_mean"):
    v = np.asarray(m[k])[:, 1:] if k != "eval_return" else np.asarray(m[k])
    assert np.all(np.isfinite(v)), k
    np.testing.assert_array_equal(v[0], v[2])  # same key → same run
  assert not np.array_equal(np.asarray(m["q_mean"][0]),
                            np.asarray(m["q_mean"][1]))
  er = np.asarray(m["eval_return"])
  assert np.all((er >= 1) & (er <= TINY["eval_max_steps"]))
  assert np.all(np.asarray(m["loss"])[:, 1:] > 0)
  jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), state)
  # Memory: params (+ target); SGD and clipping keep no state.
  a = 3 if ARMS[arm].get("env_name") == "CartPole-3a" else 2
  n_params = 4 * 8 + 8 + 8 * 8 + 8 + 8 * a + a
  per_seed = jax.tree.map(lambda x: x[0], state)
  want = 4 * n_params * (2 if ARMS[arm]["target"] == "polyak" else 1)
  assert dqn.learner_state_bytes(per_seed) == want


def test_vmap_equals_separate_runs(arm_runs):
  _, m_vmapped = arm_runs["tgelu_none"]
  k0, k1 = jax.random.split(jax.random.key(0))
  train = _compile(dqn.make_train(dict(TINY, **ARMS["tgelu_none"])), k0)
  for i, k in enumerate((k0, k1)):
    _, m = train(k)
    for name in ("eval_return", "loss", "q_mean"):
      np.testing.assert_allclose(np.asarray(m[name]),
                                 np.asarray(m_vmapped[name][i]), rtol=1e-4,
                                 atol=1e-5, equal_nan=True)
