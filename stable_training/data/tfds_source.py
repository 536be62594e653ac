"""Any other dataset through TensorFlow Datasets' array_record data sources (no TensorFlow).

``tfds.data_source(name, split=..., data_dir=...)`` reads a dataset prepared
with ``tfds build NAME`` (array_record format) as random-access numpy records;
images decode through Pillow. Nothing is downloaded here: a missing dataset
is an error that says how to provide it.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from stable_training.data.base import DataError, Dataset

_HOWTO = ("provide it as a prepared TFDS dataset: on a machine with internet run "
          "`pip install 'stable_training[tfds]' && tfds build {name} --data_dir DIR` "
          "(array_record is the default format), copy DIR here and pass data_dir=DIR")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return tfds


def _decode_image(v) -> np.ndarray:
  if isinstance(v, (bytes, bytearray)):  # still PNG/JPEG-encoded
    from PIL import Image  # pylint: disable=import-outside-toplevel
    v = np.asarray(Image.open(io.BytesIO(v)))
  a = np.asarray(v)
  return a[..., None] if a.ndim == 2 else a


def _num_classes(source) -> int | None:
  """From the dataset's ClassLabel feature; None (→ max label + 1) when unavailable."""
  try:
    return int(source.dataset_info.features["label"].num_classes)
  except (AttributeError, KeyError, TypeError):
    return None


def records_to_dataset(name: str, records: Sequence[dict[str, Any]], num_classes: int | None = None) -> Dataset:
  """Converts TFDS example dicts (``image``/``text`` + ``label``) to a `Dataset`.

  Images (uint8) become float32 ``[N, H, W, C]`` in [0, 1] (÷255); text
  datasets (e.g. imdb_reviews) keep the raw UTF-8 strings in an object array
  (tokenization is the caller's choice).
  """
  if not records:
    raise DataError(f"tfds dataset {name!r}: split is empty")
  first = records[0]
  if "label" not in first:
    raise DataError(f"tfds dataset {name!r}: records have no 'label' feature (keys: {sorted(first)})")
  y = np.asarray([int(r["label"]) for r in records], np.int32)
  if "image" in first:
    x = np.stack([_decode_image(r["image"]) for r in records])
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / scale
    image_shape = tuple(x.shape[1:])
  elif "text" in first:
    x = np.asarray([r["text"].decode("utf-8") if isinstance(r["text"], bytes) else str(r["text"])
                    for r in records], dtype=object)
    image_shape = None
  else:
    raise DataError(f"tfds dataset {name!r}: no 'image' or 'text' feature (keys: {sorted(first)})")
  k = num_classes if num_classes is not None else (int(y.max()) + 1)
  if y.min() < 0 or y.max() >= k:
    raise DataError(f"tfds dataset {name!r}: labels outside [0, {k})")
  return Dataset(x, y, k, name, image_shape)


def load_tfds(name: str, split: str, *, data_dir: str | None, builtin_names: Sequence[str]) -> Dataset:
  """Loads `split` of TFDS dataset `name` from `data_dir` (see the module docstring)."""
  tfds = _import_tfds()
  if tfds is None:
    raise ValueError(f"unknown dataset {name!r}; built-in: {', '.join(builtin_names)}. "
                     f"Other names need the optional TFDS extra (pip install 'stable_training[tfds]') "
                     f"and the data: " + _HOWTO.format(name=name))
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    n = len(source)
    if hasattr(source, "__getitems__"):  # batched reads (BaseDataSource); 4096 records per call
      records = [r for lo in range(0, n, 4096) for r in source.__getitems__(list(range(lo, min(n, lo + 4096))))]
    else:
      records = [source[i] for i in range(n)]
  except Exception as e:  # tfds raises many types (DatasetNotFoundError, AssertionError, OSError…)
    raise DataError(f"tfds dataset {name!r} split {split!r} not readable from data_dir={data_dir!r} "
                    f"({type(e).__name__}: {e}); " + _HOWTO.format(name=name)) from e
  return records_to_dataset(name, records, _num_classes(source))
