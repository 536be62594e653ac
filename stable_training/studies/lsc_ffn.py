"""LSC pre-training for deep feed-forward nets (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

A DeepMLP (30 layers × 128 in the paper's setting) with activation ∈ {sin,
relu, cos}; arms: Glorot (normalized) init, He init, and Glorot init followed
by LSC pre-training to ρ(∂h_{l+1}/∂h_l) = 1 (and read-out radius 1). Adam over
a learning-rate grid, several seeds (vmapped by the engine); the table gives,
per arm, the best mean test accuracy over learning rates.

Each run is the config ``experiments/configs/lsc.py:ffn-ACT-INIT-ARM`` at the
settings' budget, run by the engine in ``root/ffn-ACT-ARM-LR`` (`sweep.Sweep`),
which pre-trains with ``config.lsc.*`` and logs the per-layer radii
before/after; the pre-training of one (activation, seed) is computed once per
process and reused across learning rates. The ``tiny`` preset shrinks the
configs with ``lsc.py:tiny-…`` (scikit-learn digits, seconds).

The payload's ``curves`` (`plot`): one panel per activation, the learning
curve of each arm at its best learning rate (mean over seeds, min–max band) —
test accuracy vs step when the runs evaluate more than once, else the
training loss.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

ARMS = {"glorot": ("glorot", "none"), "he": ("he", "none"), "lsc": ("glorot", "lsc")}   # arm → (init, lsc arm)
ACTS = ("sin", "relu", "cos")
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "digits": "digits"}
PRESET_NAMES = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Grid and budget (defaults: the full grid). Lists are comma-separated strings (the scripts' preset flags).

  `preset`: full | quick | tiny (tiny: the ``lsc.py:tiny-…`` configs, 5 log records per run);
  `data_dir`: the dataset folder ("" = the loader's).
  """
  acts: str = "sin,relu,cos"
  arms: str = "glorot,he,lsc"
  depth: int = 30
  width: int = 128
  lrs: str = "1e-2,1e-3,1e-4,1e-5"
  seeds: int = 4
  num_steps: int = 3000
  num_train: int = 0
  num_test: int = 0
  lsc_steps: int = 500
  lsc_batch: int = 8
  batch_size: int = 128
  preset: str = "full"
  data_dir: str = ""

  def __post_init__(self):
    check_list("arms", "arm", self.arms, ARMS)
    check_list("acts", "activation", self.acts, ACTS)
    check_list("preset", "preset", self.preset, PRESET_NAMES)
    for lr in self.lrs.split(","):
      try:
        float(lr)
      except ValueError:
        raise ValueError(f"lrs: {lr!r} is not a learning rate (a comma list of numbers, e.g. 1e-3,1e-4)") from None


def check_list(field: str, what: str, csv: str, valid) -> None:
  """Raises ValueError ``FIELD: unknown WHAT 'x'; valid: …`` for the first entry of the comma list `csv`
  not in `valid` (the scripts prefix ``--``: the flag's name)."""
  for v in csv.split(","):
    if v not in valid:
      raise ValueError(f"{field}: unknown {what} {v!r}; valid: {', '.join(valid)}")


def quick(**kw) -> Settings:
  """Minutes: 10 × 64, one learning rate and seed, 300 steps on 10,000 images."""
  base = dict(depth=10, width=64, lrs="1e-3", seeds=1, num_steps=300, num_train=10000, num_test=2000,
              lsc_steps=100, lsc_batch=4, batch_size=64, preset="quick")
  return Settings(**{**base, **kw})


def tiny(**kw) -> Settings:
  """Seconds: sin, Glorot vs LSC, 4 × 16 on digits, 10 steps (the suite's smoke test)."""
  base = dict(acts="sin", arms="glorot,lsc", depth=4, width=16, lrs="1e-3", seeds=1, num_steps=10,
              num_train=256, num_test=128, lsc_steps=20, lsc_batch=4, batch_size=32, preset="tiny")
  return Settings(**{**base, **kw})


def payload_settings(s) -> dict:
  """The grid and budget of settings `s` (every field but ``preset`` and ``data_dir``; also `lsc_rnn`'s): the
  payload's ``settings``, and one preset flag per key in the scripts."""
  return {k: v for k, v in dataclasses.asdict(s).items() if k not in ("preset", "data_dir")}


def presets(full, quick_, tiny_) -> dict[str, dict]:
  """``{"full" | "quick" | "tiny": payload_settings}`` of the three budgets (`study.preset_values` reads it)."""
  return {name: payload_settings(make()) for name, make in (("full", full), ("quick", quick_), ("tiny", tiny_))}


PRESETS = presets(Settings, quick, tiny)


