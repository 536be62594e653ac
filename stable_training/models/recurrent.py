"""One recurrent cell family, and the single-layer `RecurrentClassifier`.

Every cell of the project lives here, with one implementation each, and both
recurrent models build their cells from `make_cell` (`RecurrentClassifier`
below, one layer; `stable_training.models.deep_rnn.DeepRNN`, stacked layers):

  ``elman`` / ``tanh_rnn``     h' = tanh(W x + U h + b)                (Elman 1990)
  ``relu_rnn`` / ``sigmoid_rnn``  h' = φ(W x + U h + b), φ = relu / σ
  ``roaf``     h' = α O h + β φ(W x + U h + b), O fixed orthogonal    (Ceni 2022)
  ``lstm``     s = [h, c], forget-gate bias +1            (Hochreiter & Schmidhuber 1997)
  ``gru``      s = h, reset gate applied to U_n h          (Cho et al. 2014)
  ``alif``     s = [v, a, z], adaptive LIF spiking neurons  (Bellec et al. 2020)
  ``lru``      s = [Re h, Im h], diagonal complex linear recurrence (Orvieto et al. 2023)

The common interface (`RecurrentCell`): the state s of a layer is one flat
real vector [..., S] (S = `state_size(cell, H)`), so the time Jacobian
∂s_t/∂s_{t−1} that LSC (`stable_training.lsc`) measures is a square matrix, and

  ``project(x) -> u``    the input projection u = W x + b (linear in x),
  ``recur(s, u) -> s'``  one transition from the projected input,
  ``emit(s, u) -> y``    the cell's output (h for most cells, z for ALIF),
  ``step(s, x)`` = recur(s, project(x)), ``output(s, x)`` = emit(s, project(x)),
  ``__call__(s, x) -> (s', y)`` and ``initialize_carry``: `flax.linen.RNNCellBase`,
  so a cell also runs under `nn.RNN`.

`scan_cell` runs a cell over [B, T, D]: because u_t depends on x_t only, the
projection of all T steps is one [B·T, D] × [D, G·H] matmul before the time
scan (what cuDNN and `torch.nn.RNN` do); only U h_{t−1} stays in the loop.

Every nonlinearity of the signal goes through the hookable functions of
`stable_training.activations` (gates σ, tanh of the cell state, φ, the LRU's
GELU and its phase cos/sin), so the averaged-gradient ``secant`` estimator
(`stable_training.optim.avg_grad`) sees them. The exceptions, on purpose: the
ALIF spike (a Heaviside step whose "derivative" is a surrogate by design, see
`spike`) and the exp of the LRU's λ = exp(−exp(ν) + i exp(θ)) parameterization
(no registered exp) keep their own derivatives.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training import activations as acts
from stable_training.models.mlp import (ActivationLike, Dense, InitLike, _activation_from_cfg,
                                        resolve_activation, resolve_init)
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key
from stable_training.models.roaf import (CRITICAL_INIT, fast_filter_perm_sign, inverse_permutation, layer_filter, perm_filter,
                                         roaf_kernel_init, signed_permute,
                                         validate_alpha_beta)

CELLS = ("roaf", "elman", "lstm", "gru", "relu_rnn", "sigmoid_rnn", "tanh_rnn", "alif", "lru")
RNN_FILTER_MODES = ("haar", "perm")  # the ROAF cell's O: one Haar matrix, or a random signed permutation
READOUTS = ("last", "all")
# Default α of the ROAF RNN cell: our choice (filters over hundreds of steps need
# less damping of the nonlinear path than 50k layers); studies state what they use.
DEFAULT_RNN_ALPHA = 0.9


# ---------------------------------------------------------------- surrogate ---
@jax.custom_jvp
def spike(x: jax.Array) -> jax.Array:
  """Heaviside H(x) with the triangular surrogate derivative γ·max(0, 1 − |x|), γ = 0.5.

  x is the threshold-normalized membrane (v − θ)/θ (Bellec et al. 2020; the
  dampening γ = 0.5 as in Herranz-Celotti & Rouat). Written as a
  `jax.custom_jvp` rather than `custom_vjp`: the reverse-mode gradient is the
  same (JAX transposes the linear tangent rule), and forward mode keeps
  working, which `jax.jacfwd` and the matrix-free radius estimator need.
  Not a registry activation: the secant slope of a step is 0 or 1/Δz, not a
  surrogate, so the ``secant`` estimator must not replace this derivative.
  """
  return (x > 0).astype(x.dtype)


SURROGATE_DAMPENING = 0.5


@spike.defjvp
def _spike_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return spike(x), SURROGATE_DAMPENING * jnp.maximum(0.0, 1.0 - jnp.abs(x)) * dx


# -------------------------------------------------------------------- cells ---
class RecurrentCell(nn.RNNCellBase):
  """Base of every cell: flat state s [..., S], input projection hoistable out of the scan.

  Subclasses set ``_GATES`` (the projection has G·H outputs) and
  ``_STATE_FACTOR`` (S = factor·H) and implement `recur` (and `emit` when the
  output is not s[..., :H]). The default parameters: ``wx`` (Dense G·H with
  bias, `kernel_init`) and ``wh`` (Dense G·H, no bias, `recurrent_kernel_init`,
  orthogonal on the whole [H, G·H] kernel).

  Attributes:
    features: hidden units H.
    kernel_init: initializer of the input kernel W (name or callable).
    recurrent_kernel_init: initializer of the recurrent kernel U.
  """
  features: int
  kernel_init: InitLike = "glorot_normalized"
  recurrent_kernel_init: InitLike = "orthogonal"

  _GATES = 1
  _STATE_FACTOR = 1

  def _recurrent_init(self):
    return resolve_init(self.recurrent_kernel_init)

  def setup(self):
    n = self._GATES * self.features
    self.wx = Dense(n, kernel_init=resolve_init(self.kernel_init), name="wx")
    self.wh = Dense(n, use_bias=False, kernel_init=self._recurrent_init(), name="wh")

  @property
  def hidden(self) -> int:
    """H (the name the deep models use)."""
    return self.features

  @property
  def state_size(self) -> int:
    """S, the length of the flat state."""
    return self._STATE_FACTOR * self.features

  def project(self, x: jax.Array) -> jax.Array:
    """u = W x + b: the part of the step that depends on the input only (any leading axes)."""
    return self.wx(x)

  def recur(self, s: jax.Array, u: jax.Array) -> jax.Array:
    """s_t from s_{t−1} and the projected input u_t."""
    raise NotImplementedError

  def emit(self, s: jax.Array, u: jax.Array) -> jax.Array:
    """The output y_t of state s_t (u_t: the projected input); h = s[..., :H] by default."""
    del u
    return s[..., :self.features]

  def step(self, s: jax.Array, x: jax.Array) -> jax.Array:
    """One transition s_{t−1} ↦ s_t from the raw input x_t (the map LSC differentiates)."""
    return self.recur(s, self.project(x))

  def output(self, s: jax.Array, x: jax.Array) -> jax.Array:
    """y_t from s_t and the raw input x_t."""
    return self.emit(s, self.project(x))

  def __call__(self, s, x):
    """`nn.RNNCellBase` step: (s_{t−1}, x_t) → (s_t, y_t), projecting x_t here (one step)."""
    u = self.project(x)
    s = self.recur(s, u)
    return s, self.emit(s, u)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    """s_0 = 0 of shape batch_dims + (S,)."""
    del rng
    return jnp.zeros(tuple(input_shape[:-1]) + (self._STATE_FACTOR * self.features,), jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1


class SimpleRNNCell(RecurrentCell):
  """h_t = φ(W x_t + U h_{t−1} + b), φ a registry activation (Elman 1990 with φ = tanh).

  Names ``relu_rnn`` / ``sigmoid_rnn`` / ``tanh_rnn`` (φ fixed by the name); U
  orthogonal at init.
  """
  activation: ActivationLike = "tanh"

  def recur(self, h, u):
    return resolve_activation(self.activation)(u + self.wh(h))


class ElmanCell(SimpleRNNCell):
  """Elman cell h_t = tanh(W_x x_t + W_h h_{t−1} + b) (Elman 1990), the plain baseline (= ``tanh_rnn``)."""


class ROAFRNNCell(SimpleRNNCell):
  """ROAF cell h_t = α O h_{t−1} + β φ(W_x x_t + W_h h_{t−1} + b) (Ceni 2022, arXiv:2210.01245).

  O is Haar orthogonal from `filter_seed`, one matrix for all steps, computed
  eagerly under `jax.ensure_compile_time_eval` (a constant of the compiled
  program: no variable, no gradient, no QR in the time loop); β = None ↦
  1 − α; requires 0 < α < 1, β > 0 (α = 1 with an explicit β). W_h defaults to
  orthogonal at the critical gain σ* = √(1 − α²)/β (×1.1, see
  `stable_training.models.roaf.critical_gain`; ``recurrent_gain`` sets σ instead):
  with σ = 1 the one-step Jacobian α O + β D_t W_h contracts by √(α² + β²) < 1
  and long-lag gradients vanish.

  ``filter_mode='perm'``: O = diag(s) P, a random signed permutation (exactly
  orthogonal) applied as a gather and a sign flip instead of an H × H matmul
  per step — the cell then costs what an Elman cell costs (see
  `stable_training.models.roaf.ROAFLayer`).
  """
  recurrent_kernel_init: InitLike = CRITICAL_INIT
  alpha: float = DEFAULT_RNN_ALPHA
  beta: float | None = None
  filter_seed: int = 0
  filter_mode: str = "haar"
  recurrent_gain: float | None = None

  def _recurrent_init(self):
    # An explicit gain σ: W_h orthogonal at scale σ (a knob of the psMNIST/memory sweeps);
    # None: the critical gain (0 at α = 1, where W_h starts at zero and is learned).
    if self.recurrent_gain is not None:
      return nn.initializers.orthogonal(scale=float(self.recurrent_gain))
    return roaf_kernel_init(self.recurrent_kernel_init, self.alpha, self.beta)

  @nn.nowrap
  def _perm_sign(self):
    """(permutation, signs, inverse permutation) of ``perm`` mode: constants of the compiled program."""
    with jax.ensure_compile_time_eval():
      perm, sign = fast_filter_perm_sign(self.filter_seed, 0, self.features)
      return perm, sign, inverse_permutation(perm)

  @nn.nowrap
  def filter(self) -> jax.Array:
    """The fixed filter O as a dense matrix (computed eagerly: a constant of the compiled program)."""
    if self.filter_mode not in RNN_FILTER_MODES:
      raise ValueError(f"unknown filter_mode {self.filter_mode!r}; valid: {', '.join(RNN_FILTER_MODES)}")
    with jax.ensure_compile_time_eval():
      if self.filter_mode == "perm":
        return perm_filter(*self._perm_sign()[:2])
      return layer_filter(self.filter_seed, 0, self.features)

  def recur(self, h, u):
    alpha, beta = validate_alpha_beta(self.alpha, self.beta)
    if self.filter_mode == "perm":
      return alpha * signed_permute(h, *self._perm_sign()) + beta * super().recur(h, u)
    return alpha * (h @ self.filter().T) + beta * super().recur(h, u)


class LSTMCell(RecurrentCell):
  """LSTM (Hochreiter & Schmidhuber 1997; forget gate of Gers et al. 2000), s = [h, c], y = h.

    i, f, g, o = split(W x_t + b + U h_{t−1})           (W [D, 4H], U [H, 4H])
    c_t = σ(f + 1) ⊙ c_{t−1} + σ(i) ⊙ tanh(g)           (forget-gate bias +1)
    h_t = σ(o) ⊙ tanh(c_t)

  The +1 keeps the forget gate open at init (σ(1) ≈ 0.73), so c carries
  information over more steps from the start.
  """
  _GATES = 4
  _STATE_FACTOR = 2

  def recur(self, s, u):
    n = self.features
    h, c = s[..., :n], s[..., n:]
    i, f, g, o = jnp.split(u + self.wh(h), 4, axis=-1)
    c = acts.sigmoid(f + 1.0) * c + acts.sigmoid(i) * acts.tanh(g)
    h = acts.sigmoid(o) * acts.tanh(c)
    return jnp.concatenate([h, c], axis=-1)


class GRUCell(RecurrentCell):
  """GRU (Cho et al. 2014), s = h, y = h.

    r = σ(W_r x_t + b_r + U_r h_{t−1}),   z = σ(W_z x_t + b_z + U_z h_{t−1})
    n = tanh(W_n x_t + b_n + r ⊙ (U_n h_{t−1}))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

  The reset gate multiplies U_n h (the cuDNN form) rather than h inside U_n(r ⊙ h)
  (Cho et al.'s), so U_r, U_z, U_n are one [H, 3H] matmul per step.
  """
  _GATES = 3

  def recur(self, h, u):
    xr, xz, xn = jnp.split(u, 3, axis=-1)
    hr, hz, hn = jnp.split(self.wh(h), 3, axis=-1)
    r, z = acts.sigmoid(xr + hr), acts.sigmoid(xz + hz)
    n = acts.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


class ALIFCell(RecurrentCell):
  """Adaptive leaky integrate-and-fire neurons, s = [v, a, z], y = z (Bellec et al. 2020).

    a_t = ρ a_{t−1} + (1 − ρ) z_{t−1}            (threshold adaptation)
    θ_t = b₀ + β a_t                              (adaptive threshold)
    v_t = α v_{t−1} + (1 − α)(W x_t + b + U z_{t−1}) − θ_t z_{t−1}   (soft reset)
    z_t = spike((v_t − θ_t)/θ_t)                  (surrogate, see `spike`)

  with α = exp(−1/τ_m), ρ = exp(−1/τ_a). The spike z_{t−1} is the
  refractory/reset part of the state. No explicit refractory counter.
  """
  _STATE_FACTOR = 3
  tau_mem: float = 20.0
  tau_adapt: float = 200.0
  beta: float = 1.8
  thr: float = 0.1

  def recur(self, s, u):
    n = self.features
    v, a, z = s[..., :n], s[..., n:2 * n], s[..., 2 * n:]
    alpha, rho = np.exp(-1.0 / self.tau_mem), np.exp(-1.0 / self.tau_adapt)
    a = rho * a + (1.0 - rho) * z
    theta = self.thr + self.beta * a
    v = alpha * v + (1.0 - alpha) * (u + self.wh(z)) - theta * z
    z = spike((v - theta) / theta)
    return jnp.concatenate([v, a, z], axis=-1)

  def emit(self, s, u):
    del u
    return s[..., 2 * self.features:]


def _ring_init(r_min, r_max, max_phase):
  """ν, θ logs so that λ = exp(−exp(ν) + i exp(θ)) is uniform on the ring r_min ≤ |λ| ≤ r_max."""
  def nu_init(key, shape, dtype=jnp.float32):
    u = jax.random.uniform(key, shape, dtype)
    return jnp.log(-0.5 * jnp.log(u * (r_max ** 2 - r_min ** 2) + r_min ** 2))

  def theta_init(key, shape, dtype=jnp.float32):
    u = jax.random.uniform(key, shape, dtype)
    return jnp.log(max_phase * u + 1e-8)
  return nu_init, theta_init


class LRUCell(RecurrentCell):
  """Linear recurrent unit (Orvieto et al. 2023), s = [Re h, Im h].

    λ = exp(−exp(ν) + i exp(θ)),   γ = exp(γ_log), γ_log init log √(1 − |λ|²)
    h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t),   B complex (``b_re``, ``b_im``)
    y_t = GELU(Re(C h_t) + D x_t)      (``c_re``, ``c_im``, ``d`` with bias)

  λ is drawn uniformly on the ring r_min ≤ |λ| ≤ r_max with phase in
  [0, max_phase]. The projection u = [Re B x, Im B x, D x] is hoisted.
  """
  _STATE_FACTOR = 2
  r_min: float = 0.4
  r_max: float = 0.99
  max_phase: float = 2 * np.pi

  def setup(self):
    n = self.features
    nu_init, theta_init = _ring_init(self.r_min, self.r_max, self.max_phase)
    self.nu_log = self.param("nu_log", nu_init, (n,))
    self.theta_log = self.param("theta_log", theta_init, (n,))
    self.gamma_log = self.param(
        "gamma_log", lambda k, s: jnp.log(jnp.sqrt(1.0 - jnp.exp(-2.0 * jnp.exp(self.nu_log)))), (n,))
    binit = nn.initializers.variance_scaling(0.5, "fan_in", "normal")  # 1/√(2 D) per part
    self.b_re = nn.Dense(n, use_bias=False, kernel_init=binit, name="b_re")
    self.b_im = nn.Dense(n, use_bias=False, kernel_init=binit, name="b_im")
    cinit = nn.initializers.variance_scaling(0.5, "fan_in", "normal")
    self.c_re = nn.Dense(n, use_bias=False, kernel_init=cinit, name="c_re")
    self.c_im = nn.Dense(n, use_bias=False, kernel_init=cinit, name="c_im")
    self.d = nn.Dense(n, kernel_init=resolve_init(self.kernel_init), name="d")

  def lam(self):
    """Complex diagonal λ (real, imaginary parts); cos/sin through the registry, like every nonlinearity."""
    mod = jnp.exp(-jnp.exp(self.nu_log))
    ph = jnp.exp(self.theta_log)
    return mod * acts.cos(ph), mod * acts.sin(ph)

  def project(self, x):
    return jnp.concatenate([self.b_re(x), self.b_im(x), self.d(x)], axis=-1)

  def recur(self, s, u):
    n = self.features
    hr, hi = s[..., :n], s[..., n:]
    lr, li = self.lam()
    g = jnp.exp(self.gamma_log)
    ur, ui = g * u[..., :n], g * u[..., n:2 * n]
    return jnp.concatenate([lr * hr - li * hi + ur, lr * hi + li * hr + ui], axis=-1)

  def emit(self, s, u):
    n = self.features
    return acts.gelu(self.c_re(s[..., :n]) - self.c_im(s[..., n:]) + u[..., 2 * n:])


CELL_CLASSES: dict[str, type[RecurrentCell]] = {
    "roaf": ROAFRNNCell, "elman": ElmanCell, "lstm": LSTMCell, "gru": GRUCell,
    "relu_rnn": SimpleRNNCell, "sigmoid_rnn": SimpleRNNCell, "tanh_rnn": SimpleRNNCell,
    "alif": ALIFCell, "lru": LRUCell}


def _check_cell(cell: str) -> None:
  if cell not in CELL_CLASSES:
    raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")


def state_size(cell: str, hidden: int) -> int:
  """Length S of the flat real state of one layer of `cell` with `hidden` units."""
  _check_cell(cell)
  return CELL_CLASSES[cell]._STATE_FACTOR * hidden


def cell_kwargs(cell: str, kwargs: Any = None) -> dict:
  """The constructor keywords of `cell`: `kwargs` plus φ fixed by a ``*_rnn`` name.

  Raises:
    ValueError: unknown cell, or an ``activation`` that contradicts the name.
  """
  _check_cell(cell)
  kw = dict(kwargs or {})
  if cell.endswith("_rnn"):
    act = cell.split("_")[0]
    if kw.setdefault("activation", act) != act:
      raise ValueError(f"cell {cell!r} has activation {act!r}, got activation={kw['activation']!r}")
  return kw


def make_cell(cell: str, hidden: int, kernel_init: InitLike = "glorot_normalized",
              name: str | None = None, **kwargs) -> RecurrentCell:
  """The cell named `cell` (one of `CELLS`) with H = `hidden`; `kwargs` are its fields.

  E.g. ``make_cell('roaf', 64, alpha=0.5)``, ``make_cell('alif', 64, tau_mem=10.)``.
  Pass ``parent=None`` in `kwargs` for an unbound cell inside another module's method.
  """
  return CELL_CLASSES[cell](hidden, kernel_init, name=name, **cell_kwargs(cell, kwargs))


def scan_cell(cell: RecurrentCell, xs: jax.Array, *, all_steps: bool = True, hoist: bool | None = None):
  """Runs the bound `cell` over xs [B, T, D] from s_{−1} = 0.

  With `hoist` (default: when D > 1 or every step's output is wanted) the
  input projection of all T steps is one matmul before the time scan
  (`RecurrentCell.project`); the scan carries only s, and the outputs are
  emitted after it. Without it (D = 1 and only the last step, e.g. psMNIST)
  the projection runs inside the step: the same math, but the backward pass
  no longer stacks a [T, B, G·H] cotangent for the projected inputs, only
  [T, B, 1] for x. Returns (ys [B, T, Y], ss [B, T, S]) or, with
  ``all_steps=False``, the last step's (y [B, Y], s [B, S]) without stacking
  the states of every step.
  """
  if hoist is None:
    hoist = all_steps or xs.shape[-1] > 1
  if not hoist and not all_steps:
    def step(c, carry, x):
      s, _ = carry
      u = c.project(x)
      return (c.recur(s, u), u), None
    scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
    s0 = jnp.zeros((xs.shape[0], cell.state_size), xs.dtype)
    u0 = jnp.zeros_like(cell.project(xs[:, 0]))   # the carry's shape (also creates the kernels at init)
    (s_last, u_last), _ = scan(cell, (s0, u0), xs)
    return cell.emit(s_last, u_last), s_last
  us = cell.project(xs)                                     # [B, T, G·H]
  s0 = jnp.zeros((xs.shape[0], cell.state_size), us.dtype)

  def body(c, s, u):
    s = c.recur(s, u)
    return s, (s if all_steps else None)

  scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 in_axes=1, out_axes=1)
  s_last, ss = scan(cell, s0, us)
  if all_steps:
    return cell.emit(ss, us), ss
  return cell.emit(s_last, us[:, -1]), s_last


class RecurrentClassifier(nn.Module):
  """Single-layer RNN over time (any cell of `CELLS`) + Dense read-out ``output``.

  Input [B, T, F] (or [B, T], treated as F = 1). Output: logits [B, C] from the
  last step's cell output (``readout='last'``) or per-step logits [B, T, C]
  (``readout='all'``, e.g. for the copy task). The cell's input projection
  runs on all steps at once outside the time scan (`scan_cell`). Params:
  ``cell`` (``wx``, ``wh``, ...; see the cell) and ``output``.

  Attributes:
    cell: one of `CELLS` ('roaf' | 'elman' | 'lstm' | 'gru' in the ROAF studies).
    hidden: hidden units H.
    num_classes: output units (1 for regression tasks such as the adding problem).
    readout: 'last' | 'all'.
    alpha, beta, activation, filter_seed, filter_mode, recurrent_gain: ROAF cell settings (ignored
      by the others).
    kernel_init: input-kernel initializer of the cell; ``input_gain`` multiplies its draw.
  """
  cell: str
  hidden: int
  num_classes: int
  readout: str = "last"
  alpha: float = DEFAULT_RNN_ALPHA
  beta: float | None = None
  activation: ActivationLike = "tanh"
  kernel_init: InitLike = "lecun_normal"
  filter_seed: int = 0
  filter_mode: str = "haar"
  recurrent_gain: float | None = None
  input_gain: float = 1.0

  @nn.nowrap
  def cell_module(self, **kwargs) -> RecurrentCell:
    """This model's cell (``parent=None`` in `kwargs`: an unbound copy)."""
    roaf = dict(alpha=self.alpha, beta=self.beta, activation=self.activation, filter_seed=self.filter_seed,
                filter_mode=self.filter_mode, recurrent_gain=self.recurrent_gain) if self.cell == "roaf" else {}
    kernel_init = self.kernel_init
    if self.input_gain != 1.0:
      base, gain = resolve_init(kernel_init), float(self.input_gain)
      kernel_init = lambda key, shape, dtype=jnp.float32: gain * base(key, shape, dtype)
    return make_cell(self.cell, self.hidden, kernel_init, **roaf, **kwargs)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.readout not in READOUTS:
      raise ValueError(f"unknown readout {self.readout!r}; valid choices: {', '.join(READOUTS)}")
    _check_cell(self.cell)
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(f"RecurrentClassifier expects [B, T, F] or [B, T] input, got shape {x.shape}")
    feats, _ = scan_cell(self.cell_module(name="cell"), x, all_steps=self.readout == "all")
    return nn.Dense(self.num_classes, name="output")(feats)

  @nn.nowrap
  def lsc_transitions(self, params, x: jax.Array, key: jax.Array, time_samples: int = 2) -> dict:
    """The transitions whose Jacobians LSC sets (Herranz-Celotti & Rouat 2023/24; `stable_training.lsc`).

    s is the cell's flat state (h for 'roaf', 'elman', 'gru'; [h, c] for
    'lstm'; see `CELLS`). At K = min(time_samples, T) steps t drawn from
    `key` without replacement, with the states of a forward pass held fixed
    (s_{−1} = 0):
      time [1, B, K]: s_{t−1} ↦ s_t = cell.step(s_{t−1}, x_t), Jacobian ∂s_t/∂s_{t−1}:
        roaf  α O + β diag φ'(z_t) W_hᵀ, elman diag(1 − h_t²) W_hᵀ
        (z_t = W_xᵀ x_t + b + W_hᵀ h_{t−1}, flax kernels [in, out]; O the fixed
        filter), gru / lstm through their gates; length T. The input
        projection W_x, b is part of the map's parameters (it moves z_t).
      readout [B]: y_{T−1} ↦ W_outᵀ y + b (`dense_readout`, the last step's output).
    """
    from stable_training.lsc.protocol import Transitions, dense_readout, previous
    if x.ndim == 2:
      x = x[..., None]
    cell = self.cell_module(parent=None)
    step = lambda th, xt, s: cell.apply({"params": th}, s, xt, method="step")
    theta = params["cell"]
    ys, ss = cell.apply({"params": jax.lax.stop_gradient(theta)}, x, method=scan_cell)
    ys, ss = jax.lax.stop_gradient((ys, ss))                # [B, T, Y], [B, T, S]
    T = x.shape[1]
    k_t, k_r, k_m = jax.random.split(key, 3)
    t_idx = jax.random.choice(k_t, T, (min(time_samples, T),), replace=False)
    time = Transitions(fn=step, theta=jax.tree.map(lambda a: a[None], theta),
                       points=previous(ss, 1)[:, t_idx][None], context=x[:, t_idx][None], keys=k_m, length=T)
    return {"time": time, "readout": dense_readout(params["output"], ys[:, -1], k_r)}


_COMMON = common_keys(kernel_init="lecun_normal")


@register_model("rnn_classifier", keys={
    "name": Key(str, "rnn_classifier"), "width": _COMMON["width"],
    "depth": Key(int, 1, lo=1, hi=1, doc="one recurrent layer"),
    "cell": Key(str, "roaf", choices=CELLS), "readout": Key(str, "last", choices=READOUTS),
    "alpha": Key(float, DEFAULT_RNN_ALPHA, lo=0.0, hi=1.0, lo_open=True,
                 doc="ROAF α; α = 1 needs an explicit beta"),
    "beta": Key(float, None, lo=0.0, lo_open=True, nullable=True),
    "recurrent_gain": Key(float, None, lo=0.0, nullable=True,
                          doc="ROAF W_h orthogonal scale; None = critical gain"),
    "input_gain": Key(float, 1.0, lo=0.0, lo_open=True, doc="multiplies the input kernel's init"),
    "activation": _COMMON["activation"], "activation_kwargs": _COMMON["activation_kwargs"],
    "kernel_init": _COMMON["kernel_init"], "filter_seed": Key(int, 0, lo=0),
    "filter_mode": Key(str, RecurrentClassifier.filter_mode, choices=RNN_FILTER_MODES,
                       doc="ROAF cell's O: haar (one Haar matrix) or perm (random signed permutation, no matmul)"),
})
def _build_rnn_classifier(cfg, *, num_classes, input_shape):
  """Config keys: cell, width (= hidden), readout, alpha, beta, activation, kernel_init, filter_seed,
  filter_mode, recurrent_gain, input_gain."""
  del input_shape
  return RecurrentClassifier(cell=cfg.cell, hidden=cfg.width, num_classes=num_classes, readout=cfg.readout,
                             alpha=cfg.alpha, beta=cfg.beta, activation=_activation_from_cfg(cfg),
                             kernel_init=cfg.kernel_init, filter_seed=cfg.filter_seed,
                             filter_mode=cfg.filter_mode, recurrent_gain=cfg.get("recurrent_gain"),
                             input_gain=cfg.get("input_gain", 1.0))
