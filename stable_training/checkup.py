r"""The stability check-up: measure a model at init, then measure and rank this toolkit's remedies.

``checkup(model, params, (x, y))`` answers, for one batch and no training:
do back-propagated signals vanish, explode, or keep their scale through depth?
And which of the toolkit's remedies, *measured on the same batch*, brings the
model closest to isometry?

What is measured (`measure`), with hidden states h_1 … h_L (the inputs of
the model's layer calls, `stable_training.diagnostics.generic`, or for this
project's scanned models the states of their declared transitions) and
J_l = ∂h_{l+1}/∂h_l:

* the back-propagated gradient norms g_l = ‖∂L/∂h_l‖ (Glorot & Bengio 2010,
  Fig. 7; per time step for sequence layers) and the parameter-gradient
  norms ‖∂L/∂θ_l‖ per layer;
* the singular values σ of every J_l (Glorot & Bengio §4.2.3) and of the
  end-to-end product J_{L−1}⋯J_1 = ∂h_L/∂h_1 (its log σ range);
* saturation of bounded activations (|a| within 10 % of a bound);
* the LSC radii ρ(J) of `stable_training.lsc` (Herranz-Celotti & Rouat
  2023/24), where the model's transitions are available.

Verdict (one line): with G = ln(g_1 / g_L), the log-ratio of the first to the
last hidden layer's back-propagated gradient norm,
``vanishing`` if G < −ln 10, ``exploding`` if G > ln 10 (or non-finite),
else ``healthy``; the reason quotes G, the per-layer factor e^{G/(L−1)},
the mean log σ of the layer Jacobians and the end-to-end log σ range.
(At init with a standard-init deep tanh MLP the weight-gradient norms are
nearly equal across layers, Glorot & Bengio §4.2.2 — the state gradients
are what vanish, so they decide.)

Distance from isometry (the ranking score, lower is better):

    D = mean_l mean_i |log σ_i(J_l)|  +  |G|

0 for a network of orthogonal layers; the first term is Glorot & Bengio's
per-layer criterion (mean σ near 1), the second the end-to-end effect on
gradients. Remedies (`REMEDIES`), each applied to the same model and batch and
re-measured:

* ``glorot_normalized`` / ``he_normal``: every Dense kernel re-drawn
  (Glorot & Bengio 2010 eq. 16; He et al. 2015);
* ``roaf``: for an MLP, the repo's `ROAFMLP` (Ceni 2022) at the same width
  and depth, α = 0.99, critical init, ``filter_mode='fast'`` (the registry's);
* ``lsc_rho1`` / ``lsc_rho0.5``: `stable_training.lsc.pretrain` to ρ = 1 / 0.5
  (Herranz-Celotti & Rouat 2023/24);
* ``tgelu_clip``: the activation swapped for tGELU where the model exposes an
  ``activation`` attribute (Ramaswamy, Bhatnagar & Saxena 2023); output-layer
  clipping (`clip_output_layer`) acts on updates, not at init, so it is
  recommended with it, not measured.

A remedy that cannot be applied is listed with the reason. Each applied entry
carries its ``params`` (and ``model``) so the user can take it as is.

CLI::

    python -m stable_training.checkup --config=experiments/configs/FILE.py[:VARIANT] [--out=DIR]

writes ``report.md``, ``checkup.png`` and ``checkup.json`` to DIR.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import types
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training import activations as acts
from stable_training import initializers as inits
from stable_training.diagnostics import generic
from stable_training.diagnostics.jacobian import jacobian_singular_values
from stable_training.diagnostics.monitor import saturation_fraction

VERDICT_THRESHOLD = math.log(10.0)
REMEDIES = ("glorot_normalized", "he_normal", "roaf", "lsc_rho1", "lsc_rho0.5", "tgelu_clip")


# ------------------------------------------------------------------ measuring ---
def _declares_chain(model) -> bool:
  """This project's feed-forward models (DeepMLP, ROAFMLP): a declared depth chain, scanned."""
  return callable(getattr(type(model), "lsc_transitions", None)) and hasattr(model, "width") \
      and hasattr(model, "depth") and not hasattr(model, "cell")


