"""The dataset container, the loader registry and `load`.

Conventions shared by every loader:
- ``Dataset.x`` float32. Images are ``[N, H, W, C]`` with values in [0, 1]
  (raw pixel / max level); sequences and feature vectors keep their natural
  shape and scale (e.g. mnist1d ``[N, 40]``). Standardization is the caller's
  choice (`stable_training.data.standardize`).
- ``Dataset.y`` int32 class indices in ``[0, num_classes)``.
- ``Dataset.image_shape`` is ``(H, W, C)`` for images, ``None`` otherwise.
- A split is ``'train'``, ``'test'`` and, where the dataset has one,
  ``'validation'``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from stable_training.data import tfds_source
from stable_training.data.base import DataError, Dataset

__all__ = ["DataError", "Dataset", "check", "generated_names", "load", "names", "register_dataset", "splits"]


class _Entry(NamedTuple):
  fn: Callable[..., Dataset]
  splits: tuple[str, ...]
  generated: bool = False


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(name: str, splits: tuple[str, ...] = ("train", "test"), generated: bool = False):
  """Decorator: registers ``fn(split, *, data_dir, seed) -> Dataset`` under `name`.

  `load` validates the split against `splits` before calling `fn`. A
  `generated` dataset's fn also takes ``num_train`` (training images to draw).
  """
  def wrap(fn):
    if name in _REGISTRY:
      raise ValueError(f"dataset {name!r} registered twice")
    _REGISTRY[name] = _Entry(fn, tuple(splits), generated)
    return fn
  return wrap


def names() -> tuple[str, ...]:
  """The built-in (registered) dataset names; other names go through TFDS."""
  return tuple(sorted(_REGISTRY))


def splits(name: str) -> tuple[str, ...]:
  """The splits a built-in dataset offers."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown built-in dataset {name!r}; valid: {', '.join(names())}")
  return _REGISTRY[name].splits


def generated_names() -> tuple[str, ...]:
  """Built-in datasets drawn by a generator, whose training split can be any size."""
  return tuple(sorted(n for n, e in _REGISTRY.items() if e.generated))


def load(name: str, split: str, *, data_dir: str | None = None, seed: int = 0,
         num_generated: int = 0) -> Dataset:
  """Loads one split of dataset `name` as a `Dataset` (numpy, float32 x, int32 y).

  Built-in names (`names()`) are read or generated locally; any other name is
  read through ``tensorflow_datasets.data_source`` (the optional ``[tfds]``
  extra) from `data_dir`. `seed` only matters for generated datasets
  (shapeset); fixed datasets ignore it so every seed sees the same data.
  `num_generated` > 0: a generated dataset's training split drawn at that size
  instead of its fixed one (other splits are unchanged).
  """
  if num_generated and name not in generated_names():
    raise ValueError(f"num_generated={num_generated} needs a generated dataset; {name!r} is not one of: "
                     f"{', '.join(generated_names())}")
  if name in _REGISTRY:
    entry = _REGISTRY[name]
    if split not in entry.splits:
      raise ValueError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(entry.splits)}")
    if entry.generated and split == "train" and num_generated:
      return check(entry.fn(split, data_dir=data_dir, seed=seed, num_train=num_generated), split)
    return check(entry.fn(split, data_dir=data_dir, seed=seed), split)
  return check(tfds_source.load_tfds(name, split, data_dir=data_dir, builtin_names=names()), split)


def check(ds: Dataset, split: str) -> Dataset:
  """`ds` if it holds examples with one label each, else `DataError` (one line naming the split)."""
  n_x, n_y = len(ds.x), len(ds.y)
  if n_x == 0:
    raise DataError(f"dataset {ds.name!r}: the {split} split is empty")
  if n_x != n_y:
    raise DataError(f"dataset {ds.name!r}: the {split} split has {n_x} examples but {n_y} labels")
  return ds
