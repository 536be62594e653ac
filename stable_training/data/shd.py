"""Spiking Heidelberg Digits (SHD) reader and spike encoders.

SHD (Cramer, Stradmann, Schemmel & Zenke 2020) ships as HDF5 files
(`shd_train.h5`, `shd_test.h5`) with ragged per-example spike lists:
``spikes/times`` (float, seconds), ``spikes/units`` (int, 0..699) and
``labels`` (0..19). `load_shd` bins them into dense tensors [N, T, 700]:
example n has x[n, t, u] = #{spikes of unit u with ⌊time/max_time · T⌋ = t}
(spikes at or after `max_time` are dropped). The files cannot be downloaded
here; tests use a tiny file written by `write_shd` in the same layout. Needs
``h5py`` (optional extra ``tfds`` in pyproject).

`latency_encode` (time-to-first-spike code of images, for the ALIF runs on
Fashion-MNIST) lives with the model and is re-exported here.
"""
from __future__ import annotations

import numpy as np

from stable_training.models.deep_rnn import latency_encode  # noqa: F401  (re-export)

NUM_UNITS = 700
NUM_CLASSES = 20


def _h5py():
  try:
    import h5py
  except ImportError as e:  # optional dependency
    raise ImportError("SHD needs h5py: pip install 'stable_training[tfds]' (or pip install h5py)") from e
  return h5py


def bin_spikes(times: np.ndarray, units: np.ndarray, num_steps: int, max_time: float,
               num_units: int = NUM_UNITS, binary: bool = False) -> np.ndarray:
  """One example's spike list → counts [num_steps, num_units] in bins of width max_time/num_steps.

  With ``binary`` the counts are clipped to 1 (spike / no spike per bin).
  """
  if num_steps < 1 or max_time <= 0:
    raise ValueError(f"bin_spikes: num_steps={num_steps} must be >= 1 and max_time={max_time} > 0")
  times = np.asarray(times, np.float64)
  units = np.asarray(units, np.int64)
  t = np.floor(times / max_time * num_steps).astype(np.int64)
  keep = (t >= 0) & (t < num_steps) & (units >= 0) & (units < num_units)
  out = np.zeros((num_steps, num_units), np.float32)
  np.add.at(out, (t[keep], units[keep]), 1.0)
  return np.minimum(out, 1.0) if binary else out


def load_shd(path: str, num_steps: int = 100, max_time: float = 1.4, num_units: int = NUM_UNITS,
             binary: bool = False, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """An SHD HDF5 file → (x [N, num_steps, num_units] float32, labels [N] int32).

  Defaults: 100 bins over the first 1.4 s (the SHD recordings last ≤ ~1.4 s),
  as in the LSC paper's SHD setup (Herranz-Celotti & Rouat). `limit` reads
  only the first examples.
  """
  h5py = _h5py()
  with h5py.File(path, "r") as f:
    times, units, labels = f["spikes"]["times"], f["spikes"]["units"], f["labels"]
    n = len(labels) if limit is None else min(limit, len(labels))
    x = np.stack([bin_spikes(times[i], units[i], num_steps, max_time, num_units, binary)
                  for i in range(n)]) if n else np.zeros((0, num_steps, num_units), np.float32)
    y = np.asarray(labels[:n], np.int32)
  return x, y


def write_shd(path: str, times: list, units: list, labels) -> None:
  """Writes spike lists in the SHD HDF5 layout (vlen float16 times, vlen uint16 units, uint16 labels)."""
  h5py = _h5py()
  with h5py.File(path, "w") as f:
    g = f.create_group("spikes")
    tt = g.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.dtype("float32")))
    uu = g.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.dtype("uint16")))
    for i, (t, u) in enumerate(zip(times, units)):
      tt[i] = np.asarray(t, np.float32)
      uu[i] = np.asarray(u, np.uint16)
    f.create_dataset("labels", data=np.asarray(labels, np.uint16))
