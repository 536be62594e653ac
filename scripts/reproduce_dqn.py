"""Reproduce the DQN-without-target-network study (Ramaswamy, Bhatnagar & Saxena 2023).

Thin entry point of `stable_training.studies.dqn` (see its docstring for the arms, budgets and the
statistics). Workdirs go to a temporary directory unless ``--workdir_root`` is given; then
``ROOT/<setting>[_<env>]/<arm>`` are kept and rerunning the same command resumes a killed study.
Settings: ``--setting`` (default ``full``; ``--quick`` / ``--tiny`` are shortcuts) and the shared
study flags of `stable_training.study`.

Outputs ``<out>/<setting>[_<env>].{md,json,png}`` (``--out``; default ``results/dqn`` for
the full setting, a temporary folder otherwise).

  .venv/bin/python scripts/reproduce_dqn.py --quick
  .venv/bin/python scripts/reproduce_dqn.py --setting full --workdir_root runs/dqn
"""
from __future__ import annotations

import os
import tempfile

from absl import flags

from experiments.configs.dqn import ARMS
from stable_training import study
from stable_training.studies import dqn

study.define_flags("dqn")
flags.DEFINE_enum("setting", None, sorted(dqn.SETTINGS), "Budget (default: full, or --quick / --tiny).")
flags.DEFINE_enum("env", "CartPole-v1", sorted(dqn.THRESHOLDS), "Environment.")
flags.DEFINE_integer("seeds", 0, "Seeds per arm (0 = the setting's).")
flags.DEFINE_integer("total_steps", 0, "Env steps per seed (0 = the setting's).")
flags.DEFINE_string("arms", ",".join(ARMS), f"Comma-separated subset of {list(ARMS)}.")
flags.DEFINE_integer("seed", 0, "First seed.")
flags.DEFINE_string("resummarize", "", "A results JSON: recompute its statistics, no training.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.resummarize:
    print(dqn.resummarize(FLAGS.resummarize))
    return
  study.setup_process()
  setting = FLAGS.setting or study.setting()
  out = FLAGS.out or (os.path.join("results", "dqn") if setting == "full"
                      else tempfile.mkdtemp(prefix=f"dqn_{setting}_"))
  s = dqn.Settings(setting=setting, env=FLAGS.env, seeds=FLAGS.seeds, total_steps=FLAGS.total_steps,
                   arms=tuple(a for a in FLAGS.arms.split(",") if a), seed=FLAGS.seed)
  payload = dqn.run(s, FLAGS.workdir_root or None, command=study.command("scripts/reproduce_dqn.py"))
  print(dqn.write_outputs(payload, out, dqn.stem(s)))
  print(f"wrote {os.path.join(out, dqn.stem(s))}.md")


if __name__ == "__main__":
  study.app_run(main)
