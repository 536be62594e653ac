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
* ``elman`` / ``roaf`` — the cells of `RecurrentClassifier` (Elman 1990; Ceni 2022).

The cells are the one family of `stable_training.models.recurrent` (`make_cell`,
`RecurrentCell`; re-exported here). `stable_training.lsc` differentiates one
transition functionally through their methods ``step(s_prev, x) -> s`` (flat
real state [.., S]) and ``output(s, x) -> y``; a layer runs them with
`scan_cell` (input projection of all steps hoisted out of the time scan). The
state of every layer is one real vector, so the time Jacobian ∂s_t/∂s_{t−1}
and the depth Jacobian ∂s^l_t/∂s^{l−1}_t are plain square matrices.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stable_training import initializers as inits
# The cells are the one family of `stable_training.models.recurrent` (re-exported here).
from stable_training.models.recurrent import (  # noqa: F401
    CELLS, SURROGATE_DAMPENING, ALIFCell, GRUCell, LRUCell, LSTMCell, RecurrentCell, SimpleRNNCell,
    make_cell, scan_cell, spike, state_size)
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key

READOUTS = ("last", "mean")
ENCODINGS = ("none", "latency")


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
    cell = make_cell(self.cell, self.hidden, self.kernel_init, name="cell", **(self.cell_kwargs or {}))
    ys, ss = scan_cell(cell, xs)
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



def cell_module(model: DeepRNN) -> RecurrentCell:
  """An unbound cell of `model`; ``cell.apply({'params': p}, s, x, method='step')`` is one transition."""
  return make_cell(model.cell, model.hidden, model.kernel_init, parent=None, **(model.cell_kwargs or {}))


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
  encoding, latency_steps, kernel_init, cell_kwargs (dict). `build_model`
  passes them resolved: every declared key present, at its default above when unset."""
  step_features = cfg.step_features or (input_shape[-1] if len(input_shape) >= 2 else 1)
  ck = cfg.cell_kwargs
  return DeepRNN(cell=cfg.cell, depth=cfg.depth, hidden=cfg.width,
                 num_classes=num_classes, step_features=int(step_features),
                 readout=cfg.readout, encoding=cfg.encoding, latency_steps=cfg.latency_steps,
                 kernel_init=cfg.kernel_init, cell_kwargs=dict(ck) if ck else None)
