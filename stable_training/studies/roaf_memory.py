"""The ROAF RNN at long lags (Ceni 2022): the best setting, then the largest T each cell solves.

Ceni (2022) claims an Elman-type RNN with random orthogonal additive filters,

  h_t = α O h_{t−1} + β φ(W x_t + U h_{t−1} + b),   O orthogonal (fixed, random),

"learns long-term dependencies 10,000 time steps in the past". With α = 1 the
filter path is an isometry, h_T = O^T h_0 + β Σ_t O^{T−t} φ(·): an input enters
the state once and is rotated, never shrunk, so it can in principle be read
T steps later; with the tied β = 1 − α at α = 0.5 it decays like 2^{−T}.

Tasks (`stable_training.data.sequence_tasks`; fresh batches every step, fixed
generated validation and test sets):

- ``first``: the class of the first of T steps (C = 8 classes, the other T − 1
  steps distractor symbols), cross-entropy at the last step; memoryless
  baseline log C. One input remembered T − 1 steps: what "an input 10,000 time
  steps in the past" most likely means (Hochreiter & Schmidhuber 1997,
  experiment 2).
- ``adding``: the adding problem (Hochreiter & Schmidhuber 1997), MSE;
  baseline Var(u_i + u_j) = 1/6.
- ``copy``: the copy task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016),
  per-step cross-entropy; baseline 10 log 8 / (T + 20).

Stages, all choices made on validation, never on test:

1. At the shortest lag, per task: the ROAF (α, β) grid — α ∈ `alphas_free` ×
   β ∈ `betas` (β free; α = 1 allowed), plus α ∈ `alphas_tied` with β = 1 − α
   (the former setting, for reference) — then one knob at a time around the best
   (`recurrent_gains`: the orthogonal scale of U, None = the critical gain
   √(1 − α²)/β · 1.1, 0 at α = 1; `input_gains`: the scale of W's draw). Best =
   lowest final validation loss.
2. Every lag in increasing order (cheapest first), every cell in `cells` (cost
   order): ROAF at its task's best setting and the Elman/LSTM/GRU baselines
   (their configs' settings: `roaf.py:TASK-CELL-T`) at the same budget. Lags ≥
   `long_lag` use the separate budget `long_steps` / `long_batch` /
   `long_eval_every` (a T = 10,000 run must fit two hours on 2 cores). With
   `skip_unsolved`, a (task, cell) that did not solve a lag is not run at the
   next ones (its largest solved T cannot grow, assuming difficulty grows with T).

Reported per (task, cell, T): test loss / memoryless baseline ("ratio"),
solved = ratio ≤ `solved` (0.1) for every seed, the largest T solved per cell,
and learning curves (train loss / baseline vs step, from each run's
metrics.jsonl; a PNG via `plot`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

CELL_COST = {"elman": 0, "roaf": 1, "gru": 2, "lstm": 3}   # per-step cost order (cheapest first)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Tasks, lags, cells, the ROAF grid and the budgets (defaults: the full study)."""
  tasks: tuple = ("first", "adding", "copy")
  lags: tuple = (100, 1000, 10_000)
  cells: tuple = ("elman", "roaf", "gru", "lstm")
  alphas_free: tuple = (0.99, 0.999, 1.0)
  betas: tuple = (0.1, 0.5, 1.0)
  alphas_tied: tuple = (0.5,)          # β = 1 − α: the former setting, for reference
  recurrent_gains: tuple = ()          # stage-1 variations around the best (α, β)
  input_gains: tuple = ()
  filter_mode: str = "haar"            # the ROAF cell's O ("perm": a signed permutation)
  hidden: int = 64
  batch: int = 32
  lr: float = 3e-3
  steps: int = 3000                    # budget of every lag < long_lag (and of the search)
  eval_every: int = 250
  long_lag: int = 10_000               # lags ≥ long_lag use the long budget
  long_steps: int = 2500               # ≈ 0.9–2.1 s/step for GRU/LSTM at T = 10,000, batch 16, 2 loaded cores
  long_batch: int = 16
  long_eval_every: int = 250
  num_val: int = 500
  num_test: int = 1000
  seeds: int = 1
  solved: float = 0.1                  # solved: test loss ≤ solved × baseline
  skip_unsolved: bool = True
  tiny: bool = False                   # seconds-long smoke budget (tests)


def quick(**kw) -> Settings:
  """Minutes: the first-symbol and adding tasks at T = 50, 200, two ROAF settings, 600 steps."""
  base = dict(tasks=("first", "adding"), lags=(50, 200), alphas_free=(1.0,), betas=(0.1, 0.5), alphas_tied=(0.5,),
              steps=600, eval_every=200, long_lag=200, long_steps=300, long_batch=32, long_eval_every=100,
              num_val=200, num_test=500)
  return Settings(**{**base, **kw})


