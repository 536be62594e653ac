"""Random orthogonal additive filters (ROAF), Ceni (2022), feedforward part.

A ROAF layer mixes an orthogonally filtered copy of its input with the usual
nonlinear map (Ceni 2022, arXiv:2210.01245, Eq. of the ROAF-MLP):

    x_{l+1} = α · O_l x_l + β · φ(W_l x_l + b_l),

O_l a fixed random orthogonal matrix (Haar distributed, never trained), W_l, b_l
trained, and by default the convex combination β = 1 − α. Its layer Jacobian
J_l = α O_l + β D_l W_l (D_l = diag φ'(z_l)) has singular values in
[α − β‖D_l W_l‖, α + β‖D_l W_l‖], and because the O_l are independent random
rotations the deviations from isometry do not align from layer to layer: the
paper proves that back-propagated gradients neither vanish nor explode even as
depth → ∞, and trains a 50,000-layer MLP.

Where O_l lives (a design choice, documented here): O_l is NOT a parameter and
NOT a stored variable. Each layer derives it inside its call from a fixed key,
O_l = haar(fold_in(PRNGKey(filter_seed), l)). Storing 50,000 width-128 f32
matrices would cost 3.3 GB; deriving them costs one n×n QR per layer
(≈ (4/3)n³ flops forward, recomputed in the backward pass under remat), which
for width 128 and batch 128 is about as much as the layer's two matmuls, but
memory stays O(width²) whatever the depth and the engine's
``apply({'params': p}, x)`` contract needs no extra collections. Because O_l
is a function of a constant key, no gradient reaches it. On CPU that QR (plus
the n² Gaussian draw) costs ≈ 40× the layer's matmuls, so ``filter_mode=
'fast'`` offers O_l = diag(s_l) P_l O_base (random signed permutation of one
fixed Haar matrix: each O_l exactly Haar distributed, though not independent
across layers), with the per-layer (P_l, s_l) drawn from the layer index (n
uniforms + a sort instead of n² Gaussians + a QR), as [depth, n] tables once per
forward pass; nothing is stored in the variables. The deep studies state which mode they use.

Default init of W_l: ``"roaf_critical"``, orthogonal scaled to 1.1·σ* with
σ* = √(1 − α²)/β (`critical_gain`); with a glorot-like gain and α = 0.99 the
state and every weight gradient decay like 0.99^depth (see `critical_gain`).

Default α: the paper's analysis needs α close to 1 for very deep nets (the
per-layer deviation from isometry is O(β), and it compounds over depth as a
random walk of variance ∝ depth·β²); we use α = 0.99 (β = 0.01) as the
default for the deep MLP. We could not consult the paper's hyper-parameter
tables offline, so this is our reading of the method rather than a quoted value;
every study states the α it used.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from stable_training.models.mlp import (PREACT, ActivationLike, Dense, DenseLayer, InitLike,
                                        _activation_from_cfg, resolve_activation, resolve_init,
                                        scan_layers)
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key

DEFAULT_ALPHA = 0.99
# Hidden-kernel init name resolved here (not in the global registry): orthogonal
# W scaled to the critical gain of `critical_gain(α, β)`.
CRITICAL_INIT = "roaf_critical"


def validate_alpha_beta(alpha: float, beta: float | None) -> tuple[float, float]:
  """(α, β) after checks; β = None ↦ 1 − α (the convex combination of Ceni 2022).

  α = 1 (the filter path kept whole, h ↦ O h + β φ(·)) needs an explicit β:
  with the tied β = 1 − α it would remove the nonlinear path.

  Raises:
    ValueError: unless 0 < α < 1 (β None) or 0 < α ≤ 1 (β given), and β > 0.
  """
  alpha = float(alpha)
  if beta is None and not 0.0 < alpha < 1.0:
    raise ValueError(f"ROAF alpha must satisfy 0 < alpha < 1 with the tied beta = 1 - alpha "
                     f"(alpha = 1 needs an explicit beta), got alpha={alpha}")
  if not 0.0 < alpha <= 1.0:
    raise ValueError(f"ROAF alpha must satisfy 0 < alpha <= 1, got {alpha}")
  beta = 1.0 - alpha if beta is None else float(beta)
  if not beta > 0.0:
    raise ValueError(f"ROAF beta must be > 0 (default 1 - alpha), got {beta}")
  return alpha, beta


def critical_gain(alpha: float, beta: float | None = None) -> float:
  """σ* = √(1 − α²)/β: the W gain at which a ROAF layer preserves norms on average.

  For random O and W = σ·(orthogonal), in the linear regime of φ (φ'(0) = 1)
  E‖(α O + β W) v‖² = (α² + β²σ²)‖v‖², since ⟨O v, W v⟩ averages to 0. At
  σ < σ* every layer contracts by √(α² + β²σ²) < 1, so with glorot-like
  σ ≈ 1 and α = 0.99 the signal (and every weight gradient) decays like
  0.99^depth — measured: ~1e-15 at depth 3,000. At σ ≥ σ* the zero state is
  unstable, tanh saturation bounds the state and the forward norm settles at a
  fixed point while gradients stay O(1e-3) at depth 3,000 (measured with
  σ = 16 ≈ 1.13 σ*). Our derivation, in the spirit of Ceni (2022)'s
  dynamical-isometry argument; for the convex case β = 1 − α,
  σ* = √((1 + α)/(1 − α)) (≈ 14.1 at α = 0.99).
  """
  alpha, beta = validate_alpha_beta(alpha, beta)
  return float((1.0 - alpha ** 2) ** 0.5 / beta)


def roaf_kernel_init(kernel_init: InitLike, alpha: float, beta: float | None,
                     margin: float = 1.1):
  """`kernel_init`, or for ``"roaf_critical"`` orthogonal(scale = margin·σ*).

  margin > 1 puts the layer slightly on the expanding side of the linear
  regime, where tanh saturation (not decay to 0) sets the state's norm.
  """
  if isinstance(kernel_init, str) and kernel_init == CRITICAL_INIT:
    return nn.initializers.orthogonal(scale=margin * critical_gain(alpha, beta))
  return resolve_init(kernel_init)


# The filter draws below are jitted: the models call them on constants (eagerly, under
# `ensure_compile_time_eval`), where each of their ~10 ops was an XLA compile of its own.
@functools.partial(jax.jit, static_argnums=(1, 2))
def haar_orthogonal(key: jax.Array, n: int, dtype: Any = jnp.float32) -> jax.Array:
  """A Haar-distributed n×n orthogonal matrix (Mezzadri 2007).

  Q R = G with G_ij ~ N(0, 1) i.i.d.; Q·diag(sign(diag R)) is Haar distributed
  (the sign correction removes the bias of the QR convention). Used for the
  fixed filters O_l of ROAF (Ceni 2022).
  """
  g = jax.random.normal(key, (n, n), jnp.float32)
  q, r = jnp.linalg.qr(g)
  d = jnp.sign(jnp.diagonal(r))
  d = jnp.where(d == 0, 1.0, d)
  return (q * d[None, :]).astype(dtype)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def layer_filter(filter_seed: int, index: jax.Array | int, n: int,
                 dtype: Any = jnp.float32) -> jax.Array:
  """O_l = haar(fold_in(PRNGKey(filter_seed), l)): the fixed filter of layer l."""
  key = jax.random.fold_in(jax.random.PRNGKey(filter_seed), index)
  return haar_orthogonal(key, n, dtype)


FILTER_MODES = ("haar", "fast", "perm", "identity")


@functools.partial(jax.jit, static_argnums=(0, 2))
def fast_filter_perm_sign(filter_seed: int, index: jax.Array | int,
                          n: int) -> tuple[jax.Array, jax.Array]:
  """Layer l's (permutation [n] int32, signs [n]) of the ``fast`` filter.

  O_l = diag(s_l) P_l O_base with P_l a uniform random permutation, s_l i.i.d.
  ±1 and O_base = haar(filter_seed, layer 0). Since Haar measure is invariant
  under left multiplication by a fixed orthogonal matrix, each O_l is exactly
  Haar distributed; unlike ``haar`` mode the O_l are not independent (they
  share O_base). Drawing n uniforms + a sort costs ≈ 5× less than the n×n
  Gaussian + QR of ``haar`` mode on CPU (measured ≈ 70 vs ≈ 600 µs/layer at
  n = 64). `ROAFMLP` draws all layers' tables before its scan behind an
  optimization barrier: tables derived from a bare constant index array were
  constant-folded by XLA at compile time (compile time then grew with depth:
  350 s at depth 1,000).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(filter_seed), index)
  k_perm, k_sign = jax.random.split(key)
  perm = jnp.argsort(jax.random.uniform(k_perm, (n,))).astype(jnp.int32)
  return perm, jax.random.rademacher(k_sign, (n,), jnp.float32)


