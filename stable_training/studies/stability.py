"""The default experiment: a deep-MLP stability study across arms (Glorot & Bengio 2010 and the later methods).

Each arm is the config ``experiments/configs/stability.py:ARM`` (a depth-20
MLP trained with SGD; the arms change the activation, the init, or add a
method: tGELU + output clipping, ROAF, LSC pre-training), run through the
engine in ``root/ARM`` (`sweep.Sweep`). Reported per arm: test accuracy (mean ±
std over seeds), the final training loss, and the ratio ‖g_first‖ / ‖g_last‖
of the first to the last hidden layer's gradient norm (per seed; Glorot &
Bengio §4.2: with the standard init at depth 20 the gradients vanish toward
the input, the ratio falls far below 1).

A payload can absorb an earlier one (`run`'s ``previous``): the rows of arms
not run now are kept (same dataset only), so a new arm is added to a finished
table.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from stable_training.studies import sweep as sweep_lib

TINY_ARMS = ("tanh-standard", "tanh-normalized")
QUICK_LSC_STEPS = 50
PRESET_NAMES = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Arms, dataset and budget (defaults: every arm at its config's budget).

  `arms`: names of ``experiments/configs/stability.py`` (() = all of its ``ARMS``, in that order);
  `dataset`: fashion_mnist | digits | auto (Fashion-MNIST if its IDX files exist in `data_dir` or the
  Debian package's folder, else digits); `num_steps` / `num_seeds`: 0 = the arm's (or the preset's);
  `preset`: full | quick (600 steps, 2 seeds, LSC capped at `QUICK_LSC_STEPS` steps) | tiny (`default.tiny`).
  """
  arms: tuple = ()
  dataset: str = "auto"
  num_steps: int = 0
  num_seeds: int = 0
  preset: str = "full"
  data_dir: str = ""

  def __post_init__(self):
    if self.preset not in PRESET_NAMES:
      raise ValueError(f"preset {self.preset!r}; valid: {', '.join(PRESET_NAMES)}")
    if self.num_steps < 0 or self.num_seeds < 0:
      raise ValueError(f"num_steps {self.num_steps}, num_seeds {self.num_seeds}: need ≥ 0 (0 = the arm's)")


def quick(**kw) -> Settings:
  """Minutes: every arm at 600 steps, 2 seeds, LSC pre-training capped at 50 steps."""
  return Settings(**{"preset": "quick", **kw})


def tiny(**kw) -> Settings:
  """Seconds: tanh with the standard and the normalized init, shrunk by `default.tiny` (digits, width 16,
  20 steps, 2 seeds; depth stays 20): the suite's smoke test."""
  return Settings(**{**dict(arms=TINY_ARMS, dataset="digits", preset="tiny"), **kw})


def arm_names(s: Settings) -> list[str]:
  """The arms of `s` (all of ``stability.ARMS`` when empty), each checked: an unknown arm raises ValueError
  before anything runs."""
  from experiments.configs import stability
  arms = list(s.arms) if s.arms else list(stability.ARMS)
  for arm in arms:
    stability.get_config(arm)
  return arms


def dataset_name(s: Settings) -> str:
  """The dataset of `s` with ``auto`` resolved (`sweep.pick_dataset`)."""
  return sweep_lib.pick_dataset(s.dataset, s.data_dir)


def make_config(s: Settings, arm: str, dataset: str):
  """The arm's engine config at the budget of `s` on `dataset`."""
  from experiments.configs import default, stability
  c = stability.get_config(arm)
  if s.preset == "tiny":
    default.tiny(c)  # digits, width 16, 20 steps, 2 seeds; depth stays 20
  c.dataset.name = dataset
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.progress = "none" if s.preset == "tiny" else "auto"
  if dataset == "digits":
    c.eval_batch_size = 360
  if s.preset == "quick":
    sweep_lib.set_budget(c, 600, log_every=c.log_every)
    c.num_seeds = 2
    c.lsc.steps = min(c.lsc.steps, QUICK_LSC_STEPS)  # host eigs: ≈ 0.4 s per step and seed on 2 cores
  if s.num_steps:
    sweep_lib.set_budget(c, s.num_steps)
  if s.num_seeds:
    c.num_seeds = s.num_seeds
  return c


