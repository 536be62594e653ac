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
from stable_training import config as config_lib
from stable_training.rl import envs
from stable_training.schema import ConfigError, Key, check_group

TARGETS = ("polyak", "none")
ACTIVATIONS = ("gelu", "tgelu")
OPTIMIZERS = ("sgd", "adam")
# Keys of a launcher config (experiments/configs/dqn.py) that say how to run
# the program, not what it computes: `resolve_config` accepts and drops them.
ENGINE_KEYS = ("trainer", "seed", "num_seeds", "progress", "on_nonfinite",
               "checkpoint_every")


# The DQN program's keys (Ramaswamy et al. 2023's defaults), checked by
# `stable_training.schema.check_group` like every other config group.
DQN_KEYS = {
    "env_name": Key(str, "CartPole-v1", choices=tuple(sorted(envs.ENVS))),  # CartPole-3a: 3 actions, no time limit
    "hidden": Key(tuple, (128, 128), doc="layer widths, integers >= 1"),
    "activation": Key(str, "tgelu", choices=ACTIVATIONS),
    "t_left": Key(float, -1.0, doc="tGELU range thresholds, t_left < 0 < t_right"),
    "t_right": Key(float, 1.0),
    "optimizer": Key(str, "sgd", choices=OPTIMIZERS),
    "learning_rate": Key(float, 3e-4, lo=0.0, lo_open=True),
    "gamma": Key(float, 0.99, lo=0.0, hi=1.0),
    "batch_size": Key(int, 256, lo=1),
    "buffer_size": Key(int, 100_000, lo=1, doc="1e6 in the paper's full setting"),
    "learning_starts": Key(int, 5_000, lo=0, doc="uniformly random warm-up steps, no updates"),
    "eps_start": Key(float, 1.0, lo=0.0, hi=1.0),
    "eps_end": Key(float, 0.1, lo=0.0, hi=1.0),
    "eps_decay_steps": Key(int, 100_000, lo=1, doc="linear ε decay over env steps from step 0"),
    "total_steps": Key(int, 100_000, lo=1, doc="env steps (= updates + learning_starts)"),
    "target": Key(str, "none", choices=TARGETS),
    "tau": Key(float, 0.005, lo=0.0, lo_open=True, hi=1.0, doc="Polyak rate"),
    "clip_output_norm": Key(float, None, lo=0.0, nullable=True,
                            doc="λ; 0 = off, None = the paper's λ: 2 with a target, 1 without"),
    "eval_every": Key(int, 5_000, lo=1, doc="env steps between greedy evaluations"),
    "eval_episodes": Key(int, 5, lo=1),
    "eval_max_steps": Key(int, 1_000, lo=1),
}


def default_config() -> ml_collections.ConfigDict:
  """Hyper-parameters of Ramaswamy et al. (2023)'s DQN experiment (`DQN_KEYS`' defaults).

  ``clip_output_norm = None`` (the default) selects the paper's λ: 1 without a
  target network, 2 with one; 0 turns clipping off.
  """
  return config_lib.schema_group(DQN_KEYS)


def _check_keys(config: Mapping) -> dict:
  """`check_group` of `config` against `DQN_KEYS` (the engine keys accepted unchecked); the
  offending key's doc is added to the one-line error."""
  try:
    return check_group(config, DQN_KEYS, "", allowed=frozenset(ENGINE_KEYS))
  except ConfigError as e:
    msg = str(e)
    key = msg[len("config."):].split("=", 1)[0] if msg.startswith("config.") else ""
    doc = DQN_KEYS[key].doc if key in DQN_KEYS else ""
    raise ConfigError(f"{msg} ({doc})" if doc else msg) from None


