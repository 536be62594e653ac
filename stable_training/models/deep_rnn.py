"""Deep recurrent networks with flat per-layer states, for LSC pre-training.

`DeepRNN` stacks `depth` recurrent layers; each layer runs one cell over time
with `nn.scan`, layers 1..depth−1 (identical hidden→hidden shapes) run through
one more `nn.scan` over depth (params stacked on axis 0, path
``hidden/layer/cell/...``), layer 0 is ``input`` and the read-out Dense is
``output``. Cells (Herranz-Celotti & Rouat 2023/24, "Stabilizing RNN Gradients
through Pre-training", use the same families):

* ``lstm``   — s = [h, c]   (Hochreiter & Schmidhuber 1997), y = h.
* ``gru``    — s = h        (Cho et al. 2014), y = h.
* ``relu_rnn`` / ``sigmoid_rnn`` / ``tanh_rnn`` — s = h = φ(W x + U h + b), y = h.
* ``alif``   — s = [v, a, z]: membrane v, threshold adaptation a, spike z
  (adaptive LIF, Bellec et al. 2020); y = z; spikes through a triangular
  surrogate gradient with dampening γ = 0.5.
* ``lru``    — s = [Re h, Im h], h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t), λ =
  exp(−exp(ν) + i exp(θ)) with ring init and γ = √(1 − |λ|²) (Orvieto et al.
  2023); y = GELU(Re(C h) + D x).

Every cell is a setup-style module with three methods used by
`stable_training.lsc` to differentiate one transition functionally:
``step(s_prev, x) -> s`` (flat real state [.., S]), ``output(s, x) -> y`` and
``__call__(s, x) -> (s, (y, s))`` (the `nn.scan` body). The state of every
layer is one real vector, so the time Jacobian ∂s_t/∂s_{t−1} and the depth
Jacobian ∂s^l_t/∂s^{l−1}_t are plain square matrices.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training import initializers as inits
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key

CELLS = ("lstm", "gru", "relu_rnn", "sigmoid_rnn", "tanh_rnn", "alif", "lru")
READOUTS = ("last", "mean")
ENCODINGS = ("none", "latency")


def state_size(cell: str, hidden: int) -> int:
  """Length S of the flat real state of one layer of `cell` with `hidden` units."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")
  return {"lstm": 2, "alif": 3, "lru": 2}.get(cell, 1) * hidden


# ---------------------------------------------------------------- surrogate ---
@jax.custom_jvp
def spike(x: jax.Array) -> jax.Array:
  """Heaviside H(x) with the triangular surrogate derivative γ·max(0, 1 − |x|), γ = 0.5.

  x is the threshold-normalized membrane (v − θ)/θ (Bellec et al. 2020; the
  dampening γ = 0.5 as in Herranz-Celotti & Rouat). Written as a
  `jax.custom_jvp` rather than `custom_vjp`: the reverse-mode gradient is the
  same (JAX transposes the linear tangent rule), and forward mode keeps
  working, which `jax.jacfwd` and the matrix-free radius estimator need.
  """
  return (x > 0).astype(x.dtype)


SURROGATE_DAMPENING = 0.5


@spike.defjvp
def _spike_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return spike(x), SURROGATE_DAMPENING * jnp.maximum(0.0, 1.0 - jnp.abs(x)) * dx


# -------------------------------------------------------------------- cells ---
class _Cell(nn.Module):
  """Common scan body: (s_prev, x) → (s, (y, s))."""
  hidden: int
  kernel_init: str = "glorot_normalized"

  def __call__(self, s, x):
    s_new = self.step(s, x)
    return s_new, (self.output(s_new, x), s_new)

  def output(self, s, x):
    del x
    return s[..., :self.hidden]


def _dense(n, init="glorot_normalized", bias=True, name=None):
  return nn.Dense(n, use_bias=bias, kernel_init=inits.get_initializer(init), name=name)


class LSTMCell(_Cell):
  """i,f,g,o = σ,σ,tanh,σ(W x + U h + b); c' = f c + i g; h' = o tanh(c'); s = [h, c]."""

  def setup(self):
    self.wx = _dense(4 * self.hidden, self.kernel_init, name="wx")
    self.wh = nn.Dense(4 * self.hidden, use_bias=False,
                       kernel_init=nn.initializers.orthogonal(), name="wh")

  def step(self, s, x):
    h, c = s[..., :self.hidden], s[..., self.hidden:]
    i, f, g, o = jnp.split(self.wx(x) + self.wh(h), 4, axis=-1)
    c = nn.sigmoid(f + 1.0) * c + nn.sigmoid(i) * jnp.tanh(g)  # forget bias 1
    h = nn.sigmoid(o) * jnp.tanh(c)
    return jnp.concatenate([h, c], axis=-1)


