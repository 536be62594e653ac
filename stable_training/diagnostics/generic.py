"""Per-layer diagnostics for ANY flax.linen model, with no taps in the model (Glorot & Bengio 2010).

init2winit's model debugger reads per-layer statistics from a model's own
``sow`` taps; `compute_diagnostics` reads this project's ``perturb``/``sow``
taps. Here nothing is asked of the model: its layer calls are found and
instrumented from outside with `flax.linen.intercept_methods`.

Layers. Every ``__call__`` of a submodule whose first positional argument is
an array is a module call (RNN cells, called inside `nn.RNN`'s scan with a
carry, are not). The *layers* are the module calls at the shallowest module
depth ≥ 1 that has at least two of them, in call order: C_0, …, C_K (for a
plain stack of ``nn.Dense`` + ``jnp.tanh``: every Dense, C_K the head; for a
stack of ``nn.RNN(nn.LSTMCell)``: every RNN, then the head). With z_k the
output of C_k and s_k its input, the *hidden states* are s_1 … s_K: the
activations a_l = φ(z_{l−1}) of the paper when φ is applied between the
calls, or the block outputs when a layer contains its own nonlinearity. The
*layer maps* are s_k ↦ s_{k+1}, k = 1..K−1, and J_k = ∂s_{k+1}/∂s_k their
Jacobians (Glorot & Bengio §4.2.3).

How each quantity is measured (all in one jitted, vmappable function):

* activations s_k and pre-activations z_k: recorded by the interceptor in one
  forward pass;
* back-propagated gradients ∂L/∂s_k and ∂L/∂z_k: the interceptor adds a zero
  perturbation ε_k to each layer's input and δ_k to its output, and one
  ``jax.grad`` w.r.t. (θ, ε, δ) gives ∂L/∂θ, ∂L/∂s_k = ∂L/∂ε_k and
  ∂L/∂z_k = ∂L/∂δ_k in the same backward pass;
* J_k at one example x: the interceptor *replaces* C_k's input by a free
  variable u and reads C_{k+1}'s input, so u ↦ s_{k+1}(u) is the layer map;
  its singular values come from `jacobian_singular_values` (exact SVD for
  small widths, power iteration otherwise). The layer index is a traced
  integer (a ``where`` at each call), so all layers of one shape are one
  vmapped program: compile time does not grow with depth;
* the end-to-end product J_{K−1}⋯J_1 = ∂s_K/∂s_1 the same way (replace at
  C_1, read at C_K), and ∂logits/∂x.

Sequence layers (hidden states [B, T, H], e.g. ``nn.RNN``): per time step,
‖∂L/∂s_k[:, t]‖ and the singular values of the diagonal blocks
∂s_{k+1,t}/∂s_{k,t} of the layer Jacobian (the depth transition at step t,
Herranz-Celotti & Rouat's M_depth).

Saturation of bounded activations (Glorot & Bengio Fig. 2): with
``bounds='auto'`` the activation between C_{k−1} and C_k is identified
numerically (s_k = φ(z_{k−1}) for φ ∈ tanh, sigmoid, softsign)
and, for recurrent layers whose cell output is tanh-bounded (LSTM, GRU,
tanh SimpleCell), the bounds (−1, 1) are used; otherwise NaN.

Limits: the replacement measures ∂s_{k+1}/∂s_k along the path through
C_k only, so for a model whose states skip layers (residual additions in the
parent) J_k is that path's Jacobian, not the full one; a stack inside one
``nn.scan`` is one layer (use `compute_diagnostics` with the project's taps
for scanned stacks).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training.diagnostics.jacobian import jacobian_singular_values
from stable_training.diagnostics.monitor import histogram, saturation_fraction

PERCENTILES = (2.0, 16.0, 50.0, 84.0, 98.0)
PERCENTILE_KEYS = ("act_p02", "act_p16", "act_p50", "act_p84", "act_p98")
# Elementwise functions recognised between two layer calls, and their bounds (None: unbounded).
CANDIDATES: tuple[tuple[str, Callable, tuple[float, float] | None], ...] = (
    ("tanh", jnp.tanh, (-1.0, 1.0)),
    ("sigmoid", jax.nn.sigmoid, (0.0, 1.0)),
    ("softsign", jax.nn.soft_sign, (-1.0, 1.0)),
    ("relu", jax.nn.relu, None),
    ("gelu", jax.nn.gelu, None),
    ("identity", lambda z: z, None),
)
CANDIDATE_NAMES = tuple(c[0] for c in CANDIDATES)
_TANH_CELLS = ("LSTMCell", "OptimizedLSTMCell", "GRUCell", "MGUCell", "SimpleCell")
# Per-time-step block Jacobians are computed when T·H of a layer is at most this.
MAX_TIME_BLOCK = 2048


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """One layer call C_k: its module path, type, input/output shapes and the params it uses."""
  index: int
  path: tuple[str, ...]
  type: str
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...] | None
  param_paths: tuple[tuple[str, ...], ...]
  cell: str | None = None

  @property
  def name(self) -> str:
    return "/".join(self.path)


def _is_array(a) -> bool:
  return isinstance(a, (jax.Array, np.ndarray))


def _is_layer_call(ctx, args, level) -> bool:
  m = ctx.module
  return (ctx.method_name == "__call__" and len(m.path) == level and bool(args) and _is_array(args[0])
          and not isinstance(m, nn.RNNCellBase))


def find_layers(model: nn.Module, params: Any, x: jax.Array, *, apply_kwargs: dict | None = None,
                level: int | None = None) -> tuple[int, list[LayerCall]]:
  """(level, layer calls) of `model` on inputs like `x`, traced abstractly (`jax.eval_shape`).

  `level`: the module depth of the layers (None: the shallowest depth ≥ 1
  with at least two qualifying calls). Each layer's `param_paths` are the
  modules called while it runs (e.g. an ``nn.RNN``'s cell, which flax may
  name as the RNN's sibling).

  Raises:
    ValueError: the model calls fewer than two submodules with an array input.
  """
  calls: list[dict] = []
  stack: list[dict] = []

  def icpt(next_fun, args, kwargs, ctx):
    m = ctx.module
    qualifies = ctx.method_name == "__call__" and len(m.path) >= 1 and bool(args) and _is_array(args[0]) \
        and not isinstance(m, nn.RNNCellBase)
    for rec in stack:  # every module called inside an active call belongs to it
      rec["nested"].add(tuple(m.path))
    if not qualifies:
      return next_fun(*args, **kwargs)
    cell = getattr(m, "cell", None)
    rec = {"path": tuple(m.path), "type": type(m).__name__, "in_shape": tuple(args[0].shape),
           "nested": {tuple(m.path)}, "cell": type(cell).__name__ if cell is not None else None}
    calls.append(rec)
    stack.append(rec)
    try:
      out = next_fun(*args, **kwargs)
    finally:
      stack.pop()
    rec["out_shape"] = tuple(out.shape) if _is_array(out) else None
    return out

  with nn.intercept_methods(icpt):
    jax.eval_shape(lambda p, x: model.apply({"params": p}, x, **(apply_kwargs or {})), params, x)
  depths = sorted({len(c["path"]) for c in calls})
  if level is None:
    level = next((d for d in depths if sum(len(c["path"]) == d for c in calls) >= 2), None)
  chosen = [c for c in calls if len(c["path"]) == level] if level is not None else []
  if len(chosen) < 2:
    raise ValueError(f"{type(model).__name__}: found {len(chosen)} layer call(s) at module depth {level}; "
                     "generic diagnostics need at least two submodule calls with an array input")
  layers = [LayerCall(i, c["path"], c["type"], c["in_shape"], c.get("out_shape"),
                      tuple(sorted(c["nested"])), c["cell"]) for i, c in enumerate(chosen)]
  return level, layers


def instrumented_apply(model: nn.Module, params: Any, x: jax.Array, level: int, *,
                       in_eps: Sequence | None = None, out_eps: Sequence | None = None,
                       replace: tuple[Any, jax.Array] | None = None, apply_kwargs: dict | None = None):
  """``model.apply`` with every layer call C_k instrumented (see the module docstring).

  in_eps / out_eps: per-layer additive perturbations of C_k's input / output
  (None entries: none). replace: (k, u): C_k's input becomes u (k may be a
  traced integer: a ``where`` at every call whose input has u's shape).

  Returns:
    (model output, [s_k inputs], [z_k outputs or None]).
  """
  ins, outs = [], []

  def icpt(next_fun, args, kwargs, ctx):
    if not _is_layer_call(ctx, args, level):
      return next_fun(*args, **kwargs)
    k = len(ins)
    inp = args[0]
    if replace is not None and replace[1].shape == inp.shape:
      inp = jnp.where(replace[0] == k, replace[1], inp)
    if in_eps is not None and in_eps[k] is not None:
      inp = inp + in_eps[k]
    ins.append(inp)
    out = next_fun(inp, *args[1:], **kwargs)
    if _is_array(out) and out_eps is not None and out_eps[k] is not None:
      out = out + out_eps[k]
    outs.append(out if _is_array(out) else None)
    return out

  with nn.intercept_methods(icpt):
    y = model.apply({"params": params}, x, **(apply_kwargs or {}))
  return y, ins, outs


def _subtree(tree, path):
  for p in path:
    if not hasattr(tree, "keys") or p not in tree:
      return None
    tree = tree[p]
  return tree


def _layer_param_norms(g_params, layers: list[LayerCall]) -> tuple[jax.Array, jax.Array]:
  """(‖∂L/∂θ‖ per layer, Var[∂L/∂kernel] per layer) over the params each layer call uses."""
  norms, kvars = [], []
  for lc in layers:
    leaves, kernels = [], []
    paths = [p for p in lc.param_paths if not any(q != p and p[:len(q)] == q for q in lc.param_paths)]
    for p in paths:
      sub = _subtree(g_params, p)
      if sub is None:
        continue
      leaves += jax.tree.leaves(sub)
      if hasattr(sub, "keys") and "kernel" in sub:
        kernels.append(jnp.ravel(sub["kernel"]))
    norms.append(jnp.sqrt(sum(jnp.sum(jnp.square(l)) for l in leaves)) if leaves else jnp.float32(jnp.nan))
    kvars.append(jnp.var(jnp.concatenate(kernels)) if kernels else jnp.float32(jnp.nan))
  return jnp.stack(norms).astype(jnp.float32), jnp.stack(kvars).astype(jnp.float32)


def _activation_index(z, s) -> jax.Array:
  """Index into `CANDIDATES` of the first φ with s = φ(z) (to 1e-5), −1 if none (traceable)."""
  if z is None or z.shape != s.shape:
    return jnp.int32(-1)
  idx = jnp.int32(-1)
  scale = jnp.maximum(1.0, jnp.max(jnp.abs(s)))
  for i in reversed(range(len(CANDIDATES))):
    ok = jnp.max(jnp.abs(s - CANDIDATES[i][1](z))) <= 1e-5 * scale
    idx = jnp.where(ok, i, idx)
  return idx


def _per_layer_stats(s, z_prev, tanh_cell, bounds, threshold):
  a = s.reshape(-1)
  p = jnp.percentile(a, jnp.asarray(PERCENTILES))
  idx = _activation_index(z_prev, s)
  if bounds is None:
    sat = jnp.float32(jnp.nan)
  elif bounds == "auto":
    sat = jnp.where(tanh_cell, saturation_fraction(a, (-1.0, 1.0), threshold), jnp.nan).astype(jnp.float32)
    for i, (_, _, b) in enumerate(CANDIDATES):
      if b is not None:
        sat = jnp.where(idx == i, saturation_fraction(a, (b[0], b[1]), threshold), sat)
  else:
    sat = saturation_fraction(a, (float(bounds[0]), float(bounds[1])), threshold)
  return {"act_mean": jnp.mean(a), "act_std": jnp.std(a), **{k: p[i] for i, k in enumerate(PERCENTILE_KEYS)},
          "act_saturation": sat.astype(jnp.float32), "act_kind": idx}


def _grouped(fn, n, *per_layer):
  """fn over layers 0..n−1 (its args: the i-th entry of each list), vmapped within runs of equal shapes.

  Consecutive layers whose arguments have the same shapes (None: absent) are
  stacked and mapped by one `jax.vmap`, so compile time grows with the number
  of distinct shapes, not with depth. Returns fn's dict stacked over layers.
  """
  sig = lambda i: tuple(None if a[i] is None else jnp.shape(a[i]) for a in per_layer)
  runs, start = [], 0
  for i in range(1, n + 1):
    if i == n or sig(i) != sig(start):
      runs.append((start, i))
      start = i
  parts = []
  for a, b in runs:
    args = [None if lst[a] is None else jnp.stack([jnp.asarray(v) for v in lst[a:b]]) for lst in per_layer]
    axes = [None if v is None else 0 for v in args]
    parts.append(jax.vmap(fn, in_axes=axes)(*args))
  keys = set.intersection(*[set(p) for p in parts])
  return {k: jnp.concatenate([p[k] for p in parts], axis=0) for k in keys}


def _pad(sv: jax.Array, k: int) -> jax.Array:
  pad = k - sv.shape[-1]
  return sv if pad == 0 else jnp.concatenate([sv, jnp.full(sv.shape[:-1] + (pad,), jnp.nan, sv.dtype)], -1)


def _sv_stats(name: str, sv: jax.Array) -> dict:
  """Mean/max/min σ, mean log σ and mean |log σ| (σ floored at 1e-30) over the last axis (NaN = padding)."""
  logsv = jnp.log(jnp.maximum(sv, 1e-30))
  return {name: sv, f"{name}_mean": jnp.nanmean(sv, -1), f"{name}_max": jnp.nanmax(sv, -1),
          f"{name}_min": jnp.nanmin(sv, -1), f"{name}_logmean": jnp.nanmean(logsv, -1),
          f"{name}_abslogmean": jnp.nanmean(jnp.abs(logsv), -1)}


def generic_diagnostics(model: nn.Module, params: Any, batch_x: jax.Array, batch_y: jax.Array,
                        loss_fn: Callable[[jax.Array, jax.Array], jax.Array], *,
                        bounds: str | tuple[float, float] | None = "auto", num_bins: int = 50,
                        num_jacobian_examples: int = 4, jacobian_method: str = "auto", num_iters: int = 100,
                        saturation_threshold: float = 0.1, key: jax.Array | None = None,
                        level: int | None = None, apply_kwargs: dict | None = None) -> dict[str, jax.Array]:
  """Glorot & Bengio (2010) per-layer diagnostics of any flax model, no taps (traceable; see module doc).

  With layer calls C_0..C_K, hidden states s_1..s_K (C_k's inputs),
  pre-activations z_0..z_{K−1} (C_k's outputs), L = loss_fn(model(x), y):

  * ``act_mean``, ``act_std``, ``act_p02`` … ``act_p98``, ``act_saturation``,
    ``act_kind`` (index into `CANDIDATE_NAMES` of φ with s_k = φ(z_{k−1}),
    −1 unknown) [K]; ``act_hist`` [K, num_bins] over ``act_hist_range``;
  * ``grad_std`` [K]: std of ∂L/∂z_k, k = 0..K−1 (the paper's back-propagated
    gradients, Fig. 7), ``grad_hist``/``grad_hist_range``;
  * ``state_grad_norm`` [K]: ‖∂L/∂s_k‖ (Frobenius over the batch), and for
    sequence states ``state_grad_norm_t`` [K, T] per time step;
  * ``param_grad_norm``, ``weight_grad_var`` [K+1]: ‖∂L/∂θ‖ and Var[∂L/∂W]
    over the params each layer call uses;
  * ``layer_jac_sv`` [K−1, k] (NaN-padded to the widest layer, averaged over
    the first `num_jacobian_examples` examples) with ``_mean``, ``_max``,
    ``_min``, ``_logmean`` (mean log σ), ``_abslogmean`` (mean |log σ|)
    [K−1]: J_k = ∂s_{k+1}/∂s_k; for sequence states also
    ``layer_jac_sv_t`` [K−1, T, k] (per-step diagonal blocks; NaN where
    s_k or s_{k+1} is not a sequence);
  * ``hidden_jac_sv`` [k] (+ the same summaries, scalars): ∂s_K/∂s_1, the
    end-to-end product of the layer Jacobians;
  * ``e2e_jac_sv`` [k] (+ summaries): ∂output/∂x;
  * ``loss``.

  Args:
    model, params: any flax.linen model and its ``params`` collection.
    batch_x, batch_y, loss_fn: one batch and ``loss_fn(output, y) -> scalar``.
    bounds: ``'auto'`` (identify φ per layer), (lo, hi) for every layer, or
      None (no saturation).
    num_jacobian_examples: examples the spectra are averaged over (0: none).
    jacobian_method, num_iters, key: see `jacobian_singular_values`.
    level: module depth of the layers (None: automatic, see `find_layers`).
    apply_kwargs: extra keyword arguments of ``model.apply`` (hashable values).
  """
  level, layers = find_layers(model, params, batch_x, apply_kwargs=apply_kwargs, level=level)
  kw = dict(apply_kwargs=apply_kwargs)
  loss, ins, outs, g_p, g_in, g_out = _instrumented_grads(model, params, batch_x, batch_y, loss_fn, level,
                                                          layers, kw)
  out: dict[str, jax.Array] = {"loss": loss}
  out.update(_state_stats(layers, ins, outs, g_in, g_out, bounds, num_bins, saturation_threshold))
  out["param_grad_norm"], out["weight_grad_var"] = _layer_param_norms(g_p, layers)

  ne = min(int(num_jacobian_examples), batch_x.shape[0])
  if ne > 0:
    key = jax.random.PRNGKey(0) if key is None else key
    sv_kw = dict(method=jacobian_method, num_iters=num_iters, key=key)
    xs = batch_x[:ne]
    out.update(_layer_jacobians(model, params, xs, level, layers, ins, sv_kw, kw))
    e2e = jax.vmap(lambda x: jacobian_singular_values(
        lambda u: model.apply({"params": params}, u[None], **(apply_kwargs or {}))[0], x, **sv_kw))(xs)
    out.update(_sv_stats("e2e_jac_sv", e2e.mean(0)))
  return out


def _instrumented_grads(model, params, batch_x, batch_y, loss_fn, level, layers, kw):
  """(L, [s_k], [z_k], ∂L/∂θ, [∂L/∂s_k], [∂L/∂z_k]) from one forward and one backward pass.

  The layers' inputs and outputs get zero perturbations ε_k, δ_k; the
  gradients w.r.t. them are ∂L/∂s_k and ∂L/∂z_k (None for a non-array output).
  """
  in_eps = [jnp.zeros(lc.in_shape, batch_x.dtype) for lc in layers]
  out_eps = [jnp.zeros(lc.out_shape, batch_x.dtype) if lc.out_shape is not None else None for lc in layers]

  def objective(p, ie, oe):
    y, ins, outs = instrumented_apply(model, p, batch_x, level, in_eps=ie, out_eps=oe, **kw)
    return loss_fn(y, batch_y), (ins, outs)

  (loss, (ins, outs)), (g_p, g_in, g_out) = jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True)(
      params, in_eps, out_eps)
  return loss, ins, outs, g_p, g_in, g_out


def _state_stats(layers, ins, outs, g_in, g_out, bounds, num_bins, saturation_threshold) -> dict:
  """Per hidden state s_k (k = 1..K): activation statistics, histograms, gradient std / norms (see
  `generic_diagnostics`), plus ``state_grad_norm_t`` for sequence states and the histogram ranges."""
  K = len(layers) - 1
  states, gs = ins[1:K + 1], g_in[1:K + 1]
  zs = [outs[k] if outs[k] is not None and outs[k].shape == ins[k + 1].shape else None for k in range(K)]
  gz = [g_out[k] if g_out[k] is not None else jnp.full(ins[k + 1].shape, jnp.nan) for k in range(K)]
  cells = tuple(layers[k].cell in _TANH_CELLS for k in range(K))
  lo = jnp.min(jnp.stack([jnp.min(s) for s in states]))
  hi = jnp.max(jnp.stack([jnp.max(s) for s in states]))
  g_max = jnp.maximum(jnp.max(jnp.stack([jnp.nanmax(jnp.abs(g)) for g in gz])), 1e-30)

  def one(s, z, g_s, g_z, tanh_cell):  # per-layer statistics, vmapped over layers of one shape
    st = _per_layer_stats(s, z, tanh_cell, bounds, saturation_threshold)
    st["act_hist"] = histogram(s, lo, hi, num_bins)
    st["grad_std"] = jnp.std(g_z).astype(jnp.float32)
    st["grad_hist"] = histogram(g_z, -g_max, g_max, num_bins)
    st["state_grad_norm"] = jnp.linalg.norm(g_s.reshape(-1))
    st["state_grad_std"] = jnp.std(g_s)
    return st
  out = _grouped(one, K, states, zs, gs, gz, cells)
  seq_t = next((g.shape[1] for g in gs if g.ndim == 3), None)
  if seq_t is not None:  # per time step for sequence states [B, T, H]; NaN rows for the others
    out["state_grad_norm_t"] = jnp.stack([
        jnp.sqrt(jnp.sum(jnp.square(g), axis=(0, 2))) if g.ndim == 3 and g.shape[1] == seq_t
        else jnp.full((seq_t,), jnp.nan, g.dtype) for g in gs])
  out["act_hist_range"] = jnp.stack([lo, hi]).astype(jnp.float32)
  out["grad_hist_range"] = jnp.stack([-g_max, g_max]).astype(jnp.float32)
  return out


def _layer_jacobians(model, params, xs, level, layers, ins, sv_kw, kw) -> dict:
  """J_k = ∂s_{k+1}/∂s_k (k = 1..K−1) and ∂s_K/∂s_1 at each example of xs, by input replacement."""
  K = len(layers) - 1
  ne = xs.shape[0]
  out = {}
  pairs = list(range(1, K))
  if not pairs:
    return out
  groups: dict[tuple, list[int]] = {}
  for k in pairs:
    groups.setdefault((layers[k].in_shape, layers[k + 1].in_shape), []).append(k)
  per_k, per_k_t = {}, {}
  for (_, _), ks in groups.items():
    ks_arr = jnp.asarray(ks, jnp.int32)

    def f(pos, u, xe, ks=ks, ks_arr=ks_arr):  # u: one example's s_k (no batch axis)
      _, s, _ = instrumented_apply(model, params, xe[None], level, replace=(ks_arr[pos], u[None]), **kw)
      return jnp.stack([s[k + 1] for k in ks])[pos][0]

    u0 = jnp.stack([ins[k][:ne] for k in ks])  # [G, E, ...]
    pos = jnp.arange(len(ks))
    sv = jax.vmap(jax.vmap(lambda p, u, xe: jacobian_singular_values(lambda v: f(p, v, xe), u, **sv_kw),
                           in_axes=(0, 0, None)), in_axes=(None, 1, 0))(pos, u0, xs)  # [E, G, k]
    for i, k in enumerate(ks):
      per_k[k] = sv[:, i].mean(0)
    shp_in, shp_out = layers[ks[0]].in_shape, layers[ks[0] + 1].in_shape
    if (len(shp_in) == 3 and len(shp_out) == 3 and shp_in[1] == shp_out[1]
            and shp_in[1] * max(shp_in[2], shp_out[2]) <= MAX_TIME_BLOCK):
      def blocks(p, u, xe, f=f):
        jac = jax.jacfwd(lambda v: f(p, v, xe))(u)                       # [T, H', T, H]
        diag = jnp.moveaxis(jnp.diagonal(jac, axis1=0, axis2=2), -1, 0)  # [T, H', H]
        return jnp.linalg.svd(diag, compute_uv=False)                    # [T, k]
      svt = jax.vmap(jax.vmap(blocks, in_axes=(0, 0, None)), in_axes=(None, 1, 0))(pos, u0, xs)
      for i, k in enumerate(ks):
        per_k_t[k] = svt[:, i].mean(0)
  kmax = max(v.shape[-1] for v in per_k.values())
  out.update(_sv_stats("layer_jac_sv", jnp.stack([_pad(per_k[k], kmax) for k in pairs])))
  if per_k_t and len({v.shape[0] for v in per_k_t.values()}) == 1:  # NaN for non-sequence pairs
    kt = max(v.shape[-1] for v in per_k_t.values())
    t = next(iter(per_k_t.values())).shape[0]
    out["layer_jac_sv_t"] = jnp.stack([_pad(per_k_t[k], kt) if k in per_k_t else jnp.full((t, kt), jnp.nan)
                                       for k in pairs])
  if layers[1].in_shape[1:] and K >= 2:
    def e2e(u, xe):
      _, s, _ = instrumented_apply(model, params, xe[None], level, replace=(1, u[None]), **kw)
      return s[K][0]
    hsv = jax.vmap(lambda u, xe: jacobian_singular_values(lambda v: e2e(v, xe), u, **sv_kw))(ins[1][:ne], xs)
    out.update(_sv_stats("hidden_jac_sv", hsv.mean(0)))
  return out


@functools.partial(jax.jit, static_argnums=(0, 4), static_argnames=(
    "bounds", "num_bins", "num_jacobian_examples", "jacobian_method", "num_iters", "saturation_threshold",
    "level"))
def generic_diagnostics_jit(model, params, batch_x, batch_y, loss_fn, *, bounds="auto", num_bins=50,
                            num_jacobian_examples=4, jacobian_method="auto", num_iters=100,
                            saturation_threshold=0.1, key=None, level=None):
  """`generic_diagnostics` compiled once per (model, loss_fn, options, shapes)."""
  return generic_diagnostics(model, params, batch_x, batch_y, loss_fn, bounds=bounds, num_bins=num_bins,
                             num_jacobian_examples=num_jacobian_examples, jacobian_method=jacobian_method,
                             num_iters=num_iters, saturation_threshold=saturation_threshold, key=key,
                             level=level)


def layer_names(model: nn.Module, params: Any, x: jax.Array, **kw) -> list[str]:
  """Names (module paths) of the layer calls C_0..C_K that `generic_diagnostics` uses."""
  return [lc.name for lc in find_layers(model, params, x, **kw)[1]]
