"""What LSC pre-training changes in a deep MLP's layer Jacobians (Herranz-Celotti & Rouat 2023/24).

Thin entry point of `stable_training.studies.lsc_ffn_spectrum` (see its docstring for what is measured):

  python scripts/lsc_ffn_spectrum.py            # 20 × 128, 200 steps (the stability arm's setting)
  python scripts/lsc_ffn_spectrum.py --quick    # 10 × 64, 100 steps
  python scripts/lsc_ffn_spectrum.py --tiny     # smoke test (digits)

Writes ``<out>/spectrum[_quick|_tiny][_TAG].{md,json}`` (``--out`` default:
results/lsc for the full setting, a temporary folder for --quick / --tiny).
"""
from __future__ import annotations

import os

from absl import flags

from stable_training import study
from stable_training.studies import lsc_ffn_spectrum

STUDY = "lsc"
study.define_flags(STUDY)
flags.DEFINE_string("activation", "tanh", "Hidden activation.")
flags.DEFINE_string("kernel_init", "glorot_standard", "Kernel initializer.")
flags.DEFINE_enum("rho", "1", ["1", "0.5"], "LSC target radius of every layer Jacobian (config.lsc.rho).")
flags.DEFINE_integer("seed", 0, "Seed of the init and of the pre-training.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  make = {"tiny": lsc_ffn_spectrum.tiny, "quick": lsc_ffn_spectrum.quick,
          "full": lsc_ffn_spectrum.Settings}[study.setting()]
  s = make(activation=FLAGS.activation, kernel_init=FLAGS.kernel_init, rho=float(FLAGS.rho), seed=FLAGS.seed,
           data_dir=FLAGS.data_dir)
  cmd = study.command("scripts/lsc_ffn_spectrum.py",
                      ["quick", "tiny", "tag", "data_dir", "activation", "kernel_init", "rho", "seed"])
  payload = lsc_ffn_spectrum.run(s, cmd)
  table = lsc_ffn_spectrum.table(payload)
  path, name = study.out_dir(STUDY), study.stem("spectrum")
  study.write_results(path, table, payload, name=name)
  print(table)
  print(f"wrote {os.path.join(path, name)}.md")


if __name__ == "__main__":
  study.app_run(main)
