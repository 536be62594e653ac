r"""Reproduces Glorot & Bengio (2010) Table 1 and §4.2.3 at a CPU budget.

Thin entry point of `stable_training.studies.glorot_table1` (its docstring: the runs, the Jacobians at init,
the figures, the MNIST 5k preset):

  python scripts/reproduce_glorot_table1.py             # width 1000 (long)
  python scripts/reproduce_glorot_table1.py --quick --out=results/glorot   # the committed table (≈ 30 min)
  python scripts/reproduce_glorot_table1.py --tiny      # smoke test (seconds, generated Shapeset)
  python scripts/reproduce_glorot_table1.py --dataset=mnist_5k   # results/glorot/table1_mnist5k.{md,json,png}
  python scripts/reproduce_glorot_table1.py --dataset=mnist_5k --tiny --data_dir=DIR  # smoke (DIR/mnist_5k.csv)

Writes ``OUT/table1[_mnist5k][_SETTING][_TAG].md`` (``_mnist5k`` when the MNIST 5k subset is among the
datasets), its ``.json`` and ``.png`` (the learning curves; their data in the JSON's ``curves``, so
``sweep.plot_curve_panels(json.load(open(STEM + ".json"))["curves"], STEM + ".png")`` re-renders them) and
``OUT/figures/*/*.png`` (``--out``: results/glorot for the full setting, a temporary folder otherwise). A rerun
with the ``--workdir_root`` of an earlier one reads finished runs back and keeps their training times.
"""
from __future__ import annotations

import os

from absl import app, flags

from stable_training import study
from stable_training.studies import glorot_table1 as glorot

STUDY = "glorot"
study.define_flags(STUDY)
flags.DEFINE_list("datasets", None, "Datasets: fashion_mnist, shapeset, mnist_5k (default: the setting's).")
flags.DEFINE_enum("dataset", None, list(glorot.DATASET_PRESETS), "One dataset with its own budget presets (module "
                  "doc): mnist_5k = the MNIST column on a 5,000-image subset of MNIST, 5 × 1000, 3,500 steps, "
                  "lr {0.03, 0.1}, ≈ 30 min on 2 cores with one busy (--quick: width 128; --tiny: seconds).")
flags.DEFINE_list("activations", ["sigmoid", "tanh", "softsign"], "Activations.")
flags.DEFINE_list("inits", ["standard", "normalized"], "Initializations.")
flags.DEFINE_list("lrs", None, "SGD learning rates, picked on validation (default: the setting's).")
flags.DEFINE_integer("width", None, "Hidden units per layer (default: the setting's).")
flags.DEFINE_integer("depth", 5, "Hidden layers.")
flags.DEFINE_integer("num_steps", None, "SGD steps per run (default: the setting's).")
flags.DEFINE_integer("evals", None, "Validation/test evaluations per run, evenly spaced; the test error reported "
                     "is the one at the lowest validation error (default: the setting's).")
flags.DEFINE_integer("batch_size", 10, "Minibatch size.")
flags.DEFINE_integer("num_train", None, "Training examples (the first N; Shapeset: at most "
                     f"{glorot.SHAPESET_TRAIN} − num_val; mnist_5k: at most {glorot.MNIST5K_TRAIN} − num_val).")
flags.DEFINE_integer("num_generated", 0, "Shapeset training images drawn (`dataset.num_generated`; 0 = its fixed "
                     f"{glorot.SHAPESET_TRAIN}): long budgets see fresh images, closer to the paper's online stream.")
flags.DEFINE_integer("num_val", None, "Validation examples (the next N training ones, `dataset.num_val`).")
flags.DEFINE_integer("num_test", None, "Test examples (0 = all).")
flags.DEFINE_integer("jac_examples", None, "Examples for the Jacobian spectra at init.")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_bool("keep_checkpoints", True, "Keep each run's checkpoints; --nokeep_checkpoints deletes them "
                  "after each run (a rerun with the same --workdir_root skips finished runs either way).")
flags.DEFINE_bool("jacobian_only", False, "Only the Jacobian-at-init table (no training).")
FLAGS = flags.FLAGS

_RESULT_FLAGS = ("dataset", "datasets", "activations", "inits", "lrs", "width", "depth", "num_steps", "evals",
                 "batch_size", "num_train", "num_generated", "num_val", "num_test", "jac_examples", "seed",
                 "jacobian_only", "quick", "tiny", "tag", "data_dir", "out")


def settings() -> glorot.Settings:
  """The setting's preset (--dataset's own when given) with the flags given on top."""
  if FLAGS.dataset and FLAGS.datasets is not None:
    raise app.UsageError("--dataset picks one dataset and its presets: drop --datasets")
  kw = {k: FLAGS[k].value for k in ("width", "num_steps", "evals", "num_train", "num_val", "num_test",
                                    "jac_examples") if FLAGS[k].value is not None}
  if FLAGS.lrs is not None:
    kw["lrs"] = tuple(float(x) for x in FLAGS.lrs)
  if FLAGS.datasets is not None:
    kw["datasets"] = tuple(FLAGS.datasets)
  kw.update({k: FLAGS[k].value for k in ("depth", "batch_size", "seed", "jacobian_only", "keep_checkpoints",
                                         "num_generated", "data_dir")})
  try:
    return glorot.preset(study.setting(), FLAGS.dataset, activations=tuple(FLAGS.activations),
                         inits=tuple(FLAGS.inits), **kw)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def main(argv):
  """The flags → `glorot_table1.Settings`; the runs under --workdir_root; table, JSON, figures into --out."""
  del argv
  study.setup_process()
  s = settings()
  study.quiet_logging()
  out = study.out_dir(STUDY)
  stem = study.stem(glorot.table_name(s))
  payload = glorot.run(s, FLAGS.workdir_root or study.workdir(STUDY, ""), out, stem)
  table = glorot.table(payload, study.command("scripts/reproduce_glorot_table1.py", only=_RESULT_FLAGS),
                       settings=s, out=out)
  study.write_results(out, table, payload, name=stem)
  print(table)
  print(f"wrote {os.path.join(out, stem)}.md")


if __name__ == "__main__":
  study.app_run(main)
