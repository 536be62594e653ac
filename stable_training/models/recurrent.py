"""Recurrent classifiers: ROAF RNN (Ceni 2022), Elman, LSTM and GRU behind one module.

The ROAF recurrent cell (Ceni 2022, arXiv:2210.01245) adds an orthogonally
filtered copy of the previous state to the Elman update:

    h_t = α · O h_{t−1} + β · φ(W_x x_t + W_h h_{t−1} + b),

O a fixed Haar-random orthogonal matrix (not trained), β = 1 − α by default.
Its one-step Jacobian α O + β D_t W_h stays near an isometry, so the gradient
through T steps neither vanishes nor explodes (the paper learns lags of
10,000 steps and reaches > 94 % on psMNIST after one epoch).

O for the RNN: one matrix shared by all time steps, derived from a fixed
``filter_seed`` under `jax.ensure_compile_time_eval`, so it is computed once
at trace time and enters the compiled program as a constant (H² floats): no
extra variable collection, no gradient, no QR inside the time loop.

`RecurrentClassifier` runs any of the cells over time with `flax.linen.RNN`
(an `nn.scan`). For the Elman and ROAF cells the input projection
W_x x_t + b of all T steps is one matmul outside the scan (the trick
`torch.nn.RNN` / cuDNN use too); only W_h h_{t−1} stays in the loop.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stable_training.models.mlp import (ActivationLike, InitLike, _activation_from_cfg,
                                        resolve_activation, resolve_init)
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key
from stable_training.models.roaf import (CRITICAL_INIT, layer_filter, roaf_kernel_init,
                                         validate_alpha_beta)

CELLS = ("roaf", "elman", "lstm", "gru")
READOUTS = ("last", "all")
# Default α of the ROAF RNN cell: our choice (filters over hundreds of steps need
# less damping of the nonlinear path than 50k layers); studies state what they use.
DEFAULT_RNN_ALPHA = 0.9


class _ElmanLikeCell(nn.RNNCellBase):
  """Shared pieces of the Elman and ROAF cells (carry h of shape [..., features])."""
  features: int
  kernel_init: InitLike = "lecun_normal"
  recurrent_kernel_init: InitLike = "orthogonal"
  project_input: bool = True   # False: inputs are already W_x x_t + b

  def _recurrent_init(self):
    return resolve_init(self.recurrent_kernel_init)

  def _preact(self, h, x):
    if self.project_input:
      x = nn.Dense(self.features, kernel_init=resolve_init(self.kernel_init), name="i")(x)
    return x + nn.Dense(self.features, use_bias=False,
                        kernel_init=self._recurrent_init(), name="h")(h)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    """h_0 = 0 of shape batch_dims + (features,)."""
    del rng
    return jnp.zeros(tuple(input_shape[:-1]) + (self.features,), jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1


class ElmanCell(_ElmanLikeCell):
  """Elman cell h_t = tanh(W_x x_t + W_h h_{t−1} + b) (Elman 1990), the plain baseline."""

  @nn.compact
  def __call__(self, h, x):
    h = jnp.tanh(self._preact(h, x))
    return h, h


class ROAFRNNCell(_ElmanLikeCell):
  """ROAF cell h_t = α O h_{t−1} + β φ(W_x x_t + W_h h_{t−1} + b) (Ceni 2022).

  O is Haar orthogonal from `filter_seed` (a trace-time constant, no
  gradient); β = None ↦ 1 − α; requires 0 < α < 1, β > 0. W_h defaults to
  orthogonal at the critical gain σ* = √(1 − α²)/β (×1.1, see
  `stable_training.models.roaf.critical_gain`): with σ = 1 the one-step
  Jacobian contracts by √(α² + β²) < 1 and long-lag gradients vanish.
  """
  recurrent_kernel_init: InitLike = CRITICAL_INIT
  alpha: float = DEFAULT_RNN_ALPHA
  beta: float | None = None
  activation: ActivationLike = "tanh"
  filter_seed: int = 0

  def _recurrent_init(self):
    return roaf_kernel_init(self.recurrent_kernel_init, self.alpha, self.beta)

  def filter(self) -> jax.Array:
    """The fixed filter O (computed eagerly: a constant of the compiled program)."""
    with jax.ensure_compile_time_eval():
      return layer_filter(self.filter_seed, 0, self.features)

  @nn.compact
  def __call__(self, h, x):
    alpha, beta = validate_alpha_beta(self.alpha, self.beta)
    a = resolve_activation(self.activation)(self._preact(h, x))
    h = alpha * (h @ self.filter().T) + beta * a
    return h, h


def make_cell(cell: str, hidden: int, *, alpha: float = DEFAULT_RNN_ALPHA,
              beta: float | None = None, activation: ActivationLike = "tanh",
              kernel_init: InitLike = "lecun_normal", filter_seed: int = 0,
              project_input: bool = True, name: str | None = None) -> nn.RNNCellBase:
  """Cell by name: 'roaf' | 'elman' | 'lstm' | 'gru'.

  'lstm' is Flax's `OptimizedLSTMCell` (the same equations as `nn.LSTMCell`,
  gates fused into one matmul each for x and h), 'gru' is `nn.GRUCell`.
  """
  if cell == "roaf":
    return ROAFRNNCell(hidden, kernel_init=kernel_init, project_input=project_input,
                       alpha=alpha, beta=beta, activation=activation, filter_seed=filter_seed,
                       name=name)
  if cell == "elman":
    return ElmanCell(hidden, kernel_init=kernel_init, project_input=project_input, name=name)
  if cell == "lstm":
    return nn.OptimizedLSTMCell(hidden, name=name)
  if cell == "gru":
    return nn.GRUCell(hidden, name=name)
  raise ValueError(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}")


class RecurrentClassifier(nn.Module):
  """Single-layer RNN over time + Dense read-out ``output``.

  Input [B, T, F] (or [B, T], treated as F = 1). Output: logits [B, C] from the
  last hidden state (``readout='last'``) or per-step logits [B, T, C]
  (``readout='all'``, e.g. for the copy task). For 'roaf'/'elman' the input
  projection ``input_proj`` (W_x, b) runs on all steps at once outside the
  time scan. Params: ``input_proj`` (Elman/ROAF), ``cell``, ``output``.

  Attributes:
    cell: 'roaf' | 'elman' | 'lstm' | 'gru'.
    hidden: hidden units H.
    num_classes: output units (1 for regression tasks such as the adding problem).
    readout: 'last' | 'all'.
    alpha, beta, activation, filter_seed: ROAF cell settings (ignored by the others).
    kernel_init: input-projection initializer of the Elman/ROAF cells.
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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.readout not in READOUTS:
      raise ValueError(f"unknown readout {self.readout!r}; valid choices: {', '.join(READOUTS)}")
    if self.cell not in CELLS:
      raise ValueError(f"unknown cell {self.cell!r}; valid choices: {', '.join(CELLS)}")
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(f"RecurrentClassifier expects [B, T, F] or [B, T] input, got shape {x.shape}")
    fused = self.cell in ("roaf", "elman")
    if fused:
      x = nn.Dense(self.hidden, kernel_init=resolve_init(self.kernel_init), name="input_proj")(x)
    cell = make_cell(self.cell, self.hidden, alpha=self.alpha, beta=self.beta,
                     activation=self.activation, kernel_init=self.kernel_init,
                     filter_seed=self.filter_seed, project_input=not fused, name="cell")
    ys = nn.RNN(cell, name="rnn")(x)                    # [B, T, H]
    feats = ys[:, -1] if self.readout == "last" else ys
    return nn.Dense(self.num_classes, name="output")(feats)

  @nn.nowrap
  def lsc_transitions(self, params, x: jax.Array, key: jax.Array, time_samples: int = 2) -> dict:
    """The transitions whose Jacobians LSC sets (Herranz-Celotti & Rouat 2023/24; `stable_training.lsc`).

    s is the cell's flat state: h for 'roaf', 'elman', 'gru'; [h, c] for
    'lstm'. At K = min(time_samples, T) steps t drawn from `key` without
    replacement, with the states of a forward pass held fixed (s_{−1} = 0):
      time [1, B, K]: s_{t−1} ↦ s_t = cell(s_{t−1}, x_t), Jacobian ∂s_t/∂s_{t−1}:
        roaf  α O + β diag φ'(z_t) W_hᵀ, elman diag(1 − h_t²) W_hᵀ
        (z_t = W_xᵀ x_t + b + W_hᵀ h_{t−1}, flax kernels [in, out]; O the fixed
        filter), gru / lstm through their gates; length T. The input
        projection ``input_proj`` is part of the map's parameters (it moves z_t).
      readout [B]: h_{T−1} ↦ W_outᵀ h + b (`dense_readout`, the last step's h).
    """
    from stable_training.lsc.protocol import Transitions, dense_readout, previous
    if x.ndim == 2:
      x = x[..., None]
    H = self.hidden
    fused = self.cell in ("roaf", "elman")
    cell = make_cell(self.cell, H, alpha=self.alpha, beta=self.beta, activation=self.activation,
                     kernel_init=self.kernel_init, filter_seed=self.filter_seed, project_input=not fused)
    if self.cell == "lstm":  # carry (c, h) ↔ flat [h, c]
      flat, unflat = (lambda c: jnp.concatenate([c[1], c[0]], axis=-1)), (lambda s: (s[..., H:], s[..., :H]))
    else:
      flat = unflat = lambda c: c

    def step(th, xt, s):  # s_t from s_{t−1} (flat), batched or not
      if fused:
        xt = nn.Dense(H).apply({"params": th["input_proj"]}, xt)
      return flat(cell.apply({"params": th["cell"]}, unflat(s), xt)[0])

    theta = {"cell": params["cell"], **({"input_proj": params["input_proj"]} if fused else {})}
    fixed = jax.lax.stop_gradient(theta)
    B, T = x.shape[:2]
    s0 = jnp.zeros((B, 2 * H if self.cell == "lstm" else H), jnp.float32)
    _, ss = jax.lax.scan(lambda s, xt: (step(fixed, xt, s),) * 2, s0, jnp.swapaxes(x, 0, 1))
    ss = jax.lax.stop_gradient(jnp.swapaxes(ss, 0, 1))  # [B, T, S]
    k_t, k_r, k_m = jax.random.split(key, 3)
    t_idx = jax.random.choice(k_t, T, (min(time_samples, T),), replace=False)
    time = Transitions(fn=step, theta=jax.tree.map(lambda a: a[None], theta),
                       points=previous(ss, 1)[:, t_idx][None], context=x[:, t_idx][None], keys=k_m, length=T)
    return {"time": time, "readout": dense_readout(params["output"], ss[:, -1, :H], k_r)}


_COMMON = common_keys(kernel_init="lecun_normal")


@register_model("rnn_classifier", keys={
    "name": Key(str, "rnn_classifier"), "width": _COMMON["width"],
    "depth": Key(int, 1, lo=1, hi=1, doc="one recurrent layer"),
    "cell": Key(str, "roaf", choices=CELLS), "readout": Key(str, "last", choices=READOUTS),
    "alpha": Key(float, DEFAULT_RNN_ALPHA, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "beta": Key(float, None, lo=0.0, lo_open=True, nullable=True),
    "activation": _COMMON["activation"], "activation_kwargs": _COMMON["activation_kwargs"],
    "kernel_init": _COMMON["kernel_init"], "filter_seed": Key(int, 0, lo=0),
})
def _build_rnn_classifier(cfg, *, num_classes, input_shape):
  """Config keys: cell, width (= hidden), readout, alpha, beta, activation, kernel_init, filter_seed."""
  del input_shape
  return RecurrentClassifier(cell=cfg.cell, hidden=cfg.width, num_classes=num_classes, readout=cfg.readout,
                             alpha=cfg.alpha, beta=cfg.beta, activation=_activation_from_cfg(cfg),
                             kernel_init=cfg.kernel_init, filter_seed=cfg.filter_seed)
