"""The ROAF RNN on permuted sequential MNIST: which setting learns fast (Ceni 2022), decided on validation.

Ceni (2022) reports a single-layer ROAF RNN, h_t = α O h_{t−1} + β φ(W x_t + U h_{t−1} + b),
above 94 % test accuracy on psMNIST after one epoch (60,000 images) and above
98 % after ten. The paper's (α, β) are not available offline, so the setting
is searched, and every choice is made on a validation split, never on test:

1. (α, β) grid at one paper epoch (60,000 samples = 469 steps of 128): α ∈
   `alphas_tied` with the convex β = 1 − α (the former setting: α = 0.5), and
   α ∈ `alphas_free` × β ∈ `betas` with β free (α = 1 keeps the filter path
   whole: the state is a sum of rotated inputs, the paper's bounds are for α
   near 1). Reasons: with β = 1 − α the input's weight vanishes as α → 1, and
   at α = 0.5 the orthogonal path forgets in a few steps; neither carries a
   pixel 784 steps.
2. One knob at a time around the best (α, β): learning rate, the recurrent
   kernel's orthogonal gain (0: U starts at zero; the default is the critical
   gain √(1 − α²)/β · 1.1), the input kernel's gain, hidden 256.
3. The best setting (highest validation accuracy of stages 1–2) trained
   `final_epochs` paper epochs, and the gated/Elman baselines for
   `baseline_epochs` with their own configs (`roaf.py:psmnist-CELL`),
   evaluated after every paper epoch: test accuracy at epoch 1 and at the last.

Data: `mnist_5k`, a 5,000-image subset of real MNIST (4,000 train / 1,000
test, stratified); the last `num_val` training images are the validation
split, so a paper epoch is ≈ 60,000 / 3,500 ≈ 17 passes over the training part.
Numbers on a 5k subset are not the paper's (60,000 distinct images).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

PAPER_EPOCH = 60_000


@dataclasses.dataclass(frozen=True)
class Settings:
  """Budget and grid of the study (defaults: the full setting reported in WORKSPACE.md)."""
  dataset: str = "mnist_5k"
  data_dir: str = ""
  num_train: int = 0          # 0 = all training images (before the validation split)
  num_val: int = 500
  num_test: int = 0
  hidden: int = 128
  batch: int = 128
  lr: float = 2e-3
  filter_mode: str = "perm"   # signed-permutation O: same spectra as Haar, no H × H matmul per step
  sweep_epochs: float = 1.0   # paper epochs of each search run
  final_epochs: int = 10
  baseline_epochs: int = 10   # "lstm:1" in `baselines` trains one cell for 1 (LSTM: ≈ 9 min per paper epoch on 2 cores)
  alphas_tied: tuple = (0.5, 0.99)
  alphas_free: tuple = (0.99, 1.0)
  betas: tuple = (0.1, 0.5, 1.0)
  lrs: tuple = (1e-3, 5e-3)
  recurrent_gains: tuple = (0.0,)
  input_gains: tuple = ()
  hiddens: tuple = (256,)
  baselines: tuple = ("elman", "gru", "lstm")
  seeds: int = 1
  epoch_samples: int = PAPER_EPOCH
  tiny: bool = False          # seconds-long smoke budget on digits (tests)


def quick(**kw) -> Settings:
  """Minutes: two settings, an "epoch" of 6,000 samples, two final epochs, one baseline."""
  base = dict(sweep_epochs=1.0, final_epochs=2, baseline_epochs=1, epoch_samples=6_000, alphas_tied=(0.5,),
              alphas_free=(1.0,), betas=(0.5,), lrs=(), recurrent_gains=(), input_gains=(), hiddens=(),
              baselines=("elman",))
  return Settings(**{**base, **kw})


def tiny(**kw) -> Settings:
  """Seconds: digits (64-step sequences), width 8, a 2-point grid (the suite's smoke test)."""
  base = dict(dataset="digits", num_train=256, num_val=64, num_test=100, hidden=8, batch=32, epoch_samples=256,
              sweep_epochs=1.0, final_epochs=2, baseline_epochs=1, alphas_tied=(0.5,), alphas_free=(1.0,), betas=(0.5,), lrs=(),
              recurrent_gains=(0.0,), input_gains=(), hiddens=(), baselines=("elman",), tiny=True)
  return Settings(**{**base, **kw})


def steps_per_epoch(s: Settings) -> int:
  """Steps of one paper epoch: ⌊epoch_samples / batch⌋ (469 for 60,000 at 128)."""
  return max(1, s.epoch_samples // s.batch)


def make_config(s: Settings, cell: str = "roaf", epochs: float | None = None, **model):
  """The engine config `roaf.py:psmnist-CELL` at the study's data and budget, model fields from `model`."""
  from experiments.configs import roaf
  c = roaf.get_config(f"psmnist-{cell}")
  c.dataset.name, c.dataset.data_dir = s.dataset, s.data_dir
  c.dataset.num_train, c.dataset.num_val, c.dataset.num_test = s.num_train, s.num_val, s.num_test
  c.model.width, c.batch_size, c.num_seeds = s.hidden, s.batch, s.seeds
  c.optimizer.learning_rate = s.lr
  if cell == "roaf":
    c.model.filter_mode = s.filter_mode
  for k, v in model.items():
    if k == "lr":
      c.optimizer.learning_rate = v
    elif k == "hidden":
      c.model.width = v
    else:
      c.model[k] = v
  spe = steps_per_epoch(s)
  c.num_epochs = 0
  c.num_steps = max(1, int(round((s.sweep_epochs if epochs is None else epochs) * spe)))
  c.eval_every = c.checkpoint_every = min(spe, c.num_steps)
  c.log_every = min(50, c.eval_every)
  while c.eval_every % c.log_every:  # records at every evaluation
    c.log_every -= 1
  c.progress = "none" if s.tiny else "auto"
  if s.tiny:
    c.eval_batch_size = 100
  return c


def _name(knobs: dict) -> str:
  fmt = lambda v: "tied" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
  return "roaf_" + "_".join(f"{k}{fmt(v)}" for k, v in knobs.items())


def grid(s: Settings) -> list[dict]:
  """Stage 1: the (α, β) settings, β None = tied 1 − α."""
  return ([{"alpha": a, "beta": None} for a in s.alphas_tied]
          + [{"alpha": a, "beta": b} for a in s.alphas_free for b in s.betas])


def variations(s: Settings, best: dict) -> list[dict]:
  """Stage 2: one knob at a time around `best` (α, β)."""
  out = [{**best, "lr": v} for v in s.lrs]
  out += [{**best, "recurrent_gain": v} for v in s.recurrent_gains]
  out += [{**best, "input_gain": v} for v in s.input_gains]
  out += [{**best, "hidden": v} for v in s.hiddens]
  return out


def _train_seconds(summary: dict) -> float:
  """Training time of a run from its own summary (steps / steps_per_sec): also right for a run read back."""
  steps, sps = (summary.get("history") or [{}])[-1].get("step", 0), summary.get("steps_per_sec") or 0
  return steps / sps if sps and np.isfinite(sps) else float("nan")


def _row(name: str, knobs: dict, summary: dict) -> dict:
  return {"run": name, "knobs": knobs, "val_accuracy": sweep_lib.final_mean(summary, "val_accuracy"),
          "test_accuracy": sweep_lib.final_mean(summary, "test_accuracy"),
          "train_loss": sweep_lib.final_mean(summary, "train_loss"),
          "steps_per_sec": summary.get("steps_per_sec"), "seconds": _train_seconds(summary)}


def _best(rows: list[dict]) -> dict:
  ok = [r for r in rows if np.isfinite(r["val_accuracy"])]
  return max(ok, key=lambda r: r["val_accuracy"]) if ok else rows[0]


def run(s: Settings, root: str, log=None) -> dict[str, Any]:
  """Runs the three stages in workdirs under `root` (resumable); returns the payload (see `table`)."""
  sw = sweep_lib.Sweep(root, log=log)
  search = []
  for knobs in grid(s):
    name = _name(knobs)
    search.append({"stage": 1, **_row(name, knobs, sw.run(name, make_config(s, **knobs)))})
  best1 = _best(search)
  for knobs in variations(s, {k: best1["knobs"][k] for k in ("alpha", "beta")}):
    name = _name(knobs)
    search.append({"stage": 2, **_row(name, knobs, sw.run(name, make_config(s, **knobs)))})
  best = _best(search)
  final = []
  arms = [("roaf", best["knobs"], s.final_epochs)] + [(cell, {}, epochs) for cell, epochs in baseline_arms(s)]
  for cell, knobs, epochs in arms:
    name = f"final_{cell}_ep{epochs}"
    summ = sw.run(name, make_config(s, cell, epochs=epochs, **knobs))
    acc = sweep_lib.evals(summ, "test_accuracy")
    final.append({"cell": cell, "knobs": knobs, "test_acc_per_epoch": [a for _, a in acc],
                  "val_acc_per_epoch": [a for _, a in sweep_lib.evals(summ, "val_accuracy")],
                  "num_params": summ.get("info", {}).get("num_params"), "steps_per_sec": summ.get("steps_per_sec"),
                  "seconds": _train_seconds(summ)})
  return {"settings": dataclasses.asdict(s), "steps_per_epoch": steps_per_epoch(s), "search": search,
          "best": best, "knob_effects": knob_effects(search), "final": final}


def baseline_arms(s: Settings) -> list[tuple[str, int]]:
  """(cell, paper epochs) of each baseline: ``"gru"`` trains `baseline_epochs`, ``"lstm:1"`` one epoch."""
  out = []
  for b in s.baselines:
    cell, _, epochs = str(b).partition(":")
    try:
      out.append((cell, int(epochs) if epochs else s.baseline_epochs))
    except ValueError:
      raise ValueError(f"baseline {b!r}: expected CELL or CELL:EPOCHS (an integer), e.g. lstm:1") from None
  return out


def knob_effects(search: list[dict]) -> dict[str, dict]:
  """Per knob: the validation-accuracy range over the runs that vary it (stage 1: α and β; stage 2: each knob
  against the stage-1 best it varies), i.e. how much that knob moves the result."""
  out = {}
  s1 = [r for r in search if r["stage"] == 1]
  if s1:
    by_alpha = {}
    for r in s1:
      by_alpha.setdefault(r["knobs"]["alpha"], []).append(r["val_accuracy"])
    out["alpha (best beta each)"] = {str(a): max(v) for a, v in by_alpha.items()}
    tied = [r["val_accuracy"] for r in s1 if r["knobs"]["beta"] is None]
    free = [r["val_accuracy"] for r in s1 if r["knobs"]["beta"] is not None]
    out["beta tied vs free (best)"] = {"tied": max(tied, default=float("nan")),
                                       "free": max(free, default=float("nan"))}
  base = _best(s1)["val_accuracy"] if s1 else float("nan")
  for r in search:
    if r["stage"] == 2:
      (k, v), = [(k, v) for k, v in r["knobs"].items() if k not in ("alpha", "beta")]
      out.setdefault(k, {"stage-1 best": base})[f"{v:g}" if isinstance(v, float) else str(v)] = r["val_accuracy"]
  return out


def table(payload: dict, command: str = "") -> str:
  """The markdown report: the search (validation accuracy of every run), the knob effects, the final runs."""
  s = payload["settings"]
  spe = payload["steps_per_epoch"]
  fmt = lambda v: "—" if v is None or not np.isfinite(v) else f"{v:.4f}"
  lines = [f"# ROAF RNN setting search on permuted sequential {s['dataset']}"
           + (" (a 5,000-image subset of real MNIST: 4,000 train / 1,000 test; not the paper's 60,000)"
              if s["dataset"] == "mnist_5k" else ""), "",
           f"Validation: the last {s['num_val']} training images. A paper epoch = {s['epoch_samples']:,} samples = "
           f"{spe} steps of {s['batch']}. Search runs: {s['sweep_epochs']:g} paper epoch(s), hidden {s['hidden']}, "
           f"Adam {s['lr']:g} + global-norm clipping 1, filter {s['filter_mode']}, {s['seeds']} seed(s).", ""]
  if command:
    lines += [f"Regenerate: `{command}`", ""]
  lines += ["| stage | α | β | other knob | val acc | test acc | train loss |", "|---|---|---|---|---|---|---|"]
  best = payload["best"]["run"]
  for r in payload["search"]:
    k = r["knobs"]
    other = ", ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}" for n, v in k.items()
                      if n not in ("alpha", "beta")) or "—"
    beta = "1 − α" if k["beta"] is None else f"{k['beta']:g}"
    mark = " **(best)**" if r["run"] == best else ""
    lines.append(f"| {r['stage']} | {k['alpha']:g} | {beta} | {other} | {fmt(r['val_accuracy'])}{mark} | "
                 f"{fmt(r['test_accuracy'])} | {fmt(r['train_loss'])} |")
  lines += ["", "Knob effects (validation accuracy):", ""]
  for knob, vals in payload["knob_effects"].items():
    vs = [v for v in vals.values() if v is not None and np.isfinite(v)]
    spread = f" (range {max(vs) - min(vs):.4f})" if len(vs) > 1 else ""
    lines.append(f"- {knob}: " + ", ".join(f"{n} {fmt(v)}" for n, v in vals.items()) + spread)
  lines += ["", f"Final runs: the best ROAF setting for {s['final_epochs']} paper epochs, the baselines (their "
            f"configs' settings) for {s['baseline_epochs']} (unless the row says otherwise); test accuracy after each "
            "paper epoch:", "",
            "| cell | setting | params | test acc per paper epoch | epoch 1 | last | s |", "|---|---|---|---|---|---|---|"]
  for r in payload["final"]:
    acc = r["test_acc_per_epoch"]
    setting = ", ".join(f"{n}={'1 − α' if v is None else v}" for n, v in r["knobs"].items()) or "config default"
    lines.append(f"| {r['cell']} | {setting} | {r['num_params']} | {', '.join(f'{a:.4f}' for a in acc)} | "
                 f"{fmt(acc[0] if acc else None)} | {fmt(acc[-1] if acc else None)} | {r['seconds']:.0f} |")
  return "\n".join(lines)
