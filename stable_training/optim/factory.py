"""Optimizers by name, from the ``config.optimizer`` ConfigDict.

`make_optimizer(opt_cfg)` builds the optax chain
``[clip_by_global_norm] → [clip_output_layer] → [add_decayed_weights] →
optimizer``, or for ``avg_grad_rmsprop`` ``averaged_gradient_estimator →
[clip…] → [decay] → RMSProp`` (the estimator replaces ∇L(w) by the averaged
gradient ḡ, so it comes first; ICLR 2025 submission "Efficient Gradient-Based
Algorithm for Training Deep Learning Models With Many Nonlinear
Activations"). The engine runs, for every optimizer::

  (loss, aux), grads = value_and_grad(objective)(params, batch, rng)
  updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)
  params = optax.apply_updates(params, updates)

with ``grad_fn(p) = ∇L(p)`` at the step's batch; only the averaged-gradient
estimator calls it (plain transforms drop extra args inside `optax.chain`).
"""
from __future__ import annotations

from typing import Any

import optax

from stable_training.config import checked, lookup
from stable_training.optim import avg_grad as avg_grad_lib
from stable_training.optim.clipping import clip_output_layer
from stable_training.optim.schema import AVG_GRAD_KEYS, NAMES, OPTIMIZER_KEYS, SCHEDULES  # noqa: F401


def names() -> list[str]:
  """The optimizer names `make_optimizer` accepts, sorted."""
  return sorted(NAMES)


def _value(opt_cfg: Any, key: str) -> Any:
  """``opt_cfg.key`` checked against `OPTIMIZER_KEYS` (its declared default when absent or None)."""
  return checked(opt_cfg, key, OPTIMIZER_KEYS, "optimizer")


def _learning_rate(opt_cfg: Any) -> float:
  """η: required (no silent default), positive and finite."""
  if lookup(opt_cfg, "learning_rate", None) is None:
    raise ValueError("optimizer.learning_rate is required")
  return float(_value(opt_cfg, "learning_rate"))


def _avg_grad_settings(opt_cfg: Any) -> tuple[str, int]:
  """(method, num_points) of ``opt_cfg.avg_grad``, each at its `AVG_GRAD_KEYS` default when unset."""
  ag = lookup(opt_cfg, "avg_grad", {}, none_is_default=True)
  return (str(checked(ag, "method", AVG_GRAD_KEYS, "optimizer.avg_grad")),
          int(checked(ag, "num_points", AVG_GRAD_KEYS, "optimizer.avg_grad")))


def make_schedule(opt_cfg: Any, num_steps: int | None = None) -> optax.Schedule:
  """The learning-rate schedule η_t described by `opt_cfg` (t = update count).

  ``schedule`` (default ``constant``):

  - ``constant``: η_t = η.
  - ``warmup_cosine``: linear warm-up 0 → η over ``warmup_steps``, then
    η_t = η_end + ½(η − η_end)(1 + cos(π (t − w)/(T − w))) down to
    η_end = ``end_lr_factor`` · η at T = `num_steps`
    (`optax.warmup_cosine_decay_schedule`, Loshchilov & Hutter 2017).
  - ``step``: η_t = η · ``step_factor``^k with k the number of
    ``step_boundaries`` (update counts) ≤ t
    (`optax.piecewise_constant_schedule`).

  Every key is read and checked against `OPTIMIZER_KEYS` (its declared
  default when absent); ``learning_rate`` is required.

  Raises:
    ValueError (one line): a missing learning rate, a value outside its
      declared range or choices (e.g. an unknown schedule), or
      ``warmup_cosine`` without `num_steps` or with warmup_steps ≥ num_steps.
  """
  lr = _learning_rate(opt_cfg)
  kind = _value(opt_cfg, "schedule")
  if kind == "constant":
    return optax.constant_schedule(lr)
  if kind == "warmup_cosine":
    warmup = int(_value(opt_cfg, "warmup_steps"))
    if num_steps is None or warmup >= num_steps:
      raise ValueError(f"optimizer.warmup_steps={warmup}: must be < the number of steps ({num_steps})")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else lr, peak_value=lr, warmup_steps=warmup,
        decay_steps=int(num_steps), end_value=lr * float(_value(opt_cfg, "end_lr_factor")))
  bounds = [int(b) for b in _value(opt_cfg, "step_boundaries")]  # kind == "step" (the schema allows no other)
  factor = float(_value(opt_cfg, "step_factor"))
  return optax.piecewise_constant_schedule(lr, {b: factor for b in bounds})