class GRUCell(_Cell):
  """r,z = σ(W x + U h + b); n = tanh(W_n x + r ⊙ U_n h); h' = (1 − z) n + z h."""

  def setup(self):
    self.wx = _dense(3 * self.hidden, self.kernel_init, name="wx")
    self.wh = nn.Dense(3 * self.hidden, use_bias=False,
                       kernel_init=nn.initializers.orthogonal(), name="wh")

  def step(self, h, x):
    xr, xz, xn = jnp.split(self.wx(x), 3, axis=-1)
    hr, hz, hn = jnp.split(self.wh(h), 3, axis=-1)
    r, z = nn.sigmoid(xr + hr), nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


class SimpleRNNCell(_Cell):
  """h' = φ(W x + U h + b) with φ ∈ {relu, sigmoid, tanh}; U orthogonal at init."""
  activation: str = "tanh"

  def setup(self):
    self.wx = _dense(self.hidden, self.kernel_init, name="wx")
    self.wh = nn.Dense(self.hidden, use_bias=False,
                       kernel_init=nn.initializers.orthogonal(), name="wh")

  def step(self, h, x):
    act = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}[self.activation]
    return act(self.wx(x) + self.wh(h))


class ALIFCell(_Cell):
  """Adaptive leaky integrate-and-fire neurons, s = [v, a, z] (Bellec et al. 2020).

    a_t = ρ a_{t−1} + (1 − ρ) z_{t−1}            (threshold adaptation)
    θ_t = b₀ + β a_t                              (adaptive threshold)
    v_t = α v_{t−1} + (1 − α)(W x_t + U z_{t−1}) − θ_t z_{t−1}   (soft reset)
    z_t = spike((v_t − θ_t)/θ_t)                  (surrogate, see `spike`)

  with α = exp(−1/τ_m), ρ = exp(−1/τ_a). The spike z_{t−1} is the
  refractory/reset part of the state. No explicit refractory counter.
  """
  tau_mem: float = 20.0
  tau_adapt: float = 200.0
  beta: float = 1.8
  thr: float = 0.1

  def setup(self):
    self.wx = _dense(self.hidden, self.kernel_init, name="wx")
    self.wh = nn.Dense(self.hidden, use_bias=False,
                       kernel_init=nn.initializers.orthogonal(), name="wh")

  def step(self, s, x):
    n = self.hidden
    v, a, z = s[..., :n], s[..., n:2 * n], s[..., 2 * n:]
    alpha, rho = np.exp(-1.0 / self.tau_mem), np.exp(-1.0 / self.tau_adapt)
    a = rho * a + (1.0 - rho) * z
    theta = self.thr + self.beta * a
    v = alpha * v + (1.0 - alpha) * (self.wx(x) + self.wh(z)) - theta * z
    z = spike((v - theta) / theta)
    return jnp.concatenate([v, a, z], axis=-1)

  def output(self, s, x):
    del x
    return s[..., 2 * self.hidden:]


def _ring_init(r_min, r_max, max_phase):
  """ν, θ logs so that λ = exp(−exp(ν) + i exp(θ)) is uniform on the ring r_min ≤ |λ| ≤ r_max."""
  def nu_init(key, shape, dtype=jnp.float32):
    u = jax.random.uniform(key, shape, dtype)
    return jnp.log(-0.5 * jnp.log(u * (r_max ** 2 - r_min ** 2) + r_min ** 2))

  def theta_init(key, shape, dtype=jnp.float32):
    u = jax.random.uniform(key, shape, dtype)
    return jnp.log(max_phase * u + 1e-8)
  return nu_init, theta_init


class LRUCell(_Cell):
  """Linear recurrent unit (Orvieto et al. 2023), s = [Re h, Im h].

    λ = exp(−exp(ν) + i exp(θ)),   γ = exp(γ_log), γ_log init log √(1 − |λ|²)
    h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t),   B complex
    y_t = GELU(Re(C h_t) + D x_t)
  """
  r_min: float = 0.4
  r_max: float = 0.99
  max_phase: float = 2 * np.pi

  def setup(self):
    n = self.hidden
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
    self.d = _dense(n, self.kernel_init, name="d")

  def lam(self):
    """Complex diagonal λ (real, imaginary parts)."""
    mod = jnp.exp(-jnp.exp(self.nu_log))
    ph = jnp.exp(self.theta_log)
    return mod * jnp.cos(ph), mod * jnp.sin(ph)

  def step(self, s, x):
    n = self.hidden
    hr, hi = s[..., :n], s[..., n:]
    lr, li = self.lam()
    g = jnp.exp(self.gamma_log)
    ur, ui = g * self.b_re(x), g * self.b_im(x)
    return jnp.concatenate([lr * hr - li * hi + ur, lr * hi + li * hr + ui], axis=-1)

  def output(self, s, x):
    n = self.hidden
    return nn.gelu(self.c_re(s[..., :n]) - self.c_im(s[..., n:]) + self.d(x), approximate=False)


