"""Config validation: every bad value is reported before anything runs.

`validate(config)` raises `ConfigError` whose message is one line naming the
offending key, its value and what is valid; the launcher prints it and exits
with status 2 without writing anything. Every check goes through the
schema's one mechanism (`Key.check` / `check_group`), and `lookup` is the
package's one config getter (dotted keys, ConfigDicts, dicts or attribute
objects); `checked` is the two together (read a key, validate it against its
declaration, its declared default when unset).
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from stable_training.schema import ConfigError, Key, check_group  # noqa: F401  (re-exported)

MAX_SEED = 2**32 - 1

# Top-level keys of a supervised config (the trainer's contract); the groups
# (dataset, model, optimizer, lsc, diagnostics) have their own.
TOP_KEYS = {
    "trainer": Key(str, "supervised", choices=("supervised",)),
    "loss": Key(str, "cross_entropy", doc="a `train.losses` name"),
    # Seeds become uint32 PRNG keys (seed s ↦ PRNGKey(s)): 2**32 + k would repeat seed k.
    "seed": Key(int, 0, lo=0, hi=MAX_SEED), "num_seeds": Key(int, 1, lo=1),
    "batch_size": Key(int, 128, lo=1), "eval_batch_size": Key(int, 1000, lo=1),
    "num_steps": Key(int, 2000, lo=1), "num_epochs": Key(int, 0, lo=0, doc="> 0: train epochs instead"),
    "log_every": Key(int, 100, lo=1), "eval_every": Key(int, 500, lo=1), "checkpoint_every": Key(int, 1000, lo=1),
    "step_loop": Key(str, "scan", choices=("scan", "host"),
                     doc="scan: K steps in one compiled lax.scan; host: a host loop of one-step programs"),
    "scan_unroll": Key(int, 1, lo=1, doc="steps per iteration of the scan"),
    "on_nonfinite": Key(str, "stop", choices=("stop", "skip")),
    "max_consecutive_skips": Key(int, 100, lo=1), "progress": Key(str, "auto", choices=("auto", "none")),
    **{g: Key(dict, None) for g in ("dataset", "model", "optimizer", "lsc", "diagnostics")},
}
DATASET_KEYS = {
    "name": Key(str, "fashion_mnist"), "data_dir": Key(str, ""), "view": Key(str, "flatten"),
    "num_train": Key(int, 0, lo=0, doc="0 = all"), "num_test": Key(int, 0, lo=0, doc="0 = all"),
    "num_val": Key(int, 0, lo=0), "lag": Key(int, 100, lo=2), "standardize": Key(bool, True),
    "view_seed": Key(int, 0, lo=0),
    "num_generated": Key(int, 0, lo=0, doc="generated datasets (shapeset): training images drawn; 0 = the fixed split"),
}
LSC_KEYS = {
    "enabled": Key(bool, False),
    "rho": Key(float, 1.0, lo=0.0, lo_open=True, doc="target radius of every time and depth transition"),
    "targets": Key(str, "uniform", choices=("uniform", "unbalanced"),
                   doc="unbalanced: ρ_time = T/(L+T), ρ_depth = L/(L+T) (rho unused)"),
    "steps": Key(int, 200, lo=1), "batch": Key(int, 16, lo=1), "batch_samples": Key(int, 4, lo=1, nullable=True, doc="random examples per step; None or >= batch: all"),
    "method": Key(str, "exact", choices=("exact", "power")), "time_samples": Key(int, 2, lo=1),
    "lr": Key(float, 7e-3, lo=0.0, lo_open=True), "tol": Key(float, 0.08, lo=0.0, lo_open=True),
    "patience": Key(int, 20, lo=1),
}
DIAGNOSTICS_KEYS = {"enabled": Key(bool, False), "every": Key(int, 500, lo=1)}


_REQUIRED = object()


def lookup(cfg: Any, key: str, default: Any = _REQUIRED, *, none_is_default: bool = False) -> Any:
  """The value of dotted `key` (``"optimizer.avg_grad.method"``) in a ConfigDict, dict or attribute object.

  The one config getter of the package. Each part of `key` is read with
  ``.get`` where the node has one, else as an attribute. An absent key gives
  `default` (KeyError naming the key when there is none); with
  `none_is_default` a value of None does too (an unset placeholder). Values
  are returned as stored: no conversion, no check (see `Key.check`).
  """
  node = cfg
  for part in key.split("."):
    getter = getattr(node, "get", None)
    node = getter(part, _REQUIRED) if callable(getter) else getattr(node, part, _REQUIRED)
    if node is _REQUIRED:
      if default is _REQUIRED:
        raise KeyError(f"config.{key} is not set")
      return default
  if node is None and none_is_default and default is not _REQUIRED:
    return default
  return node


def checked(cfg: Any, key: str, keys: Mapping[str, Key], path: str) -> Any:
  """``cfg.key`` validated by its declared ``keys[key]`` (`Key.check`); the declared default when absent or None.

  `path` names the group in messages (``"optimizer"`` → ``config.optimizer.KEY=…``).
  Raises:
    ConfigError: one line naming the key, the value and what is valid.
  """
  decl = keys[key]
  return decl.check(f"{path}.{key}" if path else key, lookup(cfg, key, decl.default, none_is_default=True))


def _one_of(path: str, value: Any, valid) -> Any:
  """`value` if it is one of `valid` (a registry's names), else the schema's one-line ConfigError."""
  return Key(str, None, choices=tuple(valid)).check(path, value)


def _check_dataset_name(name, builtin) -> None:
  """A built-in or generated dataset, or a TFDS name when the ``[tfds]`` extra is installed."""
  if name in builtin:
    return
  valid = ", ".join(builtin)
  if not isinstance(name, str) or not name:
    raise ConfigError(f"config.dataset.name={name!r}: valid choices are {valid} or a TFDS name")
  try:
    import tensorflow_datasets as tfds  # the optional [tfds] extra
  except ImportError:
    raise ConfigError(f"config.dataset.name={name!r}: not built in (valid: {valid}); TFDS names need "
                      "`pip install -e .[tfds]` and the prepared data in config.dataset.data_dir "
                      "(`tfds build NAME` on a machine with internet)") from None
  if name.split(":")[0].split("/")[0] not in tfds.list_builders():
    raise ConfigError(f"config.dataset.name={name!r}: neither built in ({valid}) nor a TFDS dataset")


def schema_group(keys):
  """A config group (ConfigDict) holding every declared key of `keys` at its default (typed placeholders for
  None; dict-valued keys left to the caller)."""
  import ml_collections
  g = ml_collections.ConfigDict()
  for k, key in keys.items():
    if key.type is not dict:
      g[k] = ml_collections.config_dict.placeholder(key.type) if key.default is None else key.default
  return g


def schema_config():
  """A supervised config with every top-level key and the dataset / optimizer / lsc / diagnostics groups at
  their declared defaults (one source of truth for `experiments/configs/default.py` and `train.fit`); the
  model group is empty (its keys belong to the model chosen)."""
  import ml_collections
  from stable_training.optim.schema import OPTIMIZER_KEYS
  c = schema_group(TOP_KEYS)
  for g, keys in (("dataset", DATASET_KEYS), ("optimizer", OPTIMIZER_KEYS), ("lsc", LSC_KEYS),
                  ("diagnostics", DIAGNOSTICS_KEYS)):
    c[g] = schema_group(keys)
  c.model = ml_collections.ConfigDict()
  return c


def apply_overrides(config, overrides: Mapping[str, Any]):
  """Sets dotted keys of a ConfigDict, e.g. ``{"model.depth": 50}``; returns it."""
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    node = config
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


def schema_defaults(config) -> dict:
  """``{"dataset.num_val": 0, ...}``: every declared key of a supervised config's schema and its default.

  The model group uses the keys registered with ``config.model.name``. Used to
  resume a workdir whose stored config predates a key added at its default.
  """
  from stable_training import models
  from stable_training.optim.schema import OPTIMIZER_KEYS
  out = {k: key.default for k, key in TOP_KEYS.items() if key.type is not dict}
  groups = {"dataset": DATASET_KEYS, "optimizer": OPTIMIZER_KEYS, "lsc": LSC_KEYS, "diagnostics": DIAGNOSTICS_KEYS}
  name = lookup(config, "model.name", None)
  groups["model"] = (models.model_keys(name) or {}) if name in models.names() else {}
  for g, keys in groups.items():
    out.update({f"{g}.{k}": key.default for k, key in keys.items() if key.type is not dict})
  return out


def validate(config, *, given: tuple[str, ...] = ()) -> None:
  """Checks a train config; raises `ConfigError` (one line) on the first problem.

  `given`: groups whose objects the caller passes in (`stable_training.train.fit`: ``"model"``,
  ``"optimizer"``, ``"dataset"``); their names are records, not registry entries, so only the
  other checks apply to them.
  """
  # Imported here: these registries import model/optimizer code, which the
  # launcher only needs once the config is known to be sane.
  from stable_training import data, models
  from stable_training.data import sequence_tasks
  from stable_training.train import losses

  # Types, ranges and choices of every declared key; what follows checks only relations between keys.
  top = check_group(config, TOP_KEYS, "")
  from stable_training.optim.schema import AVG_GRAD_KEYS, OPTIMIZER_KEYS
  # Given objects are recorded by a name and what identifies them (fit: the data's fingerprint, tx_name).
  ds_keys = DATASET_KEYS if "dataset" not in given else {**DATASET_KEYS, "fingerprint": Key(str, "")}
  ds = check_group(config.dataset, ds_keys, "dataset")
  opt_keys = (OPTIMIZER_KEYS if "optimizer" not in given else
              {**OPTIMIZER_KEYS, "name": Key(str, "given"), "tx_name": Key(str, "custom")})
  opt = check_group(config.optimizer, opt_keys, "optimizer")
  check_group(config.lsc, LSC_KEYS, "lsc")
  diag = check_group(config.diagnostics, DIAGNOSTICS_KEYS, "diagnostics")
  if "model" not in given:
    models.resolve_model_config(config.model)
  _one_of("loss", top["loss"], losses.names())
  if top["seed"] + top["num_seeds"] - 1 > MAX_SEED:
    raise ConfigError(f"config.num_seeds={top['num_seeds']}: seeds {top['seed']}..{top['seed'] + top['num_seeds'] - 1} "
                      f"pass {MAX_SEED} (seeds are uint32)")
  log_every = top["log_every"]
  for key in ("eval_every", "checkpoint_every"):
    if top[key] % log_every:
      raise ConfigError(f"config.{key}={top[key]}: must be a multiple of config.log_every={log_every}")

  if "dataset" not in given:
    _check_dataset_name(ds["name"], sorted(data.names() + sequence_tasks.names()))
  _one_of("dataset.view", ds["view"], data.VIEWS)
  if ds["num_generated"] and ds["name"] not in data.generated_names():
    raise ConfigError(f"config.dataset.num_generated={ds['num_generated']}: only for generated datasets "
                      f"({', '.join(data.generated_names())}), not {ds['name']!r}")
  if ds["name"] in sequence_tasks.names():
    if top["num_epochs"]:
      raise ConfigError(f"config.num_epochs={top['num_epochs']}: the generated {ds['name']} task "
                        "has no epochs (fresh batches every step); use config.num_steps")
    task = sequence_tasks.get_task(ds["name"])
    if top["loss"] != task.loss:
      raise ConfigError(f"config.loss={top['loss']!r}: the {ds['name']} task needs {task.loss!r}")

  if opt["name"] == "avg_grad_rmsprop":
    check_group(lookup(config, "optimizer.avg_grad", {}, none_is_default=True), AVG_GRAD_KEYS,
                "optimizer.avg_grad")
  if opt["schedule"] == "warmup_cosine" and not top["num_epochs"] and opt["warmup_steps"] >= top["num_steps"]:
    raise ConfigError(f"config.optimizer.warmup_steps={opt['warmup_steps']}: must be < "
                      f"config.num_steps={top['num_steps']}")
  if opt["schedule"] == "step":
    b = list(opt["step_boundaries"])
    if any(isinstance(x, bool) or not isinstance(x, numbers.Integral) or x <= 0 for x in b) or b != sorted(b):
      raise ConfigError(f"config.optimizer.step_boundaries={tuple(b)!r}: must be increasing positive integers")

  if diag["enabled"] and diag["every"] % log_every:
    raise ConfigError(f"config.diagnostics.every={diag['every']}: must be a multiple of "
                      f"config.log_every={log_every}")