def _top_level_norms(g_params) -> list[float]:
  """‖∂L/∂θ‖ per top-level module; a scanned ``hidden`` stack is split along its layer axis."""
  norms = []
  for k, v in g_params.items():
    leaves = jax.tree.leaves(v)
    if k == "hidden":
      norms += list(np.sqrt(sum(np.sum(np.square(np.asarray(l)).reshape(l.shape[0], -1), 1) for l in leaves)))
    else:
      norms.append(float(np.sqrt(sum(np.sum(np.square(np.asarray(l))) for l in leaves))))
  return [float(n) for n in norms]


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _chain_stats(model, params, x, y, loss_fn, ne, key):
  """Statistics of a declared depth chain h_0 → … → h_{L−1} → logits (`lsc_transitions`)."""
  tr = model.lsc_transitions(params, x, key)
  dep, ro = tr["depth"], tr["readout"]
  if isinstance(dep, (tuple, list)):
    dep = dep[0]
  fn, theta, pts, ctx = dep.fn, dep.theta, dep.points, dep.context
  c_ax = None if ctx is None else 0

  def run(h, th_c_e):
    th, c, e = th_c_e
    return jax.vmap(lambda cc, u: fn(th, cc, u), in_axes=(c_ax, 0))(c, h) + e, None

  def loss_of(eps):
    h, _ = jax.lax.scan(run, pts[0] + eps[0], (theta, ctx, eps[1:]))
    return loss_fn(jax.vmap(lambda u: ro.fn(ro.theta, None, u))(h), y)

  n_layers = pts.shape[0] + 1
  eps = jnp.zeros((n_layers,) + pts.shape[1:], pts.dtype)
  loss, g = jax.value_and_grad(loss_of)(eps)
  out = {"loss": loss, "state_grad_norm": jnp.sqrt(jnp.sum(jnp.square(g.reshape(n_layers, -1)), 1))}
  g_params = jax.grad(lambda p: loss_fn(model.apply({"params": p}, x), y))(params)
  out["g_params"] = g_params
  _, inter = model.apply({"params": params}, x, mutable=["intermediates"])
  from stable_training.models.mlp import hidden_stack
  out["acts"] = hidden_stack(inter["intermediates"])
  if ne > 0 and pts.shape[0] > 0:
    sv_kw = dict(key=key)
    one = lambda th, c, u: jacobian_singular_values(lambda v: fn(th, c, v), u, **sv_kw)
    sv = jax.vmap(jax.vmap(one, in_axes=(0, c_ax, 0)), in_axes=(None, None if ctx is None else 1, 1))(
        theta, ctx, pts[:, :ne])                                        # [E, L−1, k]
    out["layer_jac_sv"] = sv.mean(0)

    def through(u, e):
      def step(h, th_c):
        th, c = th_c
        return fn(th, None if c is None else c[e], h), None
      return jax.lax.scan(step, u, (theta, ctx))[0]
    out["hidden_jac_sv"] = jax.vmap(lambda u, e: jacobian_singular_values(lambda v: through(v, e), u, **sv_kw))(
        pts[0, :ne], jnp.arange(ne)).mean(0)
  return out


def _bounds_of(model):
  a = getattr(model, "activation", None)
  if isinstance(a, str):
    return acts.BOUNDS.get(a)
  for name, b in acts.BOUNDS.items():
    if a is acts.get_activation(name):
      return b
  return None


def _sv_summary(sv) -> dict:
  sv = np.asarray(sv, np.float64)
  logsv = np.log(np.maximum(sv, 1e-30))
  with np.errstate(all="ignore"):
    return {"jac_sv": np.where(np.isfinite(sv), sv, np.nan).tolist(),
            "jac_sv_mean": np.nanmean(sv, -1).tolist(), "jac_sv_max": np.nanmax(sv, -1).tolist(),
            "jac_sv_min": np.nanmin(sv, -1).tolist(), "jac_logsv_mean": np.nanmean(logsv, -1).tolist(),
            "jac_abslogsv_mean": np.nanmean(np.abs(logsv), -1).tolist()}


