"""LSC pre-training (Herranz-Celotti & Rouat 2023/24, "Stabilizing RNN Gradients through Pre-training").

Before training, the parameters are moved so that every transition Jacobian
has its radius at a target ρ:

  L(θ) = Σ_k mean_{l, t, b} (ρ(M_k^{l,t,b}(θ)) − ρ_k)²,   k ∈ {time, depth, readout}

with M_time = ∂s^l_t/∂s^l_{t−1}, M_depth = ∂s^l_t/∂s^{l−1}_t (l ≥ 1) and
M_readout = ∂o/∂y^L_T = W_outᵀ (target 1; y is the last layer's output, e.g.
h of the LSTM state [h, c], whose c-columns of ∂o/∂s would be zero),
minimized with AdaBelief (lr 7e-3 by default) on a few input batches. Presets (`preset`): ``rho=1`` (ρ_t =
ρ_d = 1), ``rho=0.5`` (ρ_t = ρ_d = 0.5) and ``unbalanced`` (ρ_d = L/(L+T),
ρ_t = T/(L+T)). Feed-forward nets: M_l = ∂h_{l+1}/∂h_l, target 1.

Any Flax model gets LSC. A model's ``lsc_transitions(params, x, key,
time_samples)`` returns the maps per kind
(`stable_training.lsc.protocol.Transitions`) and everything here is generic
(`radii`, `transition_radii`, `pretrain`, `mean_radii`, `layer_spectra`);
`DeepMLP`, `ROAFMLP`, `RecurrentClassifier` and `DeepRNN` declare theirs
(`supports(model)`; the engine hook `pretrain_from_config` needs them). For
any other Flax linen model the maps are found from the model itself
(`stable_training.lsc.generic.find_transitions`: nn.Dense stacks with
elementwise activations, nn.RNN layers of any flax cell), or given by the
user (``transitions=fn``). Targets: a number ρ (time and depth → ρ,
read-out → 1), a preset name, or {kind: ρ} (`resolve_targets`).

Design choices (documented, not the paper's exact code):
  * "Local": the states s_{t−1}, s^{l−1}_t are computed by a forward pass
    and held under `stop_gradient`; the loss differentiates only through the
    one-step maps (no back-propagation through time for the pre-training).
  * Each iteration samples `time_samples` random steps t (time and depth
    Jacobians at those steps) so the cost does not grow with T; the read-out
    Jacobian is taken at the last step (readout='last').
  * ``batch_samples`` (None = all): each step uses a fresh random subset of that many
    of the given examples (an unbiased estimate of the batch-mean loss), so a
    step costs that many Jacobian eigendecompositions per transition rather
    than one per example (the exact radius is a host LAPACK eig: ≈ 5 ms for
    128 × 128 on this machine's cores).
  * The optimisation is one compiled `lax.while_loop` (``compiled_loop=True``;
    False: one compiled call per step driven by a host loop). A
    step whose per-layer mean radii are all within `tol` of their targets
    makes no update (the condition holds, so parameters already at target
    stay put); the loop stops after `patience` such steps in a row and
    returns those parameters, or at `max_steps` and returns the lowest-loss
    parameters seen.
  * No module-level caches: the compiled functions are module-level `jax.jit`
    functions with the model and the settings as static arguments (JAX's own
    compilation cache reuses them across calls and seeds); results are
    memoized only in a ``memo`` mapping the caller passes.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Any, Mapping, MutableMapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training.config import LSC_KEYS, lookup
from stable_training.lsc.generic import lsc_model
from stable_training.lsc.protocol import TRANSITION_KINDS, Transitions, _is_single_key, supports
from stable_training.lsc.spectral import check_kind, radius, radius_of_map

PRESETS = ("rho=1", "rho=0.5", "unbalanced")
_ALIASES = {"1": "rho=1", "0.5": "rho=0.5", "rho=1": "rho=1", "rho=0.5": "rho=0.5",
            "unbalanced": "unbalanced"}
METHODS = LSC_KEYS["method"].choices  # ("exact", "power"), declared once with config.lsc
# The public functions' defaults are the engine's (`config.lsc`), declared once in `config.LSC_KEYS`.
_DEFAULT = {k: LSC_KEYS[k].default for k in ("steps", "lr", "tol", "patience", "time_samples", "method",
                                             "batch_samples")}


def preset(name: str, depth: int, time_steps: int) -> dict[str, float]:
  """Targets {'rho_time', 'rho_depth', 'rho_readout'} of an LSC preset (Herranz-Celotti & Rouat).

  ``rho=1``: 1, 1; ``rho=0.5``: 0.5, 0.5; ``unbalanced``: ρ_time = T/(L+T),
  ρ_depth = L/(L+T) with L = depth, T = time_steps. The read-out target is 1.
  Accepts the config spellings '1' and '0.5' too.
  """
  key = _ALIASES.get(str(name))
  if key is None:
    raise ValueError(f"unknown LSC preset {name!r}; valid presets: {', '.join(PRESETS)} (or '1', '0.5')")
  if key == "rho=1":
    rt = rd = 1.0
  elif key == "rho=0.5":
    rt = rd = 0.5
  else:
    if depth < 1 or time_steps < 1:
      raise ValueError(f"unbalanced preset needs depth >= 1 and time_steps >= 1, got {depth}, {time_steps}")
    rt, rd = time_steps / (depth + time_steps), depth / (depth + time_steps)
  return {"rho_time": rt, "rho_depth": rd, "rho_readout": 1.0}


def _check_samples(n) -> int:
  """None → 0 (every example, internally); else an integer >= 1."""
  if n is None:
    return 0
  if isinstance(n, bool) or int(n) != n or n < 1:
    raise ValueError(f"LSC batch_samples={n!r}: must be an integer >= 1, or None for every example")
  return int(n)


def _check_targets(**targets):
  for k, v in targets.items():
    if not np.isfinite(v) or v <= 0:
      raise ValueError(f"LSC target {k}={v!r}: must be a finite number > 0")


_VALID_TARGETS = (f"valid targets: a number rho > 0 (time and depth -> rho, read-out -> 1), a preset "
                  f"({', '.join(map(repr, PRESETS))}) or a mapping {{kind: rho}} over {', '.join(TRANSITION_KINDS)}")


def _is_number(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) or (
      isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number))


def _check_target_form(targets):
  """One-line ValueError unless `targets` is a number > 0, a preset name or a {kind: number > 0} mapping."""
  bad = lambda why: ValueError(f"LSC targets={targets!r}: {why}; {_VALID_TARGETS}")
  if _is_number(targets):
    if not (np.isfinite(float(targets)) and float(targets) > 0):
      raise bad("a number must be finite and > 0")
  elif isinstance(targets, str):
    if _ALIASES.get(targets) is None:
      raise bad("unknown preset")
  elif isinstance(targets, Mapping):
    unknown = [k for k in targets if k not in TRANSITION_KINDS]
    if unknown:
      raise bad(f"unknown kind {', '.join(map(repr, unknown))}")
    for k, v in targets.items():
      if not _is_number(v) or not (np.isfinite(float(v)) and float(v) > 0):
        raise bad(f"target {k}={v!r} must be a finite number > 0")
  else:
    raise bad(f"a {type(targets).__name__}")


def resolve_targets(targets, kinds: Mapping[str, int]) -> dict[str, float]:
  """{kind: ρ_k} for the transition kinds `kinds` ({kind: length}) of a model (Herranz-Celotti & Rouat).

  targets:
    a number ρ: time and depth → ρ, read-out → 1 (the presets' read-out
      rule: the read-out o = W_outᵀ y is a map to class scores, kept at 1);
    a preset name (`PRESETS`, or '1', '0.5'): `preset` with L the depth
      length and T the time length; without time transitions ρ_depth = 1
      for ``rho=1`` and ``unbalanced`` (nothing to balance against), 0.5
      for ``rho=0.5``;
    a mapping {kind: ρ}: as given (kinds the model lacks are ignored).
  Raises:
    ValueError (one line): a bad target, or a kind of the model without one.
  """
  _check_target_form(targets)
  if _is_number(targets):
    rho = float(targets)
    return {k: (1.0 if k == "readout" else rho) for k in kinds}
  if isinstance(targets, str):
    if "time" in kinds:
      t = preset(targets, kinds.get("depth", 1), kinds["time"])
    else:
      t = preset(targets, 1, 1)
      if _ALIASES[targets] == "unbalanced":
        t["rho_depth"] = 1.0
    full = {"time": t["rho_time"], "depth": t["rho_depth"], "readout": t["rho_readout"]}
    return {k: full[k] for k in kinds if k in full}
  missing = [k for k in kinds if k not in targets]
  if missing:
    raise ValueError(f"LSC targets: no target for {', '.join(missing)} (the model's transitions: "
                     f"{', '.join(kinds)}); {_VALID_TARGETS}")
  return {k: float(targets[k]) for k in kinds}


def _unwrap(params):
  """A flax variables dict {'params': p} → (p, rewrap); any other params tree → (params, identity)."""
  if isinstance(params, Mapping) and list(params.keys()) == ["params"]:
    if hasattr(params, "copy") and type(params).__name__ == "FrozenDict":
      return params["params"], lambda p: params.copy({"params": p})
    return params["params"], lambda p: {**params, "params": p}
  return params, lambda p: p


# ---------------------------------------------------------------- Jacobians ---
def _jac(f, s):
  """Dense Jacobian of f at s (forward mode when it needs fewer passes)."""
  n = s.shape[-1]
  m = jax.eval_shape(f, s).shape[-1]
  return (jax.jacfwd if n <= m else jax.jacrev)(f)(s)


def _rad_fn(kind, method, num_iters):
  """(map f, point s, key) → radius of ∂f/∂s, exact or matrix-free."""
  if method == "exact":
    return lambda f, s, key: radius(_jac(f, s), kind, key)
  return lambda f, s, key: radius_of_map(f, s, kind, num_iters=num_iters, key=key)


def _check_method(method):
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def _unsupported(model) -> ValueError:
  return ValueError(f"LSC needs a model that declares its transition Jacobians (a method "
                    f"lsc_transitions(params, x, key, time_samples)); {type(model).__name__} does not")


def _as_tuple(tr) -> tuple[Transitions, ...]:
  return tuple(tr) if isinstance(tr, (tuple, list)) else (tr,)


def _map_over_points(tr: Transitions, one):
  """one(theta, context, u, key) → value, vmapped over the point (and layer) axes of `tr`."""
  shared = tr.keys is None or _is_single_key(tr.keys)
  k_ax = None if shared else 0
  f = one
  for _ in range(tr.points.ndim - 1 - int(tr.stacked)):
    f = jax.vmap(f, in_axes=(None, 0, 0, k_ax))
  if tr.stacked and tr.points.shape[0] == 1:  # one layer: no vmap over it (same program as unstacked)
    first = lambda t: jax.tree.map(lambda a: a[0], t)
    return jax.tree.map(lambda a: a[None], f(first(tr.theta), first(tr.context), tr.points[0],
                                             tr.keys if shared else first(tr.keys)))
  if tr.stacked:
    f = jax.vmap(f, in_axes=(0, 0, 0, k_ax))
  return f(tr.theta, tr.context, tr.points, tr.keys)


def _radii_of(tr: Transitions, rad) -> jax.Array:
  """ρ(∂fn(θ_l, c_p, u)/∂u at u_p) for every point: [L, *P] (stacked) or [*P]."""
  if tr.stacked and tr.points.shape[0] == 0:
    return jnp.zeros(tr.points.shape[:-1], tr.points.dtype)
  return _map_over_points(tr, lambda th, c, u, k: rad(lambda v: tr.fn(th, c, v), u, k))


def _measure(model, params, x, key, *, time_samples, kind, method, num_iters):
  """(radii per kind, whether each kind has a layer axis) of `model`'s declared transitions."""
  declared = model.lsc_transitions(params, x, key, time_samples=time_samples)
  rad = _rad_fn(kind, method, num_iters)
  radii, layered = {}, {}
  for name, tr in declared.items():
    trs = _as_tuple(tr)
    if len(trs) > 1 and not all(t.stacked for t in trs):
      raise ValueError(f"LSC transitions {name!r}: a tuple of Transitions must all be stacked")
    rs = [_radii_of(t, rad) for t in trs]
    radii[name] = rs[0] if len(rs) == 1 else jnp.concatenate(rs, axis=0)
    layered[name] = trs[0].stacked
  return radii, layered


