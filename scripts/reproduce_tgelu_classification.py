"""Stable and consistent classification: tGELU + output-layer clipping (Ramaswamy, Bhatnagar & Saxena 2023).

Arms (experiments/configs/tgelu.py): tGELU(−1, 3) + output clipping λ = 1, GELU, GELU +
clipping; the ConvNet on Fashion-MNIST, SGD lr 3e-3, batch 256, all seeds in one vmapped
run per arm through the engine (`stable_training.study.run`). Reports test accuracy
mean ± std across seeds per epoch, the variance of the update values per step (the
paper's instability symptom), and loss smoothness (mean |L_t − L_{t−1}| between
consecutive steps), both read from each run's metrics.jsonl.

  python scripts/reproduce_tgelu_classification.py --epochs 2 --num_train 30720   # results/tgelu_classification
  python scripts/reproduce_tgelu_classification.py            # full: 8 seeds, 5 epochs on 60k
  python scripts/reproduce_tgelu_classification.py --quick    # 4 seeds, 1 epoch on 12k (temporary --out)
  python scripts/reproduce_tgelu_classification.py --tiny     # smoke test on digits (temporary --out)

Writes ``<out>/table[_SETTING][_TAG].md`` and its JSON (``results.json`` for the
full setting without a tag, else ``table_SETTING[_TAG].json``).
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import flags, logging

from experiments.configs import default
from experiments.configs import tgelu
from stable_training import study

STUDY = "tgelu_classification"
study.define_flags(STUDY)
flags.DEFINE_list("arms", list(tgelu.ARMS), "Arms to run.")
flags.DEFINE_integer("num_seeds", None, "Override seeds.")
flags.DEFINE_integer("epochs", None, "Override epochs.")
flags.DEFINE_integer("num_train", None, "Override the number of training examples (a prefix).")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist; "
                    "digits under --tiny).")
FLAGS = flags.FLAGS

_RESULT_FLAGS = ("arms", "num_seeds", "epochs", "num_train", "dataset", "quick", "tiny", "tag", "data_dir", "out")


def configure(arm: str, dataset: str):
  """The arm's config with the budget of the chosen setting."""
  c = tgelu.get_config(arm)
  if FLAGS.tiny:
    default.tiny(c)
  c.dataset.name = dataset
  c.progress = "none" if FLAGS.tiny else "auto"
  n_train, epochs, seeds = 60000, 5, 8
  if dataset == "digits":
    n_train, epochs = 1437, 20
    c.dataset.view = "image"
    c.eval_batch_size = 360
  if FLAGS.quick:
    n_train, epochs, seeds = min(n_train, 12288), 1, 4
  if FLAGS.tiny:
    n_train, epochs, seeds = min(n_train, 1024), 1, 2
    c.batch_size = 64
    c.dataset.num_test = 500 if dataset != "digits" else 0
    c.eval_batch_size = 250 if dataset != "digits" else 360
  if FLAGS.epochs:
    epochs = FLAGS.epochs
  if FLAGS.num_seeds:
    seeds = FLAGS.num_seeds
  if FLAGS.num_train:
    n_train = FLAGS.num_train
  c.dataset.num_train = n_train if n_train < 60000 else 0
  spe = n_train // c.batch_size
  log_every = next(k for k in range(min(39, spe), 0, -1) if spe % k == 0)
  c.num_seeds = seeds
  study.set_budget(c, epochs * spe, log_every=log_every, eval_every=spe)  # evaluated after every epoch
  return c


def command() -> str:
  """The command line that regenerates this table (the result-shaping flags that were given)."""
  return study.command("scripts/reproduce_tgelu_classification.py", only=_RESULT_FLAGS)