def seed_counts(s: Settings) -> list[int]:
  """The seed count of every arm's run (for `study.setup_process`, which splits seeds over CPU devices)."""
  dataset = dataset_name(s)
  return [make_config(s, arm, dataset).num_seeds for arm in arm_names(s)]


def ratio_first_last(layer_norms: list[float], names: list[str]) -> float:
  """‖g‖ of the first hidden layer over the last hidden layer (output excluded)."""
  hidden = [n for n, name in zip(layer_norms, names) if name != "output"]
  return hidden[0] / hidden[-1]


def run(s: Settings, root: str, previous: dict | None = None, log=None) -> dict[str, Any]:
  """Runs every arm of `s` in ``root/ARM``; returns the payload ``{"dataset", "rows": {arm: row}}``.
  `previous`: an earlier payload whose rows of arms not run now are kept (first, in its order) when its
  dataset is the same."""
  say = log or (lambda line: print(line, flush=True))
  arms, dataset = arm_names(s), dataset_name(s)
  sw = sweep_lib.Sweep(root, log=log)
  rows = {}
  if previous and previous.get("dataset") == dataset:
    rows = {a: r for a, r in previous["rows"].items() if a not in arms}
  for i, arm in enumerate(arms):
    c = make_config(s, arm, dataset)
    say(f"[{i + 1}/{len(arms)}] {arm}: depth {c.model.depth}, {c.num_seeds} seeds, {c.num_steps} steps")
    summ = sw.run(arm, c)
    f = summ["final"]
    per_seed_ratio = [ratio_first_last(v, summ["layer_names"]) for v in f["layer_grad_norms"]["per_seed"]]
    rows[arm] = {"test_accuracy_mean": f["test_accuracy"]["mean"], "test_accuracy_std": f["test_accuracy"]["std"],
                 "train_loss_mean": f["train_loss"]["mean"], "grad_ratio_first_last": per_seed_ratio,
                 "steps": c.num_steps, "seeds": c.num_seeds, "depth": c.model.depth,
                 "steps_per_sec": summ["steps_per_sec"]}
    say(f"{arm}: test acc {f['test_accuracy']['mean']:.4f} ± {f['test_accuracy']['std']:.4f}")
  return {"dataset": dataset, "rows": rows}


def order(payload: dict) -> list[str]:
  """The payload's arms in table order: those of ``stability.ARMS`` in its order, then any others."""
  from experiments.configs import stability
  rows = payload["rows"]
  return [a for a in stability.ARMS if a in rows] + [a for a in rows if a not in stability.ARMS]


def merged(payload: dict, s: Settings) -> bool:
  """Whether the payload holds rows of arms that `s` did not run (kept from an earlier payload)."""
  return bool(set(payload["rows"]) - set(arm_names(s)))


def table(payload: dict, command: str, s: Settings) -> str:
  """The markdown report of a payload run at `s`: per arm test accuracy (mean ± std), final training loss,
  the mean over seeds of ‖g_first‖ / ‖g_last‖, steps and seeds; the header gives the MLP and optimizer of
  the last arm run (`s`) and `command` as Regenerate."""
  c = make_config(s, arm_names(s)[-1], payload["dataset"])
  was_merged = merged(payload, s)
  lines = [f"Deep MLP stability study on {payload['dataset']}: depth {c.model.depth}, width {c.model.width}, "
           f"SGD lr {c.optimizer.learning_rate}, batch {c.batch_size} (experiments/configs/stability.py)."
           + (f" --quick: LSC pre-training capped at {QUICK_LSC_STEPS} steps." if s.preset == "quick" else ""),
           "", f"Regenerate: `{command}`"
           + (" (this table merged rows of earlier runs with --merge; each row's steps and seeds are in its "
              "columns)" if was_merged else ""),
           "", "| arm | test accuracy (mean ± std) | final train loss | ‖g‖ first / last hidden layer | steps | seeds |",
           "|---|---|---|---|---|---|"]
  for arm in order(payload):
    r = payload["rows"][arm]
    ratios = r["grad_ratio_first_last"]
    lines.append(f"| {arm} | {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f} | "
                 f"{r['train_loss_mean']:.4f} | {sum(ratios) / len(ratios):.3g} | {r['steps']} | {r['seeds']} |")
  return "\n".join(lines)
