"""DQN with or without a target network, purejaxrl style.

Ramaswamy, Bhatnagar & Saxena (2023), "Stable and consistent training" §DQN:
deep Q-learning can drop the target network when the Q-network uses a bounded
(squashing) activation, tGELU, and the output layer's gradient is clipped to
norm λ. This module trains that agent — and the usual Polyak-target baseline —
as one pure function::

  train = make_train(config)           # config: default_config() + overrides
  out = jax.jit(jax.vmap(train))(jax.random.split(key, num_seeds))

Everything (acting, replay buffer, one SGD update per environment step, the
target update and the periodic greedy evaluation) is one compiled program, so
seeds are a batch dimension. `make_train` is `make_init` followed by a
`lax.scan` of `make_chunk` (``eval_every`` env steps and one evaluation per
chunk); `stable_training.rl.trainer` runs the same two pieces from a host loop
with checkpoints (``python -m experiments.main --config=experiments/configs/dqn.py``).

Q-learning update on a uniformly sampled batch B from the replay buffer::

  y   = r + γ (1 − d) max_a′ Q(s′, a′; θ⁻)          (TD target, no gradient)
  L(θ) = mean_B (Q(s, a; θ) − y)²                  (MSE)
  θ⁻ = τ θ + (1 − τ) θ⁻  after each update          (target = "polyak")
  θ⁻ = stop_gradient(θ)                             (target = "none")

d is the termination flag (time-limit truncation bootstraps, as in gymnasium's
semantics). With ``clip_output_norm`` λ > 0, the gradient of the top-level
``output`` layer is rescaled to norm ≤ λ (`stable_training.optim.clip_output_layer`)
before the optimizer.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple

import flashbax as fbx
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stable_training import activations
from stable_training.config import ConfigError
from stable_training.rl import envs

TARGETS = ("polyak", "none")
ACTIVATIONS = ("gelu", "tgelu")
OPTIMIZERS = ("sgd", "adam")
# Keys of a launcher config (experiments/configs/dqn.py) that say how to run
# the program, not what it computes: `resolve_config` accepts and drops them.
ENGINE_KEYS = ("trainer", "seed", "num_seeds", "progress", "on_nonfinite",
               "checkpoint_every")


def default_config() -> ml_collections.ConfigDict:
  """Hyper-parameters of Ramaswamy et al. (2023)'s DQN experiment (defaults).

  ``clip_output_norm = None`` (the default) selects the paper's λ: 1 without a
  target network, 2 with one; 0 turns clipping off.
  """
  c = ml_collections.ConfigDict()
  c.env_name = "CartPole-v1"      # or "CartPole-3a" (3 actions, no time limit)
  c.hidden = (128, 128)
  c.activation = "tgelu"          # or "gelu"
  c.t_left = -1.0                 # tGELU range thresholds
  c.t_right = 1.0
  c.optimizer = "sgd"             # or "adam"
  c.learning_rate = 3e-4
  c.gamma = 0.99
  c.batch_size = 256
  c.buffer_size = 100_000         # 1e6 in the paper's full setting
  c.learning_starts = 5_000       # uniformly random warm-up steps, no updates
  c.eps_start = 1.0
  c.eps_end = 0.1
  c.eps_decay_steps = 100_000     # linear ε decay over env steps from step 0
  c.total_steps = 100_000         # env steps (= updates + learning_starts)
  c.target = "none"               # "polyak" or "none"
  c.tau = 0.005                   # Polyak rate
  c.clip_output_norm = ml_collections.config_dict.placeholder(float)  # λ; None: 1 without target / 2 with; 0: off
  c.eval_every = 5_000            # env steps between greedy evaluations
  c.eval_episodes = 5
  c.eval_max_steps = 1_000
  return c


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int(c: Mapping, key: str, lo: int) -> int:
  v = c[key]
  if not _is_int(v) or v < lo:
    raise ConfigError(f"config.{key}={v!r}: must be an integer >= {lo}")
  return int(v)


def _real(c: Mapping, key: str, lo: float, hi: float = math.inf,
          lo_open: bool = False) -> float:
  """A finite number in [lo, hi] (or (lo, hi] with `lo_open`)."""
  v = c[key]
  ok = (isinstance(v, numbers.Real) and not isinstance(v, bool)
        and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi)
  if not ok:
    if hi < math.inf:
      what = f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo > -math.inf:
      what = f" {'>' if lo_open else '>='} {lo:g}"
    else:
      what = ""
    raise ConfigError(f"config.{key}={v!r}: must be a finite number{what}")
  return float(v)


def _choice(c: Mapping, key: str, valid, what: str = "") -> None:
  if c[key] not in valid:
    raise ConfigError(f"config.{key}={c[key]!r}: {what}valid choices are "
                      f"{', '.join(valid)}")


def check_config(config: Mapping) -> None:
  """Validates a full DQN config (every key of `default_config`, plus any of
  `ENGINE_KEYS`, whose values are not checked here).

  Raises:
    ConfigError: one line ``config.KEY=VALUE: what is valid`` for the first
      unknown key or bad value (types, ranges, NaN/inf).
  """
  valid = set(default_config().keys())
  for key in config:
    if key not in valid and key not in ENGINE_KEYS:
      raise ConfigError(
          f"config.{key}={config[key]!r}: unknown key; valid keys are "
          f"{', '.join(sorted(valid | set(ENGINE_KEYS)))}")
  c = config
  _choice(c, "env_name", sorted(envs.ENVS), "unknown env; ")
  h = c["hidden"]
  if (not isinstance(h, (tuple, list)) or not h
      or not all(_is_int(w) and w >= 1 for w in h)):
    raise ConfigError(f"config.hidden={h!r}: must be a non-empty tuple of "
                      "integers >= 1 (layer widths)")
  _choice(c, "activation", ACTIVATIONS)
  _real(c, "t_left", -math.inf)
  _real(c, "t_right", -math.inf)
  if not c["t_left"] < 0 < c["t_right"]:
    raise ConfigError(f"config.t_left={c['t_left']!r}: tGELU needs "
                      f"t_left < 0 < t_right (t_right={c['t_right']!r})")
  _choice(c, "optimizer", OPTIMIZERS)
  _real(c, "learning_rate", 0.0, lo_open=True)
  _real(c, "gamma", 0.0, 1.0)
  batch = _int(c, "batch_size", 1)
  if _int(c, "buffer_size", 1) < batch:
    raise ConfigError(f"config.buffer_size={c['buffer_size']}: must be >= "
                      f"config.batch_size={batch}")
  if _int(c, "learning_starts", 0) < batch:
    raise ConfigError(
        f"config.learning_starts={c['learning_starts']}: must be >= "
        f"config.batch_size={batch} so the buffer can be sampled")
  _real(c, "eps_start", 0.0, 1.0)
  _real(c, "eps_end", 0.0, 1.0)
  _int(c, "eps_decay_steps", 1)
  every = _int(c, "eval_every", 1)
  total = _int(c, "total_steps", 1)
  if total % every:
    raise ConfigError(f"config.total_steps={total}: must be a positive "
                      f"multiple of config.eval_every={every}")
  if total <= c["learning_starts"]:
    raise ConfigError(f"config.total_steps={total}: must exceed "
                      f"config.learning_starts={c['learning_starts']}")
  _choice(c, "target", TARGETS)
  _real(c, "tau", 0.0, 1.0, lo_open=True)
  clip = c["clip_output_norm"]
  if clip is not None:
    try:
      _real(c, "clip_output_norm", 0.0)
    except ConfigError:
      raise ConfigError(
          f"config.clip_output_norm={clip!r}: must be a finite number >= 0 "
          "(0 = off) or None (the paper's λ: 2 with a target, 1 without)"
      ) from None
  _int(c, "eval_episodes", 1)
  _int(c, "eval_max_steps", 1)


def resolve_config(config) -> ml_collections.ConfigDict:
  """`default_config()` updated by `config` (dict or ConfigDict), validated.

  Keys in `ENGINE_KEYS` (how the launcher runs the program) are accepted and
  dropped; ``clip_output_norm = None`` becomes the paper's λ (2 with a Polyak
  target, 1 without).

  Raises:
    ConfigError (a ValueError): one line naming the offending key, its value
      and what is valid.
  """
  values = dict(config)
  c = default_config()
  merged = c.to_dict()
  merged.update({k: v for k, v in values.items() if k not in ENGINE_KEYS})
  check_config(dict(merged, **{k: v for k, v in values.items()
                               if k in ENGINE_KEYS}))
  merged["hidden"] = tuple(int(w) for w in merged["hidden"])
  c.update(merged)
  if c.clip_output_norm is None:
    c.clip_output_norm = 2.0 if c.target == "polyak" else 1.0
  return c


def eval_steps(config) -> np.ndarray:
  """Env-step counts after which `train` evaluates: k·eval_every, k = 1..K."""
  c = resolve_config(config)
  return c.eval_every * np.arange(1, c.total_steps // c.eval_every + 1)


class QNetwork(nn.Module):
  """MLP s ↦ Q(s, ·): Dense layers ``hidden_i`` with `activation`, then ``output``.

  The output layer is named ``output`` so `clip_output_layer` finds it.
  """
  num_actions: int
  hidden: tuple[int, ...] = (128, 128)
  activation: Callable[[jax.Array], jax.Array] = activations.gelu

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.hidden):
      x = self.activation(nn.Dense(width, name=f"hidden_{i}")(x))
    return nn.Dense(self.num_actions, name="output")(x)


def make_network(config) -> QNetwork:
  """The Q-network of `config`: GELU or tGELU(t_left, t_right) hidden layers."""
  c = resolve_config(config)
  env = envs.make(c.env_name)
  if c.activation == "tgelu":
    act = activations.get_activation("tgelu", t_left=c.t_left,
                                     t_right=c.t_right)
  else:
    act = activations.get_activation(c.activation)
  return QNetwork(num_actions=env.num_actions, hidden=tuple(c.hidden),
                  activation=act)


def make_optimizer(config) -> optax.GradientTransformation:
  """[clip_output_layer(λ)] → SGD (or Adam), per Ramaswamy et al. (2023)."""
  c = resolve_config(config)
  opt = (optax.sgd(c.learning_rate) if c.optimizer == "sgd"
         else optax.adam(c.learning_rate))
  if c.clip_output_norm > 0:
    # Imported here so the env/network code works while optim is absent.
    from stable_training.optim import clip_output_layer
    return optax.chain(clip_output_layer(c.clip_output_norm, layer="output"),
                       opt)
  return opt


class Transition(NamedTuple):
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  done: jax.Array  # termination (no bootstrap); truncation is not a "done"


def td_target(apply_fn, target_params, reward, next_obs, done, gamma):
  """y = r + γ (1 − d) max_a′ Q(s′, a′; θ⁻), with no gradient into θ⁻."""
  q_next = apply_fn(jax.lax.stop_gradient(target_params), next_obs)
  y = reward + gamma * (1.0 - done.astype(jnp.float32)) * q_next.max(-1)
  return jax.lax.stop_gradient(y)


def dqn_loss(params, target_params, apply_fn, batch: Transition, gamma):
  """MSE between Q(s, a; θ) and the TD target; ``target_params=None`` means
  no target network (θ⁻ = stop_gradient(θ), Ramaswamy et al. 2023).

  Returns (loss, mean Q(s, a)).
  """
  if target_params is None:
    target_params = jax.lax.stop_gradient(params)
  y = td_target(apply_fn, target_params, batch.reward, batch.next_obs,
                batch.done, gamma)
  q = apply_fn(params, batch.obs)
  q_sa = jnp.take_along_axis(q, batch.action[..., None], axis=-1)[..., 0]
  return jnp.mean((q_sa - y) ** 2), jnp.mean(q_sa)


def epsilon(config, t):
  """ε_t = max(ε_end, ε_start + (ε_end − ε_start) · t / decay_steps) (linear)."""
  frac = jnp.clip(t / config.eps_decay_steps, 0.0, 1.0)
  return config.eps_start + frac * (config.eps_end - config.eps_start)


class Runner(NamedTuple):
  """Everything a DQN run carries from one env step to the next (one seed)."""
  params: Any
  target_params: Any
  opt_state: Any
  buffer_state: Any
  env_state: Any
  obs: jax.Array
  t: jax.Array
  rng: jax.Array
  episode_return: jax.Array


def tree_bytes(tree) -> int:
  """Bytes held by the array leaves of `tree` (per seed if unbatched)."""
  return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


class _Program(NamedTuple):
  """The pieces shared by `make_init`, `make_chunk` and `make_train`."""
  c: ml_collections.ConfigDict
  init: Callable[[jax.Array], Runner]
  chunk: Callable[[Runner, jax.Array], tuple[Runner, dict]]


def _program(config) -> _Program:
  c = resolve_config(config)
  env = envs.make(c.env_name)
  net = make_network(c)
  tx = make_optimizer(c)
  use_target = c.target == "polyak"
  # flashbax's item buffer: a ring buffer of single transitions with uniform
  # sampling; jit/vmap-safe (state is a pytree).
  buffer = fbx.make_item_buffer(max_length=c.buffer_size,
                                min_length=c.batch_size,
                                sample_batch_size=c.batch_size,
                                add_batches=False)
  gamma = c.gamma

  def evaluate(params, key):
    def episode(k):
      obs, st = env.reset(k)

      def body(carry, _):
        obs, st, alive, ret = carry
        a = jnp.argmax(net.apply(params, obs))
        obs, st, r, done = env.step(k, st, a)
        ret = ret + r * alive
        return (obs, st, alive & ~done, ret), None

      init = (obs, st, jnp.ones((), bool), jnp.zeros(()))
      (_, _, _, ret), _ = jax.lax.scan(body, init, None, c.eval_max_steps)
      return ret
    return jax.vmap(episode)(jax.random.split(key, c.eval_episodes)).mean()

  def update(params, target_params, opt_state, batch):
    grad_fn = jax.value_and_grad(dqn_loss, has_aux=True)
    (loss, q_mean), grads = grad_fn(
        params, target_params if use_target else None, net.apply, batch, gamma)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if use_target:
      target_params = optax.incremental_update(params, target_params, c.tau)
    return params, target_params, opt_state, loss, q_mean

  def env_step(r: Runner, t):
    """One env step at (unbatched) step index t; one update once t ≥ warm-up.

    t comes from the scan's xs, not from the vmapped carry, so under
    `jax.vmap` over seeds the warm-up `lax.cond` stays a real branch (no
    update is computed during warm-up).
    """
    rng, k_rand, k_eps, k_env, k_sample = jax.random.split(r.rng, 5)
    learn = t >= c.learning_starts
    random_action = jax.random.randint(k_rand, (), 0, env.num_actions)
    greedy = jnp.argmax(net.apply(r.params, r.obs))
    # Uniformly random actions during warm-up, ε-greedy afterwards.
    explore = (~learn) | (jax.random.uniform(k_eps) < epsilon(c, t))
    action = jnp.where(explore, random_action, greedy)
    next_obs, obs, env_state, reward, terminated, done = envs.auto_reset_step(
        env, k_env, r.env_state, action)
    buffer_state = buffer.add(
        r.buffer_state, Transition(r.obs, action, reward, next_obs, terminated))

    def do_update(args):
      params, target_params, opt_state = args
      batch = buffer.sample(buffer_state, k_sample).experience
      return update(params, target_params, opt_state, batch)

    def skip_update(args):
      return (*args, jnp.zeros(()), jnp.zeros(()))

    params, target_params, opt_state, loss, q_mean = jax.lax.cond(
        learn, do_update, skip_update,
        (r.params, r.target_params, r.opt_state))
    ep_ret = r.episode_return + reward
    info = dict(loss=loss, q_mean=q_mean, done=done, learn=learn,
                finished_return=jnp.where(done, ep_ret, 0.0))
    r = Runner(params, target_params, opt_state, buffer_state, env_state, obs,
               r.t + 1, rng, jnp.where(done, 0.0, ep_ret))
    return r, info

  def chunk(r: Runner, k):
    ts = k * c.eval_every + jnp.arange(c.eval_every)
    r, info = jax.lax.scan(env_step, r, ts)
    rng, k_eval = jax.random.split(r.rng)
    r = r._replace(rng=rng)
    episodes = info["done"].sum()
    updates = info["learn"].sum()

    def per(total, n):  # mean over the events, NaN when there were none
      return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan)

    # First env step (a count, 1-based) of the chunk whose update had a
    # non-finite loss or Q(s, a); the chunk's last step if only the final
    # parameters are non-finite; −1 if none.
    bad = info["learn"] & ~(jnp.isfinite(info["loss"])
                            & jnp.isfinite(info["q_mean"]))
    params_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                   for x in jax.tree.leaves(r.params)]))
    nonfinite_step = jnp.where(
        bad.any(), ts[jnp.argmax(bad)] + 1,
        jnp.where(params_ok, -1, ts[-1] + 1)).astype(jnp.int32)
    metrics = dict(
        loss=per(info["loss"].sum(), updates),
        q_mean=per(info["q_mean"].sum(), updates),
        updates=updates, episodes=episodes,
        train_return=per(info["finished_return"].sum(), episodes),
        eval_return=evaluate(r.params, k_eval),
        nonfinite_step=nonfinite_step)
    return r, metrics

  def init(rng):
    rng, k_init, k_reset = jax.random.split(rng, 3)
    obs, env_state = env.reset(k_reset)
    params = net.init(k_init, obs)
    example = Transition(obs, jnp.zeros((), jnp.int32), jnp.zeros(()), obs,
                         jnp.zeros((), bool))
    return Runner(params, params if use_target else None, tx.init(params),
                  buffer.init(example), env_state, obs,
                  jnp.zeros((), jnp.int32), rng, jnp.zeros(()))

  return _Program(c, init, chunk)


def make_init(config) -> Callable[[jax.Array], Runner]:
  """Returns a pure ``init(rng) -> Runner``: the network's initial parameters
  (and the target's copy when ``target = "polyak"``, else None), optimizer
  state, an empty replay buffer, a reset environment, t = 0 and the RNG key
  the run continues from. Pure: vmap it over seeds' keys."""
  return _program(config).init


def make_chunk(config) -> Callable[[Runner, jax.Array], tuple[Runner, dict]]:
  """Returns a pure ``chunk(runner, k) -> (runner, metrics)``: env steps
  ``k·eval_every … (k+1)·eval_every − 1`` (one update each after the warm-up),
  then one greedy evaluation.

  ``k`` (the chunk index) must not carry a seed axis: under
  ``jax.vmap(chunk, in_axes=(0, None))`` the warm-up test stays a real branch.
  ``metrics`` are those of `make_train` for this chunk (scalars), plus
  ``nonfinite_step``: the first env-step count of the chunk whose update had a
  non-finite TD loss or Q(s, a) (the chunk's last step when only the final
  parameters are non-finite), −1 if none.
  """
  return _program(config).chunk


def make_train(config) -> Callable[[jax.Array], tuple[dict, dict]]:
  """Returns a pure ``train(rng) -> (state, metrics)`` (purejaxrl style):
  `make_init` then a `lax.scan` of `make_chunk` over the chunk indices.

  ``state`` holds the final ``params``, ``target_params`` (None without a
  target network) and ``opt_state``. ``metrics`` has one entry per chunk of
  ``eval_every`` env steps (evaluation after each chunk, see `eval_steps`):
    eval_return: mean greedy return over ``eval_episodes`` episodes capped at
      ``eval_max_steps`` steps;
    loss, q_mean: mean TD loss and mean Q(s, a) over the chunk's updates
      (NaN for a chunk inside the warm-up); updates: how many;
    train_return: mean return of the training episodes that ended in the
      chunk (NaN if none); episodes: how many ended;
    nonfinite_step: see `make_chunk` (−1 while everything is finite).
  """
  prog = _program(config)
  num_chunks = prog.c.total_steps // prog.c.eval_every

  def train(rng):
    r = prog.init(rng)
    r, metrics = jax.lax.scan(prog.chunk, r, jnp.arange(num_chunks))
    state = dict(params=r.params, target_params=r.target_params,
                 opt_state=r.opt_state)
    return state, metrics

  return train


def learner_state_bytes(state: dict) -> int:
  """Bytes of params + target params + optimizer state (one seed's `state`)."""
  return tree_bytes(state)
