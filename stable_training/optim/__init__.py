"""Optimizers: output-layer clipping, the averaged gradient, and a by-name factory.

- `clip_output_layer` — clip the output layer's joint gradient norm
  (Ramaswamy, Bhatnagar & Saxena 2023, "stable and consistent training").
- `averaged_gradient_estimator`, `avg_grad_rmsprop`, `averaged_gradient` —
  ḡ = ∫₀¹ ∇L(w + tΔw) dt over the previous applied update Δw, as one
  `optax.GradientTransformationExtraArgs` that takes the loss gradient as the
  extra argument ``grad_fn`` (like `optax.contrib.sam`'s opaque mode), alone
  or followed by RMSProp (ICLR 2025 submission "Efficient Gradient-Based
  Algorithm for Training Deep Learning Models With Many Nonlinear
  Activations").
- `make_optimizer(opt_cfg)`, `names()` — what the train engine calls.
"""
from __future__ import annotations

from stable_training.optim.avg_grad import (
    AvgGradState, METHODS, averaged_gradient, averaged_gradient_estimator, avg_grad_rmsprop,
    secant_activations)
from stable_training.optim.clipping import clip_output_layer, output_layer_mask
from stable_training.optim.factory import SCHEDULES, make_optimizer, make_schedule, names

__all__ = [
    "AvgGradState", "METHODS", "SCHEDULES", "make_schedule", "averaged_gradient",
    "averaged_gradient_estimator", "avg_grad_rmsprop", "clip_output_layer",
    "make_optimizer", "names", "output_layer_mask", "secant_activations",
]
