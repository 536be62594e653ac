"""Typed config contracts: each component declares its keys next to its builder.

A `Key` states a config value's type, default, range or choices; a schema is a
``{name: Key}`` dict. `check_group(group, schema, path)` validates one
ConfigDict group against a schema and returns the values with defaults
filled in, raising `ConfigError` with one line that names the key (``config.PATH.KEY``),
the offending value and what is valid. NaN and ±inf are never valid numbers, nor
floats beyond float32's range (the programs compute in float32).

Used by: model builders (`stable_training.models.register_model(name, keys=…)`),
the optimizer (`optim.factory.OPTIMIZER_KEYS`), the dataset
(`data.DATASET_KEYS`) and the trainers' top-level keys (`stable_training.config`).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping


FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(ValueError):
  """An invalid config value; the message names the key and what is valid."""


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               tuple: "a tuple", dict: "a group of keys"}


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key: ``type`` (int, float, str, bool, tuple, dict), ``default``,
  optional ``choices``, closed bounds ``lo``/``hi`` (``lo_open``/``hi_open`` for
  open ones), ``nullable`` (None allowed) and a one-line ``doc``."""
  type: type
  default: Any
  choices: tuple | None = None
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  nullable: bool = False
  doc: str = ""

  def check(self, path: str, v: Any) -> Any:
    """`v` if valid for this key, else ConfigError (one line naming `path`)."""
    if v is None:
      if self.nullable:
        return None
      raise ConfigError(f"config.{path}=None: must be {_TYPE_NAMES.get(self.type, self.type.__name__)}")
    t = self.type
    ok = {bool: lambda: isinstance(v, bool),
          int: lambda: isinstance(v, numbers.Integral) and not isinstance(v, bool),
          float: lambda: isinstance(v, numbers.Real) and not isinstance(v, bool),
          str: lambda: isinstance(v, str),
          tuple: lambda: isinstance(v, (tuple, list)),
          dict: lambda: hasattr(v, "keys")}[t]()
    if not ok:
      raise ConfigError(f"config.{path}={v!r}: must be {_TYPE_NAMES[t]}")
    if t in (int, float):
      if not math.isfinite(v):
        raise ConfigError(f"config.{path}={v!r}: must be a finite number")
      if t is float and abs(v) > FLOAT32_MAX:  # the compiled programs compute in float32
        raise ConfigError(f"config.{path}={v!r}: outside float32's range (|x| <= {FLOAT32_MAX:.4g})")
      lo_bad = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
      hi_bad = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
      if lo_bad or hi_bad:
        raise ConfigError(f"config.{path}={v!r}: must be in {self.range_text()}")
    if self.choices is not None and v not in self.choices:
      raise ConfigError(f"config.{path}={v!r}: valid choices are {', '.join(map(str, self.choices))}")
    return v

  def range_text(self) -> str:
    lo = "-inf" if self.lo is None else f"{self.lo:g}"
    hi = "inf" if self.hi is None else f"{self.hi:g}"
    return f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"


def check_group(group: Mapping[str, Any], schema: Mapping[str, Key], path: str, *,
                allowed: set[str] | frozenset[str] = frozenset()) -> dict:
  """Validates `group` (a ConfigDict group) against `schema`; returns ``{key: value}`` with defaults filled.

  Keys of `group` outside `schema` and `allowed` are typos: one line naming
  the key and the valid keys. `allowed` holds keys that belong to other
  components sharing the group (e.g. other models' keys in ``config.model``),
  which are accepted unchecked.
  """
  keys = set(group.keys()) if hasattr(group, "keys") else set()
  unknown = sorted(keys - set(schema) - set(allowed))
  prefix = f"{path}." if path else ""  # path "": the top level
  if unknown:
    valid = ", ".join(sorted(set(schema) | set(allowed)))
    where = f"keys of config.{path}" if path else "top-level keys"
    raise ConfigError(f"unknown key config.{prefix}{unknown[0]}; valid {where}: {valid}")
  out = {}
  for name, key in schema.items():
    v = group[name] if name in keys else key.default
    out[name] = key.check(f"{prefix}{name}", v)
  return out


def defaults(schema: Mapping[str, Key]) -> dict:
  """``{name: default}`` of a schema."""
  return {k: v.default for k, v in schema.items()}
