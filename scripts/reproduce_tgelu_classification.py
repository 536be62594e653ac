"""Stable and consistent classification: tGELU + output-layer clipping (Ramaswamy, Bhatnagar & Saxena 2023).

Thin entry point of `stable_training.studies.tgelu_classification` (its docstring: the arms and what is measured):

  python scripts/reproduce_tgelu_classification.py --epochs 2 --num_train 30720   # results/tgelu_classification
  python scripts/reproduce_tgelu_classification.py            # full: 8 seeds, 5 epochs on 60k
  python scripts/reproduce_tgelu_classification.py --quick    # 4 seeds, 1 epoch on 12k (temporary --out)
  python scripts/reproduce_tgelu_classification.py --tiny     # smoke test on digits (temporary --out)

Writes ``<out>/table[_SETTING][_TAG].md``, its learning curves ``.png`` and its JSON (``results.json`` for the
full setting without a tag, else ``table_SETTING[_TAG].json``). Rerunning with the same --workdir_root reads
finished arms back.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from experiments.configs import tgelu
from stable_training import study
from stable_training.studies import tgelu_classification as tgelu_study

STUDY = "tgelu_classification"
study.define_flags(STUDY)
flags.DEFINE_list("arms", list(tgelu.ARMS), "Arms to run.")
flags.DEFINE_integer("num_seeds", None, "Override seeds.")
flags.DEFINE_integer("epochs", None, "Override epochs.")
flags.DEFINE_integer("num_train", None, "Override the number of training examples (a prefix).")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist; "
                    "digits under --tiny).")
FLAGS = flags.FLAGS

_RESULT_FLAGS = ("arms", "num_seeds", "epochs", "num_train", "dataset", "quick", "tiny", "tag", "data_dir", "out")


def main(argv):
  """The flags → `tgelu_classification.Settings`; the runs under --workdir_root; table, JSON, PNG into --out."""
  del argv
  logging.set_verbosity(logging.WARNING)
  kw = {k: FLAGS[k].value for k in ("num_seeds", "epochs", "num_train") if FLAGS[k].value}   # 0: the setting's
  if FLAGS["dataset"].present:   # else the setting's: digits under --tiny, auto otherwise
    kw["dataset"] = FLAGS.dataset
  make = {"tiny": tgelu_study.tiny, "quick": tgelu_study.quick, "full": tgelu_study.Settings}[study.setting()]
  try:
    s = make(arms=tuple(FLAGS.arms), data_dir=FLAGS.data_dir, **kw)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  study.setup_process([s.num_seeds])
  study.quiet_logging()
  out = study.out_dir(STUDY)
  payload = tgelu_study.run(s, FLAGS.workdir_root or study.workdir(STUDY, ""))
  name = study.stem("table")
  tgelu_study.plot(payload, os.path.join(out, name + ".png"))
  table = tgelu_study.table(payload, study.command("scripts/reproduce_tgelu_classification.py", only=_RESULT_FLAGS),
                            settings=s, figure=name + ".png")
  print(table)
  study.write_results(out, table, payload, name=name)
  print(f"wrote {os.path.join(out, name)}.md and .png")


if __name__ == "__main__":
  study.app_run(main)
