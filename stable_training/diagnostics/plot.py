"""Figures of the Glorot & Bengio (2010) monitors from ``WORKDIR/diagnostics.npz``.

Usage::

  python -m stable_training.diagnostics.plot WORKDIR [--step N] [--seed S] [--out DIR]

Writes into DIR (default WORKDIR):

* ``diag_activation_percentiles.png``: one small panel per hidden layer, the
  median (line), mean (dotted) and the 16th–84th / 2nd–98th percentile bands
  of the activations over training (paper Fig. 2–4); `plot_percentiles`.
* ``diag_activation_hist_step{N}.png`` / ``diag_gradient_hist_step{N}.png``:
  normalized histograms of activations and of back-propagated gradients ∂L/∂z
  per layer at step N (paper Fig. 6–7; default N = the first recorded step,
  i.e. the initialization, and the last); `plot_histograms`.
* ``diag_jacobian_sv_step{N}.png``: per layer, the distribution of the layer
  Jacobian's singular values (box plot of the spectrum averaged over examples,
  or σ_max/σ_min when only those were computed) and their mean, with the
  end-to-end σ_max/σ_min in the title (paper §4.2.3); `plot_jacobian`.
* ``diag_saturation_wgrad.png``: saturated fraction per layer over training
  and Var[∂L/∂W] per layer at the last N; `plot_saturation_wgrad`.

`plot_learning_curves` draws mean ± spread-across-seeds learning curves of
several arms (paper Fig. 11–12) for the studies. Every ``plot_*`` function
returns its Figure and writes a PNG when given a path.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping

import matplotlib
# No matplotlib.use() here: the backend is the program's choice (headless hosts fall back to Agg by
# themselves); the CLI below picks Agg for itself.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
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


def _finish(fig, path):
  """Saves `fig` to `path` (when given), detaches it from pyplot, and returns it.

  Closing drops pyplot's reference (no figure pile-up over many runs) and
  leaves a bare canvas behind; an Agg canvas is re-attached so the returned
  figure can still be drawn and measured (``fig.canvas.draw()``).
  """
  if path is not None:
    fig.savefig(path, dpi=110)
  plt.close(fig)
  FigureCanvasAgg(fig)
  return fig


# Percentile bands of `plot_percentiles`: (low key, high key, alpha, label).
_BANDS = (("act_p02", "act_p98", 0.18, "2nd–98th percentile"),
          ("act_p16", "act_p84", 0.40, "16th–84th percentile"))


def plot_percentiles(d, path=None, title="", *, layer_names=None, max_cols=5):
  """Activation percentiles of each hidden layer vs training step, one small panel per layer.

  Mirrors Glorot & Bengio (2010), Fig. 2–4 (mean/std and 98th percentiles of
  each hidden layer's activations in the course of learning), as small
  multiples so that deep nets stay readable: a grid of at most `max_cols`
  columns, one panel per layer (titled with the layer's name, shared x and y
  axes), each with the median (solid line, gid ``"median"``), the mean
  (dotted, gid ``"mean"``), and the 16th–84th (dark) and 2nd–98th (light)
  percentile bands of the activations over the monitoring batch. Records
  written before the 16th/84th percentiles were measured draw only the
  2nd–98th band.

  Args:
    d: diagnostics of one seed, sorted by step (``step`` [R], ``act_p50``
      [R, L], ``act_p02``/``act_p98`` [R, L], optionally ``act_p16``/
      ``act_p84``/``act_mean`` [R, L]).
    path: PNG to write, or None to only return the figure.
    title: first line of the figure title.
    layer_names: L panel titles (default ``layer 1`` .. ``layer L``).
    max_cols: most panels per row.

  Returns:
    The matplotlib Figure (closed to pyplot; its axes stay inspectable).
  """
  steps = np.asarray(d["step"])
  n_layers = d["act_p50"].shape[1]
  names = list(layer_names) if layer_names is not None else [f"layer {l + 1}" for l in range(n_layers)]
  if len(names) != n_layers:
    raise ValueError(f"layer_names has {len(names)} names for {n_layers} layers")
  ncols = max(1, min(n_layers, int(max_cols)))
  nrows = -(-n_layers // ncols)
  fig, axes = plt.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False,
                           figsize=(2.6 + 2.3 * ncols, 1.3 + 1.75 * nrows), layout="constrained")
  marker = "o" if len(steps) < 2 else None  # a single record (e.g. only step 0) as a point
  for l, ax in enumerate(axes.flat):
    if l >= n_layers:
      ax.set_visible(False)
      continue
    for lo, hi, alpha, label in _BANDS:
      if lo in d and hi in d:
        ax.fill_between(steps, d[lo][:, l], d[hi][:, l], color="C0", alpha=alpha, lw=0,
                        label=label)
        if marker:
          ax.vlines(steps, d[lo][:, l], d[hi][:, l], color="C0", alpha=alpha + 0.2, lw=4)
    ax.plot(steps, d["act_p50"][:, l], color="C0", lw=1.4, marker=marker, ms=3, label="median",
            gid="median")
    if "act_mean" in d:
      ax.plot(steps, d["act_mean"][:, l], color="k", lw=0.8, ls=":", label="mean", gid="mean")
    ax.set_title(names[l], fontsize=8, pad=2)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.grid(alpha=0.25, lw=0.5)
    if l + ncols >= n_layers:  # no panel below: this one carries the step labels
      ax.tick_params(labelbottom=True)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
  fig.supxlabel("training step", fontsize=9)
  fig.supylabel("activation value", fontsize=9)
  fig.suptitle((f"{title}\n" if title else "") + "activations per hidden layer over training",
               fontsize=10)
  return _finish(fig, path)


def plot_histograms(counts, hist_range, path=None, xlabel="", title=""):
  """Normalized histogram (fraction of entries per bin) of each layer, one line per layer.

  Mirrors Glorot & Bengio (2010), Fig. 6 (activation values) and Fig. 7
  (back-propagated gradients) at one step — the paper draws them at
  initialization (step 0). `counts` [L, bins] over the shared `hist_range`.
  Returns the Figure (written to `path` when given).
  """
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
  return _finish(fig, path)


JACOBIAN_YLABEL = r"$\sigma_i(\partial h_{l+1}/\partial h_l)$"
JACOBIAN_XLABEL = r"layer $l$ of the Jacobian $\partial h_{l+1}/\partial h_l$"


def plot_jacobian(d_step, path=None, step=None, title="", *, max_xticks=12):
  """Singular values of each layer Jacobian J_l = ∂h_{l+1}/∂h_l at one step.

  Mirrors Glorot & Bengio (2010), §4.2.3 (the singular values of the layer
  Jacobians: mean ≈ 0.5 with the standard initialization, ≈ 0.8 with the
  normalized one): per l, a box plot of the spectrum averaged over examples
  and its mean (line), or σ_max/σ_min markers when only those were computed
  (power iteration). The end-to-end Jacobian ∂logits/∂x's σ_max/σ_min go in
  the title. Readable at any depth: at most `max_xticks` integer x ticks, the
  y axis logarithmic when the values span more than a factor 30 (minor tick
  labels off), axis labels as mathtext (`JACOBIAN_XLABEL`, `JACOBIAN_YLABEL`).
  Returns the Figure (written to `path` when given).
  """
  n_maps = len(np.asarray(d_step["layer_jac_sv"])) if "layer_jac_sv" in d_step else 0
  fig, ax = plt.subplots(figsize=(max(6.0, min(14.0, 3.0 + 0.3 * n_maps)), 4.5))
  vals = []
  if n_maps:
    sv = np.asarray(d_step["layer_jac_sv"], np.float32)  # [L−1, k]
    pos = np.arange(1, n_maps + 1)
    if sv.shape[1] > 2:
      ax.boxplot(list(sv), positions=pos, widths=0.6, showfliers=False, manage_ticks=False)
    else:
      ax.plot(pos, sv[:, 0], "^", color="C0", label=r"$\sigma_{\max}$")
      ax.plot(pos, sv[:, 1], "v", color="C2", label=r"$\sigma_{\min}$")
    mean = np.asarray(d_step.get("layer_jac_sv_mean", sv.mean(1)), np.float32)
    ax.plot(pos, mean, "o-", color="C1", ms=3, label=r"mean $\sigma_i$", gid="mean")
    vals = [sv.ravel(), mean.ravel()]
    ax.set_xlim(0.4, n_maps + 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=max_xticks, integer=True, min_n_ticks=1))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}"))
  ax.set_xlabel(JACOBIAN_XLABEL)
  ax.axhline(1.0, color="gray", lw=0.6)
  v = np.concatenate(vals + [np.ones(1)]) if vals else np.ones(1)
  v = v[np.isfinite(v)]
  if len(v) and v.min() > 0 and v.max() / v.min() > 30:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=8))
    ax.yaxis.set_minor_formatter(NullFormatter())
  else:
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
  ax.set_ylabel(JACOBIAN_YLABEL)
  e2e = ""
  if "e2e_jac_sv_max" in d_step:
    e2e = ("\n" + r"end-to-end $\partial$logits$/\partial x$: $\sigma_{\max}$=" + f"{float(d_step['e2e_jac_sv_max']):.3g}"
           + r", $\sigma_{\min}$=" + f"{float(d_step['e2e_jac_sv_min']):.3g}")
  at = "" if step is None else f" at step {step}"
  ax.set_title(f"{title + chr(10) if title else ''}layer Jacobian singular values{at}{e2e}", fontsize=10)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
  fig.tight_layout()
  return _finish(fig, path)


def plot_saturation_wgrad(d, i, path=None):
  """Saturated fraction per layer over training; Var[∂L/∂W] per layer at record i.

  Mirrors Glorot & Bengio (2010), Fig. 2 (saturation of the top sigmoid layer
  over training) and §4.2.2 (variance of the weight gradients per layer).
  Returns the Figure (written to `path` when given).
  """
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
    a2.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    a2.set_xlabel("weight layer (last = output)")
    a2.set_ylabel(r"Var$[\partial L/\partial W]$")
    a2.set_title(f"weight-gradient variance at step {int(d['step'][i])}")
  fig.tight_layout()
  return _finish(fig, path)


def _curve_seeds(c):
  """(steps [T], values [S, T]) of one arm of `plot_learning_curves`."""
  if isinstance(c, Mapping):
    steps, vals = c["step"], c["values"]
  elif isinstance(c, tuple):                         # (steps [T], values [T] or [S, T])
    steps, vals = c
  else:
    seqs = list(c)
    if seqs and np.ndim(seqs[0]) == 1:               # one seed: [(step, value), ...]
      seqs = [seqs]
    per = [{float(st): float(v) for st, v in s} for s in seqs]   # per seed; a repeated step: last wins
    steps = sorted(set(per[0]).intersection(*per[1:]))         # the steps every seed recorded
    vals = [[p[st] for st in steps] for p in per]
  steps = np.asarray(steps, np.float64)
  vals = np.atleast_2d(np.asarray(vals, np.float64))
  if steps.ndim != 1 or vals.ndim != 2 or vals.shape[1] != len(steps):
    raise ValueError(f"values of shape {vals.shape} do not match {steps.shape} steps")
  return steps, vals


def plot_learning_curves(curves, ylabel, path=None, log_y=False, *, band="minmax",
                         xlabel="training step", title="", ax=None):
  """Learning curves of several arms: the mean across seeds (line) and a band across seeds.

  Mirrors Glorot & Bengio (2010), Fig. 11–12 (test error vs training
  iterations for each activation / initialization), with seeds summarized:
  per arm, the mean over seeds as a line (gid ``"mean"``, label = arm name)
  and, with ≥ 2 seeds, a shaded band — min–max across seeds (``band="minmax"``)
  or mean ± std (``band="std"``). Non-finite values (a diverged seed) count as
  missing: the mean and band use the finite seeds at each step.

  Args:
    curves: {arm name: curve}; a curve is one of
      * a list ``[(step, value), ...]`` (one seed),
      * a list of such lists, one per seed (drawn at the steps every seed
        recorded),
      * a tuple ``(steps [T], values [T] or [S, T])`` (per-seed arrays),
      * ``{"step": [T], "values": [S, T]}``.
    ylabel: y-axis label (e.g. ``"test error (%)"``).
    path: PNG to write, or None to only return the figure.
    log_y: logarithmic y axis.
    band: ``"minmax"`` or ``"std"``.
    xlabel, title: axis label and title.
    ax: draw into these axes (a panel of the caller's figure) instead of a new
      figure; the caller saves it (`path` must then be None).

  Returns:
    The matplotlib Figure (closed to pyplot; its axes stay inspectable).
  """
  if band not in ("minmax", "std"):
    raise ValueError(f"band={band!r}: must be 'minmax' or 'std'")
  if ax is not None and path is not None:
    raise ValueError("plot_learning_curves: give either ax (the caller saves) or path")
  own = ax is None
  fig, ax = plt.subplots(figsize=(7, 4.5)) if own else (ax.figure, ax)
  multi = False
  for k, (name, c) in enumerate(curves.items()):
    steps, vals = _curve_seeds(c)
    v = np.where(np.isfinite(vals), vals, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)   # all seeds non-finite at a step: NaN
      mean = np.nanmean(v, 0)
      if band == "minmax":
        lo, hi = np.nanmin(v, 0), np.nanmax(v, 0)
      else:
        sd = np.nanstd(v, 0)
        lo, hi = mean - sd, mean + sd
    color = f"C{k % 10}"
    n = vals.shape[0]
    multi |= n > 1
    ax.plot(steps, mean, color=color, lw=1.6, marker="o" if len(steps) < 2 else None,
            label=f"{name} ({n} seeds)" if n > 1 else str(name), gid="mean")
    if n > 1:
      ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
  if log_y:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  sub = {"minmax": "min–max", "std": "± std"}[band]
  seeds = f"mean over seeds (line), {sub} across seeds (band)" if multi else ""
  ax.set_title("\n".join(t for t in (title, seeds) if t), fontsize=10)
  ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
  ax.grid(alpha=0.25, lw=0.5)
  ax.legend(fontsize=8)
  if not own:   # a panel of the caller's figure: it lays out and saves
    return fig
  fig.tight_layout()
  return _finish(fig, path)


def render(workdir: str, step: int | None = None, seed: int | None = None,
           out_dir: str | None = None, title: str = "") -> list[str]:
  """Draws all figures of `workdir`'s diagnostics (Glorot & Bengio 2010); returns the PNG paths.

  The per-step figures (histograms, Jacobians) are drawn at `step`, or, when
  None, at the first recorded step (the initialization, step 0, as the
  paper's Fig. 6–7) and at the last one.
  """
  d, seed = _select(load_diagnostics(workdir), seed)
  out_dir = out_dir or workdir
  os.makedirs(out_dir, exist_ok=True)
  steps = d["step"]
  if step is None:
    idx = sorted({0, len(steps) - 1})
  else:
    hits = np.nonzero(steps == step)[0]
    if not len(hits):
      raise ValueError(f"--step {step} not recorded; recorded steps: {steps.tolist()}")
    idx = [int(hits[0])]
  head = f"{title}\n" if title else ""
  paths = [os.path.join(out_dir, "diag_activation_percentiles.png")]
  plot_percentiles(d, paths[0], title)
  for i in idx:
    s = int(steps[i])
    d_step = {k: v[i] for k, v in d.items()}
    p = [os.path.join(out_dir, n) for n in (f"diag_activation_hist_step{s}.png",
                                            f"diag_gradient_hist_step{s}.png",
                                            f"diag_jacobian_sv_step{s}.png")]
    plot_histograms(d_step["act_hist"], d_step["act_hist_range"], p[0], "activation value",
                    f"{head}activation histograms at step {s} (seed {seed})")
    plot_histograms(d_step["grad_hist"], d_step["grad_hist_range"], p[1], r"$\partial L/\partial z$",
                    f"{head}back-propagated gradient histograms at step {s}")
    plot_jacobian(d_step, p[2], s, title)
    paths += p
  paths.append(os.path.join(out_dir, "diag_saturation_wgrad.png"))
  plot_saturation_wgrad(d, idx[-1], paths[-1])
  return paths


def main(argv=None) -> int:
  matplotlib.use("Agg")  # the CLI only writes files
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("workdir")
  ap.add_argument("--step", type=int, default=None,
                  help="step for histograms and Jacobians (default: the first and the last recorded)")
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
  from stable_training import allocator
  allocator.skip_exit_collection()   # the program's exit, not the library's
  sys.exit(main())
