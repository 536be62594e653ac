"""What LSC pre-training changes in a deep MLP's layer Jacobians (Herranz-Celotti & Rouat 2023/24).

LSC moves ρ(J_l) = max|λ(J_l)| of every layer Jacobian J_l = ∂h_{l+1}/∂h_l to
ρ = 1. Back-propagated gradient norms, though, scale per layer with the
r.m.s. singular value √(mean σ²(J_l)) (Glorot & Bengio 2010 §4.2.3), set by
the bulk of the spectrum. This script takes the stability study's failing arm
``experiments/configs/stability.py:tanh-standard-lsc`` (tanh, Glorot
*standard* init, 20 × 128 by default), pre-trains it with the engine's LSC
hook (`stable_training.lsc.pretrain_from_config` on ``config.lsc``, the
engine's init of the seed and its pre-training batch: the first ``lsc.batch``
training examples of `stable_training.train.load_data`), and reports, averaged
over layers and examples of that batch, before → after: max|λ|, second |λ|,
median |λ|, r.m.s. σ, and Π_l r.m.s. σ (the implied gradient attenuation
through the hidden stack). A measurement, not a training run: nothing is
trained past the pre-training.

  python scripts/lsc_ffn_spectrum.py            # 20 × 128, 200 steps (the stability arm's setting)
  python scripts/lsc_ffn_spectrum.py --quick    # 10 × 64, 100 steps
  python scripts/lsc_ffn_spectrum.py --tiny     # smoke test (digits)

Writes ``<out>/spectrum[_quick|_tiny][_TAG].{md,json}`` (``--out`` default:
results/lsc for the full setting, a temporary folder for --quick / --tiny).
"""
from __future__ import annotations

import os
import time

from absl import app, flags
import numpy as np

from experiments.configs import default, stability
from stable_training import study

STUDY = "lsc"
PRESETS = {
    "tiny": dict(dataset="digits", depth=4, width=16, steps=20, batch=8, batch_samples=4),
    "quick": dict(dataset="fashion_mnist", depth=10, width=64, steps=100, batch=16, batch_samples=4),
    "full": dict(dataset="fashion_mnist", depth=20, width=128, steps=200, batch=16, batch_samples=4),
}
KEYS = ("max_abs_eig", "second_abs_eig", "median_abs_eig", "rms_sv")

study.define_flags(STUDY)
flags.DEFINE_string("activation", "tanh", "Hidden activation.")
flags.DEFINE_string("kernel_init", "glorot_standard", "Kernel initializer.")
flags.DEFINE_enum("rho", "1", ["1", "0.5"], "LSC target radius of every layer Jacobian (config.lsc.rho).")
flags.DEFINE_integer("seed", 0, "Seed of the init and of the pre-training.")
FLAGS = flags.FLAGS


def make_config(s: dict):
  """The stability study's LSC arm with the flags and preset `s` applied."""
  c = stability.get_config("tanh-standard-lsc")
  if FLAGS.tiny:
    default.tiny(c)
  c.dataset.name = s["dataset"]
  c.model.depth, c.model.width = s["depth"], s["width"]
  c.model.activation, c.model.kernel_init = FLAGS.activation, FLAGS.kernel_init
  c.seed, c.num_seeds = FLAGS.seed, 1
  c.lsc.enabled, c.lsc.rho = True, float(FLAGS.rho)
  c.lsc.steps, c.lsc.batch, c.lsc.batch_samples = s["steps"], s["batch"], s["batch_samples"]
  return c


def measure(c) -> tuple[dict, dict, float]:
  """(per-layer spectra before/after, pre-training info, seconds) of config `c`'s LSC step."""
  import jax
  from stable_training import lsc
  from stable_training.train import build, init_state

  d = study.load_data(c)
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


def main(argv):
  del argv
  setting = study.setting()
  s = dict(PRESETS[setting])
  c = make_config(s)
  spec, info, secs = measure(c)
  row = {w: {**{k: float(spec[w][k].mean()) for k in KEYS},
             "rms_sv_product": float(np.prod(spec[w]["rms_sv"]))} for w in spec}
  cmd = study.command("scripts/lsc_ffn_spectrum.py",
                           ["quick", "tiny", "tag", "data_dir", "activation", "kernel_init", "rho", "seed"])
  out = {"preset": setting, "settings": {**s, "activation": FLAGS.activation, "kernel_init": FLAGS.kernel_init,
                                         "rho": float(FLAGS.rho), "seed": FLAGS.seed},
         "config": "experiments/configs/stability.py:tanh-standard-lsc", "command": cmd,
         "pretrain_steps": info["steps"], "converged": info["converged"], "seconds": secs, **row,
         "per_layer": {w: {k: v.tolist() for k, v in spec[w].items()} for w in spec}}
  lines = [f"# LSC (ρ = {FLAGS.rho}) on a {s['depth']} × {s['width']} {FLAGS.activation} MLP, {FLAGS.kernel_init} "
           f"init ({setting})", "",
           f"Regenerate: `{cmd}`", "",
           f"{s['dataset']} batch of {s['batch']}, {info['steps']} AdaBelief steps "
           f"({s['batch_samples']} examples per step), {secs:.0f} s. Means over the {s['depth'] - 1} "
           "hidden-to-hidden layer Jacobians and the batch.", "",
           "| | max \\|λ\\| (LSC's target) | 2nd \\|λ\\| | median \\|λ\\| | r.m.s. σ | Π r.m.s. σ |",
           "|---|---|---|---|---|---|"]
  for w in ("before", "after"):
    r = row[w]
    lines.append(f"| {w} | {r['max_abs_eig']:.3f} | {r['second_abs_eig']:.3f} | {r['median_abs_eig']:.3f} "
                 f"| {r['rms_sv']:.3f} | {r['rms_sv_product']:.2e} |")
  table = "\n".join(lines)
  path = study.out_dir(STUDY)
  name = study.stem("spectrum")
  study.write_results(path, table, out, name=name)
  print(table)
  print(f"wrote {os.path.join(path, name)}.md")


if __name__ == "__main__":
  app.run(main)