def _e2e(sv) -> dict:
  logsv = np.log(np.maximum(np.asarray(sv, np.float64), 1e-30))
  logsv = logsv[np.isfinite(logsv)]
  if not logsv.size:
    return {}
  return {"min": float(logsv.min()), "mean": float(logsv.mean()), "max": float(logsv.max())}


def _lsc_radii(model, params, x, key) -> tuple[dict | None, str | None]:
  try:
    from stable_training import lsc
    r = lsc.mean_radii(model, params, jnp.asarray(x), key)
    return {k: np.asarray(v).tolist() for k, v in r.items()}, None
  except Exception as e:  # noqa: BLE001 - radii are optional; say why they are absent
    return None, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def measure(model: nn.Module, params: Any, x: jax.Array, y: jax.Array, *,
            loss_fn: Callable | None = None, key: jax.Array | None = None, num_jacobian_examples: int = 2,
            lsc_examples: int = 4, radii: bool = True) -> dict:
  """Per-layer stability measurements of `model` at `params` on (x, y), with verdict and score (module doc).

  Returns a JSON-able dict: ``backend`` ('intercept' for any flax model,
  'transitions' for this project's scanned MLPs), ``layers``, ``loss``,
  ``state_grad_norm`` [L] (‖∂L/∂h_l‖), ``state_grad_norm_t`` [L, T] for
  sequences, ``param_grad_norm``, ``saturation`` [L] (None where unknown),
  ``act_std`` [L], ``jac_sv`` / ``jac_sv_mean`` / ``_max`` / ``_min`` /
  ``jac_logsv_mean`` / ``jac_abslogsv_mean`` [L−1], ``e2e_logsv`` {min,
  mean, max} of ∂h_L/∂h_1, ``lsc_radii`` (or ``lsc_radii_error``),
  ``grad_log_ratio`` G, ``score`` D, ``verdict``, ``reason``.
  """
  if loss_fn is None:  # the engine's mean softmax cross-entropy (imported here: the train package is heavy)
    from stable_training.train.steps import cross_entropy as loss_fn
  key = jax.random.PRNGKey(0) if key is None else key
  x, y = jnp.asarray(x), jnp.asarray(y)
  out: dict[str, Any] = {"model": type(model).__name__}
  if _declares_chain(model):
    s = jax.device_get(_chain_stats(model, params, x, y, loss_fn, int(num_jacobian_examples), key))
    n = len(s["state_grad_norm"])
    out.update(backend="transitions", layers=[f"h{l}" for l in range(n)], loss=float(s["loss"]),
               state_grad_norm=np.asarray(s["state_grad_norm"], np.float64).tolist(),
               param_grad_norm=_top_level_norms(s["g_params"]),
               act_std=[float(np.std(a)) for a in s["acts"]])
    b = _bounds_of(model)
    out["saturation"] = ([float(saturation_fraction(jnp.asarray(a), (b[0], b[1]), 0.1)) for a in s["acts"]]
                         if b is not None else None)
    if "layer_jac_sv" in s:
      out.update(_sv_summary(s["layer_jac_sv"]))
      out["e2e_logsv"] = _e2e(s["hidden_jac_sv"])
  else:
    d = jax.device_get(generic.generic_diagnostics_jit(model, params, x, y, loss_fn,
                                                       num_jacobian_examples=int(num_jacobian_examples), key=key))
    names = generic.layer_names(model, params, x)
    out.update(backend="intercept", layers=names[1:], layer_calls=names, loss=float(d["loss"]),
               state_grad_norm=np.asarray(d["state_grad_norm"], np.float64).tolist(),
               param_grad_norm=np.asarray(d["param_grad_norm"], np.float64).tolist(),
               act_std=np.asarray(d["act_std"], np.float64).tolist(),
               activation=[generic.CANDIDATE_NAMES[i] if i >= 0 else None for i in np.asarray(d["act_kind"])])
    sat = np.asarray(d["act_saturation"], np.float64)
    out["saturation"] = [None if np.isnan(v) else float(v) for v in sat] if np.isfinite(sat).any() else None
    if "state_grad_norm_t" in d:
      out["state_grad_norm_t"] = np.asarray(d["state_grad_norm_t"], np.float64).tolist()
    if "layer_jac_sv" in d:
      out.update(_sv_summary(d["layer_jac_sv"]))
    if "layer_jac_sv_t" in d:
      out["jac_sv_t_mean"] = np.nanmean(np.asarray(d["layer_jac_sv_t"], np.float64), -1).tolist()
    if "hidden_jac_sv" in d:
      out["e2e_logsv"] = _e2e(d["hidden_jac_sv"])
    out["output_shape"] = list(jax.eval_shape(lambda p: model.apply({"params": p}, x[:1]), params).shape[1:])
  if radii:
    out["lsc_radii"], err = _lsc_radii(model, params, x[:lsc_examples], key)
    if err:
      out["lsc_radii_error"] = err
  out.update(_verdict(out))
  return out


