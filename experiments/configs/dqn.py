"""DQN with/without a target network (Ramaswamy, Bhatnagar & Saxena 2023).

Not a train-engine config: `stable_training.rl.dqn.make_train(config)` takes
it (the RL loop is its own compiled program). Variants select the study's
arms: ``dqn.py:tgelu_none`` (default), ``gelu_none``, ``tgelu_target``,
``gelu_target``, ``tgelu_none_noclip``; append ``,3a`` for the 3-action
CartPole without time limit, e.g. ``dqn.py:tgelu_none,3a``.

  train = make_train(get_config("gelu_target"))
  jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""
from __future__ import annotations

import ml_collections

from stable_training.rl import dqn

ARMS = {
    "gelu_target": dict(activation="gelu", target="polyak"),
    "gelu_none": dict(activation="gelu", target="none"),
    "tgelu_target": dict(activation="tgelu", target="polyak"),
    "tgelu_none": dict(activation="tgelu", target="none"),
    "tgelu_none_noclip": dict(activation="tgelu", target="none",
                              clip_output_norm=0.0),
}


def get_config(variant: str = "tgelu_none") -> ml_collections.ConfigDict:
  """The paper's DQN hyper-parameters (`dqn.default_config`) for one arm."""
  parts = [p for p in variant.split(",") if p] or ["tgelu_none"]
  arm, extra = parts[0], parts[1:]
  if arm not in ARMS:
    raise ValueError(f"unknown DQN arm {arm!r}; valid: {sorted(ARMS)}")
  bad = [e for e in extra if e != "3a"]
  if bad:
    raise ValueError(f"unknown DQN variant options {bad}; valid: ['3a']")
  c = dqn.default_config()
  c.update(ARMS[arm])
  if "3a" in extra:
    c.env_name = "CartPole-3a"
  return c
