"""The one sweep runner every study shares: named configs → workdirs → engine → summaries.

`Sweep(root)` runs each named config in ``root/name`` through the engine
(`stable_training.train.trainers.run`): a finished run's summary is read
back (the engine returns it without training), a killed one resumes from its
last checkpoint. The root is the caller's: nothing here deletes it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable


@dataclasses.dataclass
class Sweep:
  """Runs named configs in ``root/<name>``; `summaries` maps each name run so far to its summary.

  `log`: where progress lines go (default: print, flushed). `memo`: the LSC pre-training memo the sweep's
  runs share (`train.loop.BoundedMemo`, created on first use): runs that re-initialize the same seeds
  (e.g. a learning-rate grid) pre-train each once; a hit returns exactly what pre-training would.
  """
  root: str
  log: Callable[[str], None] | None = None
  summaries: dict[str, dict] = dataclasses.field(default_factory=dict)
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  memo: Any = None

  def workdir(self, name: str) -> str:
    """``root/name``."""
    return os.path.join(self.root, name)

  def run(self, name: str, config) -> dict:
    """The summary of `config` trained in ``root/name`` (read back when that run finished before)."""
    from stable_training.train import trainers
    wd = self.workdir(name)
    t0 = time.perf_counter()
    (self.log or (lambda s: print(s, flush=True)))(f"[sweep] {name}: workdir {wd}")
    if self.memo is None:
      from stable_training.train.loop import BoundedMemo
      self.memo = BoundedMemo()
    summary = trainers.run(config, wd, memo=self.memo)
    self.summaries[name] = summary
    self.seconds[name] = time.perf_counter() - t0
    return summary


def check_members(field: str, values, valid) -> None:
  """ValueError ``FIELD: (values…); valid: one or more of …`` unless `values` is non-empty and each is in `valid`."""
  if not values or any(v not in valid for v in values):
    raise ValueError(f"{field}: {tuple(values)}; valid: one or more of {', '.join(valid)}")


def check_choice(field: str, value, valid) -> None:
  """ValueError ``FIELD: value; valid: …`` unless `value` is one of `valid`."""
  if value not in valid:
    raise ValueError(f"{field}: {value!r}; valid: {', '.join(valid)}")


def final_mean(summary: dict, key: str, default: float = float("nan")) -> float:
  """``summary['final'][key]['mean']`` (the mean over seeds at the last evaluation), or `default`."""
  v = (summary.get("final") or {}).get(key)
  return float(v["mean"]) if isinstance(v, dict) and "mean" in v else default


def evals(summary: dict, key: str) -> list[tuple[int, float]]:
  """[(step, mean over seeds)] of held-out metric `key` at every evaluation in the history."""
  return [(h["step"], float(h[key]["mean"])) for h in summary.get("history", []) if key in h]


def write_payload(out_dir: str, name: str, table: str, payload: dict[str, Any]) -> tuple[str, str]:
  """Writes ``name.md`` and ``name.json`` into `out_dir` (atomically: a temp file then rename); returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for ext, text in (("md", table.rstrip() + "\n"), ("json", json.dumps(payload, indent=2))):
    path = os.path.join(out_dir, f"{name}.{ext}")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
    paths.append(path)
  return tuple(paths)


# ------------------------------------- flag-free helpers (moved from study.py, which re-exports them) ---
def set_budget(config, num_steps: int, *, log_every: int | None = None, eval_every: int | None = None):
  """Sets num_steps and keeps log/eval/checkpoint intervals consistent (multiples of log_every)."""
  config.num_steps = num_steps
  config.num_epochs = 0
  config.log_every = log_every or min(config.log_every, num_steps)
  config.eval_every = eval_every or num_steps
  config.checkpoint_every = config.eval_every
  return config


