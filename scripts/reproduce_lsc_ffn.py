"""LSC pre-training for deep feed-forward nets (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

Thin entry point of `stable_training.studies.lsc_ffn` (see its docstring for the arms and configs): the
preset of --quick / --tiny (else the full grid), each preset key overridable by its flag (--acts, --lrs, …).

  python scripts/reproduce_lsc_ffn.py --quick
  python scripts/reproduce_lsc_ffn.py            # full grid (hours on 2 cores)
  python scripts/reproduce_lsc_ffn.py --tiny     # smoke test on digits

Writes ``<out>/ffn[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default: results/lsc for the full grid,
a temporary folder for --quick / --tiny); runs go to ``--workdir_root/ffn-ACT-ARM-LR``. The JSON's ``curves``
holds the figure's data, so ``lsc_ffn.plot(json.load(open(STEM + ".json")))`` re-renders it. A rerun that
finds a run finished (same ``--workdir_root``) keeps that run's training time from the JSON it overwrites.
"""
from __future__ import annotations

from stable_training import study
from stable_training.studies import lsc_ffn

study.define_flags("lsc")
study.define_preset_flags(lsc_ffn.PRESETS["full"])


def main(argv):
  del argv
  study.run_preset_study("lsc", lsc_ffn, "ffn", "scripts/reproduce_lsc_ffn.py")


if __name__ == "__main__":
  study.app_run(main)
