"""Model registry: config name → builder and its typed keys, so configs select models by name.

A builder is ``builder(model_cfg, *, num_classes, input_shape) -> nn.Module``
where `model_cfg` holds the model's declared keys with defaults filled in
(`stable_training.schema.check_group`) and `input_shape` is the per-example
shape of the (viewed) inputs, e.g. (784,) or (784, 1). Each model declares its
keys next to its builder: ``@register_model("deep_mlp", keys={...})``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import flax.linen as nn
import ml_collections

from stable_training import activations, initializers
from stable_training.schema import ConfigError, Key, check_group

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, tuple[Builder, dict[str, Key] | None]] = {}


def common_keys(*, kernel_init: str = "glorot_normalized", remat: bool = False) -> dict[str, Key]:
  """Keys every feed-forward model shares: name, width, depth, activation(+kwargs), kernel_init, remat."""
  return {
      "name": Key(str, "deep_mlp", doc="registered model name"),
      "width": Key(int, 128, lo=1, doc="hidden units"),
      "depth": Key(int, 1, lo=1, doc="hidden layers (or stacked recurrent layers)"),
      "activation": Key(str, "tanh", choices=tuple(activations.names())),
      "activation_kwargs": Key(dict, {}, doc="e.g. t_left / t_right for tgelu"),
      "kernel_init": Key(str, kernel_init, choices=tuple(initializers.names())),
      "remat": Key(bool, remat, doc="jax.checkpoint each layer: keep only its input and pre-activation (no matmul recomputed)"),
  }


def register_model(name: str, keys: Mapping[str, Key] | None = None) -> Callable[[Builder], Builder]:
  """Decorator registering `builder` under `name` (unique) with its declared `keys`."""
  def deco(builder: Builder) -> Builder:
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = (builder, dict(keys) if keys is not None else None)
    return builder
  return deco


def names() -> list[str]:
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def model_keys(name: str) -> dict[str, Key] | None:
  """The keys model `name` declares (None: registered without a contract; its config is passed as is)."""
  return _REGISTRY[name][1]


def is_import_path(name: str) -> bool:
  """Whether a model name is an import path ``package.module:Class`` rather than a registered name."""
  return isinstance(name, str) and ":" in name


def import_model_class(name: str) -> type:
  """The `flax.linen.Module` subclass named by ``package.module:Class``.

  Raises:
    ConfigError: the module cannot be imported, has no such attribute, or it is not a linen Module (one line).
  """
  import importlib
  mod_name, _, attr = name.partition(":")
  try:
    mod = importlib.import_module(mod_name)
  except Exception as e:  # any failure of the user's module is reported in one line
    raise ConfigError(f"config.model.name={name!r}: cannot import {mod_name!r} "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  obj = mod
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ConfigError(f"config.model.name={name!r}: module {mod_name!r} has no attribute {attr!r}")
    obj = getattr(obj, part)
  if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
    raise ConfigError(f"config.model.name={name!r}: {attr} is not a flax.linen.Module subclass")
  return obj


def _module_fields(cls: type) -> set[str]:
  import dataclasses
  return {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}


def _resolve_import_path(model_cfg) -> ml_collections.ConfigDict:
  """An import-path model's config: the keys that are fields of its class; keys of registered models that the
  class does not have are dropped (configs share one model group); any other key is a typo."""
  cls = import_model_class(model_cfg.name)
  fields = _module_fields(cls)
  others = {k for _, ks in _REGISTRY.values() if ks for k in ks}
  out = {"name": model_cfg.name}
  for k, v in model_cfg.items():
    if k == "name":
      continue
    if k in fields:
      out[k] = v
    elif k not in others:
      raise ConfigError(f"config.model.{k}: not a field of {model_cfg.name} (fields: {', '.join(sorted(fields))})")
  return ml_collections.ConfigDict(out)


def resolve_model_config(model_cfg) -> ml_collections.ConfigDict:
  """``config.model`` checked against its model's declared keys, defaults filled in.

  Keys declared only by other models are accepted (configs share one
  ``model`` group across variants) but unchecked; any other key is a typo.
  ``name = "package.module:Class"`` names any flax.linen Module: its config
  keys are the class's fields (see `build_model`).

  Raises:
    ConfigError: unknown model, unknown key, or a bad value (one line).
  """
  name = model_cfg.name
  if is_import_path(name):
    return _resolve_import_path(model_cfg)
  if name not in _REGISTRY:
    raise ConfigError(f"config.model.name={name!r}: valid choices are {', '.join(names())}, "
                      "or an import path package.module:Class")
  schema = _REGISTRY[name][1]
  if schema is None:  # a model registered without declared keys (e.g. in a test)
    return model_cfg
  others = {k for _, ks in _REGISTRY.values() if ks for k in ks}
  values = check_group(model_cfg, schema, "model", allowed=others)
  values["name"] = name
  if "activation" in values:
    try:
      activations.get_activation(values["activation"], **dict(values.get("activation_kwargs") or {}))
    except (ValueError, TypeError) as e:
      raise ConfigError(f"config.model.activation_kwargs: {e}") from None
  return ml_collections.ConfigDict(values)


def build_model(model_cfg, *, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
  """Builds ``model_cfg.name`` from the registry with its declared keys resolved.

  An import path ``package.module:Class`` builds ``Class(**fields)`` from the
  config keys that are fields of the class, plus ``num_classes`` when the class
  has that field and the config does not set it (the engine then checks the
  module with `jax.eval_shape` before writing anything).

  Raises:
    ConfigError: unknown name or bad keys (the message lists the valid ones).
  """
  cfg = resolve_model_config(model_cfg)
  if is_import_path(cfg.name):
    # A user's module: its fields from the config; num_classes where the class has such a field.
    cls = import_model_class(cfg.name)
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    if "num_classes" in _module_fields(cls):
      kwargs.setdefault("num_classes", num_classes)
    try:
      return cls(**{k: (v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v) for k, v in kwargs.items()})
    except TypeError as e:
      raise ConfigError(f"config.model (name={cfg.name!r}): {e}") from None
  return _REGISTRY[cfg.name][0](cfg, num_classes=num_classes, input_shape=tuple(input_shape))