def pick_dataset(name: str = "auto", data_dir: str = "") -> str:
  """``auto`` → ``fashion_mnist`` when its IDX files exist (in `data_dir` if given, else the Debian
  package's folder), else ``digits``; any other name is returned as is."""
  if name != "auto":
    return name
  from stable_training.data import DataError
  from stable_training.data.sources import FASHION_MNIST_DIR, _find_idx_file
  try:
    _find_idx_file(data_dir or FASHION_MNIST_DIR, "train-images-idx3-ubyte")
  except DataError:
    return "digits"
  return "fashion_mnist"


def finished_before(workdir: str, num_steps: int) -> bool:
  """Whether `workdir` already holds a run trained to `num_steps` (its summary.json): the engine then
  returns that summary without training, so a study keeps the time that run took when it trained."""
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      history = json.load(f).get("history") or []
  except (OSError, ValueError):
    return False
  return bool(history) and history[-1].get("step") == num_steps


def previous_payload(path: str, key: str, value) -> dict:
  """The results JSON at `path` that a rerun is about to overwrite, if its `key` equals `value` (the
  settings it was written with), else {}: finished runs keep the training times recorded there."""
  try:
    with open(path) as f:
      prev = json.load(f)
  except (OSError, ValueError):
    return {}
  return prev if prev.get(key) == value else {}


def run_keeping_time(sw: Sweep, name: str, config, previous_seconds: dict[str, float]) -> tuple[dict, float]:
  """(summary, seconds) of `config` run by `sw` in ``root/name``. A run found finished (trained to
  ``config.num_steps`` before: the engine reads it back without training) keeps the time recorded for it in
  `previous_seconds` (the payload this rerun overwrites), so a table's times stay training times."""
  done = finished_before(sw.workdir(name), config.num_steps)
  summary = sw.run(name, config)
  return summary, (previous_seconds[name] if done and name in previous_seconds else sw.seconds[name])


# ------------------------------------------------------------ learning curves ---
# Learning-curve metrics: (short name, y label, log y).
CURVE_LABELS = {"test_accuracy": ("test accuracy", "test accuracy", False),
                "train_loss": ("training loss", "training loss (log scale)", True)}


def train_records(workdir: str) -> list[dict]:
  """The ``kind == "train"`` records of a run's metrics.jsonl (held-out metrics sit in those of eval steps)."""
  from stable_training.train.records import read_records
  return [r for r in read_records(os.path.join(workdir, "metrics.jsonl")) if r.get("kind") == "train"]


def curve_metric(workdirs, held_out: str, fallback: str) -> str:
  """`held_out` (e.g. ``test_accuracy``) if every run in `workdirs` evaluated it more than once, else
  `fallback` (a training metric of every logging window, e.g. ``train_loss``)."""
  n_evals = min((sum(held_out in r for r in train_records(wd)) for wd in workdirs), default=0)
  return held_out if n_evals >= 2 else fallback


def run_curve(workdir: str, metric: str, transform=None) -> dict:
  """One run's learning curve from its metrics.jsonl: ``{"run", "step": [T], "values": [S][T]}`` (per seed;
  `transform` maps each value, e.g. accuracy ↦ error %)."""
  f = transform or (lambda v: v)
  recs = [r for r in train_records(workdir) if metric in r]
  return {"run": os.path.basename(os.path.normpath(workdir)), "step": [r["step"] for r in recs],
          "values": [[f(a) for a in v] for v in zip(*(r[metric]["per_seed"] for r in recs))]}