def _verdict(m: Mapping) -> dict:
  """G, score D, verdict and its one-line reason from a `measure` dict (see module doc)."""
  g = np.asarray(m["state_grad_norm"], np.float64)
  n = len(g)
  finite = bool(np.all(np.isfinite(g)))
  G = float(np.log(max(g[0], 1e-38)) - np.log(max(g[-1], 1e-38))) if finite and n > 1 else 0.0
  absl = np.asarray(m.get("jac_abslogsv_mean", []), np.float64)
  jac_term = float(np.nanmean(absl)) if absl.size and np.isfinite(absl).any() else 0.0
  score = jac_term + abs(G) if finite else math.inf
  if not finite:
    verdict = "exploding"
  elif G < -VERDICT_THRESHOLD:
    verdict = "vanishing"
  elif G > VERDICT_THRESHOLD:
    verdict = "exploding"
  else:
    verdict = "healthy"
  parts = []
  if n > 1 and finite:
    parts.append(f"‖∂L/∂h_1‖/‖∂L/∂h_{n}‖ = {math.exp(max(min(G, 700), -700)):.2e} over {n - 1} layers "
                 f"(×{math.exp(G / (n - 1)):.3f} per layer going down)")
  elif not finite:
    parts.append("non-finite back-propagated gradients")
  if absl.size:
    lm = float(np.nanmean(m["jac_logsv_mean"]))
    parts.append(f"layer Jacobians: mean log σ = {lm:+.3f}, mean |log σ| = {jac_term:.3f} "
                 f"(mean σ {float(np.nanmean(m['jac_sv_mean'])):.3f})")
  e = m.get("e2e_logsv") or {}
  if e:
    parts.append(f"∂h_L/∂h_1: log σ ∈ [{e['min']:.1f}, {e['max']:.1f}]")
  sat = [v for v in (m.get("saturation") or []) if v is not None]
  if sat:
    parts.append(f"saturation ≤ {max(sat):.0%}")
  return {"grad_log_ratio": G, "score": score, "verdict": verdict, "reason": "; ".join(parts)}


# ------------------------------------------------------------------ remedies ---
def reinit_kernels(params: Any, init_name: str, key: jax.Array) -> Any:
  """Every ``kernel`` re-drawn with `stable_training.initializers` `init_name` (biases kept).

  Kernels of rank 2 are Dense kernels [fan_in, fan_out]; rank-3 kernels under a
  scanned ``hidden`` stack are one Dense kernel per layer (drawn per slice).
  Other ranks (convolutions) use the initializer's receptive-field fans.
  """
  init = inits.get_initializer(init_name)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  keys = iter(jax.random.split(key, max(len(flat), 1)))
  new = {}
  for path, leaf in flat:
    names = [getattr(p, "key", str(p)) for p in path]
    k = next(keys)
    if names[-1] != "kernel":
      continue
    if leaf.ndim == 3 and "hidden" in names:
      new[tuple(names)] = jax.vmap(lambda kk: init(kk, leaf.shape[1:], leaf.dtype))(
          jax.random.split(k, leaf.shape[0]))
    else:
      new[tuple(names)] = init(k, leaf.shape, leaf.dtype)
  return jax.tree_util.tree_map_with_path(
      lambda p, l: new.get(tuple(getattr(q, "key", str(q)) for q in p), l), params)


