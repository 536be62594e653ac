"""Per-layer monitoring of activations, gradients and Jacobians (Glorot & Bengio 2010).

Glorot & Bengio, "Understanding the difficulty of training deep feedforward
neural networks" (AISTATS 2010) diagnose deep nets by watching, per hidden
layer: the distribution of activations over training (mean / std /
percentiles; Fig. 2–4: sigmoid top-layer saturation), normalized histograms
of activations and of back-propagated gradients ∂L/∂s at one time (Fig. 6–7),
the variance of weight gradients per layer, and the singular values of the
layer Jacobians J_l = ∂h_{l+1}/∂h_l (§4.2.3: mean ≈0.5 standard init vs ≈0.8
normalized init). `compute_diagnostics` measures all of them in one pure,
jittable, seed-vmappable function; `DiagnosticsWriter` stores them.

How it reads a model (no model is re-written): every hidden layer of this
project calls ``self.perturb('preact', z)`` and
``self.sow('intermediates', 'act', a)``. One ``model.apply`` with
``mutable=['intermediates']`` returns the activations a_l, and the gradient of
the loss w.r.t. the zero ``perturbations`` collection is exactly ∂L/∂z_l
(the gradient w.r.t. the pre-activations), obtained in the same backward
pass as ∂L/∂θ. Layers are ordered ``input`` first, ``output`` last, other
modules by natural sort of their names; taps under a module named ``hidden``
(the `nn.scan` stack of `scan_layers`) are split along their leading axis,
one layer each. Per-layer Jacobians need the layer map: built in for
`DeepMLP`'s layout (``hidden/layer/dense``); any other model can expose it by
defining a plain method ``diagnostic_layer_maps(self, params) -> (layer_fn,
layer_params)`` with ``layer_fn(θ_l, h_l) = h_{l+1}`` for one example and
``layer_params`` stacked over l = 0..L−2; otherwise the ``layer_jac_*`` keys
are absent.

Engine integration (what ``stable_training.train`` does)::

    from stable_training import diagnostics
    writer = diagnostics.DiagnosticsWriter(workdir)
    writer.truncate(start_step)          # on resume: drop records past the checkpoint
    # step 0 (the initialization, before the first update; only when the run
    # starts from scratch), then every `diagnostics.every` steps:
    if config.diagnostics.enabled and step % config.diagnostics.every == 0:
      stats = diagnostics.compute_diagnostics(
          model, params, x, y, cross_entropy,            # loss_fn(logits, y)
          activation_name=config.model.activation)
      writer.write(step, jax.device_get(stats), seed=seed)

`compute_diagnostics` is itself ``jax.jit``-compiled (model, loss_fn and the
keyword options are static), so repeated calls reuse one executable, and it
composes with ``jax.vmap`` over params with a leading seed axis::

    jax.vmap(lambda p: compute_diagnostics(model, p, x, y, loss_fn,
                                           activation_name="tanh"))(params)

With ``config.diagnostics.enabled = False`` the engine never calls it, so it
is never traced and costs nothing. Then ``python -m
stable_training.diagnostics.plot WORKDIR`` draws the paper's figures.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training import activations as acts
from stable_training.diagnostics.jacobian import (jacobian_singular_values,
                                                  jacobian_mean_singular_value,
                                                  layer_jacobian_singular_values, resolve_method)

# Percentiles of the activation distribution drawn in Glorot & Bengio Fig. 2–4
# (2/98: their "98 percentiles"; 16/84: ±1 std for a Gaussian), and their keys.
PERCENTILES = (2.0, 16.0, 50.0, 84.0, 98.0)
PERCENTILE_KEYS = ("act_p02", "act_p16", "act_p50", "act_p84", "act_p98")
JSONL_NAME = "diagnostics.jsonl"
NPZ_NAME = "diagnostics.npz"


# ----------------------------------------------------------------------------
# Reading per-layer taps from a collection tree.
# ----------------------------------------------------------------------------

def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _ordered_keys(tree: Mapping) -> list[str]:
  """`input` first, `output` last, the rest in natural order (layer_2 < layer_10)."""
  keys = sorted(tree.keys(), key=_natural_key)
  first = [k for k in keys if k == "input"]
  last = [k for k in keys if k == "output"]
  return first + [k for k in keys if k not in ("input", "output")] + last


def layer_blocks(tree: Mapping, leaf: str) -> list[jax.Array]:
  """The `leaf` taps of a collection tree, in layer order, as blocks [k, ...].

  A block holds k consecutive layers stacked on axis 0: k = 1 for a plain
  module, k = scan length for a leaf under a module named ``hidden``.
  Sow tuples are unwrapped (first value).
  """
  blocks: list[jax.Array] = []

  def walk(t, stacked):
    for k in _ordered_keys(t):
      v = t[k]
      if k == leaf and not isinstance(v, Mapping):
        v = v[0] if isinstance(v, tuple) else v
        blocks.append(v if stacked else v[None])
      elif isinstance(v, Mapping):
        walk(v, stacked or k == "hidden")
  walk(tree, False)
  return blocks


def _per_layer(fn: Callable, blocks: list[jax.Array]):
  """Applies fn to each layer (vmapped inside each block), stacked over layers."""
  outs = [jax.vmap(fn)(b) for b in blocks]
  return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *outs)


# ----------------------------------------------------------------------------
# Statistics.
# ----------------------------------------------------------------------------

def histogram(a: jax.Array, lo: jax.Array, hi: jax.Array, num_bins: int) -> jax.Array:
  """Counts of the finite entries of `a` in `num_bins` equal bins over [lo, hi].

  Values outside [lo, hi] go to the end bins, so the counts sum to the number of
  finite entries. Jittable (lo, hi may be traced).
  """
  a = a.reshape(-1)
  fin = jnp.isfinite(a)
  t = (jnp.where(fin, a, lo) - lo) / jnp.maximum(hi - lo, 1e-30) * num_bins
  idx = jnp.clip(jnp.floor(t), 0, num_bins - 1).astype(jnp.int32)
  return jnp.zeros((num_bins,), jnp.int32).at[idx].add(fin.astype(jnp.int32))


def saturation_fraction(a: jax.Array, bounds: tuple[float, float],
                        threshold: float = 0.1) -> jax.Array:
  """Fraction of units within `threshold` × half-range of a bound of the activation.

  With bounds (lo, hi) and r = (hi − lo)/2, a unit is saturated when
  min(a − lo, hi − a) ≤ threshold·r: for tanh/softsign |a| ≥ 0.9, for the
  sigmoid a ≤ 0.05 or a ≥ 0.95 (threshold 0.1). Glorot & Bengio (2010) track
  this saturation (Fig. 2: sigmoid top hidden layer driven to 0).
  """
  lo, hi = bounds
  tol = threshold * (hi - lo) / 2
  return jnp.mean(((a - lo) <= tol) | ((hi - a) <= tol))


def _finite_range(blocks: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
  lo = jnp.min(jnp.stack([jnp.min(jnp.where(jnp.isfinite(b), b, jnp.inf)) for b in blocks]))
  hi = jnp.max(jnp.stack([jnp.max(jnp.where(jnp.isfinite(b), b, -jnp.inf)) for b in blocks]))
  return lo, hi


def _dense_layer_maps(model: nn.Module, params: Mapping):
  """(layer_fn, stacked params) of DeepMLP-style hidden stacks, or None."""
  hook = getattr(model, "diagnostic_layer_maps", None)
  if callable(hook):
    return hook(params)
  layer = params.get("hidden", {}).get("layer") if isinstance(params, Mapping) else None
  if (layer is None or set(layer.keys()) != {"dense"}
      or not all(hasattr(model, a) for a in ("width", "activation", "kernel_init"))):
    return None
  from stable_training.models.mlp import DenseLayer  # the layer DeepMLP scans
  body = DenseLayer(model.width, model.activation, model.kernel_init)

  def layer_fn(p, h):
    return body.apply({"params": p}, h[None])[0]
  return layer_fn, layer


def _check_options(activation_name, num_bins, num_jacobian_examples, saturation_threshold):
  if activation_name is not None and activation_name not in acts.names():
    raise ValueError(f"unknown activation_name {activation_name!r}; valid: "
                     f"{', '.join(acts.names())} or None")
  if int(num_bins) < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}")
  if int(num_jacobian_examples) < 0:
    raise ValueError(f"num_jacobian_examples must be >= 0, got {num_jacobian_examples}")
  if not 0.0 < float(saturation_threshold) < 1.0:
    raise ValueError(f"saturation_threshold must be in (0, 1), got {saturation_threshold}")


@functools.partial(jax.jit, static_argnums=(0, 4), static_argnames=(
    "activation_name", "num_bins", "num_jacobian_examples", "jacobian_method", "num_iters",
    "saturation_threshold", "bounds"))
def compute_diagnostics(model: nn.Module, params: Any, batch_x: jax.Array, batch_y: jax.Array,
                        loss_fn: Callable[[jax.Array, jax.Array], jax.Array], *,
                        activation_name: str | None = None, num_bins: int = 50,
                        num_jacobian_examples: int = 4, jacobian_method: str = "auto",
                        num_iters: int = 100, saturation_threshold: float = 0.1,
                        bounds: tuple[float, float] | None = None,
                        key: jax.Array | None = None) -> dict[str, jax.Array]:
  """Glorot & Bengio (2010) per-layer diagnostics of `model` at `params` on one batch.

  With a_l the activations and z_l the pre-activations of hidden layer l
  (l = 0..L−1), L = loss_fn(model(x), y), all statistics over the batch and
  the units of a layer:

  * ``act_mean``, ``act_std`` [L]: mean and std of a_l.
  * ``act_p02``, ``act_p16``, ``act_p50``, ``act_p84``, ``act_p98`` [L]: the
    `PERCENTILES` (2nd/16th/50th/84th/98th) of a_l (paper Fig. 2–4).
  * ``act_saturation`` [L]: `saturation_fraction` of a_l for a bounded
    activation (bounds from ``activations.BOUNDS[activation_name]`` or
    `bounds`); NaN for unbounded ones.
  * ``act_hist`` [L, num_bins] int32 counts over the shared range
    ``act_hist_range`` [2] (the activation's bounds, else the batch min/max):
    each row sums to the number of finite entries of a_l (paper Fig. 6).
  * ``grad_std`` [L], ``grad_hist`` [L, num_bins] over the symmetric shared
    range ``grad_hist_range`` [2] = ±max_l |∂L/∂z_l|: the back-propagated
    gradients ∂L/∂z_l of the batch loss (paper Fig. 7).
  * ``weight_grad_var`` [K]: Var[∂L/∂W] of every ``kernel`` in layer order
    (``input``, hidden..., ``output`` last; K = L + 1 for DeepMLP).
  * ``layer_jac_sv`` [L−1, k]: singular values of J_l = ∂a_{l+1}/∂a_l at each of
    the first `num_jacobian_examples` examples, sorted and averaged over them
    (k = width for the exact method, else [σ_max, σ_min] by power iteration);
    ``layer_jac_sv_mean`` (from the spectrum if exact, else the matrix-free
    `jacobian_mean_singular_value` estimate), ``_max``, ``_min`` [L−1]
    (paper §4.2.3).
  * ``e2e_jac_sv`` [k], ``e2e_jac_sv_mean/_max/_min``: the same for the
    end-to-end Jacobian ∂logits/∂x.
  * ``loss``: L.

  A model without these taps (any user flax model: no ``perturbations``
  collection) is measured by `stable_training.diagnostics.generic.generic_diagnostics`
  instead, which intercepts its layer calls (same key names where they mean
  the same, plus ``state_grad_norm``, ``param_grad_norm``, ``hidden_jac_sv``;
  saturation bounds identified per layer unless given).

  Args:
    model: a flax.linen model whose hidden layers tap ``perturb('preact')`` and
      ``sow('intermediates', 'act')``, or any other flax model (see above).
    params: its ``params`` collection (one seed; vmap for several).
    batch_x, batch_y: one batch.
    loss_fn: ``loss_fn(logits, y) -> scalar``, e.g. the engine's cross_entropy.
    activation_name: registry name of the hidden activation (for saturation
      and histogram range), or None.
    num_bins: histogram bins.
    num_jacobian_examples: examples over which Jacobian spectra are averaged
      (0 skips all Jacobians).
    jacobian_method, num_iters, key: see `jacobian_singular_values`.
    saturation_threshold: see `saturation_fraction`.
    bounds: overrides the activation's (lo, hi) bounds (e.g. tGELU's range).

  Returns:
    dict of arrays as listed (jittable; vmappable over a leading seed axis of
    params).

  Raises:
    ValueError: for an unknown activation name or an out-of-range option.
  """
  _check_options(activation_name, num_bins, num_jacobian_examples, saturation_threshold)
  bounds = bounds if bounds is not None else acts.BOUNDS.get(activation_name)
  perts = _zero_perturbations(model, params, batch_x)
  if perts is None:  # a model without the project's taps: intercept its layers
    from stable_training.diagnostics import generic
    return generic.generic_diagnostics(
        model, params, batch_x, batch_y, loss_fn, bounds=bounds if bounds is not None else "auto",
        num_bins=num_bins, num_jacobian_examples=num_jacobian_examples, jacobian_method=jacobian_method,
        num_iters=num_iters, saturation_threshold=saturation_threshold, key=key)
  loss, a_blocks, g_blocks, g_params = _tapped_gradients(model, params, batch_x, batch_y, loss_fn, perts)
  out: dict[str, jax.Array] = {"loss": loss, **_activation_stats(a_blocks, bounds, num_bins, saturation_threshold),
                                **_gradient_stats(g_blocks, g_params, num_bins)}
  out.update(_jacobian_stats(model, params, batch_x, a_blocks, num_jacobian_examples, jacobian_method,
                             num_iters, key))
  return out


def _zero_perturbations(model: nn.Module, params: Any, batch_x: jax.Array):
  """Zeros shaped like `model`'s ``perturbations`` collection, or None when it has none.

  The shapes come from `jax.eval_shape` (traced only: no extra forward pass).
  """
  pert_shapes = jax.eval_shape(
      lambda: model.apply({"params": params}, batch_x, mutable=["perturbations"])[1])
  if not pert_shapes.get("perturbations"):
    return None
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pert_shapes)["perturbations"]


def _tapped_gradients(model, params, batch_x, batch_y, loss_fn, perts):
  """(L, activation blocks a_l, blocks of ∂L/∂z_l, ∂L/∂θ) from one forward and one backward pass.

  ∂L/∂z_l is the gradient w.r.t. the zero perturbation each hidden layer adds
  to its pre-activations (``perturb('preact', z)``), taken with ∂L/∂θ.

  Raises:
    ValueError: the model sows no ``act`` taps.
  """
  def objective(p, eps):
    logits, state = model.apply({"params": p, "perturbations": eps}, batch_x,
                                mutable=["intermediates"])
    return loss_fn(logits, batch_y), state["intermediates"]

  (loss, inter), (g_params, g_z) = jax.value_and_grad(objective, argnums=(0, 1),
                                                      has_aux=True)(params, perts)
  a_blocks = layer_blocks(inter, "act")
  g_blocks = layer_blocks(g_z, "preact")
  if not a_blocks:
    raise ValueError("model has no hidden-layer taps sow('intermediates', 'act', a); "
                     "diagnostics need the project's layer taps")
  return loss, a_blocks, g_blocks, g_params


def _activation_stats(a_blocks, bounds, num_bins, saturation_threshold) -> dict:
  """Per layer: mean, std, `PERCENTILES`, saturation and histogram of a_l (Glorot & Bengio Fig. 2–4, 6).

  The histogram range is the activation's `bounds`, else the batch's finite
  min/max over all layers (``act_hist_range``).
  """
  def act_stats(a):
    a = a.reshape(-1)
    p = jnp.percentile(a, jnp.asarray(PERCENTILES))
    sat = (saturation_fraction(a, bounds, saturation_threshold) if bounds is not None
           else jnp.float32(jnp.nan))
    return {"act_mean": jnp.mean(a), "act_std": jnp.std(a),
            **{k: p[i] for i, k in enumerate(PERCENTILE_KEYS)}, "act_saturation": sat}
  out = dict(_per_layer(act_stats, a_blocks))

  a_lo, a_hi = (jnp.float32(bounds[0]), jnp.float32(bounds[1])) if bounds else _finite_range(a_blocks)
  out["act_hist"] = _per_layer(lambda a: histogram(a, a_lo, a_hi, num_bins), a_blocks)
  out["act_hist_range"] = jnp.stack([a_lo, a_hi]).astype(jnp.float32)
  return out


def _gradient_stats(g_blocks, g_params, num_bins) -> dict:
  """Per layer: std and histogram of ∂L/∂z_l over ±max_l |∂L/∂z_l| (Fig. 7), and Var[∂L/∂W] per kernel."""
  g_lo, g_hi = _finite_range(g_blocks)
  g_max = jnp.maximum(jnp.maximum(-g_lo, g_hi), 1e-30)
  out = {"grad_std": _per_layer(lambda g: jnp.std(g), g_blocks),
         "grad_hist": _per_layer(lambda g: histogram(g, -g_max, g_max, num_bins), g_blocks),
         "grad_hist_range": jnp.stack([-g_max, g_max]).astype(jnp.float32)}
  k_blocks = layer_blocks(g_params, "kernel")
  if k_blocks:
    out["weight_grad_var"] = _per_layer(lambda w: jnp.var(w), k_blocks)
  return out


def _jacobian_stats(model, params, batch_x, a_blocks, num_jacobian_examples, jacobian_method, num_iters,
                    key) -> dict:
  """Singular values of ∂logits/∂x and of the layer Jacobians J_l at the first examples (§4.2.3).

  ``e2e_jac_sv*`` always, ``layer_jac_sv*`` when the layer maps are known
  (`_dense_layer_maps`); nothing with `num_jacobian_examples` = 0.
  """
  ne = min(int(num_jacobian_examples), batch_x.shape[0])
  if ne <= 0:
    return {}
  key = jax.random.PRNGKey(0) if key is None else key
  sv_kw = dict(method=jacobian_method, num_iters=num_iters, key=key)
  e2e = jax.vmap(lambda x: jacobian_singular_values(
      lambda u: model.apply({"params": params}, u[None])[0], x, **sv_kw))(batch_x[:ne])
  n_in = int(np.prod(batch_x.shape[1:]))
  n_out = int(np.prod(jax.eval_shape(lambda: model.apply({"params": params}, batch_x[:1])).shape))
  mean = None
  if resolve_method(jacobian_method, n_in, n_out) != "exact":
    mean = jax.vmap(lambda x: jacobian_mean_singular_value(
        lambda u: model.apply({"params": params}, u[None])[0], x, key=key))(batch_x[:ne])
  out = _sv_summary("e2e_jac_sv", e2e, mean)
  maps = _dense_layer_maps(model, params)
  if maps is not None and len(a_blocks) >= 1:
    out.update(_layer_jacobian_stats(maps, a_blocks, ne, jacobian_method, sv_kw, key))
  return out


def _layer_jacobian_stats(maps, a_blocks, ne, jacobian_method, sv_kw, key) -> dict:
  """``layer_jac_sv*``: spectra of J_l = ∂a_{l+1}/∂a_l at the first `ne` examples, via the layer maps."""
  layer_fn, layer_params = maps
  a_all = jnp.concatenate(a_blocks, axis=0)   # [L, B, ...]
  n_maps = jax.tree.leaves(layer_params)[0].shape[0]
  inputs = a_all[:n_maps, :ne]                 # h_l feeds map l
  sv = jax.vmap(lambda h: layer_jacobian_singular_values(layer_fn, layer_params, h, **sv_kw),
                in_axes=1)(inputs)             # [E, L−1, k]
  n_in = int(np.prod(inputs.shape[2:]))
  p0 = jax.tree.map(lambda t: t[0], layer_params)
  n_out = int(np.prod(jax.eval_shape(layer_fn, p0, inputs[0, 0]).shape))
  mean = None
  if resolve_method(jacobian_method, n_in, n_out) != "exact":
    one = lambda p, h: jacobian_mean_singular_value(lambda u: layer_fn(p, u), h, key=key)
    mean = jax.vmap(jax.vmap(one), in_axes=(None, 1))(layer_params, inputs)  # [E, L−1]
  return _sv_summary("layer_jac_sv", sv, mean)


def _sv_summary(name: str, per_example: jax.Array, mean: jax.Array | None) -> dict:
  """Spectrum averaged over examples plus its mean / max / min.

  `mean` (per example) replaces the spectrum's mean when only [σ_max, σ_min]
  were computed (power iteration; the mean then comes from SLQ).
  """
  mean = per_example.mean(-1) if mean is None else mean
  return {name: per_example.mean(0), f"{name}_max": per_example[..., 0].mean(0),
          f"{name}_min": per_example[..., -1].mean(0), f"{name}_mean": mean.mean(0)}


# ----------------------------------------------------------------------------
# Storage.
# ----------------------------------------------------------------------------

def _to_json(v: np.ndarray):
  v = np.asarray(v)
  if v.dtype.kind == "f":
    lst = np.where(np.isfinite(v), v, np.nan).astype(np.float64).tolist()
    fix = lambda t: [fix(u) for u in t] if isinstance(t, list) else (None if math.isnan(t) else t)
    return fix(lst)
  return v.tolist()


class DiagnosticsWriter:
  """Stores `compute_diagnostics` records in ``WORKDIR/diagnostics.{jsonl,npz}``.

  ``diagnostics.jsonl``: one JSON line per (step, seed) with the scalars and
  small per-layer vectors (≤ 256 values; NaN as null). ``diagnostics.npz``:
  every array stacked over records (``step`` [R], ``seed`` [R], ``KEY`` [R, ...]);
  histograms as int32 counts, arrays of ≥ 2 dims (Jacobian spectra) as float16.

  Resume-safe: writing (step, seed) first drops that seed's records at steps
  ≥ step (a run resumed from an earlier checkpoint re-writes its future),
  `truncate` drops every record past a resumed checkpoint, and both files are
  replaced atomically (write to a temp file + ``os.replace``), so an
  interrupted write never leaves a corrupt file. Each (step, seed) is stored
  once. A key present in only one of the old records / the new record (e.g.
  ``act_p16`` added after a workdir was started) is kept, filled with NaN
  (float) or 0 (int) where it was not measured.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, JSONL_NAME)
    self.npz_path = os.path.join(workdir, NPZ_NAME)

  def write(self, step: int, stats: Mapping[str, Any], seed: int = 0) -> None:
    """Appends one record (arrays are pulled to host numpy)."""
    step, seed = int(step), int(seed)
    stats = {k: np.asarray(v) for k, v in stats.items()}
    # jsonl
    lines = []
    if os.path.exists(self.jsonl_path):
      with open(self.jsonl_path) as f:
        for line in f:
          if not line.strip():
            continue
          r = json.loads(line)
          if not (r.get("seed", 0) == seed and r["step"] >= step):
            lines.append(line.rstrip("\n"))
    rec = {"step": step, "seed": seed}
    rec.update({k: _to_json(v) for k, v in stats.items() if v.ndim <= 1 and v.size <= 256})
    lines.append(json.dumps(rec))
    _atomic_write_text(self.jsonl_path, "\n".join(lines) + "\n")
    # npz
    old = load_diagnostics(self.workdir) if os.path.exists(self.npz_path) else {}
    keep = (np.ones(0, bool) if not old else
            ~((old["seed"] == seed) & (old["step"] >= step)))
    new = {"step": np.asarray([step], np.int64), "seed": np.asarray([seed], np.int64)}
    for k, v in stats.items():
      if v.dtype.kind == "f":
        v = v.astype(np.float16 if v.ndim >= 2 else np.float32)
      new[k] = v[None]
    n_old = int(keep.sum())
    merged = {}
    for k in list(new) + [k for k in old if k not in new]:
      v = new[k] if k in new else _missing(old[k][:0], 1)
      if not old:
        merged[k] = v
        continue
      prev = old[k][keep] if k in old else _missing(v[:0], n_old)
      if prev.shape[1:] != v.shape[1:]:
        raise ValueError(f"diagnostics key {k!r} changed shape {prev.shape[1:]} -> {v.shape[1:]} "
                         f"in {self.npz_path}; use a fresh workdir")
      merged[k] = np.concatenate([prev, v.astype(prev.dtype)])
    _atomic_savez(self.npz_path, merged)

  def truncate(self, after_step: int) -> None:
    """Drops every record (all seeds) at steps > `after_step` from both files.

    The engine calls it when it resumes from the checkpoint at `after_step`:
    records a killed run wrote past its last checkpoint are re-measured by the
    resumed run, not kept twice or left stale. A no-op without records past it.
    """
    after_step = int(after_step)
    if os.path.exists(self.jsonl_path):
      with open(self.jsonl_path) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
      kept = [l for l in lines if json.loads(l)["step"] <= after_step]
      if len(kept) != len(lines):
        _atomic_write_text(self.jsonl_path, "".join(l + "\n" for l in kept))
    if os.path.exists(self.npz_path):
      old = load_diagnostics(self.workdir)
      keep = old["step"] <= after_step
      if not keep.all():
        _atomic_savez(self.npz_path, {k: v[keep] for k, v in old.items()})


def _missing(like: np.ndarray, n: int) -> np.ndarray:
  """n records of `like`'s per-record shape and dtype, NaN (float) or 0: not measured."""
  fill = np.nan if like.dtype.kind == "f" else 0
  return np.full((n,) + like.shape[1:], fill, like.dtype)


def _atomic_savez(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def _atomic_write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def load_diagnostics(workdir: str) -> dict[str, np.ndarray]:
  """All records of ``WORKDIR/diagnostics.npz`` as a dict of numpy arrays [R, ...]."""
  path = os.path.join(workdir, NPZ_NAME)
  if not os.path.exists(path):
    raise ValueError(f"no {NPZ_NAME} in workdir {workdir!r}; run with config.diagnostics.enabled=True")
  with np.load(path) as z:
    return {k: z[k] for k in z.files}
