"""Long-lag memory (Ceni 2022): the adding problem and the copy task at growing lag T, through the engine.

Thin entry point of `stable_training.studies.roaf_rnn_memory` (see its docstring). Each (task, cell, T) is the
config ``experiments/configs/roaf.py:TASK-CELL-T`` with the flags' budget; --quick / --tiny replace the budget
and the lags. Writes ``<out>/memory[_SETTING][_TAG].{md,json,png}`` (learning curves: test loss / baseline vs
step).

  python scripts/reproduce_roaf_memory.py --tasks adding --lags 100,200,500,1000 --steps 3000
  python scripts/reproduce_roaf_memory.py --quick   # T = 50, 100; short (temporary --out)
  python scripts/reproduce_roaf_memory.py --tiny    # smoke test (temporary --out)
"""
from __future__ import annotations

import os

from absl import app, flags

from stable_training import study
from stable_training.studies import roaf_rnn_memory as memory
from stable_training.studies import sweep

STUDY = "roaf"
D = memory.Settings()
study.define_flags(STUDY)
flags.DEFINE_list("tasks", list(D.tasks), "Generated tasks.")
flags.DEFINE_list("lags", [str(t) for t in D.lags], "Lags T.")
flags.DEFINE_list("cells", list(D.cells), "Cells.")
flags.DEFINE_integer("steps", D.steps, "Train steps per run.")
flags.DEFINE_integer("hidden", D.hidden, "Hidden units.")
flags.DEFINE_integer("batch", D.batch, "Batch size.")
flags.DEFINE_float("lr", D.lr, "Adam learning rate.")
flags.DEFINE_float("alpha", D.alpha, "ROAF α.")
flags.DEFINE_integer("seeds", D.seeds, "Seeds (vmapped).")
flags.DEFINE_integer("eval_every", D.eval_every, "Steps between test evaluations (the learning curve).")
FLAGS = flags.FLAGS
SCALARS = ("steps", "hidden", "batch", "lr", "alpha", "seeds", "eval_every")


def main(argv):
  del argv
  study.setup_process()
  study.quiet_logging()
  lags = tuple(int(t) for t in FLAGS.lags)
  try:
    s = memory.Settings(**{k: FLAGS[k].value for k in SCALARS}, tasks=tuple(FLAGS.tasks), cells=tuple(FLAGS.cells),
                        lags=lags, data_dir=FLAGS.data_dir, setting=study.setting())
  except ValueError as e:
    raise app.UsageError(f"--{e}") from None
  out = study.out_dir(STUDY)
  payload = memory.run(s, study.workdir(STUDY, ""))
  table = memory.table(payload, s, study.command("scripts/reproduce_roaf_memory.py"))
  name = study.stem("memory")
  sweep.write_payload(out, name, table, payload)
  memory.plot(payload, os.path.join(out, name + ".png"))
  print(table)
  print(f"wrote {os.path.join(out, name)}.md")


if __name__ == "__main__":
  study.app_run(main)
