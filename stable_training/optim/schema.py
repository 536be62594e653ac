"""The keys of ``config.optimizer`` (what `optim.make_optimizer` reads), typed.

The one place for the optimizer names, the schedules and the averaged-gradient
methods: `optim.factory` and `optim.avg_grad` import them from here.
"""
from __future__ import annotations

from stable_training.schema import Key

NAMES = ("adabelief", "adam", "avg_grad_rmsprop", "momentum", "rmsprop", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "step")
# Estimators of the averaged gradient ∫₀¹ ∇L(w + tΔw) dt (`optim.avg_grad`).
METHODS = ("midpoint", "gauss_legendre", "secant")

# ``config.optimizer.avg_grad`` (read for ``name = "avg_grad_rmsprop"``).
AVG_GRAD_KEYS = {
    "method": Key(str, "secant", choices=METHODS),
    "num_points": Key(int, 2, lo=1, doc="Gauss–Legendre nodes (gauss_legendre only)"),
}

OPTIMIZER_KEYS = {
    "name": Key(str, "sgd", choices=NAMES),
    "learning_rate": Key(float, 0.05, lo=0.0, lo_open=True),
    "momentum": Key(float, 0.9, lo=0.0, hi=1.0, hi_open=True, doc="heavy-ball μ (momentum)"),
    "decay": Key(float, 0.9, lo=0.0, hi=1.0, hi_open=True, doc="RMSProp's second-moment EMA ρ"),
    "eps": Key(float, 1e-8, lo=0.0, lo_open=True),
    "clip_output_norm": Key(float, 0.0, lo=0.0, doc="> 0: output-layer clipping (Ramaswamy et al. 2023)"),
    "clip_global_norm": Key(float, 0.0, lo=0.0, doc="> 0: global-norm clipping first"),
    "weight_decay": Key(float, 0.0, lo=0.0, doc="AdamW for adam, an L2 term otherwise"),
    "schedule": Key(str, "constant", choices=SCHEDULES),
    "warmup_steps": Key(int, 0, lo=0),
    "end_lr_factor": Key(float, 0.0, lo=0.0, hi=1.0),
    "step_boundaries": Key(tuple, ()),
    "step_factor": Key(float, 0.1, lo=0.0, lo_open=True),
    "avg_grad": Key(dict, {}, doc="AVG_GRAD_KEYS: method (secant | midpoint | gauss_legendre), num_points"),
}
