"""ROAF depth study (Ceni 2022): Jacobian spread and gradient balance vs depth, then training through the engine.

Thin entry point of `stable_training.studies.roaf_depth` (see its docstring for what is measured and trained).
Writes ``<out>/depth[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default: results/roaf for the full setting,
a temporary folder for --quick / --tiny). --quick / --tiny are presets: a flag given on the command line wins.

  python scripts/reproduce_roaf_depth.py            # full (hours on 2 cores)
  python scripts/reproduce_roaf_depth.py --quick    # depths 10,100,1000; < 3 min idle
  python scripts/reproduce_roaf_depth.py --tiny     # smoke test on digits
  python scripts/reproduce_roaf_depth.py --render_only results/roaf/depth   # re-render md/png from the json
"""
from __future__ import annotations

import json
import os

from absl import flags

from stable_training import study
from stable_training.studies import roaf_depth

STUDY = "roaf"
D = roaf_depth.Settings()
study.define_flags(STUDY)
flags.DEFINE_string("depths", ",".join(map(str, D.depths)), "Depths of the at-init measurements (comma list).")
flags.DEFINE_integer("width", D.width, "Width of every network.")
flags.DEFINE_float("alpha", D.alpha, "ROAF α.")
flags.DEFINE_integer("batch", D.batch, "Examples of the at-init gradient measurement.")
flags.DEFINE_integer("train_depth", D.train_depth, "Depth of the trained networks.")
flags.DEFINE_integer("train_steps", D.train_steps, "Train steps.")
flags.DEFINE_integer("train_batch", D.train_batch, "Train batch size.")
flags.DEFINE_integer("train_log_every", D.train_log_every,
                     "Steps per engine train record (first/last loss are their means).")
flags.DEFINE_float("lr", D.lr, "Learning rate.")
flags.DEFINE_enum("optimizer", D.optimizer, roaf_depth.OPTIMIZERS, "momentum: SGD with momentum 0.9; adam: Adam.")
flags.DEFINE_string("train_models", ",".join(D.train_models),
                    f"Networks to train (comma list of {', '.join(roaf_depth.KINDS)}).")
flags.DEFINE_enum("filter_mode", D.filter_mode, roaf_depth.FILTER_MODES, "ROAF filters O_l.")
flags.DEFINE_integer("num_train", D.num_train, "Training examples (the first N).")
flags.DEFINE_integer("num_test", D.num_test, "Test examples (the first N; 0 = all).")
flags.DEFINE_string("render_only", "", "Re-render STEM.md/png from STEM.json and exit.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.render_only:
    study.render_json(roaf_depth, FLAGS.render_only)
    return
  study.setup_process()
  s = study.settings_from_flags(roaf_depth, {"depths": int, "train_models": str})
  study.quiet_logging()
  command = study.command("scripts/reproduce_roaf_depth.py", ["quick", "tiny", "tag", "data_dir",
                                                              *roaf_depth.SETTING_FIELDS])
  payload = roaf_depth.run(s, study.workdir(STUDY, ""), command)
  stem = os.path.join(study.out_dir(STUDY), study.stem("depth"))
  with open(stem + ".json", "w") as f:
    json.dump(payload, f, indent=1)
  study.render_json(roaf_depth, stem)


if __name__ == "__main__":
  study.app_run(main)
