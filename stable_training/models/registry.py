"""Model registry: config name → builder, so configs select models by name.

A builder is ``builder(model_cfg, *, num_classes, input_shape) -> nn.Module``
where `model_cfg` is the ``config.model`` ConfigDict and `input_shape` the
per-example shape of the (viewed) inputs, e.g. (784,) or (784, 1).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
  """Decorator registering `builder` under `name` (unique)."""
  def deco(builder: Builder) -> Builder:
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = builder
    return builder
  return deco


def names() -> list[str]:
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def build_model(model_cfg, *, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
  """Builds ``model_cfg.name`` from the registry.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  name = model_cfg.name
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
  return _REGISTRY[name](model_cfg, num_classes=num_classes, input_shape=tuple(input_shape))
