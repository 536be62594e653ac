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

The output layer is named (a module path, a regex or a predicate over the
'/'-joined parameter paths) or found from the model itself: `find_output_layer`
records, with `flax.linen.intercept_methods`, the order in which the model's
forward pass enters its modules, and takes the last one that owns parameters.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Union

import flax.linen as nn
import jax
import optax

# A layer: a module path ('head', 'block/head'), a regex (str or re.Pattern),
# a predicate on a leaf's '/'-joined path, or None (see `clip_output_layer`).
LayerSelector = Union[str, "re.Pattern[str]", Callable[[str], bool], None]

_REGEX_CHARS = set(".*+?[](){}|^$\\")


def _top_level(tree: Any) -> Any:
  """The dict of top-level modules: `tree` or, for {'params': ...}, its value."""
  if hasattr(tree, "keys") and set(tree.keys()) == {"params"}:
    return tree["params"]
  return tree


def _key_name(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def param_paths(tree: Any) -> list[str]:
  """The '/'-joined path of every leaf of `tree` (e.g. 'block/head/kernel'), in leaf order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return ["/".join(_key_name(k) for k in path) for path, _ in flat]


def _modules(paths: list[str]) -> list[str]:
  """Every module path that holds a leaf (all proper prefixes), in first-seen order."""
  out: dict[str, None] = {}
  for p in paths:
    parts = p.split("/")
    for i in range(1, len(parts)):
      out["/".join(parts[:i])] = None
  return list(out)


def _listing(names: list[str], limit: int = 12) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _under(path: str, module: str) -> bool:
  return path == module or path.startswith(module + "/")


def _regex_hits(paths: list[str], pattern: "re.Pattern[str]") -> list[bool]:
  """Leaf i is selected when `pattern` fully matches its path or one of its module prefixes."""
  def hit(p):
    parts = p.split("/")
    return any(pattern.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1))
  return [hit(p) for p in paths]


def _select(paths: list[str], layer: LayerSelector) -> list[bool]:
  """Which leaves `layer` selects; raises a one-line ValueError when none."""
  modules = _modules(paths)
  hint = ("name the output layer by its path (layer='block/head'), a regex (layer=r'.*/head'), "
          "a predicate on the '/'-joined param path, or pass model= and sample_input= to find it")
  if layer is None:
    if "output" in modules and "/" not in "output":
      return [_under(p, "output") for p in paths]
    raise ValueError(
        f"clip_output_layer: no layer given and no top-level module 'output' in the params "
        f"(modules: {_listing(modules)}); {hint}")
  if callable(layer) and not isinstance(layer, (str, re.Pattern)):
    hits = [bool(layer(p)) for p in paths]
    what = f"predicate {getattr(layer, '__name__', layer)!r}"
  elif isinstance(layer, re.Pattern):
    hits, what = _regex_hits(paths, layer), f"regex {layer.pattern!r}"
  elif isinstance(layer, str):
    name = layer.strip("/")
    if name in modules or name in paths:
      return [_under(p, name) for p in paths]
    ends = [m for m in modules if m.endswith("/" + name)]
    if len(ends) == 1:
      return [_under(p, ends[0]) for p in paths]
    if len(ends) > 1:
      raise ValueError(f"clip_output_layer(layer={layer!r}) is ambiguous: modules {_listing(ends)}; "
                       f"give the full path")
    if not set(name) & _REGEX_CHARS:
      raise ValueError(f"clip_output_layer: no module {layer!r} in the params "
                       f"(modules: {_listing(modules)}); {hint}")
    hits, what = _regex_hits(paths, re.compile(name)), f"regex {layer!r}"
  else:
    raise ValueError(f"clip_output_layer layer must be a str, re.Pattern, predicate or None, "
                     f"got {type(layer).__name__}")
  if not any(hits):
    raise ValueError(f"clip_output_layer: the {what} selects no parameter "
                     f"(param paths: {_listing(paths)}); {hint}")
  return hits


def output_layer_mask(tree: Any, layer: LayerSelector = "output") -> Any:
  """Boolean pytree like `tree`: True on every leaf of the output layer `layer`.

  `layer` as in `clip_output_layer` (a module path, a regex, a predicate; None:
  the top-level module 'output'). Accepts a flax params dict ({module: {...}})
  or a variables dict ({'params': {module: {...}}}).

  Raises:
    ValueError (one line): `layer` selects nothing; the message lists the
      module paths and says how to name a layer.
  """
  top = _top_level(tree)
  leaves, treedef = jax.tree.flatten(top)
  if not leaves:
    raise ValueError(f"clip_output_layer needs a tree of parameters, got {type(tree).__name__}")
  mask = jax.tree.unflatten(treedef, _select(param_paths(top), layer))
  return {"params": mask} if top is not tree else mask


def find_output_layer(model: nn.Module, *args, **kwargs) -> str:
  """The path of the last parametrized layer `model` applies in its forward pass.

  Traces ``model.init`` on the given inputs (abstractly, `jax.eval_shape`: no
  FLOPs, no parameters materialized) under `flax.linen.intercept_methods`,
  which records each module method call in the order the forward pass enters
  them; the result is the last entered module that owns parameters directly
  (e.g. 'block/head' for a `head` Dense inside a submodule `block`) — found
  from the computation, not guessed from names.

  Args:
    model: a `flax.linen.Module`.
    *args, **kwargs: what ``model.apply`` takes (e.g. a sample batch).

  Raises:
    ValueError (one line): the model creates no parameters.
  """
  entered: list[tuple[str, ...]] = []

  def record(next_fun, a, kw, context):
    entered.append(tuple(str(p) for p in context.module.path))
    return next_fun(*a, **kw)

  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: model.init(rngs, *args, **kwargs))
  paths = param_paths(variables.get("params", {}))
  owners = {tuple(p.split("/")[:-1]) for p in paths}
  for path in reversed(entered):
    if path in owners:
      return "/".join(path)
  raise ValueError(f"find_output_layer: {type(model).__name__} creates no parameters "
                   f"in its forward pass (params: {_listing(paths)})")


def clip_output_layer(max_norm: float = 1.0, layer: LayerSelector = None, *,
                      model: nn.Module | None = None,
                      sample_input: Any = None) -> optax.GradientTransformation:
  """Clips the joint ℓ₂ norm of the output layer's gradient (Ramaswamy et al. 2023).

  g_out ← g_out / max(1, ‖g_out‖₂ / max_norm), where g_out collects every leaf
  of the output layer (kernel and bias together, one joint norm); all other
  leaves are returned unchanged, bit for bit. Stateless; works under
  `jax.jit` and `jax.vmap` (under vmap over seeds each seed gets its own norm).

  The output layer is, in this order:

  - `layer` given: a module path — top-level ('head'), nested ('block/head'),
    or the unique module whose path ends with it ('head' for 'block/head');
    a regex (a `re.Pattern`, or a str that is no module path) fully matching
    a leaf's '/'-joined path or one of its module prefixes (r'.*/head');
    or a predicate ``f(path: str) -> bool`` on each leaf's path.
  - `model` and `sample_input` given: the last parametrized layer the model
    applies (`find_output_layer`), found once here.
  - neither: the top-level module 'output' (this project's models).

  Args:
    max_norm: the largest allowed norm, > 0.
    layer: the output layer, as above.
    model: a Flax module, to find the output layer from its forward pass.
    sample_input: an input for ``model.apply`` (only shapes are used).

  Raises:
    ValueError (one line): ``max_norm <= 0``; `model` without `sample_input`;
      or, at init/update, a `layer` that selects no parameter (the message
      lists the module paths and how to name a layer).
  """
  try:
    ok = float(max_norm) > 0.0
  except TypeError as e:
    raise ValueError(f"clip_output_layer max_norm must be a number > 0, got {max_norm!r}") from e
  if not ok:
    raise ValueError(f"clip_output_layer max_norm must be > 0, got {max_norm}")
  if layer is None and model is not None:
    if sample_input is None:
      raise ValueError("clip_output_layer(model=...) needs sample_input= (an input for model.apply) "
                       "to find the output layer")
    layer = find_output_layer(model, sample_input)
  # optax.masked hides the unmasked leaves (MaskedNode, no leaves), so the
  # global norm inside clip_by_global_norm is the output layer's joint norm.
  return optax.masked(optax.clip_by_global_norm(float(max_norm)),
                      lambda tree: output_layer_mask(tree, layer))
