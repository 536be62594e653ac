"""ROAF (Ceni 2022) configs for the engine: deep ROAF MLP and recurrent classifiers.

Variants:
  ``mlp`` (default)       ROAF MLP on Fashion-MNIST, width 64, depth 1,000, α = 0.99,
                          critical init, 'fast' filters, remat; SGD momentum.
  ``mlp-DEPTH``           the same at another depth, e.g. ``roaf.py:mlp-50000``.
  ``tanh-DEPTH``          the plain tanh DeepMLP baseline at that depth (same optimizer).
  ``psmnist-CELL``        permuted sequential Fashion-MNIST (784 steps, one pixel per
                          step), CELL ∈ {roaf, elman, lstm, gru}, hidden 64, Adam.
Model-specific keys added here: alpha, beta (None = 1 − α), filter_mode, filter_seed,
roaf_init, cell, readout.
"""
from __future__ import annotations

from experiments.configs import default

CELLS = ("roaf", "elman", "lstm", "gru")


def get_config(variant: str = "mlp"):
  """The config for one variant (see module doc)."""
  c = default.get_config()
  kind, _, arg = (variant or "mlp").partition("-")
  c.model.alpha = 0.99
  c.model.beta = None
  c.model.filter_seed = 0
  if kind in ("mlp", "tanh"):
    depth = int(arg) if arg else 1000
    if depth < 1:
      raise ValueError(f"roaf.py depth must be >= 1, got {depth}")
    c.model.name = "roaf_mlp" if kind == "mlp" else "deep_mlp"
    c.model.width = 64
    c.model.depth = depth
    c.model.activation = "tanh"
    c.model.kernel_init = "glorot_normalized"
    c.model.remat = True
    c.model.filter_mode = "fast"
    c.model.roaf_init = "critical"
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.batch_size = 64
    c.num_steps = 938          # one epoch of 60,000 at batch 64
    c.log_every = 50
    c.eval_every = 450
    c.checkpoint_every = 450
  elif kind == "psmnist":
    if arg not in CELLS:
      raise ValueError(f"roaf.py psmnist cell {arg!r}; valid: {', '.join(CELLS)}")
    c.dataset.view = "permuted_sequential"
    c.model.name = "rnn_classifier"
    c.model.cell = arg
    c.model.readout = "last"
    c.model.width = 64
    c.model.depth = 1
    c.model.alpha = 0.5
    c.model.activation = "tanh"
    c.model.kernel_init = "lecun_normal"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.clip_output_norm = 0.0
    c.batch_size = 64
    c.num_steps = 938
    c.log_every = 50
    c.eval_every = 450
    c.checkpoint_every = 450
  else:
    raise ValueError(f"unknown roaf.py variant {variant!r}; valid: mlp[-DEPTH], tanh-DEPTH, "
                     f"psmnist-{{{','.join(CELLS)}}}")
  return c
