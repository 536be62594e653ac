"""Stable and consistent classification: tGELU + output-layer clipping (Ramaswamy, Bhatnagar & Saxena 2023).

Arms (experiments/configs/tgelu.py): tGELU(−1, 3) + output clipping λ = 1, GELU, GELU +
clipping; the ConvNet on Fashion-MNIST, SGD lr 3e-3, batch 256, all seeds in one vmapped
run per arm. Reports test accuracy mean ± std across seeds per epoch, the variance of the
update values per step (the paper's instability symptom), and loss smoothness (mean
|L_t − L_{t−1}| between consecutive steps). Writes results/tgelu_classification/.

  python scripts/reproduce_tgelu_classification.py            # full: 8 seeds, 5 epochs
  python scripts/reproduce_tgelu_classification.py --quick    # 4 seeds, 1 epoch on 12k examples
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from experiments.configs import tgelu  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "4 seeds, 1 epoch on 12,288 training examples.")
flags.DEFINE_bool("tiny", False, "Smoke-test budget (seconds).")
flags.DEFINE_list("arms", list(tgelu.ARMS), "Arms to run.")
flags.DEFINE_integer("num_seeds", None, "Override seeds.")
flags.DEFINE_integer("epochs", None, "Override epochs.")
flags.DEFINE_integer("num_train", None, "Override the number of training examples (a prefix).")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto.")
flags.DEFINE_string("out", "results/tgelu_classification", "Output folder.")
flags.DEFINE_string("workdir_root", None, "Run workdirs (default: temp dir).")


def configure(arm: str, dataset: str):
  """The arm's config with the budget of the chosen setting."""
  c = tgelu.get_config(arm)
  c.dataset.name = dataset
  c.progress = "none"
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
  if n_train < 60000:
    c.dataset.num_train = n_train
  spe = n_train // c.batch_size
  log_every = next(k for k in range(min(39, spe), 0, -1) if spe % k == 0)
  c.num_seeds = seeds
  c.log_every, c.eval_every, c.checkpoint_every = log_every, spe, spe
  c.num_steps = epochs * spe
  return c


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from stable_training.study import pick_dataset, write_results
  from stable_training.train import train_and_evaluate
  dataset = pick_dataset(FLAGS.dataset)
  root = FLAGS.workdir_root or tempfile.mkdtemp(prefix="tgelu_")
  rows = {}
  for arm in FLAGS.arms:
    c = configure(arm, dataset)
    s = train_and_evaluate(c, os.path.join(root, arm))
    recs = [json.loads(l) for l in open(os.path.join(root, arm, "metrics.jsonl"))]
    train_recs = [r for r in recs if r.get("kind") == "train"]
    per_epoch = [{"epoch": r["step"] // c.eval_every, "mean": r["test_accuracy"]["mean"],
                  "std": r["test_accuracy"]["std"], "per_seed": r["test_accuracy"]["per_seed"]}
                 for r in train_recs if "test_accuracy" in r]
    upd_var = sum(r["update_var"]["mean"] for r in train_recs) / len(train_recs)
    smooth = [r["loss_abs_diff"]["mean"] for r in train_recs if "loss_abs_diff" in r]
    rows[arm] = {"per_epoch": per_epoch, "update_var": upd_var,
                 "loss_abs_diff": sum(smooth) / len(smooth) if smooth else float("nan"),
                 "final_train_loss": s["final"]["train_loss"]["mean"],
                 "steps_per_sec": s["steps_per_sec"], "seeds": c.num_seeds, "steps": c.num_steps}
    print(f"{arm}: " + ", ".join(f"ep{e['epoch']} {e['mean']:.4f}±{e['std']:.4f}" for e in per_epoch), flush=True)
  epochs = max(len(r["per_epoch"]) for r in rows.values())
  head = "| arm | " + " | ".join(f"test acc ep {e + 1}" for e in range(epochs)) + \
         " | mean update variance / step | mean abs Δloss / step | final train loss |"
  lines = [f"ConvNet on {dataset} ({c.dataset.num_train or 'all'} train examples), SGD lr {c.optimizer.learning_rate}, "
           f"batch {c.batch_size}, {c.num_seeds} seeds per arm in one vmapped run, {c.num_steps} steps.",
           "", head, "|" + "---|" * (epochs + 4)]
  for arm, r in rows.items():
    accs = " | ".join(f"{e['mean']:.4f} ± {e['std']:.4f}" for e in r["per_epoch"])
    lines.append(f"| {arm} | {accs} | {r['update_var']:.3e} | {r['loss_abs_diff']:.4f} | {r['final_train_loss']:.4f} |")
  table = "\n".join(lines)
  print(table)
  write_results(FLAGS.out, table, {"dataset": dataset, "rows": rows})


if __name__ == "__main__":
  app.run(main)