def transition_radii(model, params, x: jax.Array, key: jax.Array | None = None, *, time_samples: int = 2,
                     kind: str = "spectral_radius", method: str = "exact",
                     num_iters: int = 50, transitions=None, apply_kwargs=None) -> dict[str, jax.Array]:
  """Radii of every transition Jacobian of `model` (LSC, Herranz-Celotti & Rouat 2023/24).

  Any Flax model: its declared ``lsc_transitions``, a user's `transitions`
  function, or the ones `stable_training.lsc.generic.find_transitions`
  finds (a stack of nn.Dense + elementwise activations, nn.RNN layers).

  For each kind k the model returns from ``lsc_transitions(params, x, key,
  time_samples)`` (`stable_training.lsc.protocol.Transitions`) and each point
  p of it: ρ(M_p) with M_p = ∂fn(θ_l, c_p, u)/∂u at u = u_p, where ρ is
  max |eig| (``kind='spectral_radius'``; non-square M square-subsampled) or
  σ_max (``'spectral_norm'``), computed exactly (``method='exact'``: the dense
  Jacobian's eig/SVD on the host) or matrix-free (``'power'``: power
  iteration with `num_iters` JVPs, `radius_of_map`). Shapes: [L, *P] for
  layered kinds (depth [L−1, B(, K)], time [L, B, K]), [*P] for the read-out.
  Differentiable w.r.t. `params` (through θ; the points are held fixed) —
  under a transformation of a model without ``lsc_transitions``, pass
  ``lsc.find_transitions(model, params, x)`` (made eagerly) as the model.
  """
  check_kind(kind)
  _check_method(method)
  model = lsc_model(model, params, x, transitions=transitions, apply_kwargs=apply_kwargs)
  key = jax.random.PRNGKey(0) if key is None else key
  return _measure(model, params, x, key, time_samples=time_samples, kind=kind, method=method,
                  num_iters=num_iters)[0]


