"""What LSC pre-training changes in a deep MLP's layer Jacobians (Herranz-Celotti & Rouat 2023/24).

LSC moves ρ(J_l) = max|λ(J_l)| of every layer Jacobian J_l = ∂h_{l+1}/∂h_l to
ρ = 1. Back-propagated gradient norms, though, scale per layer with the
r.m.s. singular value √(mean σ²(J_l)) (Glorot & Bengio 2010 §4.2.3), set by
the bulk of the spectrum. This script pre-trains the stability study's failing
arm (tanh, Glorot *standard* init, 20 × 128 by default) with LSC and reports,
averaged over layers and examples of a Fashion-MNIST batch, before → after:
max|λ|, second |λ|, median |λ|, r.m.s. σ, and Π_l r.m.s. σ (the implied
gradient attenuation through the hidden stack).

  python scripts/lsc_ffn_spectrum.py            # 20 × 128, 200 steps (the stability arm's setting)
  python scripts/lsc_ffn_spectrum.py --quick    # 10 × 64, 100 steps
  python scripts/lsc_ffn_spectrum.py --tiny     # smoke test (digits)

Writes results/lsc/spectrum[_quick|_tiny].{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PRESETS = {
    "tiny": dict(dataset="digits", depth=4, width=16, steps=20, batch=8, batch_samples=4),
    "quick": dict(dataset="fashion_mnist", depth=10, width=64, steps=100, batch=16, batch_samples=4),
    "full": dict(dataset="fashion_mnist", depth=20, width=128, steps=200, batch=16, batch_samples=4),
}
KEYS = ("max_abs_eig", "second_abs_eig", "median_abs_eig", "rms_sv")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--tiny", action="store_true")
  p.add_argument("--activation", default="tanh")
  p.add_argument("--kernel_init", default="glorot_standard")
  p.add_argument("--rho", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out_dir", default="results/lsc")
  a = p.parse_args(argv)
  preset = "tiny" if a.tiny else "quick" if a.quick else "full"
  return a, preset, dict(PRESETS[preset])


def main(argv=None):
  a, preset, s = parse_args(argv)
  import jax
  from stable_training import data, lsc
  from stable_training.models.mlp import DeepMLP

  ds = data.load(s["dataset"], "train")
  x = np.asarray(ds.x[:s["batch"]], np.float32).reshape(s["batch"], -1)
  x = (x - x.mean()) / (x.std() + 1e-8)
  m = DeepMLP(width=s["width"], depth=s["depth"], num_classes=ds.num_classes,
              activation=a.activation, kernel_init=a.kernel_init)
  params = m.init(jax.random.PRNGKey(a.seed), x)["params"]
  t0 = time.time()
  new, hist = lsc.lsc_pretrain_ffn(m, params, x, rho=a.rho, max_steps=s["steps"],
                                   batch_samples=s["batch_samples"], key=jax.random.PRNGKey(a.seed + 1))
  secs = time.time() - t0
  spec = {w: {k: np.asarray(v, np.float64) for k, v in lsc.ffn_layer_spectra(m, p, x).items()}
          for w, p in (("before", params), ("after", new))}
  row = {w: {**{k: float(spec[w][k].mean()) for k in KEYS},
             "rms_sv_product": float(np.prod(spec[w]["rms_sv"]))} for w in spec}
  out = {"preset": preset, "settings": {**s, "activation": a.activation, "kernel_init": a.kernel_init,
                                        "rho": a.rho, "seed": a.seed},
         "pretrain_steps": hist["steps"], "converged": hist["converged"], "seconds": secs, **row,
         "per_layer": {w: {k: v.tolist() for k, v in spec[w].items()} for w in spec}}
  lines = [f"# LSC (ρ = {a.rho:g}) on a {s['depth']} × {s['width']} {a.activation} MLP, {a.kernel_init} init "
           f"({preset})", "",
           f"{s['dataset']} batch of {s['batch']}, {hist['steps']} AdaBelief steps "
           f"({s['batch_samples']} examples per step), {secs:.0f} s. Means over the {s['depth'] - 1} "
           "hidden-to-hidden layer Jacobians and the batch.", "",
           "| | max \\|λ\\| (LSC's target) | 2nd \\|λ\\| | median \\|λ\\| | r.m.s. σ | Π r.m.s. σ |",
           "|---|---|---|---|---|---|"]
  for w in ("before", "after"):
    r = row[w]
    lines.append(f"| {w} | {r['max_abs_eig']:.3f} | {r['second_abs_eig']:.3f} | {r['median_abs_eig']:.3f} "
                 f"| {r['rms_sv']:.3f} | {r['rms_sv_product']:.2e} |")
  os.makedirs(a.out_dir, exist_ok=True)
  stem = os.path.join(a.out_dir, "spectrum" + ("" if preset == "full" else f"_{preset}"))
  with open(stem + ".json", "w") as f:
    json.dump(out, f, indent=1)
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
