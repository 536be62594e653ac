"""Figures of the Glorot & Bengio (2010) monitors from ``WORKDIR/diagnostics.npz``.

Usage::

  python -m stable_training.diagnostics.plot WORKDIR [--step N] [--seed S] [--out DIR]

Writes into DIR (default WORKDIR):

* ``diag_activation_percentiles.png``: per hidden layer, the median
  (line) and the 2nd–98th percentile band of the activations over training
  (paper Fig. 2–4).
* ``diag_activation_hist_step{N}.png`` / ``diag_gradient_hist_step{N}.png``:
  normalized histograms of activations and of back-propagated gradients ∂L/∂z
  per layer at step N (paper Fig. 6–7; default N = the last recorded step).
* ``diag_jacobian_sv_step{N}.png``: per layer, the distribution of the layer
  Jacobian's singular values (box plot of the spectrum averaged over examples,
  or σ_max/σ_min when only those were computed), with the end-to-end one
  (paper §4.2.3).
* ``diag_saturation_wgrad.png``: saturated fraction per layer over training
  and Var[∂L/∂W] per layer at step N.
"""
from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stable_training.diagnostics.monitor import load_diagnostics  # noqa: E402


def _select(d: dict, seed: int | None) -> tuple[dict, int]:
  seeds = np.unique(d["seed"])
  seed = int(seeds[0]) if seed is None else int(seed)
  if seed not in seeds:
    raise ValueError(f"seed {seed} not in diagnostics; recorded seeds: {seeds.tolist()}")
  m = d["seed"] == seed
  order = np.argsort(d["step"][m])
  return {k: v[m][order] for k, v in d.items()}, seed


def _colors(n):
  return plt.cm.viridis(np.linspace(0.0, 0.9, max(n, 1)))