@functools.partial(jax.jit, static_argnums=(0,))
def _radii_jit(measure, params, x, key):
  return measure.radii(params, x, key)[0]


def radii(model, params, x, *, key: jax.Array | None = None, time_samples: int = 2,
          kind: str = "spectral_radius", method: str = "exact", num_iters: int = 50,
          transitions=None, apply_kwargs=None) -> dict[str, np.ndarray]:
  """Radius of every transition Jacobian of any Flax model, per point (Herranz-Celotti & Rouat 2023/24).

  ρ(M) = max_i |λ_i(M)| (``kind='spectral_radius'``; a non-square M is
  square-subsampled) or σ_max(M) (``'spectral_norm'``) of each transition
  Jacobian the LSC targets:
    depth [L−1, B]:    ρ(∂h_{l+1}/∂h_l) = ρ(diag φ′(z_l) W_lᵀ) between the inputs of
                       consecutive nn.Dense layers (feed-forward), or
           [L−1, B, K]: ρ(∂h^l_t/∂h^{l−1}_t) between stacked nn.RNN layers;
    time  [L, B, K]:   ρ(∂s^l_t/∂s^l_{t−1}), s the cell's carry ((c, h) for an LSTM);
    readout [P]:       ρ(∂o/∂y) = ρ(W_outᵀ) of the last Dense.
  K = min(time_samples, T) steps drawn from `key` without replacement; our
  models use their declared maps (their docstrings give the shapes), others
  the ones `find_transitions` finds (or the user's `transitions`, see
  `stable_training.lsc.generic.UserTransitions`). One compiled call; returns
  NumPy arrays. `params` may be the params tree or {'params': tree}.
  """
  measure, params, x, key = _prepared(model, params, x, key, transitions, apply_kwargs, time_samples, kind,
                                      method, num_iters)
  return {k: np.asarray(v) for k, v in _radii_jit(measure, params, x, key).items()}