def make_cell(cell: str, hidden: int, kernel_init: str = "glorot_normalized",
              name: str | None = None, **kwargs) -> nn.Module:
  """The cell module named `cell` (one of `CELLS`)."""
  state_size(cell, hidden)  # validates the name
  if cell == "lstm":
    return LSTMCell(hidden, kernel_init, name=name, **kwargs)
  if cell == "gru":
    return GRUCell(hidden, kernel_init, name=name, **kwargs)
  if cell == "alif":
    return ALIFCell(hidden, kernel_init, name=name, **kwargs)
  if cell == "lru":
    return LRUCell(hidden, kernel_init, name=name, **kwargs)
  return SimpleRNNCell(hidden, kernel_init, activation=cell.split("_")[0], name=name, **kwargs)


_CELL_CLASSES = {"lstm": LSTMCell, "gru": GRUCell, "alif": ALIFCell, "lru": LRUCell,
                 "relu_rnn": SimpleRNNCell, "sigmoid_rnn": SimpleRNNCell, "tanh_rnn": SimpleRNNCell}


def _cell_kwargs(cell: str, cell_kwargs) -> dict:
  kw = dict(cell_kwargs or {})
  if cell.endswith("_rnn"):
    kw["activation"] = cell.split("_")[0]
  return kw


# ------------------------------------------------------------------- layers ---
class RNNLayer(nn.Module):
  """One recurrent layer: the cell scanned over time ([B, T, D] → [B, T, H]).

  Sows its inputs and flat states (``intermediates``: ``inputs`` [B, T, D],
  ``states`` [B, T, S]) for the LSC Jacobians.
  """
  cell: str
  hidden: int
  kernel_init: str = "glorot_normalized"
  cell_kwargs: Any = None

  @nn.compact
  def __call__(self, xs):
    scanned = nn.scan(_CELL_CLASSES[self.cell], variable_broadcast="params",
                      split_rngs={"params": False}, in_axes=1, out_axes=1)
    cell = scanned(self.hidden, self.kernel_init, name="cell",
                   **_cell_kwargs(self.cell, self.cell_kwargs))
    s0 = jnp.zeros((xs.shape[0], state_size(self.cell, self.hidden)), xs.dtype)
    _, (ys, ss) = cell(s0, xs)
    self.sow("intermediates", "inputs", xs)
    self.sow("intermediates", "states", ss)
    return ys


class _DepthBody(nn.Module):
  cell: str
  hidden: int
  kernel_init: str
  cell_kwargs: Any

  @nn.compact
  def __call__(self, ys, _):
    return RNNLayer(self.cell, self.hidden, self.kernel_init, self.cell_kwargs, name="layer")(ys), None


def latency_encode(x: jax.Array, num_steps: int, tau: float | None = None,
                   threshold: float = 0.2) -> jax.Array:
  """Time-to-first-spike code of intensities x ∈ [0, 1] → spikes [..., T, P].

  Each input unit spikes once at t* = τ log(x / (x − ϑ)) for x > ϑ and never
  otherwise (Zenke & Vogels 2021 spike-latency MNIST; the LSC paper's
  sl-MNIST/sl-Fashion tasks); bright pixels fire first. τ defaults to T/5,
  so x = 1 fires at ≈ 0.045 T and x → ϑ⁺ at ∞ (dropped after T − 1).
  """
  tau = num_steps / 5.0 if tau is None else tau
  x = jnp.clip(x, 0.0, 1.0)
  valid = x > threshold
  t = tau * jnp.log(jnp.where(valid, x, 1.0) / jnp.where(valid, x - threshold, 1.0))
  t = jnp.where(valid, jnp.round(t), num_steps)  # num_steps: never
  steps = jnp.arange(num_steps, dtype=x.dtype)
  return (steps[:, None] == t[..., None, :]).astype(x.dtype)


