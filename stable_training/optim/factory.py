"""Optimizers and gradient estimators by name, from the ``config.optimizer`` ConfigDict.

`make_optimizer(opt_cfg)` builds the optax chain
``[clip_output_layer(clip_output_norm)] → optimizer``; `make_grad_fn(opt_cfg,
loss_fn)` builds the matching gradient estimator (the plain gradient, or the
averaged gradient for ``avg_grad_rmsprop``, which reads its Δw prediction from
the optimizer state). The engine then runs::

  (loss, aux), grads = grad_fn(params, opt_state, batch, rng)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from stable_training.optim import avg_grad as avg_grad_lib
from stable_training.optim.clipping import clip_output_layer

_NAMES = ("sgd", "momentum", "rmsprop", "adam", "adabelief", "avg_grad_rmsprop")


def names() -> list[str]:
  """The optimizer names `make_optimizer` accepts, sorted."""
  return sorted(_NAMES)


def _get(cfg: Any, key: str, default: Any) -> Any:
  """cfg.key for a ConfigDict / dict, `default` when absent."""
  getter = getattr(cfg, "get", None)
  if getter is not None:
    v = getter(key, default)
    return default if v is None else v
  return getattr(cfg, key, default)


def _avg_grad_settings(opt_cfg: Any) -> tuple[str, int]:
  ag = _get(opt_cfg, "avg_grad", None)
  if ag is None:
    return "secant", 2
  return str(_get(ag, "method", "secant")), int(_get(ag, "num_points", 2))


def make_optimizer(opt_cfg: Any) -> optax.GradientTransformation:
  """The optax optimizer described by `opt_cfg`.

  Fields: ``name`` (one of `names()`), ``learning_rate``, ``momentum`` (0.9,
  heavy-ball SGD), ``decay`` (0.9, RMSProp's second-moment EMA), ``eps``
  (1e-8), ``clip_output_norm`` (0 = off; > 0 chains
  `clip_output_layer(clip_output_norm)` first — Ramaswamy, Bhatnagar & Saxena
  2023), ``avg_grad.method`` / ``avg_grad.num_points`` (for
  ``avg_grad_rmsprop``; see `stable_training.optim.avg_grad`).

  Updates: sgd −η g; momentum m ← μm + g, −η m; rmsprop ν ← ρν + (1−ρ)g²,
  −η g/√(ν+ε) (optax.rmsprop); adam / adabelief as in optax with ε = eps;
  avg_grad_rmsprop the RMSProp rule applied to the averaged gradient.

  Raises:
    ValueError: unknown name (the message lists the valid ones).
  """
  name = _get(opt_cfg, "name", None)
  lr = _get(opt_cfg, "learning_rate", None)
  if lr is None:
    raise ValueError("optimizer.learning_rate is required")
  momentum = float(_get(opt_cfg, "momentum", 0.9))
  decay = float(_get(opt_cfg, "decay", 0.9))
  eps = float(_get(opt_cfg, "eps", 1e-8))
  if name == "sgd":
    tx = optax.sgd(lr)
  elif name == "momentum":
    tx = optax.sgd(lr, momentum=momentum)
  elif name == "rmsprop":
    tx = optax.rmsprop(lr, decay=decay, eps=eps)
  elif name == "adam":
    tx = optax.adam(lr, eps=eps)
  elif name == "adabelief":
    tx = optax.adabelief(lr, eps=eps)
  elif name == "avg_grad_rmsprop":
    method, num_points = _avg_grad_settings(opt_cfg)
    tx = avg_grad_lib.avg_grad_rmsprop(lr, decay=decay, eps=eps, method=method,
                                       num_points=num_points)
  else:
    raise ValueError(
        f"unknown optimizer {name!r}; valid names: {', '.join(names())}")
  clip = float(_get(opt_cfg, "clip_output_norm", 0.0))
  if clip < 0:
    raise ValueError(f"optimizer.clip_output_norm must be >= 0 (0 = off), got {clip}")
  if clip > 0:
    tx = optax.chain(clip_output_layer(clip), tx)
  return tx


def make_grad_fn(opt_cfg: Any, loss_fn: Callable) -> Callable:
  """The gradient estimator matching `make_optimizer(opt_cfg)`.

  Args:
    opt_cfg: the optimizer ConfigDict.
    loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)``.

  Returns:
    ``grad_fn(params, opt_state, batch, rng) -> ((loss, aux), grads)``. For
    every optimizer but ``avg_grad_rmsprop`` this is
    ``jax.value_and_grad(loss_fn, has_aux=True)`` (opt_state ignored). For
    ``avg_grad_rmsprop`` grads is the averaged gradient
    ḡ = ∫₀¹ ∇L(w + tΔw) dt with Δw the previous update, read from opt_state
    (`avg_grad.find_delta`); loss and aux are at w.
  """
  name = _get(opt_cfg, "name", None)
  if name not in _NAMES:
    raise ValueError(
        f"unknown optimizer {name!r}; valid names: {', '.join(names())}")
  if name != "avg_grad_rmsprop":
    vg = jax.value_and_grad(loss_fn, has_aux=True)

    def grad_fn(params, opt_state, batch, rng):
      del opt_state
      return vg(params, batch, rng)
    return grad_fn
  method, num_points = _avg_grad_settings(opt_cfg)
  return avg_grad_lib.make_avg_grad_fn(loss_fn, method=method, num_points=num_points)
