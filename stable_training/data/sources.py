"""Built-in datasets readable offline: scikit-learn digits, Fashion-MNIST (IDX), mnist1d."""
from __future__ import annotations

import functools
import os
import random

import numpy as np

from stable_training.data.core import DataError, Dataset, register_dataset
from stable_training.data.idx import read_idx

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def _digits_cache_path() -> str | None:
  """Where the split is cached: importing scikit-learn costs seconds per process, the file milliseconds."""
  import importlib.metadata
  try:
    version = importlib.metadata.version("scikit-learn")
  except importlib.metadata.PackageNotFoundError:
    return None
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "stable_training", f"digits_split_sklearn{version}_seed{DIGITS_SPLIT_SEED}.npz")


@functools.lru_cache(maxsize=1)
def _digits_split():
  path = _digits_cache_path()
  if path and os.path.exists(path):
    try:
      with np.load(path) as f:
        return f["x_train"], f["x_test"], f["y_train"], f["y_test"]
    except (OSError, ValueError, KeyError):
      pass  # unreadable cache: rebuild it below
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  d = load_digits()
  # Fixed stratified split (independent of the run seed): 1437 train / 360 test.
  split = train_test_split(d.images, d.target, test_size=DIGITS_TEST_SIZE, stratify=d.target,
                           random_state=DIGITS_SPLIT_SEED)
  if path:
    try:  # written atomically: concurrent test workers may race here
      os.makedirs(os.path.dirname(path), exist_ok=True)
      tmp = f"{path}.{os.getpid()}.tmp.npz"
      np.savez(tmp, **dict(zip(("x_train", "x_test", "y_train", "y_test"), split)))
      os.replace(tmp, path)
    except OSError:
      pass  # read-only home: no cache, same data
  return split


@register_dataset("digits")
def load_digits(split: str, *, data_dir=None, seed: int = 0) -> Dataset:
  """scikit-learn's bundled 8×8 digits (UCI optdigits test part, 1797 images).

  Pixels 0..16 scaled by 1/16 into [0, 1], x ``[N, 8, 8, 1]``; a fixed,
  stratified 1437/360 train/test split (``random_state=0``, independent of
  `seed`). `data_dir` is unused.
  """
  del data_dir, seed
  xtr, xte, ytr, yte = _digits_split()
  x, y = (xtr, ytr) if split == "train" else (xte, yte)
  x = (np.asarray(x, np.float32) / 16.0)[..., None]
  return Dataset(x, np.asarray(y, np.int32), 10, "digits", (8, 8, 1))


def _find_idx_file(data_dir: str, stem: str) -> str:
  """``stem.gz`` if present, else the uncompressed ``stem``; an error naming both otherwise."""
  for path in (os.path.join(data_dir, stem + ".gz"), os.path.join(data_dir, stem)):
    if os.path.exists(path):
      return path
  raise DataError(f"{os.path.join(data_dir, stem)}[.gz]: file not found. Fashion-MNIST needs the four "
                  f"IDX files (train/t10k images/labels) in data_dir; on Debian: "
                  f"apt-get install dataset-fashion-mnist (→ {FASHION_MNIST_DIR})")


@register_dataset("fashion_mnist")
def load_fashion_mnist(split: str, *, data_dir: str | None = None, seed: int = 0) -> Dataset:
  """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files.

  Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from `data_dir`
  (default ``/usr/share/datasets/fashion-mnist``) with the strict `read_idx`:
  images must be ubyte rank 3 (magic 0x00000803), labels ubyte rank 1 (magic
  0x00000801), equal counts, labels in [0, 10). x = pixel/255 as
  ``[N, 28, 28, 1]`` float32 (60000 train / 10000 test for the real files).
  """
  del seed
  data_dir = data_dir or FASHION_MNIST_DIR
  img_stem, lbl_stem = _FASHION_FILES[split]
  img_path, lbl_path = _find_idx_file(data_dir, img_stem), _find_idx_file(data_dir, lbl_stem)
  images = read_idx(img_path, dtype_code=0x08, ndim=3)
  labels = read_idx(lbl_path, dtype_code=0x08, ndim=1)
  if images.shape[0] != labels.shape[0]:
    raise DataError(f"{img_path} holds {images.shape[0]} images but {lbl_path} holds "
                    f"{labels.shape[0]} labels")
  if labels.size and labels.max() >= 10:
    raise DataError(f"{lbl_path}: label {int(labels.max())} out of range [0, 10)")
  x = (images.astype(np.float32) / 255.0)[..., None]
  return Dataset(x, labels.astype(np.int32), 10, "fashion_mnist", tuple(x.shape[1:]))


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays():
  from mnist1d.data import get_dataset_args, make_dataset
  # make_dataset reseeds the global `random` and `np.random` generators
  # (mnist1d.utils.set_seed); restore them so loading has no side effects.
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    d = make_dataset(get_dataset_args())
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  out = tuple(np.asarray(a, dt) for a, dt in ((d["x"], np.float32), (d["y"], np.int32),
                                              (d["x_test"], np.float32), (d["y_test"], np.int32)))
  for a in out:
    a.setflags(write=False)  # cached: callers get copies
  return out


@register_dataset("mnist1d")
def load_mnist1d(split: str, *, data_dir=None, seed: int = 0) -> Dataset:
  """MNIST-1D (Greydanus 2020), generated offline with the package's default args.

  4000 train / 1000 test sequences of length 40 (x ``[N, 40]``, real-valued,
  not in [0, 1]; image_shape None), 10 classes. Generation (~3 s) is cached
  in-process; `seed` and `data_dir` are unused (the package's default seed 42).
  """
  del data_dir, seed
  xtr, ytr, xte, yte = _mnist1d_arrays()
  x, y = (xtr, ytr) if split == "train" else (xte, yte)
  return Dataset(x.copy(), y.copy(), 10, "mnist1d", None)