def tiny(**kw) -> Settings:
  """Seconds: the first-symbol task at T = 8 and 16, width 8, two ROAF settings, Elman (the suite's smoke test)."""
  base = dict(tasks=("first",), lags=(8, 16), cells=("elman", "roaf"), alphas_free=(1.0,), betas=(0.5,),
              alphas_tied=(0.5,), hidden=8, batch=8, steps=20, eval_every=10, long_lag=16, long_steps=10,
              long_batch=8, long_eval_every=10, num_val=32, num_test=32, tiny=True)
  return Settings(**{**base, **kw})


def budget(s: Settings, lag: int) -> tuple[int, int, int]:
  """(steps, batch, eval_every) of a run at `lag`: the long budget from `long_lag` on."""
  return (s.long_steps, s.long_batch, s.long_eval_every) if lag >= s.long_lag else (s.steps, s.batch, s.eval_every)


def make_config(s: Settings, task: str, cell: str, lag: int, **knobs):
  """The engine config `roaf.py:TASK-CELL-T` at the study's width, budget and splits; ROAF fields from `knobs`
  (alpha, beta (None = 1 − α), recurrent_gain, input_gain)."""
  from experiments.configs import roaf
  c = roaf.get_config(f"{task}-{cell}-{lag}")
  steps, batch, every = budget(s, lag)
  c.model.width, c.batch_size, c.num_seeds = s.hidden, batch, s.seeds
  c.optimizer.learning_rate = s.lr
  c.dataset.num_val, c.dataset.num_test = s.num_val, s.num_test
  if cell == "roaf":
    c.model.filter_mode = s.filter_mode
    for k, v in knobs.items():
      c.model[k] = v
  elif knobs:
    raise ValueError(f"ROAF knobs {knobs} for cell {cell!r}")
  c.num_steps = steps
  c.eval_every = c.checkpoint_every = min(every, steps)
  c.log_every = min(50, c.eval_every)
  while c.eval_every % c.log_every:
    c.log_every -= 1
  c.progress = "none" if s.tiny else "auto"
  c.eval_batch_size = min(c.eval_batch_size, max(s.num_test, s.num_val))
  return c


def run_name(s: Settings, task: str, cell: str, lag: int, knobs: dict | None = None) -> str:
  """``TASK_TLAG_CELL[_KNOBS]_nSTEPS``, e.g. ``first_T100_roaf_a1_b0.1_n3000`` (the budget in the name: another
  budget is another workdir)."""
  fmt = lambda v: "tied" if v is None else f"{v:g}"
  short = {"alpha": "a", "beta": "b", "recurrent_gain": "rg", "input_gain": "ig"}
  k = "".join(f"_{short[n]}{fmt(v)}" for n, v in (knobs or {}).items())
  steps, batch, _ = budget(s, lag)
  return f"{task}_T{lag}_{cell}{k}_n{steps}" + (f"_b{batch}" if batch != s.batch else "")


def grid(s: Settings) -> list[dict]:
  """The (α, β) settings (β None = tied 1 − α)."""
  return ([{"alpha": a, "beta": None} for a in s.alphas_tied]
          + [{"alpha": a, "beta": b} for a in s.alphas_free for b in s.betas])


def variations(s: Settings, best: dict) -> list[dict]:
  """One knob at a time around the best (α, β)."""
  return ([{**best, "recurrent_gain": g} for g in s.recurrent_gains]
          + [{**best, "input_gain": g} for g in s.input_gains])


def curve(workdir: str) -> dict[str, list]:
  """The learning curve of a run from its ``metrics.jsonl``: ``train`` [(step, train loss, mean over seeds)],
  ``test`` / ``val`` [(step, loss)] at the evaluations."""
  from stable_training.train import records as rec_lib
  out = {"train": [], "test": [], "val": []}
  for r in rec_lib.read_records(os.path.join(workdir, "metrics.jsonl")):
    if r.get("kind") != "train":
      continue
    for key, name in (("train", "train_loss"), ("test", "test_loss"), ("val", "val_loss")):
      if name in r:
        out[key].append((int(r["step"]), float(r[name]["mean"])))
  return out


def _seconds(summary: dict) -> float:
  steps, sps = (summary.get("history") or [{}])[-1].get("step", 0), summary.get("steps_per_sec") or 0
  return steps / sps if sps and np.isfinite(sps) else float("nan")