def to_sequence(model: "DeepRNN", x: jax.Array) -> jax.Array:
  """`model`'s input → the [B, T, D] sequence fed to its layer 0 (see `DeepRNN`)."""
  if model.encoding not in ENCODINGS:
    raise ValueError(f"unknown encoding {model.encoding!r}; valid: {', '.join(ENCODINGS)}")
  if x.ndim == 3:
    return x
  x = x.reshape(x.shape[0], -1)
  if model.encoding == "latency":
    return latency_encode(x, model.latency_steps)
  if x.shape[1] % model.step_features:
    raise ValueError(f"step_features={model.step_features} does not divide the input size {x.shape[1]}")
  return x.reshape(x.shape[0], -1, model.step_features)


class DeepRNN(nn.Module):
  """`depth` stacked recurrent layers over time, then the Dense read-out ``output``.

  Inputs: [B, T, D] sequences, or flat [B, P] examples that are reshaped to
  [B, P / step_features, step_features] (e.g. step_features=28: row-sequential
  28×28 images) or, with ``encoding='latency'``, spike-latency encoded to
  [B, latency_steps, P] (`latency_encode`; inputs in [0, 1]).
  The read-out uses the last step's output (``readout='last'``) or the mean
  over time (``'mean'``).

  Attributes:
    cell: one of `CELLS`.
    depth: recurrent layers (≥ 1).
    hidden: units per layer (state size S = `state_size(cell, hidden)`).
    num_classes: logits.
  """
  cell: str
  depth: int
  hidden: int
  num_classes: int
  step_features: int = 1
  readout: str = "last"
  encoding: str = "none"
  latency_steps: int = 28
  kernel_init: str = "glorot_normalized"
  cell_kwargs: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not 1 <= self.depth:
      raise ValueError(f"DeepRNN depth must be >= 1, got {self.depth}")
    if self.readout not in READOUTS:
      raise ValueError(f"unknown readout {self.readout!r}; valid: {', '.join(READOUTS)}")
    ys = RNNLayer(self.cell, self.hidden, self.kernel_init, self.cell_kwargs, name="input")(to_sequence(self, x))
    if self.depth > 1:
      stack = nn.scan(_DepthBody, variable_axes={"params": 0, "intermediates": 0},
                      split_rngs={"params": True}, length=self.depth - 1)
      ys, _ = stack(self.cell, self.hidden, self.kernel_init, self.cell_kwargs, name="hidden")(ys, None)
    feat = ys[:, -1] if self.readout == "last" else ys.mean(axis=1)
    return nn.Dense(self.num_classes, kernel_init=inits.get_initializer(self.kernel_init),
                    name="output")(feat)

  @nn.nowrap
  def lsc_transitions(self, params, x: jax.Array, key: jax.Array, time_samples: int = 2) -> dict:
    """The transitions whose Jacobians LSC sets (Herranz-Celotti & Rouat 2023/24; `stable_training.lsc`).

    At K = min(time_samples, T) steps t drawn from `key` without replacement
    (the same steps for every layer and example), with the states of a
    forward pass held fixed:
      time  [L, B, K]:   s^l_{t−1} ↦ step_l(s^l_{t−1}, x^l_t), Jacobian ∂s^l_t/∂s^l_{t−1}
                         (s^l_{−1} = 0); length T.
      depth [L−1, B, K]: s^{l−1}_t ↦ step_l(s^l_{t−1}, output_{l−1}(s^{l−1}_t, x^{l−1}_t)),
                         Jacobian ∂s^l_t/∂s^{l−1}_t, l = 1..L−1; length L.
      readout [B]:       y^{L−1}_{T−1} ↦ W_outᵀ y + b (`dense_readout`).
    Layer 0 (input width D) and the stacked layers 1.. are separate
    `Transitions` of one kind (concatenated along the layer axis).
    """
    from stable_training.lsc.protocol import Transitions, dense_readout, previous
    cell = cell_module(self)
    step = lambda p, s, xt: cell.apply({"params": p}, s, xt, method="step")
    out = lambda p, s, xt: cell.apply({"params": p}, s, xt, method="output")
    x0, s0, xh, sh = jax.lax.stop_gradient(layer_trajectories(self, params, x))
    p0, ph = layer_params(params)
    B, T, S = s0.shape
    k_t, k_r, k_m = jax.random.split(key, 3)
    K = min(time_samples, T)
    t_idx = jax.random.choice(k_t, T, (K,), replace=False)
    at = lambda a: a[:, :, t_idx]                      # [L, B, T, ...] → [L, B, K, ...]
    one = lambda tree: jax.tree.map(lambda a: a[None], tree)
    time_fn = lambda p, xt, u: step(p, u, xt)
    depth_fn = lambda th, c, u: step(th[0], c[0], out(th[1], u, c[1]))
    time = [Transitions(time_fn, one(p0), at(previous(s0[None], 2)), at(x0[None]), k_m, length=T)]
    if ph is None:
      depth = Transitions(depth_fn, None, jnp.zeros((0, B, K, S), s0.dtype), keys=k_m, length=self.depth)
      x_last, s_last, p_last = x0, s0, p0
    else:
      time.append(Transitions(time_fn, ph, at(previous(sh, 2)), at(xh), k_m, length=T))
      first = jax.tree.map(lambda a: a[:1], ph)
      depth = [Transitions(depth_fn, (first, one(p0)), at(s0[None]),
                           (at(previous(sh[:1], 2)), at(x0[None])), k_m, length=self.depth)]
      if sh.shape[0] > 1:
        depth.append(Transitions(depth_fn, (jax.tree.map(lambda a: a[1:], ph), jax.tree.map(lambda a: a[:-1], ph)),
                                 at(sh[:-1]), (at(previous(sh[1:], 2)), at(xh[:-1])), k_m, length=self.depth))
      x_last, s_last, p_last = xh[-1], sh[-1], jax.tree.map(lambda a: a[-1], ph)
    ys = jax.lax.stop_gradient(out(p_last, s_last[:, -1], x_last[:, -1]))  # [B, H]
    return {"time": tuple(time), "depth": tuple(depth) if isinstance(depth, list) else depth,
            "readout": dense_readout(params["output"], ys, k_r)}



