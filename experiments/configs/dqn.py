"""DQN with/without a target network (Ramaswamy, Bhatnagar & Saxena 2023).

A launcher config of the ``dqn`` trainer (`stable_training.rl.trainer`): the
flat DQN keys of `stable_training.rl.dqn.default_config` plus the engine keys
``trainer``, ``seed``, ``num_seeds``, ``progress``, ``on_nonfinite`` and
``checkpoint_every``. Variants select the study's arms: ``dqn.py:tgelu_none``
(default), ``gelu_none``, ``tgelu_target``, ``gelu_target``,
``tgelu_none_noclip``; options after a comma: ``3a`` (the 3-action CartPole
without time limit) and ``tiny`` (a few-second smoke run, 2 seeds × 48 env
steps), e.g. ``dqn.py:tgelu_none,3a``, ``dqn.py:tiny``, ``dqn.py:gelu_target,tiny``::

  python -m experiments.main --config=experiments/configs/dqn.py:gelu_target --workdir=runs/gelu_target

The arm table sets the output-layer clipping λ explicitly (the paper's 2 with
a Polyak target, 1 without, 0 for the ablation), so overriding
``--config.target`` keeps the arm's λ unless ``--config.clip_output_norm`` is
given too (leaving it None in `dqn.default_config` means "the paper's λ for the target").

The DQN keys alone also feed the pure program directly::

  train = dqn.make_train(get_config("gelu_target"))   # engine keys are ignored
  jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""
from __future__ import annotations

import ml_collections

from stable_training.rl import dqn

ARMS = {
    "gelu_target": dict(activation="gelu", target="polyak", clip_output_norm=2.0),
    "gelu_none": dict(activation="gelu", target="none", clip_output_norm=1.0),
    "tgelu_target": dict(activation="tgelu", target="polyak", clip_output_norm=2.0),
    "tgelu_none": dict(activation="tgelu", target="none", clip_output_norm=1.0),
    "tgelu_none_noclip": dict(activation="tgelu", target="none", clip_output_norm=0.0),
}

# A smoke run: a few seconds on 2 CPU cores, most of it compilation.
TINY = dict(hidden=(8, 8), batch_size=8, buffer_size=64, learning_starts=16,
            total_steps=48, eval_every=16, eval_episodes=2, eval_max_steps=20,
            eps_decay_steps=32, learning_rate=1e-2, num_seeds=2, checkpoint_every=16)

OPTIONS = ("3a", "tiny")


def get_config(variant: str = "tgelu_none") -> ml_collections.ConfigDict:
  """The paper's DQN hyper-parameters (`dqn.default_config`) for one arm, as a
  full launcher config of the ``dqn`` trainer."""
  parts = [p for p in variant.split(",") if p]
  if not parts or parts[0] in OPTIONS:
    parts = ["tgelu_none", *parts]
  arm, extra = parts[0], parts[1:]
  if arm not in ARMS:
    raise ValueError(f"unknown DQN arm {arm!r}; valid: {sorted(ARMS)}")
  bad = [e for e in extra if e not in OPTIONS]
  if bad:
    raise ValueError(f"unknown DQN variant options {bad}; valid: {list(OPTIONS)}")
  c = dqn.default_config()
  c.trainer = "dqn"
  c.seed = 0
  c.num_seeds = 8
  c.progress = "auto"            # "auto": a tqdm bar on a terminal; "none"
  c.on_nonfinite = "stop"        # or "continue": record and keep training
  c.checkpoint_every = 10_000    # env steps; a multiple of eval_every
  c.update(ARMS[arm])
  if "3a" in extra:
    c.env_name = "CartPole-3a"
  if "tiny" in extra:
    c.update(TINY)
  return c
