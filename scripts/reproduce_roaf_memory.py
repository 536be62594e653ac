"""Long-lag memory (Ceni 2022): the adding problem and the copy task at growing lag T, through the engine.

ROAF RNN vs tanh Elman vs LSTM vs GRU on the generated tasks of
`stable_training.data.sequence_tasks` (fresh batches every step, drawn inside
the compiled step). Each (task, cell, T) is the config
``experiments/configs/roaf.py:TASK-CELL-T`` (hidden 64, Adam 3e-3 with
global-norm clipping 1.0, batch 32), run by the engine with ``--seeds``
seeds vmapped. "Solved" = test loss ≤ 0.1 × the task's constant-predictor
baseline (adding: MSE 1/6; copy: 10 log 8 / (T + 20)). Ceni (2022) reports the
ROAF RNN learning dependencies 10,000 steps back where a tanh RNN fails; a
failure here means "not within this budget" (the table states it).

Writes ``<out>/memory[_SETTING][_TAG].{md,json,png}`` (learning curves: test
loss / baseline vs step).

  python scripts/reproduce_roaf_memory.py --tasks adding --lags 100,200,500,1000 --steps 3000
  python scripts/reproduce_roaf_memory.py --quick   # T = 50, 100; short (temporary --out)
  python scripts/reproduce_roaf_memory.py --tiny    # smoke test (temporary --out)
"""
from __future__ import annotations

import json
import os

from absl import flags
import numpy as np

from experiments.configs import roaf
from stable_training import study

STUDY = "roaf"
study.define_flags(STUDY)
flags.DEFINE_list("tasks", ["adding", "copy"], "Generated tasks.")
flags.DEFINE_list("lags", ["100", "200", "500", "1000"], "Lags T.")
flags.DEFINE_list("cells", ["roaf", "elman", "lstm", "gru"], "Cells.")
flags.DEFINE_integer("steps", 3000, "Train steps per run.")
flags.DEFINE_integer("hidden", 64, "Hidden units.")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_float("lr", 3e-3, "Adam learning rate.")
flags.DEFINE_float("alpha", 0.5, "ROAF α.")
flags.DEFINE_integer("seeds", 1, "Seeds (vmapped).")
flags.DEFINE_integer("eval_every", 250, "Steps between test evaluations (the learning curve).")
FLAGS = flags.FLAGS
SOLVED = 0.1


def make_config(task: str, cell: str, lag: int):
  """Engine config of one (task, cell, lag) at the flags' budget."""
  c = roaf.get_config(f"{task}-{cell}-{lag}")
  c.model.width, c.model.alpha, c.batch_size = FLAGS.hidden, FLAGS.alpha, FLAGS.batch
  c.model.beta = None   # this study's setting: β = 1 − α (the config ships the searched α, β)
  c.optimizer.learning_rate, c.num_seeds = FLAGS.lr, FLAGS.seeds
  c.num_steps, c.log_every = FLAGS.steps, min(50, FLAGS.eval_every)
  c.eval_every = c.checkpoint_every = FLAGS.eval_every
  c.progress = "auto"
  if FLAGS.quick:
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 600, 200, 200, 50
  if FLAGS.tiny:
    c.model.width, c.batch_size, c.num_steps = 8, 8, 20
    c.eval_every = c.checkpoint_every = c.log_every = 10
    c.dataset.num_test, c.eval_batch_size, c.progress = 32, 32, "none"
  return c


def main(argv):
  del argv
  study.setup_process()
  lags = [int(t) for t in FLAGS.lags]
  if FLAGS.quick:
    lags = [50, 100]
  if FLAGS.tiny:
    lags = [10]
  out = study.out_dir(STUDY)
  rows = []
  for task in FLAGS.tasks:
    for lag in lags:
      for cell in FLAGS.cells:
        c = make_config(task, cell, lag)
        s = study.run(c, STUDY, f"{task}_{cell}_T{lag}")
        base = s["info"]["baseline_loss"]
        per_seed = np.asarray(s["final"]["test_loss"]["per_seed"])
        rows.append({"task": task, "cell": cell, "lag": lag, "steps": c.num_steps, "seeds": c.num_seeds,
                     "baseline_loss": base, "test_loss": float(per_seed.mean()),
                     "ratio_per_seed": (per_seed / base).tolist(), "ratio": float(per_seed.mean() / base),
                     "solved_seeds": int(np.sum(per_seed <= SOLVED * base)),
                     "finite": bool(np.all(np.isfinite(per_seed))),
                     "curve": [(h["step"], h["test_loss"]["mean"] / base) for h in s["history"] if "test_loss" in h],
                     "steps_per_sec": s["steps_per_sec"]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
  c = make_config(FLAGS.tasks[0], FLAGS.cells[0], lags[0])
  name = study.stem("memory")
  lines = [f"# Long-lag memory through the engine (`roaf.py:TASK-CELL-T`): hidden {c.model.width}, Adam "
           f"{c.optimizer.learning_rate} + global-norm clipping {c.optimizer.clip_global_norm}, batch "
           f"{c.batch_size}, {c.num_steps} steps, ROAF α = {c.model.alpha}, {c.num_seeds} seed(s)", "",
           f"Solved = test loss ≤ {SOLVED} × the constant-predictor baseline (adding: MSE 1/6; "
           "copy: 10 log 8 / (T + 20) cross-entropy per step).", "",
           f"Regenerate: `{study.command('scripts/reproduce_roaf_memory.py')}`", "",
           "| task | T | cell | test loss / baseline | solved seeds | steps/s |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['task']} | {r['lag']} | {r['cell']} | {r['ratio']:.3f} | {r['solved_seeds']}/{r['seeds']} "
                 f"| {r['steps_per_sec']:.1f} |")
  lines += ["", "Largest T solved (by every seed) within the budget:", "",
            "| task | " + " | ".join(FLAGS.cells) + " |", "|---|" + "---|" * len(FLAGS.cells)]
  for task in FLAGS.tasks:
    best = []
    for cell in FLAGS.cells:
      solved = [r["lag"] for r in rows if r["task"] == task and r["cell"] == cell and r["solved_seeds"] == r["seeds"]]
      best.append(str(max(solved)) if solved else "none")
    lines.append(f"| {task} | " + " | ".join(best) + " |")
  table = "\n".join(lines)
  study.write_results(out, table, {"setting": study.setting(), "rows": rows}, name=name)
  _plot(rows, os.path.join(out, name + ".png"))
  print(table)
  print(f"wrote {os.path.join(out, name)}.md")


def _plot(rows, path):
  """Learning curves (test loss / baseline, log scale) per task and lag, one line per cell."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = sorted({(r["task"], r["lag"]) for r in rows})
  fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False)
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
  plt.close(fig)


if __name__ == "__main__":
  study.app_run(main)
