"""Optimizers: output-layer clipping, the averaged gradient, and a by-name factory.

- `clip_output_layer` — clip the output layer's joint gradient norm
  (Ramaswamy, Bhatnagar & Saxena 2023, "stable and consistent training");
  the layer is named by path / regex / predicate or found from the model
  (`find_output_layer`).
- `averaged_gradient(inner, method, loss_fn=...)` — wraps an optimizer so it
  steps on ḡ = ∫₀¹ ∇L(w + tΔw) dt over the previous applied update Δw (ICLR
  2025 submission "Efficient Gradient-Based Algorithm for Training Deep
  Learning Models With Many Nonlinear Activations"); the order is right by
  construction, in any loop. `estimate_averaged_gradient` is ḡ itself;
  `averaged_gradient_estimator` / `avg_grad_rmsprop` the engine's chain stage
  (extra argument ``grad_fn``). ``secant`` works on any model through a jaxpr
  transformation (`optim.secant`).
- `make_optimizer(opt_cfg)`, `names()` — what the train engine calls.
"""
from __future__ import annotations

from stable_training.optim.avg_grad import (
    METHODS, AveragedGradientState, AveragedGradientTransformation, AvgGradState,
    averaged_gradient, averaged_gradient_estimator, avg_grad_rmsprop, estimate_averaged_gradient,
    secant_activations)
from stable_training.optim.clipping import (
    clip_output_layer, find_output_layer, output_layer_mask, param_paths)
from stable_training.optim.factory import make_optimizer, make_schedule, names
from stable_training.optim.schema import SCHEDULES
from stable_training.optim.secant import SecantError

__all__ = [
    "AveragedGradientState", "AveragedGradientTransformation", "AvgGradState", "METHODS",
    "SCHEDULES", "SecantError", "averaged_gradient", "averaged_gradient_estimator",
    "avg_grad_rmsprop", "clip_output_layer", "estimate_averaged_gradient", "find_output_layer",
    "make_optimizer", "make_schedule", "names", "output_layer_mask", "param_paths",
    "secant_activations",
]
