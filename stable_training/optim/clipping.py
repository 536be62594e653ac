"""Output-layer gradient clipping (Ramaswamy, Bhatnagar & Saxena 2023).

"Stable and consistent training" pairs the squashing tGELU with clipping the
gradient of the *output layer only*: the hidden layers' gradients are already
bounded by the squashing activations, so only the last layer's gradient can
explode. The rule, with g_out all gradient leaves of the output layer (kernel
and bias together) and n = ‖g_out‖₂ their joint norm::

    g_out ← g_out / max(1, n / max_norm)

Built from optax pieces: `optax.clip_by_global_norm` (which computes
g · max_norm / n when n ≥ max_norm, the same rule) restricted to the output
layer by `optax.masked`, so every other leaf passes through bit for bit.
"""
from __future__ import annotations

from typing import Any

import jax
import optax


def _top_level(tree: Any) -> Any:
  """The dict of top-level modules: `tree` or, for {'params': ...}, its value."""
  if hasattr(tree, "keys") and set(tree.keys()) == {"params"}:
    return tree["params"]
  return tree


def output_layer_mask(tree: Any, layer: str = "output") -> Any:
  """Boolean pytree like `tree`: True on every leaf under top-level module `layer`.

  Accepts a flax params dict ({module: {...}}) or a variables dict
  ({'params': {module: {...}}}).

  Raises:
    ValueError: `tree` is not a dict of modules or has no module `layer`
      (the message lists the top-level module names).
  """
  top = _top_level(tree)
  if not hasattr(top, "keys"):
    raise ValueError(
        f"clip_output_layer needs a dict of modules, got {type(tree).__name__}")
  if layer not in top:
    raise ValueError(
        f"clip_output_layer: no top-level module {layer!r} in the params; "
        f"top-level modules: {', '.join(map(str, top.keys()))}")
  mask = {k: jax.tree.map(lambda _, k=k: k == layer, v) for k, v in top.items()}
  if top is not tree:
    return {"params": mask}
  return mask


def clip_output_layer(max_norm: float = 1.0,
                      layer: str = "output") -> optax.GradientTransformation:
  """Clips the joint ℓ₂ norm of the output layer's gradient (Ramaswamy et al. 2023).

  g_out ← g_out / max(1, ‖g_out‖₂ / max_norm), where g_out collects every leaf
  under the top-level module `layer` (kernel and bias together, one joint
  norm); all other leaves are returned unchanged. Stateless; works under
  `jax.jit` and `jax.vmap` (under vmap over seeds each seed gets its own norm).

  Args:
    max_norm: the largest allowed norm, > 0.
    layer: name of the top-level module to clip (``output`` in this
      project's models).

  Raises:
    ValueError: ``max_norm <= 0``; or, at init/update, a tree without module
      `layer` (the message lists the top-level module names).
  """
  try:
    ok = float(max_norm) > 0.0
  except TypeError as e:
    raise ValueError(f"clip_output_layer max_norm must be a number > 0, got {max_norm!r}") from e
  if not ok:
    raise ValueError(f"clip_output_layer max_norm must be > 0, got {max_norm}")
  # optax.masked hides the unmasked leaves (MaskedNode, no leaves), so the
  # global norm inside clip_by_global_norm is the output layer's joint norm.
  return optax.masked(optax.clip_by_global_norm(float(max_norm)),
                      lambda tree: output_layer_mask(tree, layer))