# Filter tables up to this many entries (depth × width) are drawn when the step is traced and
# compiled in as constants (the per-step sort of the draw was 10 % of the depth-1,000 step);
# larger ones are drawn inside the step so that the program stays small.
CONSTANT_TABLE_ENTRIES = 2 ** 21


@jax.jit
def inverse_permutation(perm: jax.Array) -> jax.Array:
  """P⁻¹ of the permutations along the last axis: inv[..., perm[..., i]] = i.

  A scatter of the iota (O(n)); ``argsort(perm)`` gives the same integers with
  a sort, which the trace of the depth-1,000 ``perm`` train step showed at
  ≈ 15 % of the step on XLA:CPU (`scripts/profile_step.py`).
  """
  iota = jnp.broadcast_to(jnp.arange(perm.shape[-1], dtype=perm.dtype), perm.shape)
  return jnp.put_along_axis(jnp.zeros_like(perm), perm, iota, axis=-1, inplace=False)


@functools.partial(jax.jit, static_argnums=(0, 2))
def fast_filter_tables(filter_seed: int, indices: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """`fast_filter_perm_sign` for several layers: ([L, n] permutations, [L, n] signs)."""
  return jax.vmap(lambda i: fast_filter_perm_sign(filter_seed, i, n))(indices)


@jax.custom_jvp
def signed_permute(x: jax.Array, perm: jax.Array, sign: jax.Array, inv: jax.Array) -> jax.Array:
  """(O x_b)ᵀ for each row of x with O = diag(s) P: ``x[..., perm] * sign``.

  `inv` is the inverse permutation (inv[perm[j]] = j, computed once by the
  caller). The tangent rule writes the same map as a scatter-set at `inv`,
  (O t)_j = s_j · (scatter t at inv)_j, whose transpose is a gather: the
  backward pass is gᵀ O = (g ⊙ s)[..., inv], instead of autodiff's scatter-add
  of the forward gather into zeros (slower on XLA:CPU, most of all inside an
  RNN's time loop). A custom JVP rather than a custom VJP so that forward mode
  (``jax.jvp``/``linearize``: the check-up, LSC, Jacobian diagnostics) works
  too. No derivative reaches perm, sign or inv (fixed filters).
  """
  return x[..., perm] * sign.astype(x.dtype)


@signed_permute.defjvp
def _signed_permute_jvp(primals, tangents):
  x, perm, sign, inv = primals
  t = tangents[0]
  # promise_in_bounds: the transposed gather then has no bounds mask (bitwise the former custom VJP)
  scattered = jnp.zeros_like(t).at[..., inv].set(t, unique_indices=True, mode="promise_in_bounds")
  return signed_permute(x, perm, sign, inv), scattered * sign.astype(t.dtype)


def perm_filter(perm: jax.Array, sign: jax.Array) -> jax.Array:
  """O_l = diag(s_l) P_l as a dense matrix (``perm`` mode; for tests and diagnostics)."""
  return jnp.eye(perm.shape[-1], dtype=sign.dtype)[perm] * sign[:, None]


def fast_filter(filter_seed: int, perm: jax.Array, sign: jax.Array) -> jax.Array:
  """O_l = diag(s_l) P_l O_base as a dense matrix (for tests and diagnostics)."""
  with jax.ensure_compile_time_eval():
    o_base = layer_filter(filter_seed, 0, perm.shape[-1])
  return o_base[perm] * sign[:, None]


class ROAFLayer(nn.Module):
  """x ↦ α·O_l x + β·φ(W x + b), one ROAF layer (Ceni 2022).

  Called as ``layer(x, index)``: `index` (an int or a traced int32 scalar,
  e.g. the scan position) selects the fixed filter O_index. With
  ``filter_mode='haar'`` O_index = haar(fold_in(key, index)), re-derived by QR
  at every call; with ``'fast'`` O_index = diag(s)·P·O_base (see
  `fast_filter_perm_sign`), applied as one matmul with the constant O_base, a
  gather and a sign flip; with ``'perm'`` O_index = diag(s)·P (the same tables
  without O_base: a random signed permutation, exactly orthogonal, applied as
  a gather and a sign flip with no matmul — the cheapest orthogonal filter on
  XLA:CPU, measured within ≈ 1.2× of a step with no filter at depth 1,000;
  not Haar, the mixing across units then comes from W_l alone); ``'identity'``
  (O_l = I) is the ablation without filters, α x + β φ(W x + b), and the
  no-filter reference of `scripts/bench_roaf.py`. Diagnostics taps:
  ``perturb('preact', z)`` on z = W x + b and ``sow('intermediates', 'act',
  φ(z))`` on the nonlinearity's output (as in `DenseLayer`).
  """
  width: int
  alpha: float = DEFAULT_ALPHA
  beta: float | None = None
  activation: ActivationLike = "tanh"
  kernel_init: InitLike = CRITICAL_INIT
  filter_seed: int = 0
  filter_mode: str = "haar"

  def apply_filter(self, x: jax.Array, filt) -> jax.Array:
    """Rows of x times O_lᵀ, i.e. (O_l x_b)ᵀ for each example b.

    `filt`: the layer index, or for ``'fast'``/``'perm'`` also the layer's precomputed
    (permutation, signs) pair (what `ROAFMLP.filter_inputs` scans over).
    ``'fast'`` builds O_lᵀ = (diag(s) P O_base)ᵀ by permuting the rows of the
    constant O_base (no gradient flows into it) rather than permuting the
    product's columns, whose backward would be a scatter-add per layer.
    """
    if self.filter_mode == "haar":
      return x @ layer_filter(self.filter_seed, filt, self.width, x.dtype).T
    if self.filter_mode == "identity":
      return x
    if isinstance(filt, tuple):
      perm, sign, *inv = filt
    else:
      perm, sign = fast_filter_perm_sign(self.filter_seed, filt, self.width)
      inv = []
    if self.filter_mode == "perm":  # (O_l x)_i = s_i x_{perm_i}: a gather, no matmul
      return signed_permute(x, perm, sign, inv[0] if inv else inverse_permutation(perm))
    with jax.ensure_compile_time_eval():
      o_base = layer_filter(self.filter_seed, 0, self.width, x.dtype)
    return x @ (o_base[perm] * sign[:, None].astype(x.dtype)).T

  @nn.compact
  def __call__(self, x: jax.Array, filt) -> jax.Array:
    alpha, beta = validate_alpha_beta(self.alpha, self.beta)
    if self.filter_mode not in FILTER_MODES:
      raise ValueError(f"unknown filter_mode {self.filter_mode!r}; valid: {', '.join(FILTER_MODES)}")
    if x.shape[-1] != self.width:
      raise ValueError(f"ROAFLayer input width {x.shape[-1]} != layer width {self.width}")
    z = Dense(self.width, kernel_init=roaf_kernel_init(self.kernel_init, alpha, beta),
                 name="dense")(x)
    if not self.is_initializing():  # taps exist only when diagnostics ask (mutable=['perturbations'])
      z = self.perturb("preact", z)
    a = resolve_activation(self.activation)(checkpoint_name(z, PREACT))
    self.sow("intermediates", "act", a)
    return alpha * self.apply_filter(x, filt) + beta * a


class _ROAFScanBody(nn.Module):
  """(carry, layer index) → (carry, None) adapter of `ROAFLayer` for `nn.scan`."""
  width: int
  alpha: float
  beta: float | None
  activation: ActivationLike
  kernel_init: InitLike
  filter_seed: int
  filter_mode: str

  @nn.compact
  def __call__(self, h, filt):
    return ROAFLayer(self.width, self.alpha, self.beta, self.activation, self.kernel_init,
                     self.filter_seed, self.filter_mode, name="layer")(h, filt), None


class ROAFMLP(nn.Module):
  """Deep ROAF MLP (Ceni 2022): ``input`` → depth − 1 ROAF layers → ``output``.

  h_0 = φ(W_in x + b_in) (module ``input``, a `DenseLayer`, so the width can
  change), h_l = α O_l h_{l−1} + β φ(W_l h_{l−1} + b_l) for l = 1..depth−1
  (one `nn.scan` module ``hidden``, params stacked on axis 0 under
  hidden/layer/dense, filter index l), logits = W_out h + b_out (``output``).
  `depth` counts hidden layers as in `DeepMLP`, so `hidden_stack` and
  `layer_grad_norms` work unchanged. With ``remat`` (default) each layer's
  forward (filter included) is recomputed in the backward pass: memory is
  O(depth·batch·width) for the carried states only, and compile time is flat
  in depth. ``layer_unroll`` layers per loop iteration (see `scan_layers`).
  """
  width: int
  depth: int
  num_classes: int
  alpha: float = DEFAULT_ALPHA
  beta: float | None = None
  activation: ActivationLike = "tanh"
  kernel_init: InitLike = CRITICAL_INIT
  remat: bool = True
  filter_seed: int = 0
  filter_mode: str = "fast"   # the one default: the registry's "roaf_mlp" key reads it
  layer_unroll: int = 1

  @nn.nowrap
  def filter_inputs(self, n: int):
    """Scan inputs selecting layer l's filter, l = 1..n.

    ``'haar'``: the layer indices. ``'fast'``: the ([n, W] permutations,
    [n, W] signs) of `fast_filter_tables`, drawn once per call outside the
    scan, so the remat'ed layers do not redraw them (a threefry draw and a
    sort per layer, forward, recompute and backward: 0.46 → 0.40 s per train
    step at depth 1,000, width = batch = 128, one loaded run). Up to
    `CONSTANT_TABLE_ENTRIES` (n × W) they are drawn eagerly when the step is
    traced and compiled in as constants (no sort per step: the depth-1,000
    ``perm`` step's trace had the draw's sort at 10 % of the step); above it,
    per call behind an optimization barrier that keeps XLA from
    constant-folding them at compile time (its folding made compile time
    grow with depth: 350 s at depth 1,000). ``'perm'`` adds the inverse
    permutations. Same tables either way.
    """
    if self.filter_mode in ("haar", "identity"):
      return jnp.arange(1, n + 1, dtype=jnp.int32)

    def tables(idx):
      perm, sign = fast_filter_tables(self.filter_seed, idx, self.width)
      # 'perm': the inverse permutations too, for signed_permute's backward
      return (perm, sign, inverse_permutation(perm)) if self.filter_mode == "perm" else (perm, sign)
    if n * self.width <= CONSTANT_TABLE_ENTRIES:
      with jax.ensure_compile_time_eval():  # drawn once per trace: constants of the compiled step
        return tables(jnp.arange(1, n + 1, dtype=jnp.int32))
    return tables(jax.lax.optimization_barrier(jnp.arange(1, n + 1, dtype=jnp.int32)))

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.depth < 1:
      raise ValueError(f"ROAFMLP depth must be >= 1, got {self.depth}")
    if self.filter_mode not in FILTER_MODES:
      raise ValueError(f"unknown filter_mode {self.filter_mode!r}; valid: {', '.join(FILTER_MODES)}")
    validate_alpha_beta(self.alpha, self.beta)
    h = x.reshape(x.shape[0], -1)
    # The critical gain is a property of the ROAF layers; input/output layers
    # then use the normalized init of Glorot & Bengio (2010).
    edge_init = "glorot_normalized" if self.kernel_init == CRITICAL_INIT else self.kernel_init
    h = DenseLayer(self.width, self.activation, edge_init, name="input")(h)
    if self.depth > 1:
      h, _ = scan_layers(_ROAFScanBody, self.depth - 1, self.remat, "hidden", unroll=self.layer_unroll,
                         width=self.width, alpha=self.alpha, beta=self.beta,
                         activation=self.activation, kernel_init=self.kernel_init,
                         filter_seed=self.filter_seed, filter_mode=self.filter_mode)(
                             h, self.filter_inputs(self.depth - 1))
    return nn.Dense(self.num_classes, kernel_init=resolve_init(edge_init), name="output")(h)

  @nn.nowrap
  def diagnostic_layer_maps(self, params):
    """(layer_fn, stacked params) for per-layer Jacobians (`stable_training.diagnostics`).

    layer_fn(θ_l, h) = α O_l h + β φ(W_l h + b_l) for one example, with θ_l
    carrying the layer's params and its filter index l. Note the diagnostics
    feed it the sown ``act`` (= φ(z_{l−1}), not h_{l−1}) as its input point.
    """
    if "hidden" not in params:
      return None
    layer = ROAFLayer(self.width, self.alpha, self.beta, self.activation, self.kernel_init,
                      self.filter_seed, self.filter_mode, parent=None)
    stacked = params["hidden"]["layer"]
    n = jax.tree.leaves(stacked)[0].shape[0]

    def layer_fn(theta, h):
      return layer.apply({"params": theta["params"]}, h[None], theta["filter"])[0]
    return layer_fn, {"filter": self.filter_inputs(n), "params": stacked}

  @nn.nowrap
  def lsc_transitions(self, params, x: jax.Array, key: jax.Array, time_samples: int = 2) -> dict:
    """The transitions whose Jacobians LSC sets (Herranz-Celotti & Rouat 2023/24; `stable_training.lsc`).

      depth (stacked over the depth − 1 ROAF layers, one point per example):
        h_{l−1} ↦ h_l = α O_l h_{l−1} + β φ(z_l), z_l = W_lᵀ h_{l−1} + b_l (Ceni 2022),
        Jacobian α O_l + β diag φ'(z_l) W_lᵀ (flax kernel W_l [in, out]; O_l
        layer l's fixed filter from `filter_inputs`, 'haar' or 'fast'), at the
        states h_{l−1} of a forward pass (held fixed); length = depth.
      readout: h_{L−1} ↦ W_outᵀ h_{L−1} + b_out (`dense_readout`).
    The ``input`` layer (input → width) is not square and has no LSC target.
    `key` → (depth key, read-out key); `time_samples` is unused (no time axis).
    """
    del time_samples
    from stable_training.lsc.protocol import Transitions, dense_readout
    x = x.reshape(x.shape[0], -1)
    edge_init = "glorot_normalized" if self.kernel_init == CRITICAL_INIT else self.kernel_init
    h = DenseLayer(self.width, self.activation, edge_init, parent=None).apply({"params": params["input"]}, x)
    k_d, k_r = jax.random.split(key)
    maps = self.diagnostic_layer_maps(params)
    if maps is None:
      depth = Transitions(fn=None, theta=None, points=jnp.zeros((0,) + h.shape, h.dtype), keys=k_d,
                          length=self.depth)
    else:
      layer_fn, theta = maps
      layer = ROAFLayer(self.width, self.alpha, self.beta, self.activation, self.kernel_init,
                        self.filter_seed, self.filter_mode, parent=None)

      def forward(h_prev, th):  # h_l from h_{l−1}; keeps h_{l−1} as layer l's point
        return layer.apply({"params": th["params"]}, h_prev, th["filter"]), h_prev
      h, points = jax.lax.scan(forward, h, jax.lax.stop_gradient(theta))
      depth = Transitions(fn=lambda th, _, u: layer_fn(th, u), theta=theta,
                          points=jax.lax.stop_gradient(points), keys=k_d, length=self.depth)
    return {"depth": depth, "readout": dense_readout(params["output"], jax.lax.stop_gradient(h), k_r)}


ROAF_KEYS = {
    "alpha": Key(float, DEFAULT_ALPHA, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                 doc="weight α of the orthogonal filter path"),
    "beta": Key(float, None, lo=0.0, lo_open=True, nullable=True, doc="weight β of φ(Wx + b); None = 1 − α"),
    "filter_seed": Key(int, 0, lo=0, doc="seed of the filters O_l"),
}


@register_model("roaf_mlp", keys={
    **common_keys(remat=True), "name": Key(str, "roaf_mlp"), **ROAF_KEYS,
    "kernel_init": Key(str, "glorot_normalized", choices=(*common_keys()["kernel_init"].choices, CRITICAL_INIT)),
    "filter_mode": Key(str, ROAFMLP.filter_mode, choices=FILTER_MODES,
                       doc="haar: independent Haar O_l; fast: signed row permutations of one Haar matrix; "
                           "perm: random signed permutations (no matmul); identity: O_l = I, "
                           "the ablation without filters (a scaled residual net)"),
    "roaf_init": Key(str, "critical", choices=("critical", "kernel_init")),
})
def _build_roaf_mlp(cfg, *, num_classes, input_shape):
  """Config keys: width, depth, activation(+_kwargs), kernel_init, remat, alpha,
  beta (None = 1 − α), filter_seed, filter_mode ('haar' | 'fast' | 'perm' | 'identity'), roaf_init:
  'critical' (default: hidden W orthogonal at 1.1·σ*, input/output glorot_normalized;
  `kernel_init` is then unused) or 'kernel_init' (every layer uses `kernel_init`)."""
  del input_shape
  return ROAFMLP(width=cfg.width, depth=cfg.depth, num_classes=num_classes,
                 alpha=cfg.alpha, beta=cfg.beta, activation=_activation_from_cfg(cfg),
                 kernel_init=CRITICAL_INIT if cfg.roaf_init == "critical" else cfg.kernel_init,
                 remat=cfg.remat, filter_seed=cfg.filter_seed, filter_mode=cfg.filter_mode)