def _row(s: Settings, sw, name: str, task: str, cell: str, lag: int, knobs: dict, summary: dict) -> dict:
  base = float(summary["info"]["baseline_loss"])
  test = np.asarray((summary["final"].get("test_loss") or {}).get("per_seed", [np.nan]), float)
  val = sweep_lib.final_mean(summary, "val_loss")
  steps, batch, _ = budget(s, lag)
  c = curve(sw.workdir(name))
  return {"run": name, "task": task, "cell": cell, "lag": lag, "knobs": knobs, "steps": steps, "batch": batch,
          "baseline": base, "test_loss": float(test.mean()), "val_loss": val,
          "ratio": float(test.mean() / base), "val_ratio": val / base,
          "ratio_per_seed": (test / base).tolist(),
          "solved": bool(np.all(np.isfinite(test)) and np.all(test <= s.solved * base)),
          "test_accuracy": sweep_lib.final_mean(summary, "test_accuracy"),
          "steps_per_sec": summary.get("steps_per_sec"), "seconds": _seconds(summary),
          "curve": {k: [(st, v / base) for st, v in pts] for k, pts in c.items()}}


def best_by_validation(rows: list[dict]) -> dict:
  """The row of lowest validation loss (finite ones; test numbers never looked at)."""
  ok = [r for r in rows if np.isfinite(r["val_loss"])]
  return min(ok, key=lambda r: r["val_loss"]) if ok else rows[0]


def _order(s: Settings) -> list[tuple[int, str, str]]:
  """(lag, cell, task) runs, cheapest first: by lag, then cell cost, then task."""
  cells = sorted(s.cells, key=lambda c: CELL_COST.get(c, len(CELL_COST)))
  return [(lag, cell, task) for lag in sorted(s.lags) for cell in cells for task in s.tasks]


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Runs both stages in workdirs under `root` (finished runs read back, killed ones resumed); returns the payload
  (see `table`)."""
  sw = sweep_lib.Sweep(root, log=log)

  def go(task, cell, lag, knobs):
    name = run_name(s, task, cell, lag, knobs)
    return _row(s, sw, name, task, cell, lag, knobs, sw.run(name, make_config(s, task, cell, lag, **knobs)))

  shortest = min(s.lags)
  if "roaf" in s.cells and not grid(s):
    raise ValueError("Settings: ROAF among the cells needs at least one (α, β) setting to search")
  search, best = [], {}
  if "roaf" in s.cells:
    for task in s.tasks:
      rows = [{"stage": 1, **go(task, "roaf", shortest, k)} for k in grid(s)]
      b = best_by_validation(rows)
      rows += [{"stage": 2, **go(task, "roaf", shortest, k)}
               for k in variations(s, {n: b["knobs"][n] for n in ("alpha", "beta")})]
      best[task] = best_by_validation(rows)["knobs"]
      search += rows
  runs, failed = [], set()
  for lag, cell, task in _order(s):
    if s.skip_unsolved and (task, cell) in failed:
      runs.append({"task": task, "cell": cell, "lag": lag, "skipped": True,
                   "knobs": best.get(task, {}) if cell == "roaf" else {}})
      continue
    r = {"skipped": False, **go(task, cell, lag, best[task] if cell == "roaf" else {})}
    runs.append(r)
    if not r["solved"]:
      failed.add((task, cell))
  return {"settings": dataclasses.asdict(s), "search": search, "best": best, "runs": runs,
          "largest_solved": largest_solved(runs), "projected_long_seconds": projected_long_seconds(s, runs)}


def largest_solved(runs: list[dict]) -> dict[str, dict[str, int | None]]:
  """{task: {cell: the largest T solved (None: none)}}."""
  out: dict[str, dict] = {}
  for r in runs:
    cur = out.setdefault(r["task"], {}).setdefault(r["cell"], None)
    if not r.get("skipped") and r["solved"]:
      out[r["task"]][r["cell"]] = max(r["lag"], cur or 0)
  return out


def projected_long_seconds(s: Settings, runs: list[dict]) -> dict[str, float]:
  """{"task/cell": seconds} of a `long_lag` run, extrapolated linearly in T · batch from the speed measured at the
  largest lag below it (training only; evaluations add ≈ (num_val + num_test) / (3 · long_batch) steps' time
  each)."""
  out = {}
  lower = [r for r in runs if not r.get("skipped") and r["lag"] < s.long_lag and r.get("steps_per_sec")]
  for r in lower:
    if r["lag"] != max(x["lag"] for x in lower):
      continue
    per_step = (1.0 / r["steps_per_sec"]) * (s.long_lag / r["lag"]) * (s.long_batch / r["batch"])
    out[f"{r['task']}/{r['cell']}"] = per_step * s.long_steps
  return out


def table(payload: dict, command: str = "") -> str:
  """The markdown report: the ROAF search (validation), every run's test ratio, the largest T solved."""
  s = payload["settings"]
  fmt = lambda v: "—" if v is None or not np.isfinite(v) else f"{v:.3g}"
  beta = lambda k: "1 − α" if k.get("beta") is None else f"{k['beta']:g}"
  lines = ["# Long-lag memory: ROAF RNN (Ceni 2022) at its best setting vs Elman, GRU, LSTM", "",
           f"Hidden {s['hidden']}, Adam {s['lr']:g} + global-norm clipping 1, ROAF filter {s['filter_mode']}, "
           f"{s['seeds']} seed(s). Budget: {s['steps']} steps of {s['batch']} for T < {s['long_lag']:,}; "
           f"{s['long_steps']} steps of {s['long_batch']} from T = {s['long_lag']:,}. Ratio = test loss / memoryless "
           f"baseline (first: log 8; adding: 1/6; copy: 10 log 8 / (T + 20)); solved = ratio ≤ {s['solved']:g}. "
           f"Validation: a fixed generated set of {s['num_val']}; test: {s['num_test']}.", ""]
  if command:
    lines += [f"Regenerate: `{command}`", ""]
  if payload["search"]:
    lines += [f"ROAF setting search at T = {min(s['lags'])} (chosen by validation loss):", "",
              "| task | stage | α | β | other knob | val ratio | test ratio |", "|---|---|---|---|---|---|---|"]
    for r in payload["search"]:
      k = r["knobs"]
      other = ", ".join(f"{n}={v:g}" for n, v in k.items() if n not in ("alpha", "beta")) or "—"
      mark = " **(best)**" if k == payload["best"][r["task"]] else ""
      lines.append(f"| {r['task']} | {r['stage']} | {k['alpha']:g} | {beta(k)} | {other} | {fmt(r['val_ratio'])}"
                   f"{mark} | {fmt(r['ratio'])} |")
    lines.append("")
  lines += ["| task | T | cell | setting | test ratio | solved | test acc | steps/s | s |",
            "|---|---|---|---|---|---|---|---|---|"]
  for r in payload["runs"]:
    k = r["knobs"]
    setting = f"α={k['alpha']:g}, β={beta(k)}" + "".join(f", {n}={v:g}" for n, v in k.items()
                                                          if n not in ("alpha", "beta")) if k else "config"
    if r.get("skipped"):
      lines.append(f"| {r['task']} | {r['lag']} | {r['cell']} | {setting} | — | skipped (a shorter T unsolved) "
                   "| — | — | — |")
      continue
    lines.append(f"| {r['task']} | {r['lag']} | {r['cell']} | {setting} | {fmt(r['ratio'])} | "
                 f"{'yes' if r['solved'] else 'no'} | {fmt(r['test_accuracy'])} | {fmt(r['steps_per_sec'])} | "
                 f"{r['seconds']:.0f} |")
  cells = sorted({c for v in payload["largest_solved"].values() for c in v}, key=lambda c: CELL_COST.get(c, 9))
  lines += ["", "Largest T solved (every seed) within the budget:", "",
            "| task | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
  for task, per in payload["largest_solved"].items():
    lines.append(f"| {task} | " + " | ".join(str(per.get(c) or "none") for c in cells) + " |")
  proj = payload.get("projected_long_seconds") or {}
  if proj:
    lines += ["", f"Projected training time of a T = {s['long_lag']:,} run ({s['long_steps']} steps of "
              f"{s['long_batch']}), linear in T · batch from the largest shorter lag: "
              + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in proj.items())]
  return "\n".join(lines)