def cell_module(model: DeepRNN) -> nn.Module:
  """An unbound cell of `model`; ``cell.apply({'params': p}, s, x, method='step')`` is one transition."""
  return _CELL_CLASSES[model.cell](model.hidden, model.kernel_init, parent=None,
                                   **_cell_kwargs(model.cell, model.cell_kwargs))


def layer_params(params) -> tuple[Any, Any]:
  """(cell params of layer 0, cell params of layers 1.. stacked on axis 0 or None)."""
  first = params["input"]["cell"]
  rest = params["hidden"]["layer"]["cell"] if "hidden" in params else None
  return first, rest


def layer_trajectories(model: DeepRNN, params, x: jax.Array):
  """Runs `model` and returns the per-layer inputs and states.

  Returns:
    (x0 [B, T, D], s0 [B, T, S], xh [L−1, B, T, H] | None, sh [L−1, B, T, S] | None)
  """
  _, inter = model.apply({"params": params}, x, mutable=["intermediates"])
  inter = inter["intermediates"]
  x0, s0 = inter["input"]["inputs"][0], inter["input"]["states"][0]
  if "hidden" in inter:
    h = inter["hidden"]["layer"]
    return x0, s0, h["inputs"][0], h["states"][0]
  return x0, s0, None, None


def _get(cfg, key, default):
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


@register_model("deep_rnn", keys={
    "name": Key(str, "deep_rnn"), "width": common_keys()["width"], "depth": Key(int, 2, lo=1),
    "cell": Key(str, "lstm", choices=tuple(CELLS)),
    "step_features": Key(int, 0, lo=0, doc="inputs per time step; 0 = the input's last axis"),
    "readout": Key(str, "last", choices=("last", "mean")),
    "encoding": Key(str, "none", choices=("none", "latency")),
    "latency_steps": Key(int, 28, lo=1), "kernel_init": common_keys()["kernel_init"],
    "cell_kwargs": Key(dict, None, nullable=True),
})
def _build_deep_rnn(cfg, *, num_classes, input_shape):
  """model_cfg keys: cell, depth, width (= hidden), step_features, readout,
  encoding, latency_steps, kernel_init, cell_kwargs (dict)."""
  step_features = _get(cfg, "step_features", 0) or (input_shape[-1] if len(input_shape) >= 2 else 1)
  ck = _get(cfg, "cell_kwargs", None)
  return DeepRNN(cell=_get(cfg, "cell", "lstm"), depth=cfg.depth, hidden=cfg.width,
                 num_classes=num_classes, step_features=int(step_features),
                 readout=_get(cfg, "readout", "last"), encoding=_get(cfg, "encoding", "none"),
                 latency_steps=_get(cfg, "latency_steps", 28),
                 kernel_init=_get(cfg, "kernel_init", "glorot_normalized"),
                 cell_kwargs=dict(ck) if ck else None)