def _prepared(model, params, x, key, transitions, apply_kwargs, time_samples, kind, method, num_iters):
  """(the `_Measure` of `model` — its own transitions or the ones found —, params, x, key) after the checks."""
  check_kind(kind)
  _check_method(method)
  params, _ = _unwrap(params)
  x = jnp.asarray(x)
  model = lsc_model(model, params, x, transitions=transitions, apply_kwargs=apply_kwargs)
  key = jax.random.PRNGKey(0) if key is None else key
  return _Measure(model, int(time_samples), kind, method, int(num_iters)), params, x, key


def rnn_radii(model, params, x: jax.Array, key: jax.Array, *,
              time_samples: int = 2, kind: str = "spectral_radius", method: str = "exact",
              num_iters: int = 50) -> dict[str, jax.Array]:
  """Radii of a `DeepRNN`'s transition Jacobians (Herranz-Celotti & Rouat): `transition_radii`.

  At `time_samples` random steps t (drawn from `key`, without replacement)
  and every batch element b:
    time  [L, B, K]:   ρ(∂s^l_t/∂s^l_{t−1}),  s^l_{−1} = 0
    depth [L−1, B, K]: ρ(∂s^l_t/∂s^{l−1}_t), l = 1..L−1, through layer l−1's output map
    readout [B]:       ρ(∂o/∂y^{L−1}_{T−1}) = ρ(W_outᵀ) (non-square: subsampled per example)
  The states are computed with ``stop_gradient`` (the condition is local).
  Layers 1..L−1 are vmapped over their stacked parameters (no Python loop).
  """
  return transition_radii(model, params, x, key, time_samples=time_samples, kind=kind, method=method,
                          num_iters=num_iters)


def ffn_radii(model, params, x: jax.Array, key: jax.Array, *,
              kind: str = "spectral_radius", method: str = "exact",
              num_iters: int = 50) -> dict[str, jax.Array]:
  """Radii of a feed-forward net's layer Jacobians (LSC, Herranz-Celotti & Rouat): `transition_radii`.

  For a `DeepMLP`:
    depth [L−1, B]: ρ(∂h_{l+1}/∂h_l) = ρ(diag φ'(z_{l+1}) W_{l+1}ᵀ), l = 0..L−2
    readout [B]:    ρ(∂o/∂h_{L−1}) = ρ(W_outᵀ), square-subsampled per example
  (a `ROAFMLP` layer: α O_l + β diag φ'(z_l) W_lᵀ). Hidden layers are vmapped
  over their stacked parameters.
  """
  return transition_radii(model, params, x, key, kind=kind, method=method, num_iters=num_iters)


def layer_spectra(model, params, x, kind: str = "depth", *, key: jax.Array | None = None,
                  time_samples: int = 2) -> dict[str, np.ndarray]:
  """Eigen/singular-value summary of each layer's transition Jacobians (host, exact).

  For the layered transition kind `kind` ('depth' or 'time') of a model that
  declares its transitions, and each layer l: with λ the eigenvalues and σ
  the singular values of every (square) Jacobian M_p of that layer, averaged
  over its points p (examples, sampled steps):
    max_abs_eig = ρ(M) (what LSC targets, Herranz-Celotti & Rouat),
    second_abs_eig, median_abs_eig (the bulk of the spectrum),
    rms_sv = √(mean σ²) = ‖M‖_F/√n (the factor by which Mᵀ scales a random
    direction: how back-propagated gradient norms grow or decay per layer;
    Glorot & Bengio 2010 §4.2.3 use the mean σ).
  Arrays of shape [L]. An analysis helper (NumPy eig per matrix), not a loss.
  Any Flax model (`transition_radii` says which maps).
  """
  model = lsc_model(model, params, x)
  key = jax.random.PRNGKey(0) if key is None else key

  @jax.jit
  def jacobians(params, x, key):
    trs = _as_tuple(model.lsc_transitions(params, x, key, time_samples=time_samples)[kind])
    if not all(t.stacked for t in trs):
      raise ValueError(f"layer_spectra needs a layered transition kind (depth, time), got {kind!r}")
    js = [_map_over_points(t, lambda th, c, u, k, t=t: jax.jacfwd(lambda v: t.fn(th, c, v))(u))
          for t in trs if t.points.shape[0]]
    return jnp.concatenate(js, axis=0) if js else None

  J = jacobians(params, jnp.asarray(x), key)
  if J is None:
    return {k: np.zeros((0,)) for k in ("max_abs_eig", "second_abs_eig", "median_abs_eig", "rms_sv")}
  J = np.asarray(J, np.float64)  # [L, *P, n, n]
  if J.shape[-1] != J.shape[-2]:
    raise ValueError(f"layer_spectra needs square Jacobians, got {J.shape[-2:]}")
  ev = -np.sort(-np.abs(np.linalg.eigvals(J)), axis=-1)
  sv = np.linalg.svd(J, compute_uv=False)
  axes = tuple(range(1, J.ndim - 2))
  return {"max_abs_eig": ev[..., 0].mean(axes), "second_abs_eig": ev[..., 1].mean(axes),
          "median_abs_eig": np.median(ev, axis=-1).mean(axes), "rms_sv": np.sqrt((sv ** 2).mean(-1)).mean(axes)}


def ffn_layer_spectra(model, params, x) -> dict[str, np.ndarray]:
  """`layer_spectra` of the depth transitions (the matrices LSC sets, Herranz-Celotti & Rouat).

  For a `DeepMLP`, J_l = diag φ'(z_{l+1}) W_{l+1}ᵀ, l = 0..L−2.

  Arrays of shape [L−1], averaged over the examples (see `layer_spectra`).
  """
  return layer_spectra(model, params, x, "depth")


