"""Long-lag memory (Ceni 2022): the adding problem and the copy task at growing lag T, through the engine.

ROAF RNN (h_t = α O h_{t−1} + β φ(W x_t + U h_{t−1} + b), here at the former
setting β = 1 − α) vs tanh Elman vs LSTM vs GRU on the generated tasks of
`stable_training.data.sequence_tasks` (fresh batches every step, drawn inside
the compiled step). Each (task, cell, T) is the config
``experiments/configs/roaf.py:TASK-CELL-T`` (hidden 64, Adam 3e-3 with
global-norm clipping 1.0, batch 32), run by the engine with `seeds` seeds
vmapped. "Solved" = test loss ≤ `SOLVED` (0.1) × the task's constant-predictor
baseline (adding: MSE 1/6; copy: 10 log 8 / (T + 20)). Ceni (2022) reports the
ROAF RNN learning dependencies 10,000 steps back where a tanh RNN fails; a
failure here means "not within this budget" (the table states it). The search
over (α, β) with β free, and the first-symbol task, are
`stable_training.studies.roaf_memory`.

`setting` "quick" / "tiny" replace the budget and the lags whatever the other
fields say (T = 50, 100, 600 steps / T = 10, width 8, 20 steps), as the
script's --quick / --tiny always did.

`run(settings, root) → payload`, `table(payload, settings, command) → markdown`, `plot(payload, path)`; the entry
point is ``scripts/reproduce_roaf_memory.py``.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

SOLVED = 0.1
BUDGETS = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Tasks, lags, cells and budget (defaults: the script's flags). `setting`: full, quick or tiny (see the module
  docstring); `data_dir`: written into every config when given (the generated tasks read no files)."""
  tasks: tuple = ("adding", "copy")
  lags: tuple = (100, 200, 500, 1000)
  cells: tuple = ("roaf", "elman", "lstm", "gru")
  steps: int = 3000                # train steps per run
  hidden: int = 64
  batch: int = 32
  lr: float = 3e-3                 # Adam
  alpha: float = 0.5               # ROAF α (β = 1 − α)
  seeds: int = 1                   # vmapped
  eval_every: int = 250            # steps between test evaluations (the learning curve)
  data_dir: str = ""
  setting: str = "full"

  def __post_init__(self):
    from experiments.configs import roaf
    sweep_lib.check_choice("setting", self.setting, BUDGETS)
    sweep_lib.check_members("cells", self.cells, roaf.CELLS)
    sweep_lib.check_members("tasks", self.tasks, roaf.TASKS)
    if not self.lags or any(int(t) < 1 for t in self.lags):
      raise ValueError(f"lags: {tuple(self.lags)}; expected one or more lags ≥ 1")


def quick(**kw) -> Settings:
  """Minutes: T = 50, 100; 600 steps, evaluations every 200."""
  return Settings(**{"setting": "quick", **kw})


def tiny(**kw) -> Settings:
  """Seconds: T = 10, width 8, batch 8, 20 steps (the suite's smoke test)."""
  return Settings(**{"setting": "tiny", **kw})


def lags(s: Settings) -> list[int]:
  """The lags run: `s.lags`, or [50, 100] (quick) / [10] (tiny)."""
  return {"quick": [50, 100], "tiny": [10]}.get(s.setting, [int(t) for t in s.lags])


def make_config(s: Settings, task: str, cell: str, lag: int):
  """Engine config ``roaf.py:TASK-CELL-T`` of one (task, cell, lag) at the settings' budget."""
  from experiments.configs import roaf
  c = roaf.get_config(f"{task}-{cell}-{lag}")
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.model.width, c.model.alpha, c.batch_size = s.hidden, s.alpha, s.batch
  c.model.beta = None   # this study's setting: β = 1 − α (the config ships the searched α, β)
  c.optimizer.learning_rate, c.num_seeds = s.lr, s.seeds
  c.num_steps, c.log_every = s.steps, min(50, s.eval_every)
  c.eval_every = c.checkpoint_every = s.eval_every
  c.progress = "auto"
  if s.setting == "quick":
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 600, 200, 200, 50
  if s.setting == "tiny":
    c.model.width, c.batch_size, c.num_steps = 8, 8, 20
    c.eval_every = c.checkpoint_every = c.log_every = 10
    c.dataset.num_test, c.eval_batch_size, c.progress = 32, 32, "none"
  return c


