"""The types every dataset module shares: `Dataset` (one split) and `DataError` (bad data).

Their own module so that the loaders (`core`, `tfds_source`, the built-in
readers) import them without importing each other.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
  """One split of a classification dataset (conventions: `stable_training.data.core`)."""
  x: np.ndarray
  y: np.ndarray
  num_classes: int
  name: str
  image_shape: tuple | None


class DataError(ValueError):
  """Data that is missing, truncated or malformed (names the file and the fault)."""
