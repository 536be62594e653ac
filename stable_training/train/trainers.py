"""Trainer registry: ``config.trainer`` names the engine that runs a config.

A trainer is registered with `register_trainer(name, run=, validate=)`:

- ``run(config, workdir) -> summary dict`` trains every seed of `config`,
  writes ``config.json``, ``metrics.jsonl``, ``summary.json`` and orbax
  checkpoints into `workdir`, and resumes from them (see
  `stable_training.train.loop.train_and_evaluate`, the ``supervised`` trainer);
- ``validate(config)`` raises `stable_training.config.ConfigError` (one line)
  before anything is written.

`experiments.main` dispatches on the name, so every study — supervised
classification or regression, DQN, … — launches the same way::

  python -m experiments.main --config=experiments/configs/dqn.py:tiny --workdir=/tmp/dqn
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple


class Trainer(NamedTuple):
  run: Callable[..., dict]
  validate: Callable[..., None]


_REGISTRY: dict[str, tuple[str, str, str]] = {
    # name -> (module, run function, validate function); imported on use so
    # that picking a trainer does not import every other trainer's code.
    "supervised": ("stable_training.train.loop", "train_and_evaluate", "validate"),
    "dqn": ("stable_training.rl.trainer", "train_and_evaluate", "validate"),
}


def register_trainer(name: str, module: str, run: str = "train_and_evaluate",
                     validate: str = "validate") -> None:
  """Registers a trainer living in `module` (functions `run` and `validate`)."""
  if name in _REGISTRY:
    raise ValueError(f"trainer {name!r} is already registered")
  _REGISTRY[name] = (module, run, validate)


def names() -> list[str]:
  """Registered trainer names, sorted."""
  return sorted(_REGISTRY)


def get_trainer(name: str) -> Trainer:
  """The `Trainer` registered under `name`.

  Raises:
    ValueError: unknown name (the message lists the valid ones).
  """
  if name not in _REGISTRY:
    raise ValueError(f"config.trainer={name!r}: valid choices are {', '.join(names())}")
  module, run, validate = _REGISTRY[name]
  mod = importlib.import_module(module)
  return Trainer(getattr(mod, run), getattr(mod, validate))


def trainer_name(config) -> str:
  """``config.trainer`` (``'supervised'`` for configs that predate the key)."""
  return config.get("trainer", "supervised") if hasattr(config, "get") else "supervised"


def run(config, workdir: str) -> dict:
  """Validates `config` with its trainer, then runs it in `workdir` (locked: one run per workdir); returns the summary."""
  from stable_training.train.lock import workdir_lock
  trainer = get_trainer(trainer_name(config))
  trainer.validate(config)
  with workdir_lock(workdir):
    return trainer.run(config, workdir)
