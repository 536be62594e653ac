"""The LSC protocol: a model that declares its transition Jacobians gets LSC.

Herranz-Celotti & Rouat (2023/24), "Stabilizing RNN Gradients through
Pre-training": the Local Stability Condition asks every transition Jacobian
M of a network (time ∂s_t/∂s_{t−1}, depth ∂s^l/∂s^{l−1}, read-out ∂o/∂y) to
have radius ρ(M) at a target. Which maps those are is a property of the
model, so the model declares them and the LSC code stays generic:

    model.lsc_transitions(params, x, key, time_samples=2)
        -> {kind: Transitions | tuple[Transitions, ...]}

with kind ∈ {'depth', 'time', 'readout'} (only the kinds the model has). Each
`Transitions` is a batch of one-step maps u ↦ fn(θ, c, u) and the points u
at which LSC differentiates them: M = ∂fn(θ, c, u)/∂u. The states u and the
contexts c come from a forward pass held under `stop_gradient` (the condition
is local); θ is built from `params` inside the call, so the LSC loss
differentiates through it. A tuple of `Transitions` (e.g. a first layer whose
parameters have other shapes than the rest) is concatenated along the layer
axis. `time_samples`: how many random steps t the recurrent models sample
(feed-forward models ignore it).

Implemented by `DeepMLP`, `ROAFMLP`, `RecurrentClassifier` and `DeepRNN`
(methods ``lsc_transitions``); `supports(model)` tells whether a model has it.
For other Flax models `stable_training.lsc.generic` builds the same protocol
from the model's calls (`find_transitions`) or from a user's step function.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

TRANSITION_KINDS = ("depth", "time", "readout")


@dataclasses.dataclass(frozen=True)
class Transitions:
  """A batch of transition maps whose Jacobians LSC measures (Herranz-Celotti & Rouat).

  The Jacobian at point p is M_p = ∂fn(θ_l, c_p, u)/∂u at u = u_p, a
  [m, n] matrix (non-square ones are square-subsampled by the radius).

  Fields:
    fn: fn(theta, context, u) -> v, one transition for one point; u [n], v [m].
    theta: the maps' parameters, built from the model's params (the LSC loss
      differentiates through them). ``stacked=True``: leaves [L, ...], one
      slice per layer l (vmapped); ``stacked=False``: shared by every point.
    points: the states u_p: [L, *P, n] (stacked) or [*P, n]; P are point axes
      (batch element, sampled step, ...). Held fixed (`stop_gradient`).
    context: per-point constants c_p (e.g. the input x_t or the previous
      state of the layer), leaves [L, *P, ...] or [*P, ...]; None for none.
    keys: PRNG keys for square subsampling / power iteration: one key shared
      by every point, or one per point ([L, *P] + key shape).
    stacked: whether theta, points, context carry the layer axis L.
    length: how many transitions of this kind the network chains (T for
      time, the number of layers L for depth); the 'unbalanced' preset
      ρ_depth = L/(L + T), ρ_time = T/(L + T) reads it.
  """
  fn: Callable[[Any, Any, jax.Array], jax.Array]
  theta: Any
  points: jax.Array
  context: Any = None
  keys: jax.Array | None = None
  stacked: bool = True
  length: int = 1


def supports(model) -> bool:
  """Whether `model` declares its LSC transitions (has ``lsc_transitions``).

  The engine should reject ``config.lsc.enabled=True`` for a model without
  them (Herranz-Celotti & Rouat's LSC needs the transition maps).
  """
  return callable(getattr(model, "lsc_transitions", None))


def dense_readout(out_params, ys: jax.Array, key: jax.Array, length: int = 1) -> Transitions:
  """Read-out transitions o = W y + b at the points ys [B, H] (one per example).

  ∂o/∂y = Wᵀ (C × H) for a flax Dense kernel W [H, C]; its radius is taken
  after a random square subsample of the longer axis, a different subset per
  example (keys split from `key`), so the batch mean averages over subsets
  (the reference implementation of Herranz-Celotti & Rouat subsamples).
  """
  return Transitions(fn=lambda th, _, u: u @ th["kernel"] + th["bias"], theta=out_params, points=ys,
                     keys=jax.random.split(key, ys.shape[0]), stacked=False, length=length)


def previous(states: jax.Array, axis: int) -> jax.Array:
  """s_{t−1} along `axis` with s_{−1} = 0: the points of the time transitions ∂s_t/∂s_{t−1}.

  (The state before each step, at which LSC (Herranz-Celotti & Rouat
  2023/24) differentiates the one-step map s_{t−1} ↦ s_t.)
  """
  first = jax.lax.slice_in_dim(jnp.zeros_like(states), 0, 1, axis=axis)
  rest = jax.lax.slice_in_dim(states, 0, states.shape[axis] - 1, axis=axis)
  return jnp.concatenate([first, rest], axis=axis)


def _is_single_key(k: jax.Array) -> bool:
  """A single PRNG key (typed, shape (); or raw uint32 [2]) rather than a batch."""
  k = jnp.asarray(k) if not hasattr(k, "dtype") else k
  if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key):
    return k.ndim == 0
  return k.ndim == 1