# ----------------------------------------------------------------- the loop ---
def _layer_means(r: dict[str, jax.Array], layered: dict[str, bool]) -> dict[str, jax.Array]:
  """Per-layer mean radius: time/depth [L, ...] → [L]; readout → scalar."""
  def mean(k, v):
    if not layered[k]:
      return v.mean()
    if v.shape[0] == 0:
      return jnp.zeros((0,), v.dtype)
    return v.reshape(v.shape[0], -1).mean(axis=1)
  return {k: mean(k, v) for k, v in r.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class _Measure:
  """Static description of what is measured: the model and the radius settings.

  Hashed and compared through ``repr(model)`` (flax modules holding dicts are
  not hashable), so the module-level `jax.jit` functions below reuse their
  compilations across calls with an equal model and settings.
  """
  model: Any
  time_samples: int = 2
  kind: str = "spectral_radius"
  method: str = "exact"
  num_iters: int = 50

  def _id(self):
    return (type(self.model), repr(self.model), self.time_samples, self.kind, self.method, self.num_iters)

  def __hash__(self):
    return hash(self._id())

  def __eq__(self, other):
    return isinstance(other, _Measure) and self._id() == other._id()

  def radii(self, params, x, key):
    return _measure(self.model, params, x, key, time_samples=self.time_samples, kind=self.kind,
                    method=self.method, num_iters=self.num_iters)


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Static settings of one compiled pre-training loop. Targets, steps, lr, tol and patience are arguments
  (`_knobs`): one compilation serves every ρ and every budget up to `capacity` steps."""
  kinds: tuple[str, ...]
  capacity: int   # history rows: max_steps rounded up (`_capacity`)
  noise: bool
  batch_samples: int = 0


def _capacity(max_steps: int) -> int:
  """History rows for `max_steps`: 256, or the next power of two above it (a few compilations at most)."""
  return max(256, 1 << (int(max_steps) - 1).bit_length())


def _knobs(max_steps, lr, tol, patience) -> dict:
  """The loop's run-time settings, as arrays: changing them does not recompile."""
  return {"max_steps": np.int32(max_steps), "lr": np.float32(lr), "tol": np.float32(tol),
          "patience": np.int32(patience)}


def _loop(measure: _Measure, spec: _Spec):
  """(init, cond, body, finish) of the pre-training loop (pure functions of the carry; its ``knobs``:
  `_knobs`)."""
  tx = lambda knobs: optax.adabelief(knobs["lr"])   # optax takes a traced learning rate

  def losses(p, x, k, targets):
    r, layered = measure.radii(p, x, k)
    loss = sum(jnp.mean((v - targets[name]) ** 2) for name, v in r.items() if v.size)
    return loss, _layer_means(r, layered)

  grad_fn = jax.value_and_grad(losses, has_aux=True)

  def init(params, inputs, key, targets, knobs):
    targets = {k: jnp.asarray(targets[k], jnp.float32) for k in spec.kinds}
    bs = spec.batch_samples if 0 < spec.batch_samples < inputs.shape[0] else inputs.shape[0]
    m0 = jax.eval_shape(lambda: losses(params, inputs[:bs], key, targets)[1])
    hist0 = {k: jnp.full((spec.capacity,) + v.shape, jnp.nan, v.dtype) for k, v in m0.items()}
    return dict(i=jnp.zeros((), jnp.int32), params=params, opt=tx(knobs).init(params), best=params,
                best_loss=jnp.array(jnp.inf, jnp.float32), streak=jnp.zeros((), jnp.int32),
                key=key, hist=hist0, loss_hist=jnp.full((spec.capacity,), jnp.nan, jnp.float32),
                inputs=inputs, targets=targets, knobs=knobs)

  def cond(c):
    return (c["i"] < c["knobs"]["max_steps"]) & (c["streak"] < c["knobs"]["patience"])

  def body(c):
    key, k_x, k_r, k_s = jax.random.split(c["key"], 4)
    inputs = c["inputs"]
    n = inputs.shape[0]
    x = inputs
    if 0 < spec.batch_samples < n:  # a fresh random subset of the examples
      x = inputs[jax.random.choice(k_s, n, (spec.batch_samples,), replace=False)]
    x = jax.random.normal(k_x, x.shape, x.dtype) if spec.noise else x
    targets = c["targets"]
    (loss, means), g = grad_fn(c["params"], x, k_r, targets)
    ok = jnp.array(True)
    for name, v in means.items():
      ok &= jnp.all(jnp.abs(v - targets[name]) <= c["knobs"]["tol"])
    better = loss < c["best_loss"]
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), c["params"], c["best"])
    # Where every mean radius is already within tol the condition holds:
    # leave the parameters (and optimizer state) as they are.
    upd, opt = tx(c["knobs"]).update(g, c["opt"], c["params"])
    new_params = jax.tree.map(lambda a, b: jnp.where(ok, a, b), c["params"],
                              optax.apply_updates(c["params"], upd))
    opt = jax.tree.map(lambda a, b: jnp.where(ok, a, b), c["opt"], opt)
    hist = {k: c["hist"][k].at[c["i"]].set(means[k]) for k in means}
    return dict(i=c["i"] + 1, params=new_params, opt=opt, best=best,
                best_loss=jnp.where(better, loss, c["best_loss"]),
                streak=jnp.where(ok, c["streak"] + 1, 0), key=key, hist=hist,
                loss_hist=c["loss_hist"].at[c["i"]].set(loss), inputs=inputs, targets=targets,
                knobs=c["knobs"])

  def finish(c):
    # Converged: the current parameters met the condition `patience` times in
    # a row; otherwise the lowest-loss ones seen.
    done = c["streak"] >= c["knobs"]["patience"]
    out = jax.tree.map(lambda a, b: jnp.where(done, a, b), c["params"], c["best"])
    return out, c["i"], c["streak"], c["hist"], c["loss_hist"], c["best_loss"]

  return init, cond, body, finish


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_compiled(measure, spec, params, inputs, key, targets, knobs):
  init, cond, body, finish = _loop(measure, spec)
  return finish(jax.lax.while_loop(cond, body, init(params, inputs, key, targets, knobs)))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_init(measure, spec, params, inputs, key, targets, knobs):
  return _loop(measure, spec)[0](params, inputs, key, targets, knobs)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_body(measure, spec, c):
  return _loop(measure, spec)[2](c)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_finish(measure, spec, c):
  return _loop(measure, spec)[3](c)