def plot(payload: dict, path: str) -> str:
  """Learning curves (train loss / baseline vs step, log scale): one panel per (task, T), one line per cell;
  the dashed line is the solved threshold. Returns `path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  s = payload["settings"]
  tasks, lags = list(s["tasks"]), sorted(s["lags"])
  fig = Figure(figsize=(4 * len(lags), 3 * len(tasks)))
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(tasks), len(lags), squeeze=False)
  for i, task in enumerate(tasks):
    for j, lag in enumerate(lags):
      ax = axes[i][j]
      for r in payload["runs"]:
        if r["task"] == task and r["lag"] == lag and not r.get("skipped") and r["curve"]["train"]:
          st, v = zip(*r["curve"]["train"])
          color = f"C{sorted(CELL_COST).index(r['cell'])}" if r["cell"] in CELL_COST else None   # one color per cell
          ax.plot(st, np.maximum(v, 1e-6), marker=".", ms=3, label=r["cell"], color=color)
      ax.axhline(s["solved"], ls="--", c="gray", lw=0.8)
      ax.set_yscale("log")
      ax.set_title(f"{task}, T = {lag:,}", fontsize=9)
      ax.set_xlabel("step", fontsize=8)
      if j == 0:
        ax.set_ylabel("train loss / baseline", fontsize=8)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path
