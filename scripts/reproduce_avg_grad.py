"""Averaged-gradient RMSProp vs RMSProp on a 30-hidden-layer tanh MLP (Fashion-MNIST; MNIST 5k subset).

Thin entry point of `stable_training.studies.avg_grad` (its docstring: the claim, the arms, the target loss):

  python scripts/reproduce_avg_grad.py --num_steps=600 --log_every=25   # results/avg_grad (hours on 2 cores)
  python scripts/reproduce_avg_grad.py --quick    # < 3 min on 2 idle cores (temporary --out)
  python scripts/reproduce_avg_grad.py --tiny     # smoke test on digits, seconds (temporary --out)
  python scripts/reproduce_avg_grad.py --dataset=mnist_5k   # results/avg_grad/table_mnist5k.{md,json,png} (≈ 22 min)
  python scripts/reproduce_avg_grad.py --dataset=mnist_5k --tiny --data_dir=DIR   # smoke (DIR/mnist_5k.csv)

Writes ``<out>/table[_mnist5k][_SETTING][_TAG].md``, its learning curves ``.png`` and its JSON (``results.json``
for the full setting without a tag on Fashion-MNIST, else ``table[_mnist5k][_SETTING][_TAG].json``); ``--out``
defaults to results/avg_grad for the full setting, a temporary folder otherwise. Rerunning with the same
--workdir_root reads finished arms back.
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from experiments.configs import avg_grad as avg_grad_cfg
from stable_training import study
from stable_training.studies import avg_grad

STUDY = "avg_grad"
study.define_flags(STUDY)
flags.DEFINE_list("methods", list(avg_grad_cfg.METHODS), "Methods (rmsprop, secant, midpoint, gauss_legendre).")
flags.DEFINE_list("lrs", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"], "Learning rates.")
flags.DEFINE_integer("num_seeds", None, "Seeds per arm (vmapped); default 3.")
flags.DEFINE_integer("num_steps", None, "Steps per arm.")
flags.DEFINE_integer("log_every", None, "Training-loss resolution (steps).")
flags.DEFINE_integer("depth", None, "Hidden layers of the deep network (default 30).")
flags.DEFINE_integer("width", None, "Hidden units per layer (default 64).")
flags.DEFINE_bool("shallow", True, "Also run the 1-hidden-layer control.")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | mnist_5k | auto (Fashion-MNIST if its files "
                    "exist; digits under --tiny). mnist_5k (a 5,000-image subset of MNIST) has its own presets "
                    "(module doc) and writes table_mnist5k*.")
flags.DEFINE_integer("num_train", None, "Use the first N training examples (0 = all).")
flags.DEFINE_float("target_loss", 0.0, "Target training loss (0 = auto, see module doc).")
flags.DEFINE_string("render_only", "", "Redraw STEM.png (learning curves) from STEM.json and exit.")
FLAGS = flags.FLAGS

# Flags that shape the results (the "Regenerate" line repeats the ones given).
_RESULT_FLAGS = ("methods", "lrs", "num_seeds", "num_steps", "log_every", "depth", "width", "shallow",
                 "dataset", "num_train", "target_loss", "quick", "tiny", "tag", "data_dir", "out")


def settings() -> avg_grad.Settings:
  """The setting's preset (the dataset's own for mnist_5k) with the flags given on top."""
  kw = {k: FLAGS[k].value for k in ("num_steps", "log_every", "num_seeds", "depth", "width", "num_train")
        if FLAGS[k].value is not None}
  kw.update({k: tuple(FLAGS[k].value) for k in ("methods", "lrs") if FLAGS[k].present})
  if "lrs" in kw:
    kw["lrs"] = tuple(float(x) for x in kw["lrs"])
  if FLAGS["dataset"].present:   # else the preset's: digits under --tiny, auto otherwise
    kw["dataset"] = FLAGS.dataset
  try:
    return avg_grad.preset(study.setting(), shallow=FLAGS.shallow, target_loss=FLAGS.target_loss,
                           data_dir=FLAGS.data_dir, **kw)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def main(argv):
  """The flags → `avg_grad.Settings`; the runs under --workdir_root; the table, JSON and PNG into --out."""
  del argv
  if FLAGS.render_only:
    stem = FLAGS.render_only[:-5] if FLAGS.render_only.endswith(".json") else FLAGS.render_only
    with open(stem + ".json") as f:
      avg_grad.plot(json.load(f), stem + ".png")
    print(f"wrote {stem}.png")
    return
  s = settings()
  study.setup_process([s.num_seeds])
  study.quiet_logging()
  out = study.out_dir(STUDY)
  payload = avg_grad.run(s, FLAGS.workdir_root or study.workdir(STUDY, ""))
  text = avg_grad.table(payload, study.command("scripts/reproduce_avg_grad.py", only=_RESULT_FLAGS))
  name = study.stem(avg_grad.table_name(payload))
  study.write_results(out, text, payload, name=name)
  avg_grad.plot(payload, os.path.join(out, f"{name}.png"))
  print(text)
  print(f"wrote {os.path.join(out, name)}.md ({payload['total_seconds']:.0f}s)")


if __name__ == "__main__":
  study.app_run(main)