def _roaf_model(model, m: Mapping):
  """The ROAF-MLP (Ceni 2022) replacing `model` at its width and depth, or the reason it cannot."""
  from stable_training.models import roaf
  if isinstance(model, roaf.ROAFMLP):
    return "the model is already a ROAF MLP"
  if _declares_chain(model):
    width, depth, ncls, act = model.width, model.depth, model.num_classes, model.activation
  elif m.get("_dense_stack"):
    width, depth, ncls, act = m["_width"], len(m["layers"]), m["output_shape"][0], m["_activation"]
  else:
    return ("ROAF-MLP replaces MLPs only (a stack of nn.Dense of one hidden width with an identified "
            "elementwise activation and a flat output)")
  return roaf.ROAFMLP(width=width, depth=depth, num_classes=ncls, alpha=roaf.DEFAULT_ALPHA, activation=act,
                      kernel_init=roaf.CRITICAL_INIT, filter_mode="fast", remat=False)


def _mlp_facts(model, params, x, m: dict) -> None:
  """Marks a generic measurement that is a Dense stack (for the ROAF remedy): width and activation."""
  if m.get("backend") != "intercept":
    return
  _, layers = generic.find_layers(model, params, x)
  widths = {lc.in_shape[1:] for lc in layers[1:]}
  act = (m.get("activation") or [None])[0]
  if (all(lc.type == "Dense" for lc in layers) and len(widths) == 1 and len(next(iter(widths))) == 1 and act
          and len(m.get("output_shape", [])) == 1):
    m["_dense_stack"], m["_width"], m["_activation"] = True, int(next(iter(widths))[0]), act


def _lsc_pretrain(model, params, x, rho, steps, key):
  """`stable_training.lsc.pretrain(model, params, x, rho)` (Herranz-Celotti & Rouat); mapping fallback."""
  from stable_training import lsc
  kw = dict(max_steps=int(steps), key=key)   # batch_samples: pretrain's default, config.lsc's
  try:
    return lsc.pretrain(model, params, x, rho, **kw)
  except TypeError:  # an lsc API that takes only a {kind: ρ} mapping
    if not lsc.supports(model):
      raise
    kinds = lsc.declared_kinds(model, params, x)
    return lsc.pretrain(model, params, x, {k: (1.0 if k == "readout" else float(rho)) for k in kinds}, **kw)