def _optimize(measure: _Measure, params, inputs, key, spec: _Spec, compiled_loop: bool, targets: dict,
              knobs: dict):
  """The optimisation loop shared by every pre-training entry point (targets: {kind: ρ_k} for spec.kinds;
  knobs: `_knobs`)."""
  targets = {k: np.float32(targets[k]) for k in spec.kinds}
  if compiled_loop:
    best, n, streak, hist, loss_hist, best_loss = _run_compiled(measure, spec, params, inputs, key, targets, knobs)
  else:
    c = _run_init(measure, spec, params, inputs, key, targets, knobs)
    n_steps, streak = 0, 0
    while n_steps < knobs["max_steps"] and streak < knobs["patience"]:
      c = _run_body(measure, spec, c)
      n_steps, streak = int(c["i"]), int(c["streak"])
    best, n, streak, hist, loss_hist, best_loss = _run_finish(measure, spec, c)
  n = int(n)
  history = {k: np.asarray(v)[:n] for k, v in hist.items()}
  history["loss"] = np.asarray(loss_hist)[:n]
  history["steps"] = n
  history["converged"] = bool(int(streak) >= knobs["patience"])
  history["best_loss"] = float(best_loss)
  return best, history


def declared_kinds(model, params, x, *, time_samples: int = 2) -> dict[str, int]:
  """{kind: length} of the transitions `model` declares, traced abstractly (no FLOPs).

  length: how many such transitions the network chains (T for 'time', the
  number of layers L for 'depth'); the 'unbalanced' preset of Herranz-Celotti
  & Rouat, ρ_depth = L/(L+T), ρ_time = T/(L+T), reads it. Any Flax model
  (declared, found or user-given transitions, see `transition_radii`).
  """
  model = lsc_model(model, params, x)
  found = {}

  def trace(p, x):
    for name, tr in model.lsc_transitions(p, x, jax.random.PRNGKey(0), time_samples=time_samples).items():
      found[name] = int(_as_tuple(tr)[0].length)
    return jnp.zeros(())
  jax.eval_shape(trace, params, jnp.asarray(x))
  return found


def pretrain(model, params, inputs: jax.Array, targets: float | str | Mapping[str, float], *,
             max_steps: int = _DEFAULT["steps"], lr: float = _DEFAULT["lr"], tol: float = _DEFAULT["tol"],
             patience: int = _DEFAULT["patience"], key: jax.Array | None = None,
             time_samples: int = _DEFAULT["time_samples"], kind: str = "spectral_radius",
             method: str = _DEFAULT["method"], num_iters: int = 50, noise: bool = False,
             batch_samples: int | None = _DEFAULT["batch_samples"],
             compiled_loop: bool = True, transitions=None, apply_kwargs: Mapping | None = None):
  """LSC pre-training of any Flax model (Herranz-Celotti & Rouat 2023/24, "Stabilizing RNN Gradients through Pre-training").

  Minimizes L(θ) = Σ_k mean_{l,p} (ρ(M_k^{l,p}(θ)) − ρ_k)² over the
  transition kinds k ∈ {time, depth, readout} of the model (`radii` says
  which maps: the model's declared ``lsc_transitions``, a user's
  `transitions` function, or the ones found from the model itself — stacks
  of nn.Dense + elementwise activations, nn.RNN layers of any flax cell;
  see `stable_training.lsc.generic`) with `optax.adabelief(lr)` on `inputs`
  (a batch of training inputs; with ``noise=True`` fresh N(0, 1) inputs of
  that shape at every step; ``batch_samples`` (an integer; None or ≥ the
  number of inputs = all of them): a fresh random subset of that many
  examples per step). The defaults are the engine's ``config.lsc`` ones
  (`stable_training.config.LSC_KEYS`: 200 steps, lr 7e-3, tol 0.08, patience
  20, 4 random examples per step). No update while every per-layer mean radius is
  within `tol` of its target; stops after `patience` such steps in a row
  (returning those parameters) or after `max_steps` (returning the
  lowest-loss ones). ``compiled_loop=True``: one compiled `lax.while_loop`;
  False: a host loop of compiled steps. Targets, `max_steps` (up to the
  next power of two ≥ 256), `lr`, `tol` and `patience` are run-time values:
  changing them reuses the compiled loop (the README example's check-up and
  pre-training: 2 compilations → 1, −1.9 s).

  targets (`resolve_targets`): a number ρ (time and depth → ρ, read-out →
  1, as in the paper's presets), a preset name (``'rho=1'``, ``'rho=0.5'``,
  ``'unbalanced'``: ρ_depth = L/(L+T), ρ_time = T/(L+T)), or a mapping
  {kind: ρ_k} (kinds the model lacks are ignored).

  Returns:
    (params, history): the new parameters, with the tree structure of the
    given `params` (a {'params': tree} variables dict is returned as one);
    history[k] [n, L] per layered kind (time, depth) and ['readout'] [n]
    (per-step mean radii at the parameters before that step's update),
    ['loss'] [n], 'steps' n, 'converged', 'best_loss', 'targets' (the
    resolved {kind: ρ_k}).
  Raises:
    ValueError (one line): a bad target (naming it and what is valid), a
      kind of the model without a target, a bad kind/method, a model whose
      transitions cannot be found.
  """
  _check_target_form(targets)
  check_kind(kind)
  _check_method(method)
  params, rewrap = _unwrap(params)
  inputs = jnp.asarray(inputs)
  model = lsc_model(model, params, inputs, transitions=transitions, apply_kwargs=apply_kwargs)
  kinds = declared_kinds(model, params, inputs, time_samples=time_samples)
  resolved = resolve_targets(targets, kinds)
  key = jax.random.PRNGKey(0) if key is None else key
  spec = _Spec(kinds=tuple(resolved), capacity=_capacity(max_steps), noise=bool(noise),
               batch_samples=_check_samples(batch_samples))
  measure = _Measure(model, int(time_samples), kind, method, int(num_iters))
  new, history = _optimize(measure, params, inputs, key, spec, bool(compiled_loop), resolved,
                           _knobs(max_steps, lr, tol, patience))
  history["targets"] = resolved
  return rewrap(new), history


