"""Permuted sequential Fashion-MNIST (784 steps): ROAF RNN vs tanh Elman vs LSTM vs GRU, through the engine.

Ceni (2022) reports a single-layer ROAF RNN,
h_t = α O h_{t−1} + β φ(W x_t + U h_{t−1} + b), above 94 % test accuracy on
psMNIST after one epoch and above 98 % after ten. MNIST cannot be downloaded
here, so this uses Fashion-MNIST (a harder dataset: expect lower numbers), one
pixel per step in a fixed random order (permutation seed 0), standardized
with the training set's scalar mean/std. The ROAF cell runs at this study's
former setting, β = 1 − α with Haar O (the ledger's Fashion rows); the setting
search on MNIST is `stable_training.studies.roaf_psmnist`.

Each cell is the config ``experiments/configs/roaf.py:psmnist-CELL`` (hidden
128, Adam 2e-3 with global-norm clipping 1.0, batch 128, evaluated after
every epoch), run by the engine with `seeds` seeds vmapped; the settings
override the budget. `setting` "quick" / "tiny" replace the budget whatever the
other fields say (2,000 images, 2 epochs / digits, width 8), as the script's
--quick / --tiny always did.

`run(settings, root) → payload`, `table(payload, command) → markdown`; the entry point is
``scripts/reproduce_roaf_psmnist.py``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

BUDGETS = ("full", "quick", "tiny")
# The payload's "flags" record: these fields, in this order (the JSON format of the script's results).
FLAG_FIELDS = ("cells", "hidden", "alpha", "num_train", "num_test", "epochs", "seeds", "batch", "lr", "tag")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Cells and budget (defaults: the script's flags). `setting`: full, quick or tiny (see the module docstring);
  `tag`: the output-name suffix, recorded in the payload; `data_dir`: the dataset folder ("" = the loader's)."""
  cells: tuple = ("roaf", "elman", "lstm", "gru")
  hidden: int = 128
  alpha: float = 0.5               # ROAF α (β = 1 − α)
  num_train: int = 0               # training images (0 = all 60,000)
  num_test: int = 0                # test images (0 = all 10,000)
  epochs: int = 1
  seeds: int = 1                   # vmapped in one program
  batch: int = 128
  lr: float = 2e-3                 # Adam
  tag: str = ""
  data_dir: str = ""
  setting: str = "full"

  def __post_init__(self):
    from experiments.configs import roaf
    sweep_lib.check_choice("setting", self.setting, BUDGETS)
    sweep_lib.check_members("cells", self.cells, roaf.CELLS)


def quick(**kw) -> Settings:
  """Minutes: 2,000 training / 1,000 test images, 2 epochs, batch 64."""
  return Settings(**{"setting": "quick", **kw})


def tiny(**kw) -> Settings:
  """Seconds: digits (64-step permuted sequences), width 8, 256 / 100 images, 2 epochs (the suite's smoke test)."""
  return Settings(**{"setting": "tiny", **kw})


def make_config(s: Settings, cell: str):
  """The engine config ``roaf.py:psmnist-CELL`` of one cell at the settings' budget."""
  from experiments.configs import roaf
  c = roaf.get_config(f"psmnist-{cell}")
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.model.width, c.model.alpha = s.hidden, s.alpha
  if cell == "roaf":  # this study's setting (the ledger's Fashion rows): β = 1 − α, Haar O; the config ships
    c.model.beta, c.model.filter_mode = None, "haar"   # the searched one (studies.roaf_psmnist)
  c.dataset.num_train, c.dataset.num_test = s.num_train, s.num_test
  c.num_epochs, c.num_seeds, c.batch_size = s.epochs, s.seeds, s.batch
  c.optimizer.learning_rate = s.lr
  c.progress = "auto"
  if s.setting == "quick":
    c.dataset.num_train, c.dataset.num_test, c.num_epochs, c.batch_size = 2000, 1000, 2, 64
  if s.setting == "tiny":  # digits: 64-step permuted sequences, always available offline
    c.dataset.name, c.dataset.num_train, c.dataset.num_test = "digits", 256, 100
    c.model.width, c.batch_size, c.num_epochs, c.log_every = 8, 32, 2, 4
    c.eval_batch_size, c.progress = 100, "none"
  return c


