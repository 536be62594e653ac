"""Optimizers: output-layer clipping, the averaged gradient, and a by-name factory.

- `clip_output_layer` — clip the output layer's joint gradient norm
  (Ramaswamy, Bhatnagar & Saxena 2023, "stable and consistent training").
- `averaged_gradient`, `avg_grad_rmsprop` — ḡ = ∫₀¹ ∇L(w + tΔw) dt over the
  predicted update segment, with RMSProp (ICLR 2025 submission "Efficient
  Gradient-Based Algorithm for Training Deep Learning Models With Many
  Nonlinear Activations").
- `make_optimizer(opt_cfg)`, `make_grad_fn(opt_cfg, loss_fn)`, `names()` — what
  the train engine calls.
"""
from __future__ import annotations

from stable_training.optim.avg_grad import (
    AvgGradState, METHODS, averaged_gradient, avg_grad_rmsprop, find_delta,
    make_avg_grad_fn, secant_activations)
from stable_training.optim.clipping import clip_output_layer, output_layer_mask
from stable_training.optim.factory import SCHEDULES, make_grad_fn, make_optimizer, make_schedule, names

__all__ = [
    "AvgGradState", "METHODS", "SCHEDULES", "make_schedule", "averaged_gradient", "avg_grad_rmsprop",
    "clip_output_layer", "find_delta", "make_avg_grad_fn", "make_grad_fn",
    "make_optimizer", "names", "output_layer_mask", "secant_activations",
]
