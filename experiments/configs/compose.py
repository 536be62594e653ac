"""Every method in one run: tGELU + ROAF + LSC pre-training + output-layer clipping
+ averaged-gradient RMSProp + per-layer diagnostics, 4 seeds vmapped.

- tGELU(t_left = −1, t_right = 3), Ramaswamy, Bhatnagar & Saxena (2023), with the
  output layer's gradient clipped to norm 1 (same paper);
- ROAF MLP, α = 0.99, critical init, 'fast' filters (Ceni 2022) — or, with
  ``mlp``, a plain DeepMLP with He init;
- LSC pre-training of every layer Jacobian's radius to ρ = 1 (Herranz-Celotti & Rouat);
- the averaged gradient over the update segment (secant) feeding RMSProp
  (ICLR 2025 submission "… Many Nonlinear Activations");
- per-layer monitoring (Glorot & Bengio 2010) every `diagnostics.every` steps.

Variants: ``roaf`` (default; Fashion-MNIST, depth 50 × 64, 1500 steps), ``mlp``
(the same on a DeepMLP), ``tiny`` / ``tiny-mlp`` (seconds, digits).
"""
from __future__ import annotations

import ml_collections

from experiments.configs import default


def get_config(variant: str = "roaf"):
  """The composed config (see module doc)."""
  tiny = variant.startswith("tiny")
  kind = variant[len("tiny-"):] if variant.startswith("tiny-") else ("roaf" if tiny else variant or "roaf")
  if kind not in ("roaf", "mlp"):
    raise ValueError(f"compose.py variant {variant!r}; valid: roaf, mlp, tiny, tiny-mlp")
  c = default.get_config()
  c.model.width, c.model.depth = 64, 50
  c.model.activation = "tgelu"
  c.model.activation_kwargs.t_left = -1.0
  c.model.activation_kwargs.t_right = 3.0
  if kind == "roaf":
    c.model.name = "roaf_mlp"
    c.model.alpha, c.model.filter_seed = 0.99, 0
    c.model.beta = ml_collections.config_dict.placeholder(float)  # None: β = 1 − α
    c.model.filter_mode, c.model.roaf_init, c.model.remat = "fast", "critical", True
  else:
    c.model.name, c.model.kernel_init = "deep_mlp", "he_normal"
  c.optimizer.name = "avg_grad_rmsprop"
  c.optimizer.learning_rate = 3e-4
  c.optimizer.avg_grad.method = "secant"
  c.optimizer.avg_grad.num_points = 2
  c.optimizer.clip_output_norm = 1.0
  c.lsc.enabled = True
  c.lsc.rho = 1.0
  c.lsc.steps = 100
  c.diagnostics.enabled = True
  c.diagnostics.every = 500
  c.num_seeds = 4
  c.batch_size = 128
  c.num_steps = 1500
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  if tiny:
    default.tiny(c)
    c.model.depth = 4
    c.num_seeds = 4
  return c
