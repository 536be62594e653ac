"""LSC pre-training for deep RNNs (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

Arms per (cell, depth): no pre-training, LSC ρ = 1, LSC ρ = 0.5, on
sequential Fashion-MNIST. LSTM, GRU and ReLU-RNN read one 28-pixel row per
step (T = 28); ALIF reads the spike-latency code of the image (28 steps × 784
inputs). Each run is the config ``experiments/configs/lsc.py:rnn-CELL-DEPTH-RHO``
at the settings' budget, run by the engine in ``root/rnn-CELL-DEPTH-RHO``
(`sweep.Sweep`), which pre-trains with ``config.lsc.*`` and logs the per-layer
mean radii before/after. The ``tiny`` preset shrinks the configs with
``lsc.py:tiny-…`` (scikit-learn digits, one 8-pixel row per step, seconds).

Reported: test accuracy (mean ± std over seeds) and the mean time/depth/read-out
radii before → after pre-training; the payload's ``curves`` (`plot`): one panel
per (cell, depth), the learning curve of each arm (mean over seeds, min–max
band) — test accuracy vs step when the runs evaluate more than once, else the
training loss.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib
from stable_training.studies.lsc_ffn import (DATASET_NAMES, PRESET_NAMES, check_list, lsc_config,
                                             payload_settings, presets)

ARMS = {"none": "no pre-training", "1": "LSC ρ=1", "0.5": "LSC ρ=0.5"}   # arm → its label in the table
CELLS = ("lstm", "gru", "relu_rnn", "sigmoid_rnn", "tanh_rnn", "alif", "lru")
DEPTHS = tuple(map(str, range(1, 8)))   # lsc.py:rnn-CELL-DEPTH-RHO


@dataclasses.dataclass(frozen=True)
class Settings:
  """Grid and budget (defaults: the full grid). Lists are comma-separated strings (the script's preset flags).

  `preset`: full | quick | tiny (tiny: the ``lsc.py:tiny-…`` configs, 5 log records per run);
  `data_dir`: the dataset folder ("" = the loader's).
  """
  cells: str = "lstm,gru,relu_rnn,alif"
  depths: str = "2,5"
  arms: str = "none,1,0.5"
  width: int = 64
  num_steps: int = 3000
  num_train: int = 0
  num_test: int = 0
  lsc_steps: int = 500
  seeds: int = 2
  batch_size: int = 128
  lr: float = 1e-3
  preset: str = "full"
  data_dir: str = ""

  def __post_init__(self):
    check_list("arms", "arm", self.arms, ARMS)
    check_list("cells", "cell", self.cells, CELLS)
    check_list("depths", "depth", self.depths, DEPTHS)
    check_list("preset", "preset", self.preset, PRESET_NAMES)


def quick(**kw) -> Settings:
  """Minutes: LSTM and ALIF at depth 2, width 32, 300 steps on 10,000 images, one seed."""
  base = dict(cells="lstm,alif", depths="2", width=32, num_steps=300, num_train=10000, num_test=2000,
              lsc_steps=100, seeds=1, batch_size=64, preset="quick")
  return Settings(**{**base, **kw})


def tiny(**kw) -> Settings:
  """Seconds: one LSTM of depth 2 × 8, LSC ρ = 1, 10 steps on digits (the suite's smoke test)."""
  base = dict(cells="lstm", depths="2", arms="1", width=8, num_steps=10, num_train=256, num_test=128,
              lsc_steps=30, seeds=1, batch_size=32, preset="tiny")
  return Settings(**{**base, **kw})


PRESETS = presets(Settings, quick, tiny)


def make_config(s: Settings, cell: str, depth: int, arm: str):
  """The engine config of one (cell, depth, arm) at the budget of `s`."""
  c = lsc_config(s, f"rnn-{cell}-{depth}-{arm}")
  c.model.depth, c.model.width = depth, s.width
  c.optimizer.learning_rate = s.lr
  return c


def run_name(cell: str, depth: int, arm: str) -> str:
  """``rnn-CELL-DEPTH-ARM``: the run's workdir under the root."""
  return f"rnn-{cell}-{depth}-{arm}"


def _mean_radii(per_seed, key):
  vals = [np.mean(r[key]) for r in per_seed if np.size(r[key])]
  return float(np.mean(vals)) if vals else float("nan")


def run_row(cell: str, depth: int, arm: str, summ: dict, seconds: float) -> dict:
  """One JSON row from a run's summary: final test accuracy (mean, std over seeds), mean LSC radii."""
  row = {"cell": cell, "depth": depth, "arm": arm,
         "test_accuracy": summ["final"]["test_accuracy"]["mean"],
         "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
         "train_loss": summ["final"]["train_loss"]["mean"], "seconds": seconds}
  if "lsc" in summ:
    for when in ("before", "after"):
      per_seed = summ["lsc"][f"lsc_{when}"]
      for k in ("time", "depth", "readout"):
        row[f"{k}_{when}"] = _mean_radii(per_seed, k)
  return row


def run(s: Settings, root: str, *, command: str = "", figure: str = "", previous: dict | None = None,
        log=None) -> dict[str, Any]:
  """Runs the grid (cell × depth × arm, in that order) in ``root/rnn-CELL-DEPTH-ARM``; returns the payload (see
  `table`). `command` and `figure` (the PNG path) are recorded in it; `previous`: the payload this rerun
  overwrites — a run found finished keeps the training time recorded there (when written with the same
  settings)."""
  say = log or (lambda line: print(line, flush=True))
  sw = sweep_lib.Sweep(root, log=log)
  values = payload_settings(s)
  prev = previous if previous and previous.get("settings") == values else {}
  prev_seconds = {run_name(r["cell"], r["depth"], r["arm"]): r["seconds"] for r in prev.get("rows", [])}
  depths = [int(d) for d in s.depths.split(",")]
  rows, dataset = [], None
  for cell in s.cells.split(","):
    for depth in depths:
      for arm in s.arms.split(","):
        name = run_name(cell, depth, arm)
        summ, seconds = sweep_lib.run_keeping_time(sw, name, make_config(s, cell, depth, arm), prev_seconds)
        dataset = summ["dataset"]
        rows.append(run_row(cell, depth, arm, summ, seconds))
        say(json.dumps(rows[-1]))
  panels = [(f"{cell}, depth {depth}", {ARMS[arm]: sw.workdir(run_name(cell, depth, arm)) for arm in s.arms.split(",")})
            for cell in s.cells.split(",") for depth in depths]
  curves = sweep_lib.learning_curves(
      panels, figure, f"LSC pre-training, deep RNNs (width {s.width}) on sequential "
                      f"{DATASET_NAMES.get(dataset, dataset)}", ncols=len(depths))
  return {"preset": s.preset, "settings": values, "dataset": dataset, "command": command, "rows": rows,
          "curves": curves}


def table(payload: dict, command: str = "") -> str:
  """The markdown report: per (cell, depth, arm) test accuracy (mean ± std over seeds), the mean time, depth
  and read-out radii before → after LSC, training seconds; `command` (default: the payload's) as Regenerate."""
  s, dataset = payload["settings"], payload["dataset"]
  lines = [f"# LSC pre-training, deep RNNs on sequential {DATASET_NAMES.get(dataset, dataset)} ({payload['preset']})",
           "", f"Regenerate: `{command or payload['command']}`", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "| cell | depth | arm | test acc | ρ_time before→after | ρ_depth before→after | ρ_readout before→after | s |",
           "|---|---|---|---|---|---|---|---|"]
  fmt = lambda r, k: (f"{r[k + '_before']:.3f} → {r[k + '_after']:.3f}" if f"{k}_before" in r else "—")
  for r in payload["rows"]:
    lines.append(f"| {r['cell']} | {r['depth']} | {ARMS[r['arm']]} | {r['test_accuracy']:.4f} ± "
                 f"{r['test_accuracy_std']:.4f} | {fmt(r, 'time')} | {fmt(r, 'depth')} | {fmt(r, 'readout')} | "
                 f"{r['seconds']:.0f} |")
  return "\n".join(lines + sweep_lib.curves_note(payload["curves"], "per cell and depth, each arm"))


def plot(payload: dict, path: str = "") -> None:
  """The learning curves of the payload into the PNG `path` (default: the payload's figure path)."""
  sweep_lib.plot_curve_panels(payload["curves"], path or payload["curves"]["figure"])
