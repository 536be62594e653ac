"""Stable and consistent classification: tGELU + output-layer clipping (Ramaswamy, Bhatnagar & Saxena 2023).

Arms (experiments/configs/tgelu.py): tGELU(−1, 3) + output clipping λ = 1, GELU, GELU +
clipping; the ConvNet on Fashion-MNIST, SGD lr 3e-3, batch 256, all seeds in one vmapped
run per arm through the engine (`sweep.Sweep`, workdir ``root/ARM``). Reports test
accuracy mean ± std across seeds after every epoch, the variance of the update values
per step (the paper's instability symptom), and loss smoothness (mean |L_t − L_{t−1}|
between consecutive steps), both read from each run's metrics.jsonl.

Budget: all 60,000 training images (digits: its 1,437) for 5 epochs (digits: 20),
8 seeds; `max_train` caps the training set of the smaller budgets unless `num_train`
names it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

ARMS = ("tgelu-clip", "gelu", "gelu-clip")   # experiments/configs/tgelu.py's ARMS, in its order
FULL_TRAIN = 60000                           # Fashion-MNIST's training images


@dataclasses.dataclass(frozen=True)
class Settings:
  """Arms and budget (defaults: the full setting)."""
  arms: tuple = ARMS
  dataset: str = "auto"   # fashion_mnist | digits | auto (Fashion-MNIST if its files exist)
  data_dir: str = ""
  num_train: int = 0      # training examples (a prefix); 0 = the dataset's (60,000 / digits 1,437), ≤ max_train
  max_train: int = 0      # cap on the dataset's training examples when num_train is 0 (0 = none)
  epochs: int = 0         # 0 = 5 (digits: 20)
  num_seeds: int = 8
  tiny: bool = False      # `default.tiny` applied to each config, batch 64, a 500-image test subset

  def __post_init__(self):
    if not self.arms:
      raise ValueError("arms=(): need at least one arm")
    for arm in self.arms:
      if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r} of tgelu.py; valid: {', '.join(ARMS)}")
    if min(self.num_train, self.max_train, self.epochs) < 0 or self.num_seeds < 1:
      raise ValueError(f"num_train={self.num_train}, max_train={self.max_train}, epochs={self.epochs}, "
                       f"num_seeds={self.num_seeds}: need counts >= 0 and num_seeds >= 1")


def quick(**kw) -> Settings:
  """Minutes: 4 seeds, 1 epoch on the first 12,288 training images."""
  return Settings(**{**dict(max_train=12288, epochs=1, num_seeds=4), **kw})


def tiny(**kw) -> Settings:
  """Seconds: digits, 1,024 training images, 1 epoch of batch 64, 2 seeds (the suite's smoke test)."""
  return Settings(**{**dict(dataset="digits", max_train=1024, epochs=1, num_seeds=2, tiny=True), **kw})


def make_config(s: Settings, arm: str, dataset: str):
  """The arm's config (``tgelu.py:ARM``) on `dataset` (resolved, not ``auto``) at the budget of `s`, evaluated
  after every epoch."""
  from experiments.configs import default
  from experiments.configs import tgelu
  c = tgelu.get_config(arm)
  if s.tiny:
    default.tiny(c)
  c.dataset.name = dataset
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.progress = "none" if s.tiny else "auto"
  n_train, epochs = FULL_TRAIN, 5
  if dataset == "digits":
    n_train, epochs = 1437, 20
    c.dataset.view = "image"
    c.eval_batch_size = 360
  if s.max_train:
    n_train = min(n_train, s.max_train)
  if s.tiny:
    c.batch_size = 64
    c.dataset.num_test = 500 if dataset != "digits" else 0
    c.eval_batch_size = 250 if dataset != "digits" else 360
  epochs = s.epochs or epochs
  n_train = s.num_train or n_train
  c.dataset.num_train = n_train if n_train < FULL_TRAIN else 0
  spe = n_train // c.batch_size
  if spe < 1:
    raise ValueError(f"num_train={n_train}: fewer training examples than one batch of {c.batch_size}")
  log_every = next(k for k in range(min(39, spe), 0, -1) if spe % k == 0)
  c.num_seeds = s.num_seeds
  sweep_lib.set_budget(c, epochs * spe, log_every=log_every, eval_every=spe)  # evaluated after every epoch
  return c


def row(c, summary: dict, workdir: str) -> dict:
  """Per-epoch test accuracy (summary history) and per-step update variance / |Δloss| (metrics.jsonl)."""
  train_recs = sweep_lib.train_records(workdir)
  per_epoch = [{"epoch": h["step"] // c.eval_every, "mean": h["test_accuracy"]["mean"],
                "std": h["test_accuracy"]["std"], "per_seed": h["test_accuracy"]["per_seed"]}
               for h in summary["history"] if "test_accuracy" in h]
  loss_curve = {"step": [r["step"] for r in train_recs],
                "values": np.asarray([r["train_loss"]["per_seed"] for r in train_recs]).T.tolist()}
  upd_var = sum(r["update_var"]["mean"] for r in train_recs) / len(train_recs)
  smooth = [r["loss_abs_diff"]["mean"] for r in train_recs if "loss_abs_diff" in r]
  return {"per_epoch": per_epoch, "update_var": upd_var,
          "loss_abs_diff": sum(smooth) / len(smooth) if smooth else float("nan"),
          "final_train_loss": summary["final"]["train_loss"]["mean"], "train_loss_curve": loss_curve,
          "steps_per_sec": summary["steps_per_sec"], "seeds": c.num_seeds, "steps": c.num_steps}


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Every arm in ``root/ARM`` (finished ones read back); returns ``{"dataset", "rows": {arm: row}}``."""
  say = log or (lambda m: print(m, flush=True))
  dataset = sweep_lib.pick_dataset(s.dataset, s.data_dir)
  sw = sweep_lib.Sweep(root, log=log)
  rows = {}
  for i, arm in enumerate(s.arms):
    c = make_config(s, arm, dataset)
    say(f"[{i + 1}/{len(s.arms)}] {arm}: {c.num_seeds} seeds, {c.num_steps} steps on {dataset}")
    rows[arm] = row(c, sw.run(arm, c), sw.workdir(arm))
    say(f"{arm}: " + ", ".join(f"ep{e['epoch']} {e['mean']:.4f}±{e['std']:.4f}" for e in rows[arm]["per_epoch"]))
  return {"dataset": dataset, "rows": rows}


def table(payload: dict, command: str = "", *, settings: Settings, figure: str = "") -> str:
  """The markdown report: test accuracy after each epoch (mean ± std over seeds), mean update variance and
  |Δloss| per step, final training loss, per arm; `settings`: those of the run (the budget line); `figure`:
  the learning-curve PNG's file name, named in a last line."""
  rows = payload["rows"]
  c = make_config(settings, list(rows)[-1], payload["dataset"])
  epochs = max(len(r["per_epoch"]) for r in rows.values())
  head = "| arm | " + " | ".join(f"test acc ep {e + 1}" for e in range(epochs)) + \
         " | mean update variance / step | mean abs Δloss / step | final train loss |"
  lines = [f"ConvNet on {payload['dataset']} ({c.dataset.num_train or 'all'} train examples), SGD lr "
           f"{c.optimizer.learning_rate}, batch {c.batch_size}, {c.num_seeds} seeds per arm in one vmapped run, "
           f"{c.num_steps} steps.",
           "", f"Regenerate: `{command}`",
           "", head, "|" + "---|" * (epochs + 4)]
  for arm, r in rows.items():
    accs = " | ".join(f"{e['mean']:.4f} ± {e['std']:.4f}" for e in r["per_epoch"])
    lines.append(f"| {arm} | {accs} | {r['update_var']:.3e} | {r['loss_abs_diff']:.4f} | {r['final_train_loss']:.4f} |")
  if figure:
    lines += ["", f"Learning curves: `{figure}` (test accuracy per epoch, training loss per step; bands: min–max "
              "over seeds)."]
  return "\n".join(lines)


def plot(payload: dict, path: str) -> None:
  """Two panels into the PNG `path`: test accuracy after each epoch and the training loss of each logging window,
  per arm (mean over seeds as a line, min–max across seeds as a band; Ramaswamy et al.'s consistency claim is
  the band's width)."""
  from stable_training.diagnostics.plot import plot_learning_curves   # sets the Agg backend
  import matplotlib.pyplot as plt
  rows = payload["rows"]
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
  acc = {arm: {"step": [e["epoch"] for e in r["per_epoch"]],
               "values": np.asarray([e["per_seed"] for e in r["per_epoch"]]).T.tolist()} for arm, r in rows.items()}
  plot_learning_curves(acc, "test accuracy", xlabel="epoch", title="test accuracy after each epoch", ax=axes[0])
  plot_learning_curves({arm: r["train_loss_curve"] for arm, r in rows.items()}, "training loss (log scale)",
                       log_y=True, xlabel="training step", title="training loss (per logging window)", ax=axes[1])
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