def row(task: str, cell: str, lag: int, c, summary: dict) -> dict:
  """One run's row: test loss, ratio = test loss / baseline (mean and per seed), seeds solved (ratio ≤ SOLVED),
  the learning curve [(step, test loss / baseline)] at the evaluations, steps per second."""
  base = summary["info"]["baseline_loss"]
  per_seed = np.asarray(summary["final"]["test_loss"]["per_seed"])
  return {"task": task, "cell": cell, "lag": lag, "steps": c.num_steps, "seeds": c.num_seeds,
          "baseline_loss": base, "test_loss": float(per_seed.mean()),
          "ratio_per_seed": (per_seed / base).tolist(), "ratio": float(per_seed.mean() / base),
          "solved_seeds": int(np.sum(per_seed <= SOLVED * base)),
          "finite": bool(np.all(np.isfinite(per_seed))),
          "curve": [(h["step"], h["test_loss"]["mean"] / base) for h in summary["history"] if "test_loss" in h],
          "steps_per_sec": summary["steps_per_sec"]}


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Trains every (task, lag, cell), in that nesting, in ``root/TASK_CELL_TLAG`` (finished runs read back);
  returns the payload ``{"setting", "rows"}``."""
  sweep = sweep_lib.Sweep(root, log=log)
  log = log or (lambda line: print(line, flush=True))
  rows = []
  for task in s.tasks:
    for lag in lags(s):
      for cell in s.cells:
        c = make_config(s, task, cell, lag)
        rows.append(row(task, cell, lag, c, sweep.run(f"{task}_{cell}_T{lag}", c)))
        log(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}))
  return {"setting": s.setting, "rows": rows}


def table(payload: dict, s: Settings, command: str = "") -> str:
  """The markdown report: every run's test loss / baseline and seeds solved, then the largest T solved by every
  seed per (task, cell). `s`: the settings of the run (the payload's format does not record them)."""
  c = make_config(s, s.tasks[0], s.cells[0], lags(s)[0])
  rows = payload["rows"]
  lines = [f"# Long-lag memory through the engine (`roaf.py:TASK-CELL-T`): hidden {c.model.width}, Adam "
           f"{c.optimizer.learning_rate} + global-norm clipping {c.optimizer.clip_global_norm}, batch "
           f"{c.batch_size}, {c.num_steps} steps, ROAF α = {c.model.alpha}, {c.num_seeds} seed(s)", "",
           f"Solved = test loss ≤ {SOLVED} × the constant-predictor baseline (adding: MSE 1/6; "
           "copy: 10 log 8 / (T + 20) cross-entropy per step).", "",
           f"Regenerate: `{command}`", "",
           "| task | T | cell | test loss / baseline | solved seeds | steps/s |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['task']} | {r['lag']} | {r['cell']} | {r['ratio']:.3f} | {r['solved_seeds']}/{r['seeds']} "
                 f"| {r['steps_per_sec']:.1f} |")
  lines += ["", "Largest T solved (by every seed) within the budget:", "",
            "| task | " + " | ".join(s.cells) + " |", "|---|" + "---|" * len(s.cells)]
  for task in s.tasks:
    best = []
    for cell in s.cells:
      solved = [r["lag"] for r in rows if r["task"] == task and r["cell"] == cell and r["solved_seeds"] == r["seeds"]]
      best.append(str(max(solved)) if solved else "none")
    lines.append(f"| {task} | " + " | ".join(best) + " |")
  return "\n".join(lines)


def plot(payload: dict, path: str) -> str:
  """Learning curves (test loss / baseline, log scale) per task and lag, one line per cell; the dotted line is
  the solved threshold. Returns `path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  rows = payload["rows"]
  panels = sorted({(r["task"], r["lag"]) for r in rows})
  fig = Figure(figsize=(3.2 * len(panels), 3))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(panels), squeeze=False)
  for ax, (task, lag) in zip(axes[0], panels):
    for r in rows:
      if (r["task"], r["lag"]) == (task, lag) and r["curve"]:
        st, v = zip(*r["curve"])
        ax.plot(st, v, label=r["cell"])
    ax.axhline(SOLVED, color="k", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_title(f"{task}, T = {lag}", fontsize=9)
    ax.set_xlabel("step")
  axes[0][0].set_ylabel("test loss / baseline")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path
