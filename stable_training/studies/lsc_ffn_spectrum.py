"""What LSC pre-training changes in a deep MLP's layer Jacobians (Herranz-Celotti & Rouat 2023/24).

LSC moves ρ(J_l) = max|λ(J_l)| of every layer Jacobian J_l = ∂h_{l+1}/∂h_l to
ρ = 1. Back-propagated gradient norms, though, scale per layer with the
r.m.s. singular value √(mean σ²(J_l)) (Glorot & Bengio 2010 §4.2.3), set by
the bulk of the spectrum. This study takes the stability study's failing arm
``experiments/configs/stability.py:tanh-standard-lsc`` (tanh, Glorot
*standard* init, 20 × 128 by default), pre-trains it with the engine's LSC
hook (`stable_training.lsc.pretrain_from_config` on ``config.lsc``, the
engine's init of the seed and its pre-training batch: the first ``lsc.batch``
training examples of `stable_training.train.load_data`), and reports, averaged
over layers and examples of that batch, before → after: max|λ|, second |λ|,
median |λ|, r.m.s. σ, and Π_l r.m.s. σ (the implied gradient attenuation
through the hidden stack). A measurement, not a training run: nothing is
trained past the pre-training, and nothing is written to a workdir.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

KEYS = ("max_abs_eig", "second_abs_eig", "median_abs_eig", "rms_sv")
CONFIG = "experiments/configs/stability.py:tanh-standard-lsc"
PRESET_NAMES = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The MLP, the pre-training budget and the seed (defaults: the stability arm's 20 × 128, 200 steps).

  `preset`: full | quick | tiny (tiny: the config shrunk by `default.tiny`, then these fields);
  `data_dir`: the dataset folder ("" = the loader's).
  """
  dataset: str = "fashion_mnist"
  depth: int = 20
  width: int = 128
  steps: int = 200            # LSC pre-training steps
  batch: int = 16             # the pre-training batch (examples)
  batch_samples: int = 4      # examples per step
  activation: str = "tanh"
  kernel_init: str = "glorot_standard"
  rho: float = 1.0            # LSC target radius of every layer Jacobian (config.lsc.rho)
  seed: int = 0
  preset: str = "full"
  data_dir: str = ""

  def __post_init__(self):
    if self.depth < 2:
      raise ValueError(f"depth {self.depth}: need ≥ 2 layers (one hidden-to-hidden Jacobian)")
    if not self.rho > 0:
      raise ValueError(f"rho {self.rho}: the target radius must be > 0 (the scripts offer 1 and 0.5)")
    if self.preset not in PRESET_NAMES:
      raise ValueError(f"preset {self.preset!r}; valid: {', '.join(PRESET_NAMES)}")


def quick(**kw) -> Settings:
  """Minutes: 10 × 64, 100 pre-training steps."""
  return Settings(**{**dict(depth=10, width=64, steps=100, preset="quick"), **kw})


def tiny(**kw) -> Settings:
  """Seconds: 4 × 16 on digits, 20 steps of a batch of 8 (the suite's smoke test)."""
  return Settings(**{**dict(dataset="digits", depth=4, width=16, steps=20, batch=8, preset="tiny"), **kw})


def make_config(s: Settings):
  """The stability study's LSC arm (`CONFIG`) with the MLP, budget and seed of `s`."""
  from experiments.configs import default, stability
  c = stability.get_config("tanh-standard-lsc")
  if s.preset == "tiny":
    default.tiny(c)
  c.dataset.name = s.dataset
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.model.depth, c.model.width = s.depth, s.width
  c.model.activation, c.model.kernel_init = s.activation, s.kernel_init
  c.seed, c.num_seeds = s.seed, 1
  c.lsc.enabled, c.lsc.rho = True, float(s.rho)
  c.lsc.steps, c.lsc.batch, c.lsc.batch_samples = s.steps, s.batch, s.batch_samples
  return c


def measure(c) -> tuple[dict, dict, float]:
  """(per-layer spectra before/after, pre-training info, seconds) of config `c`'s LSC step."""
  import jax
  from stable_training import lsc
  from stable_training.train import build, init_state, load_data

  d = load_data(c)
  setup = build(c, d)
  x = d["x_train"][:c.lsc.batch]
  state = init_state(setup.model, setup.tx, setup.seeds, x[:1])   # the engine's init of seed c.seed
  params = jax.tree.map(lambda a: a[0], state.params)
  t0 = time.time()
  new, radii = lsc.pretrain_from_config(setup.model, params, x, c.lsc, jax.random.PRNGKey(int(c.seed)))
  secs = time.time() - t0
  spec = {w: {k: np.asarray(v, np.float64) for k, v in lsc.ffn_layer_spectra(setup.model, p, x).items()}
          for w, p in (("before", params), ("after", new))}
  return spec, radii["info"], secs


def run(s: Settings, command: str = "") -> dict[str, Any]:
  """Measures the spectra before and after LSC at `s`; returns the payload: per ``before`` / ``after`` the
  means over layers and examples of `KEYS` and ``rms_sv_product`` = Π_l r.m.s. σ(J_l), ``per_layer`` values,
  the pre-training's steps, convergence and seconds; `command` is recorded in it."""
  spec, info, secs = measure(make_config(s))
  row = {w: {**{k: float(spec[w][k].mean()) for k in KEYS},
             "rms_sv_product": float(np.prod(spec[w]["rms_sv"]))} for w in spec}
  settings = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("preset", "data_dir")}
  return {"preset": s.preset, "settings": {**settings, "rho": float(s.rho)}, "config": CONFIG, "command": command,
          "pretrain_steps": info["steps"], "converged": info["converged"], "seconds": secs, **row,
          "per_layer": {w: {k: v.tolist() for k, v in spec[w].items()} for w in spec}}


def table(payload: dict, command: str = "") -> str:
  """The markdown report: before → after, the layer means of max|λ| (LSC's target), 2nd |λ|, median |λ|,
  r.m.s. σ and Π r.m.s. σ; `command` (default: the payload's) as Regenerate."""
  s = payload["settings"]
  lines = [f"# LSC (ρ = {s['rho']:g}) on a {s['depth']} × {s['width']} {s['activation']} MLP, {s['kernel_init']} "
           f"init ({payload['preset']})", "",
           f"Regenerate: `{command or payload['command']}`", "",
           f"{s['dataset']} batch of {s['batch']}, {payload['pretrain_steps']} AdaBelief steps "
           f"({s['batch_samples']} examples per step), {payload['seconds']:.0f} s. Means over the {s['depth'] - 1} "
           "hidden-to-hidden layer Jacobians and the batch.", "",
           "| | max \\|λ\\| (LSC's target) | 2nd \\|λ\\| | median \\|λ\\| | r.m.s. σ | Π r.m.s. σ |",
           "|---|---|---|---|---|---|"]
  for w in ("before", "after"):
    r = payload[w]
    lines.append(f"| {w} | {r['max_abs_eig']:.3f} | {r['second_abs_eig']:.3f} | {r['median_abs_eig']:.3f} "
                 f"| {r['rms_sv']:.3f} | {r['rms_sv_product']:.2e} |")
  return "\n".join(lines)