def row(cell: str, c, summary: dict) -> dict:
  """One table row from a run's summary: test accuracy after each epoch (mean, std, per seed at the last),
  parameters, time per epoch (the first evaluation's step / steps per second)."""
  s = summary
  evals = [h for h in s["history"] if "test_accuracy" in h]
  return {"cell": cell, "seeds": c.num_seeds, "hidden": c.model.width, "epochs": c.num_epochs,
          "test_acc_per_epoch": [h["test_accuracy"]["mean"] for h in evals],
          "test_acc_per_epoch_std": [h["test_accuracy"]["std"] for h in evals],
          "test_acc_epoch1": evals[0]["test_accuracy"]["mean"], "test_acc_last": evals[-1]["test_accuracy"]["mean"],
          "test_acc_last_per_seed": evals[-1]["test_accuracy"]["per_seed"],
          "train_loss_last": s["final"]["train_loss"]["mean"], "num_params": s["info"].get("num_params"),
          "steps_per_sec": s["steps_per_sec"], "compile_seconds": s["compile_seconds"],
          "seconds_per_epoch": (len(s["history"]) and
                                (evals[0]["step"] / s["steps_per_sec"] if s["steps_per_sec"] else None))}


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Trains every cell in ``root/psmnist_CELL`` (finished runs read back); returns the payload
  ``{"setting", "flags", "rows"}``."""
  import json
  sweep = sweep_lib.Sweep(root, log=log)
  log = log or (lambda line: print(line, flush=True))
  rows = []
  for cell in s.cells:
    c = make_config(s, cell)
    rows.append(row(cell, c, sweep.run(f"psmnist_{cell}", c)))
    log(json.dumps(rows[-1]))
  flags = {k: getattr(s, k) for k in FLAG_FIELDS}
  return {"setting": s.setting, "flags": {**flags, "cells": list(s.cells)}, "rows": rows}


def settings_of(payload: dict) -> Settings:
  """The settings a payload was made with (its "setting" and "flags"; `data_dir` is not recorded)."""
  return Settings(**{**payload["flags"], "cells": tuple(payload["flags"]["cells"]), "setting": payload["setting"]})


def table(payload: dict, command: str = "") -> str:
  """The markdown report: the budget (the first cell's config), then per cell the test accuracy after each epoch,
  the last epoch's mean ± std over seeds and the seconds per epoch."""
  c = make_config(settings_of(payload), payload["flags"]["cells"][0])
  lines = [f"# Permuted sequential {c.dataset.name} through the engine (`roaf.py:psmnist-CELL`), hidden "
           f"{c.model.width}, {c.dataset.num_train or 'all'} train / {c.dataset.num_test or 'all'} test images, "
           f"Adam {c.optimizer.learning_rate} + global-norm clipping {c.optimizer.clip_global_norm}, batch "
           f"{c.batch_size}, ROAF α = {c.model.alpha}, {c.num_seeds} seed(s)", "",
           f"Regenerate: `{command}`", "",
           "| cell | params | test acc per epoch (mean over seeds) | last epoch (mean ± std) | s per epoch |",
           "|---|---|---|---|---|"]
  for r in payload["rows"]:
    last = np.asarray(r["test_acc_last_per_seed"])
    spe = r["seconds_per_epoch"]
    lines.append(f"| {r['cell']} | {r['num_params']} | {', '.join(f'{a:.4f}' for a in r['test_acc_per_epoch'])} "
                 f"| {last.mean():.4f} ± {last.std():.4f} | {'' if spe is None else f'{spe:.0f}'} |")
  return "\n".join(lines)