def lsc_config(s, variant: str):
  """``lsc.py:[tiny-]VARIANT`` at the budget of `s` (the shared fields of `Settings` here and in `lsc_rnn`):
  steps, batch, seeds, data size, LSC steps; 5 log records per run for tiny, else one per 100 steps."""
  from experiments.configs import lsc as lsc_configs
  c = lsc_configs.get_config(("tiny-" if s.preset == "tiny" else "") + variant)
  # tiny logs 5 records (its learning curves get several points), the other presets every 100 steps.
  log_every = max(1, s.num_steps // 5) if s.preset == "tiny" else max(1, min(100, s.num_steps))
  sweep_lib.set_budget(c, s.num_steps, log_every=log_every)
  c.batch_size, c.num_seeds = s.batch_size, s.seeds
  c.dataset.num_train, c.dataset.num_test = s.num_train, s.num_test
  c.eval_batch_size = min(1000, s.num_test or 1000)
  c.lsc.steps = s.lsc_steps
  c.progress = "none"
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  return c


def make_config(s: Settings, act: str, arm: str, lr: float):
  """The engine config of one (activation, arm, learning rate) at the budget of `s`."""
  init, lsc_arm = ARMS[arm]
  c = lsc_config(s, f"ffn-{act}-{init}-{lsc_arm}")
  c.model.depth, c.model.width = s.depth, s.width
  c.optimizer.learning_rate = lr
  c.lsc.batch = s.lsc_batch
  return c


def run_name(act: str, arm: str, lr: float) -> str:
  """``ffn-ACT-ARM-LR``: the run's workdir under the root."""
  return f"ffn-{act}-{arm}-{lr:g}"


def run_row(act: str, arm: str, lr: float, summ: dict, seconds: float) -> dict:
  """One JSON row from a run's summary: final test accuracy (mean, std over seeds), mean LSC radii."""
  r = {"act": act, "arm": arm, "lr": lr, "test_accuracy": summ["final"]["test_accuracy"]["mean"],
       "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
       "train_loss": summ["final"]["train_loss"]["mean"], "seconds": seconds}
  if "lsc" in summ:
    for when in ("before", "after"):
      per_seed = summ["lsc"][f"lsc_{when}"]
      r[f"depth_{when}"] = float(np.mean([np.mean(x["depth"]) for x in per_seed]))
      r[f"readout_{when}"] = float(np.mean([np.mean(x["readout"]) for x in per_seed]))
  return r


def best_rows(runs: list[dict]) -> dict[tuple[str, str], dict]:
  """Per (activation, arm): the run of the highest mean test accuracy over learning rates (NaN ranks last)."""
  best = {}
  for r in runs:
    k = (r["act"], r["arm"])
    acc = r["test_accuracy"] if np.isfinite(r["test_accuracy"]) else -1.0
    if k not in best or acc > best[k]["test_accuracy"]:
      best[k] = r
  return best


def run(s: Settings, root: str, *, command: str = "", figure: str = "", previous: dict | None = None,
        log=None) -> dict[str, Any]:
  """Runs the grid (activation × arm × learning rate, in that order) in ``root/ffn-ACT-ARM-LR``; returns the
  payload (see `table`). `command` and `figure` (the PNG path) are recorded in it; `previous`: the payload
  this rerun overwrites — a run found finished keeps the training time recorded there (when written with
  the same settings)."""
  say = log or (lambda line: print(line, flush=True))
  sw = sweep_lib.Sweep(root, log=log)
  values = payload_settings(s)
  prev = previous if previous and previous.get("settings") == values else {}
  prev_seconds = {run_name(r["act"], r["arm"], r["lr"]): r["seconds"] for r in prev.get("runs", [])}
  runs, dataset = [], None
  for act in s.acts.split(","):
    for arm in s.arms.split(","):
      for lr in map(float, s.lrs.split(",")):
        summ, seconds = sweep_lib.run_keeping_time(sw, run_name(act, arm, lr), make_config(s, act, arm, lr),
                                                   prev_seconds)
        dataset = summ["dataset"]
        runs.append(run_row(act, arm, lr, summ, seconds))
        say(json.dumps(runs[-1]))
  best = best_rows(runs)
  panels = [(f"{act}: each arm at its best learning rate",
             {f"{arm} (lr {best[act, arm]['lr']:g})": sw.workdir(run_name(act, arm, best[act, arm]["lr"]))
              for arm in s.arms.split(",") if (act, arm) in best})
            for act in s.acts.split(",")]
  curves = sweep_lib.learning_curves(
      panels, figure, f"LSC pre-training, {s.depth}×{s.width} MLP on {DATASET_NAMES.get(dataset, dataset)}")
  return {"preset": s.preset, "settings": values, "dataset": dataset, "command": command, "runs": runs,
          "best": [best[k] for k in sorted(best)], "curves": curves}


def table(payload: dict, command: str = "") -> str:
  """The markdown report: per (activation, arm) the best mean test accuracy over learning rates (± std over
  seeds) and the mean depth radius before → after LSC; `command` (default: the payload's) as Regenerate."""
  s, dataset = payload["settings"], payload["dataset"]
  lines = [f"# LSC pre-training, {s['depth']}×{s['width']} MLP on {DATASET_NAMES.get(dataset, dataset)} "
           f"({payload['preset']})", "",
           f"Regenerate: `{command or payload['command']}`", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "Best test accuracy over learning rates (mean ± std over seeds).", "",
           "| activation | arm | best test acc | best lr | mean ρ_depth before→after |", "|---|---|---|---|---|"]
  for r in payload["best"]:
    rad = f"{r['depth_before']:.3f} → {r['depth_after']:.3f}" if "depth_before" in r else "—"
    lines.append(f"| {r['act']} | {r['arm']} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | "
                 f"{r['lr']:g} | {rad} |")
  return "\n".join(lines + sweep_lib.curves_note(payload["curves"], "each arm at its best lr"))


def plot(payload: dict, path: str = "") -> None:
  """The learning curves of the payload into the PNG `path` (default: the payload's figure path)."""
  sweep_lib.plot_curve_panels(payload["curves"], path or payload["curves"]["figure"])