def make_optimizer(opt_cfg: Any, num_steps: int | None = None) -> optax.GradientTransformation:
  """The optax chain described by `opt_cfg`.

  ``[clip_by_global_norm(clip_global_norm)] → [clip_output_layer(clip_output_norm)]
  → [add_decayed_weights(weight_decay)] → optimizer(schedule)``; each bracket
  only when its value is > 0. For ``avg_grad_rmsprop`` the averaged-gradient
  estimator goes in front of the brackets, so they act on ḡ:
  ``averaged_gradient_estimator(method, num_points) → [...] → scale_by_rms →
  scale_by_learning_rate``; its ``update`` needs the extra argument
  ``grad_fn`` (`stable_training.train.make_train_step` passes it).

  Fields: ``name`` (one of `names()`), ``learning_rate`` and its
  ``schedule`` (`make_schedule`; `num_steps` is the run's length, needed by
  ``warmup_cosine``), ``momentum`` (0.9, heavy-ball SGD), ``decay`` (0.9,
  RMSProp's second-moment EMA), ``eps`` (1e-8), ``clip_global_norm`` (0 =
  off; g ← g · min(1, c/‖g‖₂) over all parameters), ``clip_output_norm`` (0 =
  off; the same rule on the output layer only — Ramaswamy, Bhatnagar & Saxena
  2023), ``weight_decay`` λ (0 = off; for ``adam`` decoupled, i.e. AdamW,
  Loshchilov & Hutter 2019; otherwise the L2 term g ← g + λθ added before the
  optimizer), ``avg_grad.method`` / ``avg_grad.num_points`` (for
  ``avg_grad_rmsprop``; see `stable_training.optim.avg_grad`).

  Updates: sgd −η g; momentum m ← μm + g, −η m; rmsprop ν ← ρν + (1−ρ)g²,
  −η g/√(ν+ε) (optax.rmsprop); adam / adabelief as in optax with ε = eps;
  avg_grad_rmsprop the RMSProp rule applied to the averaged gradient
  ḡ = ∫₀¹ ∇L(w + tΔw) dt, Δw the previous applied update (ICLR 2025
  submission, "… Many Nonlinear Activations").

  Raises:
    ValueError (one line): no name or learning rate, or a value outside its
      declared range or choices in `OPTIMIZER_KEYS` (the message lists the
      valid ones).
  """
  name = lookup(opt_cfg, "name", None)
  if name is None:
    raise ValueError(f"optimizer.name is required; valid names: {', '.join(names())}")
  name = _value(opt_cfg, "name")
  sched = make_schedule(opt_cfg, num_steps)  # checks the learning rate
  lr = lookup(opt_cfg, "learning_rate")
  if _value(opt_cfg, "schedule") == "constant":
    sched = lr  # a plain float keeps optax's state free of a step counter
  momentum = float(_value(opt_cfg, "momentum"))
  decay = float(_value(opt_cfg, "decay"))
  eps = float(_value(opt_cfg, "eps"))
  wd = float(_value(opt_cfg, "weight_decay"))
  if name == "sgd":
    tx = optax.sgd(sched)
  elif name == "momentum":
    tx = optax.sgd(sched, momentum=momentum)
  elif name == "rmsprop":
    tx = optax.rmsprop(sched, decay=decay, eps=eps)
  elif name == "adam":
    tx = optax.adamw(sched, eps=eps, weight_decay=wd) if wd > 0 else optax.adam(sched, eps=eps)
  elif name == "adabelief":
    tx = optax.adabelief(sched, eps=eps)
  else:  # avg_grad_rmsprop (the schema allows no other name); the estimator goes first, below
    tx = optax.chain(optax.scale_by_rms(decay=decay, eps=eps), optax.scale_by_learning_rate(sched))
  parts = []
  gclip = float(_value(opt_cfg, "clip_global_norm"))  # >= 0 by the schema; 0 = off
  if gclip > 0:
    parts.append(optax.clip_by_global_norm(gclip))
  clip = float(_value(opt_cfg, "clip_output_norm"))
  if clip > 0:
    parts.append(clip_output_layer(clip))
  if wd > 0 and name != "adam":
    parts.append(optax.add_decayed_weights(wd))
  if name == "avg_grad_rmsprop":
    method, num_points = _avg_grad_settings(opt_cfg)
    parts.insert(0, avg_grad_lib.averaged_gradient_estimator(method, num_points))
  return optax.chain(*parts, tx) if parts else tx

