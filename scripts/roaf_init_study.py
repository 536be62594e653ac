"""ROAF init study (Ceni 2022): where do the input–output Jacobian's singular values stay O(1) at depth ≤ 50k?

Thin entry point of `stable_training.studies.roaf_init`: its docstring derives the method (the QR / Lyapunov
scan of J = J_{D−1} ··· J_1 with the graded factor U, what is exact and what is a bound). Writes
``<out>/init_study[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default: results/roaf for the full setting, a
temporary folder for --quick / --tiny). --quick / --tiny are presets: a flag given on the command line wins.

  python scripts/roaf_init_study.py          # full grid: 12 configs to depth 50k, ≈ 10–15 min on 2 loaded cores
  python scripts/roaf_init_study.py --quick  # depths 100, 1000; α 0.99, 0.999; 'fast' filters (≈ 1 min)
  python scripts/roaf_init_study.py --tiny   # depths 10, 20, width 8, 2 digits inputs (compile-bound)
  python scripts/roaf_init_study.py --render_only results/roaf/init_study   # md/png from the json
"""
from __future__ import annotations

import json
import os

from absl import flags

from stable_training import study
from stable_training.studies import roaf_init

STUDY = "roaf"
D = roaf_init.Settings()
LISTS = {"depths": int, "alphas": float, "inits": str, "filter_modes": str}   # comma-list flags → tuples
study.define_flags(STUDY)
flags.DEFINE_string("depths", ",".join(map(str, D.depths)), "Network depths D (config roaf.py:mlp-D; "
                    "D − 1 ROAF layers), comma list; shallower ones read off the deepest scan.")
flags.DEFINE_string("alphas", ",".join(map(str, D.alphas)), "ROAF α values (β = 1 − α), comma list.")
flags.DEFINE_string("inits", ",".join(D.inits), "model.roaf_init values, comma list.")
flags.DEFINE_string("filter_modes", ",".join(D.filter_modes), "model.filter_mode values, comma list.")
flags.DEFINE_integer("haar_max_depth", D.haar_max_depth, "'haar' filters only at depths ≤ this (they re-draw "
                     "a Haar O_l per layer; measured ≈ the 'fast' cost per layer in this scan on CPU).")
flags.DEFINE_integer("width", D.width, "Width of the hidden layers.")
flags.DEFINE_string("activation", D.activation, "Activation φ (model.activation).")
flags.DEFINE_integer("examples", D.examples, "Training inputs at which J is measured (the first N).")
flags.DEFINE_integer("seed", D.seed, "PRNGKey of model.init.")
flags.DEFINE_enum("beta", D.beta, roaf_init.BETAS,
                  "β of every layer: 1 − α (model default) or √(1 − α²) (then α² + β² = 1).")
flags.DEFINE_string("render_only", "", "Re-render STEM.md/png from STEM.json and exit.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.render_only:
    study.render_json(roaf_init, FLAGS.render_only)
    return
  s = study.settings_from_flags(roaf_init, LISTS)
  command = study.command("scripts/roaf_init_study.py", ["quick", "tiny", "tag", "data_dir",
                                                          *roaf_init.SETTING_FIELDS])
  payload = roaf_init.run(s, command)
  stem = os.path.join(study.out_dir(STUDY), study.stem("init_study"))
  with open(stem + ".json", "w") as f:
    json.dump(payload, f, indent=1)
  study.render_json(roaf_init, stem)


if __name__ == "__main__":
  study.app_run(main)
