"""The default experiment: a deep-MLP stability study across arms (see experiments/configs/stability.py).

Each arm is the config ``experiments/configs/stability.py:ARM``, run through the
engine (`stable_training.study.run`); the table (test accuracy mean ± std over
seeds, first/last hidden-layer gradient-norm ratio) comes from the summaries.

  python scripts/stability_study.py            # full setting: results/stability (≈ 20 min on 2 idle cores)
  python scripts/stability_study.py --quick    # 600 steps, 2 seeds, LSC 50 steps (≈ 5 min; temporary --out)
  python scripts/stability_study.py --tiny     # smoke test on digits, seconds (temporary --out)
  python scripts/stability_study.py --arms=roaf-tanh --merge   # add a row to results/stability

Writes ``<out>/table[_SETTING][_TAG].md`` and its JSON (``results.json`` for the
full setting without a tag, else ``table_SETTING[_TAG].json``).
"""
from __future__ import annotations

import json
import os

from absl import flags

from experiments.configs import default
from experiments.configs import stability
from stable_training import study

STUDY = "stability"
study.define_flags(STUDY)
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist; "
                    "digits under --tiny).")
flags.DEFINE_list("arms", list(stability.ARMS), "Arms to run (--tiny: tanh-standard,tanh-normalized "
                  "unless given).")
flags.DEFINE_integer("num_steps", None, "Override steps per arm.")
flags.DEFINE_integer("num_seeds", None, "Override seeds per arm.")
flags.DEFINE_bool("merge", False, "Keep the rows of arms not run now from --out's results file "
                  "(same dataset only), so new arms can be added to a finished table.")
FLAGS = flags.FLAGS

_RESULT_FLAGS = ("arms", "dataset", "num_steps", "num_seeds", "merge", "quick", "tiny", "tag", "data_dir", "out")
TINY_ARMS = ["tanh-standard", "tanh-normalized"]
QUICK_LSC_STEPS = 50


def ratio_first_last(layer_norms: list[float], names: list[str]) -> float:
  """‖g‖ of the first hidden layer over the last hidden layer (output excluded)."""
  hidden = [n for n, name in zip(layer_norms, names) if name != "output"]
  return hidden[0] / hidden[-1]


def make_config(arm: str, dataset: str):
  """The arm's engine config at the flags' budget."""
  c = stability.get_config(arm)
  if FLAGS.tiny:
    default.tiny(c)  # digits, width 16, 20 steps, 2 seeds; depth stays 20
  c.dataset.name = dataset
  c.progress = "none" if FLAGS.tiny else "auto"
  if dataset == "digits":
    c.eval_batch_size = 360
  if FLAGS.quick:
    study.set_budget(c, 600, log_every=c.log_every)
    c.num_seeds = 2
    c.lsc.steps = min(c.lsc.steps, QUICK_LSC_STEPS)  # host eigs: ≈ 0.4 s per step and seed on 2 cores
  if FLAGS.num_steps:
    study.set_budget(c, FLAGS.num_steps)
  if FLAGS.num_seeds:
    c.num_seeds = FLAGS.num_seeds
  return c


def command(arms: list[str] | None = None) -> str:
  """The command line that regenerates this table (the result-shaping flags that were given).

  `arms`: the table's arms after a --merge (one run of them all replaces the merges).
  """
  parts = ["python scripts/stability_study.py"]
  for n in _RESULT_FLAGS:
    if arms is not None and n in ("arms", "merge"):
      continue
    if FLAGS[n].present:
      parts.append(FLAGS[n].serialize())
  if arms is not None and arms != list(stability.ARMS):
    parts.insert(1, "--arms=" + ",".join(arms))
  return " ".join(parts)


def main(argv):
  del argv
  arms = TINY_ARMS if FLAGS.tiny and not FLAGS["arms"].present else list(FLAGS.arms)
  for arm in arms:
    stability.get_config(arm)  # unknown arm: fail before anything runs
  dataset = "digits" if FLAGS.tiny and not FLAGS["dataset"].present else study.pick_dataset(FLAGS.dataset)
  print(f"dataset: {dataset}" + ("" if dataset == "fashion_mnist" else
                                 " (Fashion-MNIST IDX files not found or --tiny; using scikit-learn digits)"))
  study.setup_process([make_config(arm, dataset).num_seeds for arm in arms])
  out = study.out_dir(STUDY)
  name = study.stem("table")
  json_path = os.path.join(out, "results.json" if name == "table" else f"{name}.json")
  print(f"results: {os.path.join(out, name)}.md", flush=True)
  rows = {}
  merged = False
  if FLAGS.merge and os.path.exists(json_path):
    with open(json_path) as f:
      prev = json.load(f)
    if prev.get("dataset") == dataset:
      rows = {a: r for a, r in prev["rows"].items() if a not in arms}
      merged = bool(rows)
  for i, arm in enumerate(arms):
    c = make_config(arm, dataset)
    print(f"[{i + 1}/{len(arms)}] {arm}: depth {c.model.depth}, {c.num_seeds} seeds, {c.num_steps} steps",
          flush=True)
    s = study.run(c, STUDY, arm)
    f = s["final"]
    per_seed_ratio = [ratio_first_last(v, s["layer_names"]) for v in f["layer_grad_norms"]["per_seed"]]
    rows[arm] = {"test_accuracy_mean": f["test_accuracy"]["mean"], "test_accuracy_std": f["test_accuracy"]["std"],
                 "train_loss_mean": f["train_loss"]["mean"], "grad_ratio_first_last": per_seed_ratio,
                 "steps": c.num_steps, "seeds": c.num_seeds, "depth": c.model.depth,
                 "steps_per_sec": s["steps_per_sec"]}
    print(f"{arm}: test acc {f['test_accuracy']['mean']:.4f} ± {f['test_accuracy']['std']:.4f}", flush=True)
  order = [a for a in stability.ARMS if a in rows] + [a for a in rows if a not in stability.ARMS]
  lines = [f"Deep MLP stability study on {dataset}: depth {c.model.depth}, width {c.model.width}, "
           f"SGD lr {c.optimizer.learning_rate}, batch {c.batch_size} (experiments/configs/stability.py)."
           + (f" --quick: LSC pre-training capped at {QUICK_LSC_STEPS} steps." if FLAGS.quick else ""),
           "", f"Regenerate: `{command(order if merged else None)}`"
           + (" (this table merged rows of earlier runs with --merge; each row's steps and seeds are in its "
              "columns)" if merged else ""),
           "", "| arm | test accuracy (mean ± std) | final train loss | ‖g‖ first / last hidden layer | steps | seeds |",
           "|---|---|---|---|---|---|"]
  for arm in order:
    r = rows[arm]
    ratios = r["grad_ratio_first_last"]
    lines.append(f"| {arm} | {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f} | "
                 f"{r['train_loss_mean']:.4f} | {sum(ratios) / len(ratios):.3g} | {r['steps']} | {r['seeds']} |")
  table = "\n".join(lines)
  print(table)
  study.write_results(out, table, {"dataset": dataset, "rows": rows}, name=name)
  print(f"wrote {os.path.join(out, name)}.md")


if __name__ == "__main__":
  study.app_run(main)