def _apply_remedy(name, model, params, x, m, key, lsc_steps):
  """(model, params, note) for remedy `name`, or raises _Skip(reason)."""
  if name in ("glorot_normalized", "he_normal"):
    return model, reinit_kernels(params, name, key), f"every kernel re-drawn with {name}"
  if name == "roaf":
    new = _roaf_model(model, m)
    if isinstance(new, str):
      raise _Skip(new)
    p = jax.jit(new.init)(key, x[:1])["params"]   # one compile (eager init: one per op)
    return new, p, (f"ROAFMLP(width={new.width}, depth={new.depth}, α={new.alpha}, critical init, "
                     f"filter_mode='{new.filter_mode}') (Ceni 2022)")
  if name.startswith("lsc_rho"):
    rho = float(name[len("lsc_rho"):])
    try:
      p, hist = _lsc_pretrain(model, params, x, rho, lsc_steps, key)
    except Exception as e:  # noqa: BLE001 - a remedy that cannot run is listed with its reason
      raise _Skip(f"LSC could not run: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
    return model, p, (f"LSC pre-training to ρ = {rho} ({hist.get('steps', '?')} steps, "
                      f"converged={hist.get('converged', '?')}) (Herranz-Celotti & Rouat)")
  if name == "tgelu_clip":
    if not hasattr(model, "activation") or "activation" not in getattr(model, "__dataclass_fields__", {}):
      raise _Skip("the model does not expose its activation as an attribute (`activation`); "
                  "swap it for st.tgelu by hand and add clip_output_layer")
    new = model.clone(activation="tgelu" if isinstance(model.activation, str) else acts.tgelu)
    return new, params, ("activation → tGELU(−1, 3) (Ramaswamy et al. 2023); add "
                         "clip_output_layer(1.0) to the optimizer (acts on updates, not measured at init)")
  raise ValueError(f"unknown remedy {name!r}; valid: {', '.join(REMEDIES)}")


class _Skip(Exception):
  pass


def checkup(model: nn.Module, params: Any, batch, *, loss_fn: Callable | None = None,
            key: jax.Array | None = None, remedies="auto", lsc_steps: int = 100,
            num_jacobian_examples: int = 2) -> dict:
  """Stability check-up of `model` at `params` on `batch` = (x, y); remedies measured and ranked.

  Args:
    model, params: any flax.linen model and its ``params``.
    batch: (x, y); y integer labels for the default loss.
    loss_fn: ``loss_fn(output, y) -> scalar`` (default mean softmax
      cross-entropy).
    key: PRNG key for the re-initializations and LSC.
    remedies: ``'auto'`` (all of `REMEDIES`, those not applicable listed with
      the reason), a sequence of names, or None / ``()`` for none.
    lsc_steps: LSC pre-training steps per ρ.
    num_jacobian_examples: examples the Jacobian spectra average over.

  Returns:
    ``{'model', 'verdict', 'verdict_line', 'measure' (the `measure` dict),
    'remedies': [ranked applied entries, then skipped ones], 'best'}`` ('best': the
    first-ranked remedy's name if it improves the score, else None); each
    applied entry: ``name, rank, score, improvement`` (baseline score −
    score), ``verdict, note, measure, params, model``; skipped:
    ``name, skipped`` (the reason).
  """
  x, y = batch
  x, y = jnp.asarray(x), jnp.asarray(y)
  key = jax.random.PRNGKey(0) if key is None else key
  mkw = dict(loss_fn=loss_fn, num_jacobian_examples=num_jacobian_examples)
  base = measure(model, params, x, y, **mkw)
  _mlp_facts(model, params, x, base)
  names = REMEDIES if remedies == "auto" else tuple(remedies or ())
  applied, skipped = [], []
  for i, name in enumerate(names):
    k = jax.random.fold_in(key, i)
    try:
      new_model, new_params, note = _apply_remedy(name, model, params, x, base, k, lsc_steps)
      mm = measure(new_model, new_params, x, y, radii=name.startswith("lsc"), **mkw)
    except _Skip as e:
      skipped.append({"name": name, "skipped": str(e)})
      continue
    applied.append({"name": name, "score": mm["score"], "improvement": base["score"] - mm["score"],
                    "verdict": mm["verdict"], "note": note, "measure": mm, "params": new_params,
                    "model": new_model})
  applied.sort(key=lambda r: (not math.isfinite(r["score"]), r["score"]))
  for r, entry in enumerate(applied, 1):
    entry["rank"] = r
  for m in [base] + [a["measure"] for a in applied]:
    for k in [k for k in m if k.startswith("_")]:
      del m[k]
  return {"model": type(model).__name__, "verdict": base["verdict"],
          "verdict_line": f"verdict: {base['verdict']} — {base['reason']}", "measure": base,
          "remedies": applied + skipped,
          # A remedy is recommended only if it measurably moves the model toward isometry.
          "best": applied[0]["name"] if applied and applied[0]["improvement"] > 0 else None}


# ------------------------------------------------------------------- outputs ---
def to_json(result: Mapping) -> dict:
  """`checkup`'s result without params and models (JSON-able)."""
  def clean(v):
    if isinstance(v, Mapping):
      return {k: clean(u) for k, u in v.items() if k != "params" and not isinstance(u, nn.Module)}
    if isinstance(v, (list, tuple)):
      return [clean(u) for u in v]
    if isinstance(v, (np.floating, np.integer)):
      v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
      return None
    return v
  return clean(result)


def _fmt(v, spec=".3g"):
  return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def report_markdown(result: Mapping) -> str:
  """A markdown report: verdict line, per-layer table, remedies ranked by distance from isometry."""
  m = result["measure"]
  lines = [f"# Stability check-up: {result['model']}", "", f"**{result['verdict_line']}**", "",
           f"Measured at init on one batch ({m['backend']} backend; loss {m['loss']:.4f}).", ""]
  lines += ["| layer | ‖∂L/∂h‖ | act std | saturation | Jacobian mean σ | σ min | σ max | mean log σ |",
            "|---|---|---|---|---|---|---|---|"]
  n = len(m["state_grad_norm"])
  rows = range(n) if n <= 12 else sorted(set([0, 1, 2, n // 2, n - 3, n - 2, n - 1]))
  sat = m.get("saturation") or [None] * n
  for l in rows:
    j = l if l < n - 1 and "jac_sv_mean" in m else None
    lines.append(f"| {m['layers'][l]} | {_fmt(m['state_grad_norm'][l], '.2e')} | {_fmt(m['act_std'][l])} | "
                 f"{_fmt(sat[l], '.0%') if sat[l] is not None else '–'} | "
                 f"{_fmt(m['jac_sv_mean'][j]) if j is not None else '–'} | "
                 f"{_fmt(m['jac_sv_min'][j]) if j is not None else '–'} | "
                 f"{_fmt(m['jac_sv_max'][j]) if j is not None else '–'} | "
                 f"{_fmt(m['jac_logsv_mean'][j], '+.3f') if j is not None else '–'} |")
  if n > 12:
    lines.append(f"(layers shown: {', '.join(m['layers'][l] for l in rows)} of {n}; all in checkup.json)")
  if m.get("lsc_radii"):
    r = m["lsc_radii"]
    lines += ["", "LSC radii (Herranz-Celotti & Rouat): " + ", ".join(
        f"{k}: mean {np.mean(v):.3f}" for k, v in r.items())]
  elif m.get("lsc_radii_error"):
    lines += ["", f"LSC radii: not available ({m['lsc_radii_error']})"]
  lines += ["", "## Remedies, ranked by distance from isometry", "",
            "Score D = mean_l mean_i |log σ_i(∂h_{l+1}/∂h_l)| + |ln(‖∂L/∂h_1‖/‖∂L/∂h_L‖)| "
            "(0 = every layer an isometry; lower is better). "
            f"As is: D = {_fmt(m['score'])}, verdict {m['verdict']}.", "",
            "| rank | remedy | D | improvement | verdict | ‖∂L/∂h_1‖/‖∂L/∂h_L‖ | what |", "|---|---|---|---|---|---|---|"]
  for r in result["remedies"]:
    if "skipped" in r:
      continue
    ratio = math.exp(max(min(r["measure"]["grad_log_ratio"], 700), -700))
    lines.append(f"| {r['rank']} | {r['name']} | {_fmt(r['score'])} | {_fmt(r['improvement'], '+.3g')} | "
                 f"{r['verdict']} | {ratio:.2e} | {r['note']} |")
  skipped = [r for r in result["remedies"] if "skipped" in r]
  if skipped:
    lines += ["", "Not applicable:"] + [f"- {r['name']}: {r['skipped']}" for r in skipped]
  if result.get("best"):
    lines += ["", f"Best: **{result['best']}** — its params (and model) are in the result's "
                  "`remedies[0]` entry."]
  elif any("rank" in r for r in result["remedies"]):
    lines += ["", "Best: **none** — no remedy brings the model closer to isometry than it is "
                  f"(least harmful: {result['remedies'][0]['name']})."]
  return "\n".join(lines) + "\n"


def plot_checkup(result: Mapping, path: str | None = None):
  """Figure: per-layer ‖∂L/∂h‖ and layer-Jacobian σ (mean, min–max band), before vs the best remedy.

  Uses `matplotlib.figure.Figure` + the Agg canvas (no global backend change).
  Writes a PNG to `path` when given; returns the Figure.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(11, 4.2))
  FigureCanvasAgg(fig)
  ax1, ax2 = fig.subplots(1, 2)
  best = next((r for r in result["remedies"] if r.get("rank") == 1), None)
  series = [("as is", result["measure"], "C3")] + ([(f"{best['name']}", best["measure"], "C0")] if best else [])
  for label, m, c in series:
    g = np.asarray(m["state_grad_norm"], np.float64)
    ax1.semilogy(np.arange(1, len(g) + 1), np.maximum(g, 1e-38), "o-", ms=3, color=c,
                 label=f"{label} ({m['verdict']})")
    if "jac_sv_mean" in m:
      l = np.arange(1, len(m["jac_sv_mean"]) + 1)
      ax2.semilogy(l, m["jac_sv_mean"], "o-", ms=3, color=c, label=f"{label}: mean σ")
      ax2.fill_between(l, np.maximum(m["jac_sv_min"], 1e-12), m["jac_sv_max"], color=c, alpha=0.2)
  ax1.set(xlabel="hidden layer l", ylabel="‖∂L/∂h_l‖", title="back-propagated gradient norms")
  ax2.axhline(1.0, color="k", lw=0.8, ls="--")
  ax2.set(xlabel="layer l", ylabel="σ(∂h_{l+1}/∂h_l)", title="layer Jacobian singular values (min–max band)")
  ax1.legend(fontsize=8)
  ax2.legend(fontsize=8)
  fig.suptitle(result["verdict_line"][:150], fontsize=8)
  fig.tight_layout()
  if path:
    fig.savefig(path, dpi=110)
  return fig


def write_outputs(result: Mapping, out_dir: str) -> dict[str, str]:
  """Writes report.md, checkup.png and checkup.json into `out_dir`; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f) for k, f in
           (("report", "report.md"), ("png", "checkup.png"), ("json", "checkup.json"))}
  with open(paths["report"], "w") as f:
    f.write(report_markdown(result))
  plot_checkup(result, paths["png"])
  with open(paths["json"], "w") as f:
    json.dump(to_json(result), f, indent=1)
  return paths


# ----------------------------------------------------------------------- CLI ---
def checkup_from_config(config, *, batch: int = 32, lsc_steps: int = 100, remedies="auto") -> dict:
  """The check-up of a config's model at its seed's init, on its first training batch.

  Uses the engine's own pieces (read-only): `stable_training.train.loop.load_data`,
  `stable_training.models.build_model` and the config's loss.
  """
  from stable_training import models as models_lib
  from stable_training.train import loop, losses
  d = loop.load_data(config)
  if d["x_train"] is not None:
    x, y = d["x_train"][:batch], d["y_train"][:batch]
  elif d["task"] is not None:
    from stable_training.data import sequence_tasks
    x, y = d["task"].sample(sequence_tasks.batch_key(config.seed, 0), batch, config.dataset.lag)
  else:
    x, y = d["x_test"][:batch], d["y_test"][:batch]
  model = models_lib.build_model(config.model, num_classes=d["num_classes"], input_shape=d["x_test"].shape[1:])
  k_init, _ = jax.random.split(jax.random.PRNGKey(int(config.seed)))
  params = jax.jit(model.init)(k_init, jnp.asarray(x[:1]))["params"]   # as the engine inits
  loss_fn = losses.mean_loss(config.get("loss", "cross_entropy"))
  return checkup(model, params, (jnp.asarray(x), jnp.asarray(y)), loss_fn=loss_fn,
                 key=jax.random.PRNGKey(int(config.seed)), remedies=remedies, lsc_steps=lsc_steps)


def main(argv=None) -> None:
  """``python -m stable_training.checkup --config=FILE.py[:VARIANT] [--out=DIR]`` (flags defined here)."""
  from absl import app, flags
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file("config", None, "Config file (optionally :variant).")
  out = flags.DEFINE_string("out", "checkup", "Directory for report.md, checkup.png, checkup.json.")
  batch = flags.DEFINE_integer("batch", 32, "Examples in the measured batch.")
  lsc_steps = flags.DEFINE_integer("lsc_steps", 100, "LSC pre-training steps per target ρ.")
  remedies = flags.DEFINE_list("remedies", ["auto"], f"Remedies to measure: auto or some of {', '.join(REMEDIES)}.")

  def run(_):
    if config.value is None:
      print("error: --config is required", file=sys.stderr)
      sys.exit(2)
    chosen = "auto" if remedies.value == ["auto"] else tuple(remedies.value)
    result = checkup_from_config(config.value, batch=batch.value, lsc_steps=lsc_steps.value, remedies=chosen)
    paths = write_outputs(result, out.value)
    print(result["verdict_line"])
    print(f"best remedy: {result['best']}; wrote {', '.join(paths.values())}")
  app.run(run, argv=argv)


class _CallableModule(types.ModuleType):
  """``st.checkup(model, params, batch)``: the module is callable as its `checkup` function."""

  def __call__(self, *args, **kwargs):
    return checkup(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
  from stable_training import allocator
  allocator.skip_exit_collection()   # the program's exit, not the library's
  main()