def plot_curve_panels(curves: dict, path: str) -> None:
  """Draws a study payload's ``curves`` into the PNG `path`, one panel per entry of ``curves["panels"]``
  (``{"title", "curves": {arm: run_curve}, "chance": optional y}``) with
  `stable_training.diagnostics.plot.plot_learning_curves`; ``curves`` also holds ``ylabel``, ``title``,
  optional ``log_y`` and ``ncols``. A chance line keeps ≥ 10 units below it in view, so a run stuck at
  chance reads flat rather than as magnified noise."""
  from stable_training.diagnostics.plot import plot_learning_curves   # sets the Agg backend
  import matplotlib.pyplot as plt
  from matplotlib.ticker import LogFormatter

  class PlainLog(LogFormatter):   # the ticks LogFormatter labels, as plain numbers (2.2, not 2.2×10⁰)
    def __call__(self, x, pos=None):
      return f"{x:g}" if super().__call__(x, pos) else ""

  panels, log_y = curves["panels"], curves.get("log_y", False)
  ncols = max(1, min(len(panels), curves.get("ncols") or len(panels)))
  nrows = -(-len(panels) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(max(8.0, 6.2 * ncols), 1.2 + 4.0 * nrows), squeeze=False,
                           layout="constrained")
  for ax, p in zip(axes.flat, panels):
    plot_learning_curves(p["curves"], curves["ylabel"], log_y=log_y, title=p["title"], ax=ax)
    if log_y:
      ax.yaxis.set_major_formatter(PlainLog())
      ax.yaxis.set_minor_formatter(PlainLog(labelOnlyBase=False))
    if p.get("chance") is not None:
      ax.axhline(p["chance"], color="0.5", lw=0.8, ls=":", label=f"chance ({p['chance']:.1f} %)")
      ax.legend(fontsize=8)
      lo, hi = ax.get_ylim()
      ax.set_ylim(min(lo, p["chance"] - 10), max(hi, p["chance"] + 1))
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  fig.suptitle(curves["title"], fontsize=11)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def learning_curves(panels: list[tuple[str, dict[str, str]]], figure: str, title: str, ncols: int | None = None) -> dict:
  """A payload's ``curves`` (what `plot_curve_panels` draws): per panel ``(title, {arm: workdir})`` each run's
  curve (`run_curve`) of test accuracy when every run evaluated it more than once, else of the training loss
  (`curve_metric`); `figure`: the PNG path recorded; `title` gets a second line naming the metric."""
  metric = curve_metric([wd for _, arms in panels for wd in arms.values()], "test_accuracy", "train_loss")
  short, ylabel, log_y = CURVE_LABELS[metric]
  when = "" if metric == "test_accuracy" else " (test accuracy evaluated once, at the end)"
  curves = {"figure": figure, "metric": metric, "ylabel": ylabel, "log_y": log_y,
            "panels": [{"title": t, "curves": {arm: run_curve(wd, metric) for arm, wd in arms.items()}}
                       for t, arms in panels]}
  if ncols is not None:
    curves["ncols"] = ncols
  curves["title"] = f"{title}\n{short} vs step{when}"
  return curves


def curves_note(curves: dict, what: str) -> list[str]:
  """The markdown lines naming a payload's learning-curve figure: ``Learning curves (WHAT; metric, …): `X.png```."""
  return ["", f"Learning curves ({what}; {CURVE_LABELS[curves['metric']][0]}, mean over seeds and min–max band): "
              f"`{os.path.basename(curves['figure'])}`"]


def run_and_write(module, settings, root: str, out: str, stem: str, command: str, log=None) -> tuple[str, str]:
  """The flag-free body of a thin script over a study whose ``run`` records its command, figure and training
  times (`lsc_ffn`, `lsc_rnn`): ``module.run(settings, root, …)`` with the figure ``out/stem.png`` and the
  payload at ``out/stem.json`` that this rerun overwrites (finished runs keep their times), then the figure
  (``module.plot``) and ``out/stem.{md,json}``. Returns (markdown table, its path)."""
  from stable_training.train.records import read_json_or_none
  os.makedirs(out, exist_ok=True)
  figure = os.path.join(out, f"{stem}.png")
  payload = module.run(settings, root, command=command, figure=figure,
                       previous=read_json_or_none(os.path.join(out, f"{stem}.json")), log=log)
  module.plot(payload, figure)
  table = module.table(payload)
  md, _ = write_payload(out, stem, table, payload)
  return table, md
