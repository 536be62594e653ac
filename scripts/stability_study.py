"""The default experiment: a deep-MLP stability study across arms (see experiments/configs/stability.py).

Prints a table (test accuracy mean ± std over seeds, first/last hidden-layer
gradient-norm ratio) and writes it to ``results/stability/``.

  python scripts/stability_study.py            # full setting (a few minutes on 2 cores)
  python scripts/stability_study.py --quick    # smaller budget
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from experiments.configs import stability  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small budget (smoke runs).")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist).")
flags.DEFINE_list("arms", list(stability.ARMS), "Arms to run.")
flags.DEFINE_integer("num_steps", None, "Override steps per arm.")
flags.DEFINE_integer("num_seeds", None, "Override seeds per arm.")
flags.DEFINE_string("out", "results/stability", "Output folder for table.md / results.json.")
flags.DEFINE_string("workdir_root", None, "Where run workdirs go (default: a temp dir).")
flags.DEFINE_bool("merge", False, "Keep the rows of arms not run now from --out's results.json "
                  "(same dataset only), so new arms can be added to a finished table.")

def ratio_first_last(layer_norms: list[float], names: list[str]) -> float:
  """‖g‖ of the first hidden layer over the last hidden layer (output excluded)."""
  hidden = [n for n, name in zip(layer_norms, names) if name != "output"]
  return hidden[0] / hidden[-1]


def main(argv):
  del argv
  from stable_training.train import train_and_evaluate
  from stable_training.study import pick_dataset, write_results
  dataset = pick_dataset(FLAGS.dataset)
  print(f"dataset: {dataset}" + ("" if dataset == "fashion_mnist" else
                                 " (Fashion-MNIST IDX files not found; using scikit-learn digits)"))
  root = FLAGS.workdir_root or tempfile.mkdtemp(prefix="stability_")
  rows = {}
  prev_path = os.path.join(FLAGS.out, "results.json")
  if FLAGS.merge and os.path.exists(prev_path):
    with open(prev_path) as f:
      prev = json.load(f)
    if prev.get("dataset") == dataset:
      rows = {a: r for a, r in prev["rows"].items() if a not in FLAGS.arms}
  for arm in FLAGS.arms:
    c = stability.get_config(arm)
    c.dataset.name = dataset
    c.progress = "none"
    if dataset == "digits":
      c.eval_batch_size = 360
    if FLAGS.quick:
      c.num_steps, c.num_seeds, c.eval_every, c.checkpoint_every = 600, 2, 600, 600
    if FLAGS.num_steps:
      c.num_steps = FLAGS.num_steps
      c.log_every = min(c.log_every, c.num_steps)
      c.eval_every = c.checkpoint_every = c.num_steps
    if FLAGS.num_seeds:
      c.num_seeds = FLAGS.num_seeds
    s = train_and_evaluate(c, os.path.join(root, arm))
    f = s["final"]
    per_seed_ratio = [ratio_first_last(v, s["layer_names"]) for v in f["layer_grad_norms"]["per_seed"]]
    rows[arm] = {"test_accuracy_mean": f["test_accuracy"]["mean"], "test_accuracy_std": f["test_accuracy"]["std"],
                 "train_loss_mean": f["train_loss"]["mean"], "grad_ratio_first_last": per_seed_ratio,
                 "steps": c.num_steps, "seeds": c.num_seeds, "depth": c.model.depth,
                 "steps_per_sec": s["steps_per_sec"]}
    print(f"{arm}: test acc {f['test_accuracy']['mean']:.4f} ± {f['test_accuracy']['std']:.4f}", flush=True)
  lines = [f"Deep MLP stability study on {dataset}: depth {c.model.depth}, width {c.model.width}, "
           f"SGD lr {c.optimizer.learning_rate}, batch {c.batch_size} (experiments/configs/stability.py).",
           "", "| arm | test accuracy (mean ± std) | final train loss | ‖g‖ first / last hidden layer | steps | seeds |",
           "|---|---|---|---|---|---|"]
  order = [a for a in stability.ARMS if a in rows] + [a for a in rows if a not in stability.ARMS]
  for arm in order:
    r = rows[arm]
    ratios = r["grad_ratio_first_last"]
    lines.append(f"| {arm} | {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f} | "
                 f"{r['train_loss_mean']:.4f} | {sum(ratios) / len(ratios):.3g} | {r['steps']} | {r['seeds']} |")
  table = "\n".join(lines)
  print(table)
  write_results(FLAGS.out, table, {"dataset": dataset, "rows": rows})

if __name__ == "__main__":
  app.run(main)