def check_config(config: Mapping) -> None:
  """Validates a DQN config (the keys of `default_config`, defaults for those
  missing, plus any of `ENGINE_KEYS`, whose values are not checked here).

  Raises:
    ConfigError: one line ``config.KEY=VALUE: what is valid`` for the first
      unknown key or bad value (types, ranges, NaN/inf), or relation between keys.
  """
  c = _check_keys(config)
  h = c["hidden"]
  if not h or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in h):
    raise ConfigError(f"config.hidden={h!r}: must be a non-empty tuple of integers >= 1 (layer widths)")
  if not c["t_left"] < 0 < c["t_right"]:
    raise ConfigError(f"config.t_left={c['t_left']!r}: tGELU needs "
                      f"t_left < 0 < t_right (t_right={c['t_right']!r})")
  batch = c["batch_size"]
  if c["buffer_size"] < batch:
    raise ConfigError(f"config.buffer_size={c['buffer_size']}: must be >= config.batch_size={batch}")
  if c["learning_starts"] < batch:
    raise ConfigError(f"config.learning_starts={c['learning_starts']}: must be >= "
                      f"config.batch_size={batch} so the buffer can be sampled")
  total, every = c["total_steps"], c["eval_every"]
  if total % every:
    raise ConfigError(f"config.total_steps={total}: must be a positive multiple of config.eval_every={every}")
  if total <= c["learning_starts"]:
    raise ConfigError(f"config.total_steps={total}: must exceed config.learning_starts={c['learning_starts']}")


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


class _Parts(NamedTuple):
  """What the program's functions close over: the resolved config, env, Q-network, optimizer, replay buffer."""
  c: ml_collections.ConfigDict
  env: Any
  net: QNetwork
  tx: optax.GradientTransformation
  buffer: Any
  use_target: bool


def _parts(config) -> _Parts:
  c = resolve_config(config)
  # flashbax's item buffer: a ring buffer of single transitions with uniform
  # sampling; jit/vmap-safe (state is a pytree).
  buffer = fbx.make_item_buffer(max_length=c.buffer_size,
                                min_length=c.batch_size,
                                sample_batch_size=c.batch_size,
                                add_batches=False)
  return _Parts(c, envs.make(c.env_name), make_network(c), make_optimizer(c), buffer,
                c.target == "polyak")


def _make_evaluate(p: _Parts):
  """``evaluate(params, key)``: the mean greedy return of ``eval_episodes`` episodes of at most
  ``eval_max_steps`` steps (rewards after an episode's end not counted)."""
  env, net, c = p.env, p.net, p.c

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
  return evaluate


def _make_update(p: _Parts):
  """``update(params, target_params, opt_state, batch)``: one optimizer step on the TD loss
  (`dqn_loss`), then the Polyak target update θ⁻ ← τθ + (1 − τ)θ⁻ when there is a target."""
  net, tx, use_target, gamma, tau = p.net, p.tx, p.use_target, p.c.gamma, p.c.tau

  def update(params, target_params, opt_state, batch):
    grad_fn = jax.value_and_grad(dqn_loss, has_aux=True)
    (loss, q_mean), grads = grad_fn(
        params, target_params if use_target else None, net.apply, batch, gamma)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if use_target:
      target_params = optax.incremental_update(params, target_params, tau)
    return params, target_params, opt_state, loss, q_mean
  return update


def _make_env_step(p: _Parts, update):
  """``env_step(runner, t)``: one ε-greedy env step stored in the buffer, one `update` once t ≥ warm-up."""
  c, env, net, buffer = p.c, p.env, p.net, p.buffer

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
  return env_step


def _make_chunk(p: _Parts, env_step, evaluate):
  """``chunk(runner, k)``: a `lax.scan` of `env_step` over chunk k's ``eval_every`` steps, then
  `evaluate` and the chunk's metrics (see `make_chunk`)."""
  c = p.c

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
  return chunk


def _make_init_fn(p: _Parts):
  """``init(rng) -> Runner`` (see `make_init`)."""
  env, net, tx, buffer, use_target = p.env, p.net, p.tx, p.buffer, p.use_target

  def init(rng):
    rng, k_init, k_reset = jax.random.split(rng, 3)
    obs, env_state = env.reset(k_reset)
    params = net.init(k_init, obs)
    example = Transition(obs, jnp.zeros((), jnp.int32), jnp.zeros(()), obs,
                         jnp.zeros((), bool))
    return Runner(params, params if use_target else None, tx.init(params),
                  buffer.init(example), env_state, obs,
                  jnp.zeros((), jnp.int32), rng, jnp.zeros(()))
  return init


def _program(config) -> _Program:
  """`config`'s init and chunk functions, built from one set of `_Parts`."""
  p = _parts(config)
  env_step = _make_env_step(p, _make_update(p))
  return _Program(p.c, _make_init_fn(p), _make_chunk(p, env_step, _make_evaluate(p)))


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
