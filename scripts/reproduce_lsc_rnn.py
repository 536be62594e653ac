"""LSC pre-training for deep RNNs (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

Thin entry point of `stable_training.studies.lsc_rnn` (see its docstring for the cells, arms and configs):
the preset of --quick / --tiny (else the full grid), each preset key overridable by its flag (--cells,
--depths, …). Writes ``<out>/rnn[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default: results/lsc for
the full grid, a temporary folder for --quick / --tiny); runs go to ``--workdir_root/rnn-CELL-DEPTH-ARM``,
and a rerun with the same root keeps each finished run's training time from the JSON it overwrites. The
JSON's ``curves`` holds the figure's data: ``lsc_rnn.plot(json.load(open(STEM + ".json")))`` re-renders it.

  python scripts/reproduce_lsc_rnn.py --quick      # lstm, alif; depth 2; ~minutes
  python scripts/reproduce_lsc_rnn.py             # the full grid (hours on 2 cores)
  python scripts/reproduce_lsc_rnn.py --tiny      # smoke test on digits
  python scripts/reproduce_lsc_rnn.py --quick --cells=gru,relu_rnn --tag=gru_relu2   # other cells, own file
"""
from __future__ import annotations

from stable_training import study
from stable_training.studies import lsc_rnn

study.define_flags("lsc")
study.define_preset_flags(lsc_rnn.PRESETS["full"])


def main(argv):
  del argv
  study.run_preset_study("lsc", lsc_rnn, "rnn", "scripts/reproduce_lsc_rnn.py")


if __name__ == "__main__":
  study.app_run(main)
