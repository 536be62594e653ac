"""Standardization, input views (flatten / image / sequential / permuted) and batching."""
from __future__ import annotations

import functools
from typing import Iterator

import numpy as np

VIEWS = ("flatten", "image", "sequential", "permuted_sequential")


def standardize(train_x: np.ndarray, test_x: np.ndarray, eps: float = 1e-8):
  """``(x − μ)/σ`` with one scalar μ, σ computed on `train_x` only, applied to both.

  A scalar (not per-pixel) statistic keeps constant border pixels finite and
  leaves the relative scale of pixels unchanged; no test statistics leak in.
  """
  tx = np.asarray(train_x, np.float32)
  mu = float(tx.mean(dtype=np.float64))
  sd = float(tx.std(dtype=np.float64))
  sd = sd if sd > eps else 1.0
  return ((tx - mu) / sd).astype(np.float32), ((np.asarray(test_x, np.float32) - mu) / sd).astype(np.float32)


def permutation(length: int, seed: int = 0) -> np.ndarray:
  """The fixed pixel order of the permuted-sequential task (Le, Jaitly & Hinton 2015).

  ``np.random.default_rng(seed).permutation(length)``: a function of
  (length, seed) only, hence identical for the train and test split.
  """
  return np.random.default_rng(seed).permutation(length)


def apply_view(x: np.ndarray, view: str, *, seed: int = 0) -> np.ndarray:
  """Presents a batch ``x`` of shape ``[N, ...]`` to a model in one of `VIEWS`.

  - ``flatten``: ``[N, D]`` with D = prod of the trailing dims (MLP input).
  - ``image``: unchanged (e.g. ``[N, H, W, C]`` for a ConvNet).
  - ``sequential``: one pixel per time step, ``[N, T, C]`` with T = H·W in
    row-major order (C = 1 for grayscale, so ``[N, T, 1]``); a ``[N, T]``
    sequence becomes ``[N, T, 1]``; a ``[N, T, F]`` sequence is kept
    (sequential MNIST, Le, Jaitly & Hinton 2015).
  - ``permuted_sequential``: the sequential view with time steps reordered by
    ``permutation(T, seed)`` (pMNIST; same permutation for every split).

  Raises ValueError for an unknown view.
  """
  x = np.asarray(x)
  n = x.shape[0]
  if view == "flatten":
    return x.reshape(n, -1)
  if view == "image":
    return x
  if view in ("sequential", "permuted_sequential"):
    if x.ndim == 4:    # images [N, H, W, C] → [N, H·W, C]
      seq = x.reshape(n, -1, x.shape[-1])
    elif x.ndim == 3:  # already a sequence [N, T, F]
      seq = x
    else:              # [N, T] (or [N]) → [N, T, 1]
      seq = x.reshape(n, -1, 1)
    if view == "permuted_sequential":
      seq = seq[:, permutation(seq.shape[1], seed)]
    return seq
  raise ValueError(f"unknown view {view!r}; valid: {', '.join(VIEWS)}")


def batch_indices(num_examples: int, batch_size: int, *, seed: int, step: int) -> np.ndarray:
  """Example indices of minibatch `step`: a pure function of (seed, step).

  steps_per_epoch = ⌊num_examples / batch_size⌋ (the remainder is dropped),
  epoch = ⌊step / steps_per_epoch⌋, π = default_rng([seed, epoch]).permutation(num_examples),
  batch = π[(step mod steps_per_epoch)·batch_size : … + batch_size].
  Each epoch visits every kept example exactly once, and a run restarted at
  any step sees exactly the batches it would have seen (exact resume).
  """
  if batch_size <= 0 or batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size}; valid: 1..num_examples={num_examples}")
  if step < 0:
    raise ValueError(f"step={step}; valid: step >= 0")
  spe = num_examples // batch_size
  epoch, k = divmod(int(step), spe)
  perm = _epoch_permutation(num_examples, int(seed), epoch)
  return perm[k * batch_size:(k + 1) * batch_size]


@functools.lru_cache(maxsize=128)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  # Cached: the engine asks for every step's batch, and re-permuting 60k
  # indices per step and seed would cost more than a small model's step.
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.flags.writeable = False
  return perm


def iterate_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int,
                    start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Infinite generator of ``(x[idx], y[idx])`` with ``idx = batch_indices(len(x), …, step)``
  for step = start_step, start_step + 1, …"""
  if len(x) != len(y):
    raise ValueError(f"len(x)={len(x)} != len(y)={len(y)}")
  step = start_step
  while True:
    idx = batch_indices(len(x), batch_size, seed=seed, step=step)
    yield x[idx], y[idx]
    step += 1
