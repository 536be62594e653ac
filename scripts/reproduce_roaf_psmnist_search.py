"""The ROAF RNN setting search on permuted sequential MNIST (5k subset), then 10 paper epochs vs baselines.

Thin entry point of `stable_training.studies.roaf_psmnist` (see its docstring for the stages and reasons):

  python scripts/reproduce_roaf_psmnist_search.py --workdir_root=workdirs/psmnist_search   # full (hours)
  python scripts/reproduce_roaf_psmnist_search.py --quick     # minutes (temporary --out)
  python scripts/reproduce_roaf_psmnist_search.py --tiny      # seconds, digits (the suite's smoke test)

Writes ``<out>/psmnist_search[_SETTING][_TAG].{md,json}`` (default out: results/roaf for the full setting).
Rerunning with the same --workdir_root reads finished runs back and resumes killed ones.
"""
from __future__ import annotations

from absl import flags

from stable_training import study
from stable_training.studies import roaf_psmnist

STUDY = "roaf"
study.define_flags(STUDY)
flags.DEFINE_integer("final_epochs", None, "Paper epochs of the final runs (default: the setting's).")
flags.DEFINE_integer("baseline_epochs", None, "Paper epochs of the baselines (default: the setting's).")
flags.DEFINE_list("baselines", None, "Baseline cells of the final stage (default: the setting's).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  command = study.command("scripts/reproduce_roaf_psmnist_search.py")
  study.run_library_study(STUDY, roaf_psmnist, "psmnist_search", command,
                          final_epochs=FLAGS.final_epochs, baseline_epochs=FLAGS.baseline_epochs,
                          baselines=tuple(FLAGS.baselines) if FLAGS.baselines else None,
                          data_dir=FLAGS.data_dir or None)


if __name__ == "__main__":
  study.app_run(main)