def row(c, s: dict, workdir: str) -> dict:
  """Per-epoch test accuracy (summary history) and per-step update variance / |Δloss| (metrics.jsonl)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    train_recs = [r for r in map(json.loads, f) if r.get("kind") == "train"]
  per_epoch = [{"epoch": h["step"] // c.eval_every, "mean": h["test_accuracy"]["mean"],
                "std": h["test_accuracy"]["std"], "per_seed": h["test_accuracy"]["per_seed"]}
               for h in s["history"] if "test_accuracy" in h]
  loss_curve = {"step": [r["step"] for r in train_recs],
                "values": np.asarray([r["train_loss"]["per_seed"] for r in train_recs]).T.tolist()}
  upd_var = sum(r["update_var"]["mean"] for r in train_recs) / len(train_recs)
  smooth = [r["loss_abs_diff"]["mean"] for r in train_recs if "loss_abs_diff" in r]
  return {"per_epoch": per_epoch, "update_var": upd_var,
          "loss_abs_diff": sum(smooth) / len(smooth) if smooth else float("nan"),
          "final_train_loss": s["final"]["train_loss"]["mean"], "train_loss_curve": loss_curve,
          "steps_per_sec": s["steps_per_sec"], "seeds": c.num_seeds, "steps": c.num_steps}


def plot_curves(rows: dict, path: str) -> None:
  """Two panels: test accuracy after each epoch and the training loss of each logging window, per arm
  (mean over seeds as a line, min–max across seeds as a band; Ramaswamy et al.'s consistency claim is
  the band's width)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from stable_training.diagnostics.plot import plot_learning_curves
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
  acc = {arm: {"step": [e["epoch"] for e in r["per_epoch"]],
               "values": np.asarray([e["per_seed"] for e in r["per_epoch"]]).T.tolist()} for arm, r in rows.items()}
  plot_learning_curves(acc, "test accuracy", xlabel="epoch", title="test accuracy after each epoch", ax=axes[0])
  plot_learning_curves({arm: r["train_loss_curve"] for arm, r in rows.items()}, "training loss (log scale)",
                       log_y=True, xlabel="training step", title="training loss (per logging window)", ax=axes[1])
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for arm in FLAGS.arms:
    tgelu.get_config(arm)  # unknown arm: fail before anything runs
  dataset = "digits" if FLAGS.tiny and not FLAGS["dataset"].present else study.pick_dataset(FLAGS.dataset)
  study.setup_process([configure(arm, dataset).num_seeds for arm in FLAGS.arms])
  out = study.out_dir(STUDY)
  rows = {}
  for i, arm in enumerate(FLAGS.arms):
    c = configure(arm, dataset)
    print(f"[{i + 1}/{len(FLAGS.arms)}] {arm}: {c.num_seeds} seeds, {c.num_steps} steps on {dataset}", flush=True)
    s = study.run(c, STUDY, arm)
    rows[arm] = row(c, s, study.workdir(STUDY, arm))
    print(f"{arm}: " + ", ".join(f"ep{e['epoch']} {e['mean']:.4f}±{e['std']:.4f}" for e in rows[arm]["per_epoch"]),
          flush=True)
  epochs = max(len(r["per_epoch"]) for r in rows.values())
  head = "| arm | " + " | ".join(f"test acc ep {e + 1}" for e in range(epochs)) + \
         " | mean update variance / step | mean abs Δloss / step | final train loss |"
  lines = [f"ConvNet on {dataset} ({c.dataset.num_train or 'all'} train examples), SGD lr {c.optimizer.learning_rate}, "
           f"batch {c.batch_size}, {c.num_seeds} seeds per arm in one vmapped run, {c.num_steps} steps.",
           "", f"Regenerate: `{command()}`",
           "", head, "|" + "---|" * (epochs + 4)]
  for arm, r in rows.items():
    accs = " | ".join(f"{e['mean']:.4f} ± {e['std']:.4f}" for e in r["per_epoch"])
    lines.append(f"| {arm} | {accs} | {r['update_var']:.3e} | {r['loss_abs_diff']:.4f} | {r['final_train_loss']:.4f} |")
  table = "\n".join(lines)
  print(table)
  name = study.stem("table")
  plot_curves(rows, os.path.join(out, name + ".png"))
  table += f"\n\nLearning curves: `{name}.png` (test accuracy per epoch, training loss per step; bands: min–max over seeds)."
  study.write_results(out, table, {"dataset": dataset, "rows": rows}, name=name)
  print(f"wrote {os.path.join(out, name)}.md and .png")


if __name__ == "__main__":
  study.app_run(main)
