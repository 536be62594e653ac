"""Long-lag memory (Ceni 2022): the best ROAF setting, then the largest T that ROAF, Elman, GRU and LSTM solve.

Thin entry point of `stable_training.studies.roaf_memory` (see its docstring for the tasks, stages and budgets):

  python scripts/reproduce_roaf_memory_search.py --workdir_root=workdirs/memory_search   # full (T up to 10,000)
  python scripts/reproduce_roaf_memory_search.py --quick     # minutes (temporary --out)
  python scripts/reproduce_roaf_memory_search.py --tiny      # seconds (the suite's smoke test)

Writes ``<out>/memory_search[_SETTING][_TAG].{md,json,png}`` (default out: results/roaf for the full setting).
Rerunning with the same --workdir_root reads finished runs back and resumes killed ones.
"""
from __future__ import annotations

from absl import flags

from stable_training import study
from stable_training.studies import roaf_memory

STUDY = "roaf"
study.define_flags(STUDY)
flags.DEFINE_list("tasks", None, "Tasks among first, adding, copy (default: the setting's).")
flags.DEFINE_list("lags", None, "Lags T (default: the setting's).")
flags.DEFINE_list("cells", None, "Cells (default: the setting's).")
flags.DEFINE_integer("steps", None, "Train steps of every lag below --long_lag (default: the setting's).")
flags.DEFINE_integer("long_steps", None, "Train steps from --long_lag on (default: the setting's).")
flags.DEFINE_integer("long_lag", None, "First lag of the long budget (default: the setting's).")
flags.DEFINE_list("alphas_free", None, "ROAF α values searched with β free (default: the setting's).")
flags.DEFINE_list("betas", None, "ROAF β values searched (default: the setting's).")
flags.DEFINE_list("alphas_tied", None, "ROAF α values searched with β = 1 − α; empty for none (default: the setting's).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  tuple_of = lambda v, f=str: tuple(f(x) for x in v) if v else None
  given = lambda name: tuple(float(x) for x in FLAGS[name].value) if FLAGS[name].present else None
  command = study.command("scripts/reproduce_roaf_memory_search.py")
  study.run_library_study(STUDY, roaf_memory, "memory_search", command,
                          tasks=tuple_of(FLAGS.tasks), lags=tuple_of(FLAGS.lags, int), cells=tuple_of(FLAGS.cells),
                          steps=FLAGS.steps, long_steps=FLAGS.long_steps, long_lag=FLAGS.long_lag,
                          alphas_free=given("alphas_free"), betas=given("betas"), alphas_tied=given("alphas_tied"))


if __name__ == "__main__":
  study.app_run(main)