def plot_percentiles(d, path, title=""):
  """Median and 2–98 percentile band of each layer's activations vs training step."""
  steps = d["step"]
  n_layers = d["act_p50"].shape[1]
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for l, c in zip(range(n_layers), _colors(n_layers)):
    ax.plot(steps, d["act_p50"][:, l], color=c, lw=1.5, label=f"layer {l + 1}")
    ax.fill_between(steps, d["act_p02"][:, l], d["act_p98"][:, l], color=c, alpha=0.12)
    ax.plot(steps, d["act_p02"][:, l], color=c, lw=0.6, ls="--")
    ax.plot(steps, d["act_p98"][:, l], color=c, lw=0.6, ls="--")
  ax.set_xlabel("training step")
  ax.set_ylabel("activation value")
  ax.set_title((f"{title}\n" if title else "")
               + "activations per layer: median (line), 2nd–98th percentiles (band)", fontsize=10)
  ax.legend(fontsize=7, ncol=2 if n_layers > 6 else 1, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_histograms(counts, hist_range, path, xlabel, title):
  """Normalized histogram (fraction of entries per bin) of each layer."""
  n_layers, nb = counts.shape
  edges = np.linspace(float(hist_range[0]), float(hist_range[1]), nb + 1)
  centers = 0.5 * (edges[1:] + edges[:-1])
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for l, c in zip(range(n_layers), _colors(n_layers)):
    tot = max(float(counts[l].sum()), 1.0)
    ax.plot(centers, counts[l] / tot, color=c, lw=1.4, label=f"layer {l + 1}")
  ax.set_xlabel(xlabel)
  ax.set_ylabel("fraction of units × examples")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7, ncol=2 if n_layers > 6 else 1)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_jacobian(d_step, path, step, title=""):
  """Box plots of each layer's Jacobian singular values (or σ_max/σ_min markers)."""
  fig, ax = plt.subplots(figsize=(8, 4.5))
  if "layer_jac_sv" in d_step:
    sv = np.asarray(d_step["layer_jac_sv"], np.float32)  # [L−1, k]
    pos = np.arange(1, sv.shape[0] + 1)
    if sv.shape[1] > 2:
      ax.boxplot(list(sv), positions=pos, widths=0.6, showfliers=False)
      ax.plot(pos, sv.mean(1), "o-", color="C1", label="mean singular value")
    else:
      ax.plot(pos, sv[:, 0], "^-", label="σ_max")
      ax.plot(pos, sv[:, 1], "v-", label="σ_min")
    ax.set_xticks(pos)
    ax.set_xticklabels([f"{l}→{l + 1}" for l in pos])
    ax.set_xlabel("layer Jacobian ∂h_{l+1}/∂h_l")
  if "e2e_jac_sv_mean" in d_step:
    ax.axhline(float(d_step["e2e_jac_sv_max"]), color="C3", ls=":", label="end-to-end σ_max")
  ax.axhline(1.0, color="gray", lw=0.6)
  ax.set_ylabel("singular value")
  ax.set_title(f"{title + chr(10) if title else ''}Jacobian singular values at step {step}",
               fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_saturation_wgrad(d, i, path):
  """Saturated fraction per layer over training; Var[∂L/∂W] per layer at record i."""
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
  n_layers = d["act_saturation"].shape[1]
  for l, c in zip(range(n_layers), _colors(n_layers)):
    a1.plot(d["step"], d["act_saturation"][:, l], color=c, label=f"layer {l + 1}")
  a1.set_xlabel("training step")
  a1.set_ylabel("saturated fraction")
  a1.set_title("saturation (NaN = unbounded activation)")
  a1.legend(fontsize=7, ncol=2 if n_layers > 6 else 1)
  if "weight_grad_var" in d:
    v = d["weight_grad_var"][i]
    a2.semilogy(np.arange(1, len(v) + 1), v, "o-")
    a2.set_xticks(np.arange(1, len(v) + 1))
    a2.set_xlabel("weight layer (last = output)")
    a2.set_ylabel("Var[∂L/∂W]")
    a2.set_title(f"weight-gradient variance at step {int(d['step'][i])}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def render(workdir: str, step: int | None = None, seed: int | None = None,
           out_dir: str | None = None, title: str = "") -> list[str]:
  """Draws all figures of `workdir`'s diagnostics; returns the PNG paths."""
  d, seed = _select(load_diagnostics(workdir), seed)
  out_dir = out_dir or workdir
  os.makedirs(out_dir, exist_ok=True)
  steps = d["step"]
  if step is None:
    i = len(steps) - 1
  else:
    hits = np.nonzero(steps == step)[0]
    if not len(hits):
      raise ValueError(f"--step {step} not recorded; recorded steps: {steps.tolist()}")
    i = int(hits[0])
  s = int(steps[i])
  d_step = {k: v[i] for k, v in d.items()}
  paths = [os.path.join(out_dir, n) for n in (
      "diag_activation_percentiles.png", f"diag_activation_hist_step{s}.png",
      f"diag_gradient_hist_step{s}.png", f"diag_jacobian_sv_step{s}.png",
      "diag_saturation_wgrad.png")]
  plot_percentiles(d, paths[0], title)
  plot_histograms(d_step["act_hist"], d_step["act_hist_range"], paths[1], "activation value",
                  f"{title + chr(10) if title else ''}activation histograms at step {s} (seed {seed})")
  plot_histograms(d_step["grad_hist"], d_step["grad_hist_range"], paths[2], "∂L/∂z",
                  f"{title + chr(10) if title else ''}back-propagated gradient histograms at step {s}")
  plot_jacobian(d_step, paths[3], s, title)
  plot_saturation_wgrad(d, i, paths[4])
  return paths


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("workdir")
  ap.add_argument("--step", type=int, default=None, help="step for histograms (default: last)")
  ap.add_argument("--seed", type=int, default=None, help="seed to draw (default: first)")
  ap.add_argument("--out", default=None, help="output folder (default: WORKDIR)")
  ap.add_argument("--title", default="")
  args = ap.parse_args(argv)
  try:
    paths = render(args.workdir, args.step, args.seed, args.out, args.title)
  except ValueError as e:  # bad workdir / step / seed: one line, no traceback
    print(f"error: {e}", file=sys.stderr)
    return 2
  for p in paths:
    print(p)
  return 0


if __name__ == "__main__":
  sys.exit(main())