def lsc_pretrain(model, params, inputs: jax.Array, *, rho_time: float = 0.5,
                 rho_depth: float = 0.5, rho_readout: float = 1.0, max_steps: int = _DEFAULT["steps"],
                 lr: float = _DEFAULT["lr"], tol: float = _DEFAULT["tol"],
                 patience: int = _DEFAULT["patience"], key: jax.Array | None = None,
                 time_samples: int = _DEFAULT["time_samples"],
                 kind: str = "spectral_radius", method: str = _DEFAULT["method"], num_iters: int = 50,
                 noise: bool = False, batch_samples: int | None = _DEFAULT["batch_samples"],
                 compiled_loop: bool = True):
  """LSC pre-training with separate time/depth/read-out targets (Herranz-Celotti & Rouat 2023/24).

  `pretrain` with targets {time: rho_time, depth: rho_depth, readout:
  rho_readout}, e.g. for a `DeepRNN` (see `rnn_radii`) or a
  `RecurrentClassifier`. Returns (params, history): history['time'] [n, L],
  ['depth'] [n, L−1], ['readout'] [n], ['loss'] [n], 'steps', 'converged',
  'best_loss'.
  Raises:
    ValueError: a target ≤ 0, a bad kind/method, a model without transitions.
  """
  _check_targets(rho_time=rho_time, rho_depth=rho_depth, rho_readout=rho_readout)
  return pretrain(model, params, inputs, {"time": rho_time, "depth": rho_depth, "readout": rho_readout},
                  max_steps=max_steps, lr=lr, tol=tol, patience=patience, key=key,
                  time_samples=time_samples, kind=kind, method=method, num_iters=num_iters, noise=noise,
                  batch_samples=batch_samples, compiled_loop=compiled_loop)


def lsc_pretrain_ffn(model, params, inputs: jax.Array, *, rho: float = 1.0,
                     rho_readout: float = 1.0, max_steps: int = _DEFAULT["steps"], lr: float = _DEFAULT["lr"],
                     tol: float = _DEFAULT["tol"], patience: int = _DEFAULT["patience"],
                     key: jax.Array | None = None, kind: str = "spectral_radius",
                     method: str = _DEFAULT["method"], num_iters: int = 50, noise: bool = False,
                     batch_samples: int | None = _DEFAULT["batch_samples"], compiled_loop: bool = True):
  """LSC pre-training of a feed-forward net: every ρ(∂h_{l+1}/∂h_l) → `rho` (default 1).

  `pretrain` with targets {depth: rho, readout: rho_readout} on the inputs
  flattened to [B, −1] (`DeepMLP`, `ROAFMLP`; Herranz-Celotti & Rouat's LSC
  for feed-forward nets). Returns (params, history) with
  history['depth'] [n, L−1], ['readout'] [n], ['loss'] [n].
  """
  _check_targets(rho=rho, rho_readout=rho_readout)
  inputs = jnp.asarray(inputs)
  inputs = inputs.reshape(inputs.shape[0], -1)
  return pretrain(model, params, inputs, {"depth": rho, "readout": rho_readout}, max_steps=max_steps,
                  lr=lr, tol=tol, patience=patience, key=key, kind=kind, method=method, num_iters=num_iters,
                  noise=noise, batch_samples=batch_samples, compiled_loop=compiled_loop)


@functools.partial(jax.jit, static_argnums=(0,))
def _mean_radii(measure, params, inputs, key):
  return _layer_means(*measure.radii(params, inputs, key))


def mean_radii(model, params, inputs, key=None, *, time_samples: int = 2, kind: str = "spectral_radius",
               method: str = "exact", num_iters: int = 50, transitions=None,
               apply_kwargs: Mapping | None = None) -> dict[str, jax.Array]:
  """Per-layer mean radii {'time': [L], 'depth': [L−1], 'readout': scalar} (Herranz-Celotti & Rouat).

  The means over the points (examples, sampled steps) of `transition_radii`,
  per layer for the layered kinds; only the kinds the model has (no
  'time' for feed-forward nets). Any Flax model (see `radii`). Compiled
  once per (model, settings, shapes).
  """
  measure, params, inputs, key = _prepared(model, params, inputs, key, transitions, apply_kwargs, time_samples,
                                           kind, method, num_iters)
  return _mean_radii(measure, params, inputs, key)


