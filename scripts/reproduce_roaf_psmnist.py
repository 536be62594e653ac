"""Permuted sequential Fashion-MNIST (784 steps): ROAF RNN vs tanh Elman vs LSTM vs GRU, through the engine.

Thin entry point of `stable_training.studies.roaf_rnn_psmnist` (see its docstring). Each cell is the config
``experiments/configs/roaf.py:psmnist-CELL`` with the flags' budget; --quick / --tiny replace the budget.
Writes ``<out>/psmnist[_SETTING][_TAG].{md,json}``.

  python scripts/reproduce_roaf_psmnist.py --epochs 1 --tag full1epoch   # 60k images, 1 epoch, 4 cells
  python scripts/reproduce_roaf_psmnist.py --quick   # 2k images, 2 epochs (temporary --out)
  python scripts/reproduce_roaf_psmnist.py --tiny    # smoke test on digits (temporary --out)
"""
from __future__ import annotations

import os

from absl import app, flags

from stable_training import study
from stable_training.studies import roaf_rnn_psmnist as psmnist
from stable_training.studies import sweep

STUDY = "roaf"
D = psmnist.Settings()
study.define_flags(STUDY)
flags.DEFINE_list("cells", list(D.cells), "Cells to train.")
flags.DEFINE_integer("hidden", D.hidden, "Hidden units of every cell.")
flags.DEFINE_float("alpha", D.alpha, "ROAF α.")
flags.DEFINE_integer("num_train", D.num_train, "Training images (0 = all 60,000).")
flags.DEFINE_integer("num_test", D.num_test, "Test images (0 = all 10,000).")
flags.DEFINE_integer("epochs", D.epochs, "Epochs.")
flags.DEFINE_integer("seeds", D.seeds, "Seeds (vmapped in one program).")
flags.DEFINE_integer("batch", D.batch, "Batch size.")
flags.DEFINE_float("lr", D.lr, "Adam learning rate.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  study.setup_process()
  study.quiet_logging()
  try:
    s = psmnist.Settings(**{**{k: FLAGS[k].value for k in psmnist.FLAG_FIELDS}, "cells": tuple(FLAGS.cells)},
                         data_dir=FLAGS.data_dir, setting=study.setting())
  except ValueError as e:
    raise app.UsageError(f"--{e}") from None
  out = study.out_dir(STUDY)
  payload = psmnist.run(s, study.workdir(STUDY, ""))
  table = psmnist.table(payload, study.command("scripts/reproduce_roaf_psmnist.py"))
  name = study.stem("psmnist")
  sweep.write_payload(out, name, table, payload)
  print(table)
  print(f"wrote {os.path.join(out, name)}.md")


if __name__ == "__main__":
  study.app_run(main)
