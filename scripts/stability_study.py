"""The default experiment: a deep-MLP stability study across arms (see experiments/configs/stability.py).

Thin entry point of `stable_training.studies.stability` (see its docstring for the arms and the table):

  python scripts/stability_study.py            # full setting: results/stability (≈ 20 min on 2 idle cores)
  python scripts/stability_study.py --quick    # 600 steps, 2 seeds, LSC 50 steps (≈ 5 min; temporary --out)
  python scripts/stability_study.py --tiny     # smoke test on digits, seconds (temporary --out)
  python scripts/stability_study.py --arms=roaf-tanh --merge   # add a row to results/stability

Writes ``<out>/table[_SETTING][_TAG].md`` and its JSON (``results.json`` for the
full setting without a tag, else ``table_SETTING[_TAG].json``); runs go to ``--workdir_root/ARM``.
"""
from __future__ import annotations

import os

from absl import flags

from experiments.configs import stability as stability_configs
from stable_training import study
from stable_training.studies import stability
from stable_training.train.records import read_json_or_none

STUDY = "stability"
study.define_flags(STUDY)
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist; "
                    "digits under --tiny).")
flags.DEFINE_list("arms", list(stability_configs.ARMS), "Arms to run (--tiny: tanh-standard,tanh-normalized "
                  "unless given).")
flags.DEFINE_integer("num_steps", None, "Override steps per arm.")
flags.DEFINE_integer("num_seeds", None, "Override seeds per arm.")
flags.DEFINE_bool("merge", False, "Keep the rows of arms not run now from --out's results file "
                  "(same dataset only), so new arms can be added to a finished table.")
FLAGS = flags.FLAGS

_RESULT_FLAGS = ("arms", "dataset", "num_steps", "num_seeds", "merge", "quick", "tiny", "tag", "data_dir", "out")


def command(arms: list[str] | None = None) -> str:
  """The command line that regenerates this table (the result-shaping flags that were given).

  `arms`: the table's arms after a --merge (one run of them all replaces the merges).
  """
  parts = ["python scripts/stability_study.py"]
  for n in _RESULT_FLAGS:
    if arms is not None and n in ("arms", "merge"):
      continue
    if FLAGS[n].present:
      parts.append(FLAGS[n].serialize())
  if arms is not None and arms != list(stability_configs.ARMS):
    parts.insert(1, "--arms=" + ",".join(arms))
  return " ".join(parts)


def main(argv):
  del argv
  given = {k: v for k, v in (("arms", tuple(FLAGS.arms)), ("dataset", FLAGS.dataset)) if FLAGS[k].present}
  make = {"tiny": stability.tiny, "quick": stability.quick, "full": stability.Settings}[study.setting()]
  s = make(**given, num_steps=FLAGS.num_steps or 0, num_seeds=FLAGS.num_seeds or 0, data_dir=FLAGS.data_dir)
  stability.arm_names(s)  # unknown arm: fail before anything runs
  dataset = stability.dataset_name(s)
  print(f"dataset: {dataset}" + ("" if dataset == "fashion_mnist" else
                                 " (Fashion-MNIST IDX files not found or --tiny; using scikit-learn digits)"))
  study.setup_process(stability.seed_counts(s))
  study.quiet_logging()
  out, name = study.out_dir(STUDY), study.stem("table")
  json_path = os.path.join(out, "results.json" if name == "table" else f"{name}.json")
  print(f"results: {os.path.join(out, name)}.md", flush=True)
  previous = read_json_or_none(json_path) if FLAGS.merge else None   # None: no file yet
  payload = stability.run(s, os.path.normpath(study.workdir(STUDY, "")), previous=previous)
  merged = stability.merged(payload, s)
  table = stability.table(payload, command(stability.order(payload) if merged else None), s)
  print(table)
  study.write_results(out, table, payload, name=name)
  print(f"wrote {os.path.join(out, name)}.md")


if __name__ == "__main__":
  study.app_run(main)