def preset_targets(model, params, x, name: str, *, time_samples: int = 2) -> dict[str, float]:
  """Targets {kind: ρ_k} of preset `name` for the kinds `model` declares (Herranz-Celotti & Rouat).

  With time transitions: `preset`(name, L, T) with L the depth length (1
  without depth transitions) and T the time length of the declared
  transitions. Feed-forward (no time): ρ_depth = 1 for ``rho=1`` and
  ``unbalanced`` (nothing to balance against), 0.5 for ``rho=0.5``.
  The read-out target is 1.
  """
  kinds = declared_kinds(model, params, x, time_samples=time_samples)
  preset(str(name), 1, 1)  # the preset's own error for an unknown name
  return resolve_targets(str(name), kinds)


def _setting(lsc_cfg, key: str):
  """``lsc_cfg.key`` as given (None included), its one declared default (`config.LSC_KEYS`) when absent."""
  return lookup(lsc_cfg, key, LSC_KEYS[key].default)


def pretrain_from_config(model, params, x_batch, lsc_cfg, key, *,
                         memo: MutableMapping | None = None, compiled_loop: bool = True):
  """Engine hook: LSC pre-training as set by ``config.lsc`` (Herranz-Celotti & Rouat).

  Works for any model that declares its transitions (`supports`). lsc_cfg:
  rho (target radius of every time and depth transition, default 1.0),
  targets ('uniform' | 'unbalanced': ρ_time = T/(L+T), ρ_depth = L/(L+T), see
  `preset`; rho is then unused), steps (max_steps);
  optional batch (examples used), batch_samples (random examples per step;
  None = all of them), method ('exact' | 'power'), lr, tol, patience,
  time_samples — each absent key at its declared default in
  `stable_training.config.LSC_KEYS` (batch 16, batch_samples 4, lr 7e-3, tol
  0.08, patience 20, time_samples 2) — and kind ('spectral_radius').

  Returns:
    (params, {'before': radii, 'after': radii, 'info': {'steps', 'converged'}})
    with per-layer mean radii {'time': [L], 'depth': [L−1], 'readout':
    scalar} (the kinds the model declares). With a `memo` mapping, results
    are memoized in it per (model, params, inputs, lsc_cfg, key), e.g. across
    a learning-rate sweep that re-initializes the same seeds.
  Raises:
    ValueError: a model that declares no transitions, a bad preset.
  """
  if not supports(model):
    raise _unsupported(model)
  rho, how = _setting(lsc_cfg, "rho"), str(_setting(lsc_cfg, "targets"))
  if isinstance(rho, str) or not 0.0 < float(rho) < math.inf:
    raise ValueError(f"LSC rho={rho!r}: must be a number > 0 (e.g. 1.0 or 0.5)")
  if how not in LSC_KEYS["targets"].choices:
    raise ValueError(f"LSC targets={how!r}: valid choices are {', '.join(LSC_KEYS['targets'].choices)}")
  n = int(_setting(lsc_cfg, "batch"))
  x = jnp.asarray(x_batch)[:n]
  memo_key = None
  if memo is not None:
    memo_key = (repr(model), _digest(params), _digest(x), _digest(key),
                tuple(sorted((k, str(v)) for k, v in dict(lsc_cfg).items())) if hasattr(lsc_cfg, "items")
                else repr(lsc_cfg))
    if memo_key in memo:
      return memo[memo_key]
  ts = int(_setting(lsc_cfg, "time_samples"))
  common = dict(max_steps=int(_setting(lsc_cfg, "steps")), lr=float(_setting(lsc_cfg, "lr")),
                tol=float(_setting(lsc_cfg, "tol")), patience=int(_setting(lsc_cfg, "patience")),
                kind=str(lookup(lsc_cfg, "kind", "spectral_radius")),  # not a config key: the library's default
                batch_samples=_setting(lsc_cfg, "batch_samples"),
                method=str(_setting(lsc_cfg, "method")), time_samples=ts)
  if how == "unbalanced":
    targets = preset_targets(model, params, x, "unbalanced", time_samples=ts)
  else:  # every time and depth transition at ρ, the read-out at 1
    kinds = declared_kinds(model, params, x, time_samples=ts)
    targets = {k: (1.0 if k == "readout" else float(rho)) for k in kinds if k in ("time", "depth", "readout")}
  k_before, k_run, k_after = jax.random.split(key, 3)
  kw = dict(kind=common["kind"], method=common["method"], time_samples=ts)
  before = mean_radii(model, params, x, k_before, **kw)
  new, hist = pretrain(model, params, x, targets, key=k_run, compiled_loop=compiled_loop, **common)
  after = mean_radii(model, new, x, k_after, **kw)
  result = (new, {"before": before, "after": after,
                  "info": {"steps": hist["steps"], "converged": hist["converged"]}})
  if memo is not None:
    memo[memo_key] = result
  return result


def _digest(tree) -> str:
  """Content hash of a pytree of arrays (for the pre-training memo)."""
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(jax.random.key_data(leaf) if jnp.issubdtype(jnp.asarray(leaf).dtype, jax.dtypes.prng_key)
                   else leaf)
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()
