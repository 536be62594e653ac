"""Trainer registry: ``config.trainer`` names the engine that runs a config.

A trainer is a module registered with `register_trainer(name, module)` that provides:

- ``resolve(config) -> resolved config``: validates `config` (one-line
  `stable_training.config.ConfigError`, nothing written) and returns what the
  trainer runs (e.g. with defaults filled in);
- ``run_resolved(resolved, workdir, *, memo=None) -> summary dict``: trains every
  seed through the host loop every trainer shares
  (`stable_training.train.host_loop`: ``config.json``, ``metrics.jsonl``,
  ``summary.json``, orbax checkpoints in `workdir`, resume, preemption), the
  config not checked again;
- ``train_and_evaluate(config, workdir)`` (``resolve`` then ``run_resolved``)
  and ``validate(config)``, the same two steps for direct callers.

`run` validates a config once (or takes the `Resolved` that `resolve`
returned, e.g. from the launcher's early check) and the host loop locks the
workdir once. `experiments.main` dispatches on the name, so every study —
supervised classification or regression, DQN, … — launches the same way::

  python -m experiments.main --config=experiments/configs/dqn.py:tiny --workdir=/tmp/dqn
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, MutableMapping, NamedTuple

from stable_training.schema import ConfigError


class Trainer(NamedTuple):
  """A registered trainer's functions (see the module docstring)."""
  run: Callable[..., dict]
  validate: Callable[..., None]
  resolve: Callable[..., Any]
  run_resolved: Callable[..., dict]


class Resolved(NamedTuple):
  """A config its trainer validated and resolved: `run` trains it without checking again.

  Made by `resolve`; the config must not be changed afterwards.
  """
  trainer: str
  config: Any


_DEFAULT_NAMES = {"run": "train_and_evaluate", "validate": "validate", "resolve": "resolve",
                  "run_resolved": "run_resolved"}
_REGISTRY: dict[str, tuple[str, dict[str, str]]] = {
    # name -> (module, {role: function name}); imported on use so that picking
    # a trainer does not import every other trainer's code.
    "supervised": ("stable_training.train.loop", _DEFAULT_NAMES),
    "dqn": ("stable_training.rl.trainer", _DEFAULT_NAMES),
}


def register_trainer(name: str, module: str, run: str = "train_and_evaluate", validate: str = "validate",
                     resolve: str = "resolve", run_resolved: str = "run_resolved") -> None:
  """Registers a trainer living in `module` (the names of its four functions).

  Raises:
    ValueError: `name` is already registered.
  """
  if name in _REGISTRY:
    raise ValueError(f"trainer {name!r} is already registered")
  _REGISTRY[name] = (module, {"run": run, "validate": validate, "resolve": resolve, "run_resolved": run_resolved})


def names() -> list[str]:
  """Registered trainer names, sorted."""
  return sorted(_REGISTRY)


def get_trainer(name: str) -> Trainer:
  """The `Trainer` registered under `name`.

  Raises:
    ConfigError (a ValueError): unknown name (the message lists the valid ones).
  """
  if name not in _REGISTRY:
    raise ConfigError(f"config.trainer={name!r}: valid choices are {', '.join(names())}")
  module, functions = _REGISTRY[name]
  mod = importlib.import_module(module)
  return Trainer(**{role: getattr(mod, fn) for role, fn in functions.items()})


def trainer_name(config) -> str:
  """``config.trainer`` (``'supervised'`` for configs that predate the key)."""
  from stable_training.config import lookup
  return lookup(config, "trainer", "supervised")


def resolve(config) -> Resolved:
  """`config` validated (and resolved) by the trainer it names.

  Raises:
    ConfigError: one line naming the key, its value and what is valid.
  """
  name = trainer_name(config)
  return Resolved(name, get_trainer(name).resolve(config))


def run(config, workdir: str, *, memo: MutableMapping | None = None) -> dict:
  """Trains `config` (or a `Resolved`) with its trainer in `workdir` and returns the summary.

  The config is validated here unless it comes `Resolved`; the host loop
  locks the workdir for the run. `memo`: a mapping the caller keeps across
  runs for deterministic pre-computations (the supervised trainer's LSC
  pre-training, see `loop.train_and_evaluate`); None: nothing kept.
  """
  r = config if isinstance(config, Resolved) else resolve(config)
  return get_trainer(r.trainer).run_resolved(r.config, workdir, memo=memo)
