"""Small helpers shared by the `scripts/reproduce_*.py` studies.

A study is a list of configs run through `train_and_evaluate`, then a table:
these helpers pick the offline dataset, set dotted config keys, and write a
study's table and JSON under ``results/<study>/``.
"""
from __future__ import annotations

import json
import os
from typing import Any

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def pick_dataset(name: str = "auto") -> str:
  """``auto`` → ``fashion_mnist`` when its IDX files exist, else ``digits``."""
  if name != "auto":
    return name
  have = os.path.exists(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
  return "fashion_mnist" if have else "digits"


def apply_overrides(config, overrides: dict[str, Any]):
  """Sets dotted keys of a ConfigDict, e.g. ``{"model.depth": 50}``; returns it."""
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    node = config
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


def set_budget(config, num_steps: int, *, log_every: int | None = None, eval_every: int | None = None):
  """Sets num_steps and keeps log/eval/checkpoint intervals consistent (multiples of log_every)."""
  config.num_steps = num_steps
  config.log_every = log_every or min(config.log_every, num_steps)
  config.eval_every = eval_every or num_steps
  config.checkpoint_every = config.eval_every
  return config


def write_results(out_dir: str, table: str, payload: dict) -> None:
  """Writes ``table.md`` and ``results.json`` into `out_dir` (created)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(table.rstrip() + "\n")
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(payload, f, indent=2)
