"""Deep fully connected networks and a small CNN, in flax.linen.

Every classifier here names its last layer ``output`` (output-layer gradient
clipping finds it by that name) and taps each hidden layer with
``Module.perturb('preact', z)`` and ``Module.sow('intermediates', 'act', a)``
so `stable_training.diagnostics` can read activations and back-propagated
gradients ∂L/∂z without re-writing the model. Both taps are no-ops unless the
caller asks for those collections, so they cost nothing otherwise.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax import lax

from stable_training import activations as acts
from stable_training import initializers as inits
from stable_training.models.registry import common_keys, register_model
from stable_training.schema import Key

ActivationLike = str | Callable[[jax.Array], jax.Array]
InitLike = str | Callable[..., jax.Array]

# Collections a scanned layer stacks along the depth axis.
SCAN_COLLECTIONS = ("params", "intermediates", "perturbations")


def resolve_activation(activation: ActivationLike) -> Callable[[jax.Array], jax.Array]:
  """A registry name or a callable → the activation function."""
  return acts.get_activation(activation) if isinstance(activation, str) else activation


def resolve_init(init: InitLike) -> Callable[..., jax.Array]:
  """A registry name or a callable → the initializer."""
  return inits.get_initializer(init) if isinstance(init, str) else init


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def dense_matmul(x: jax.Array, w: jax.Array, precision=None) -> jax.Array:
  """y = x W over x's last axis (x [..., K], W [K, N]), differentiated so that XLA:CPU's fast path runs.

  The math is plain: ∂y = ∂x W + x ∂W, so the backward pass is ∂x = ḡ Wᵀ and
  ∂W = xᵀ ḡ. Autodiff of ``x @ W`` leaves ∂W as a dot contracting x's *first*
  axis, which XLA:CPU hands to Eigen instead of XNNPACK: in the trace of the
  depth-1,000 ROAF step (width = batch = 128) that one dot took 63 ms of the
  step's 127 ms of matmuls, 3× each of the other three per layer
  (`scripts/profile_step.py`). Here the tangent's x ∂W is written with xᵀ
  materialized (an optimization barrier on a B × K transpose), so its
  transpose ∂W = (xᵀ) ḡ is a plain row-major matmul: 127 → 90 ms of matmuls,
  same numbers. A `custom_jvp`, not `custom_vjp`, so forward mode (LSC's
  Jacobian-vector products, the diagnostics' Jacobians) works as before.
  """
  return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


@dense_matmul.defjvp
def _dense_matmul_jvp(precision, primals, tangents):
  x, w = primals
  dx, dw = tangents
  y = dense_matmul(x, w, precision)
  xt = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)   # [K, B·...], materialized
  dy = lax.dot_general(dx, w, (((dx.ndim - 1,), (0,)), ((), ())), precision=precision)
  # x ∂W contracting xt's first axis: the residual kept for the backward pass is xt itself,
  # and the transpose of this dot, ∂W = xt ḡ, contracts xt's last axis (row-major).
  x_dw = lax.dot_general(xt, dw, (((0,), (0,)), ((), ())), precision=precision)
  return y, dy + x_dw.reshape(y.shape)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`nn.Dense`'s ``dot_general``: `dense_matmul` for its x W on the CPU backend, else `lax.dot_general`.

  On GPU/TPU the transposed operand costs nothing (cuBLAS and the MXU take
  either layout), so the materialized transpose would be pure overhead.
  """
  (lc, rc), (lb, rb) = dimension_numbers
  if (jax.default_backend() == "cpu" and tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb
      and not rb and rhs.ndim == 2 and preferred_element_type is None):
    return dense_matmul(lhs, rhs, precision)
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         preferred_element_type=preferred_element_type)


def Dense(features: int, **kwargs) -> nn.Dense:  # noqa: N802  (a module constructor)
  """``nn.Dense`` whose matmul is `dense_dot_general` (same params, same math)."""
  return nn.Dense(features, dot_general=dense_dot_general, **kwargs)


# The name under which a layer tags its pre-activation z = W h + b for `REMAT_POLICY`.
PREACT = "preact"
# Under remat, keep each layer's z: its backward pass then recomputes no matmul (the
# depth-1,000 ROAF train step, width = batch = 128: 6 → 5 matmuls per layer, 10 % faster,
# bitwise the same params; `scripts/bench_roaf.py`) for one more [batch, width] array per layer.
REMAT_POLICY = jax.checkpoint_policies.save_only_these_names(PREACT)


class DenseLayer(nn.Module):
  """h ↦ φ(W h + b), one hidden layer, with diagnostics taps."""
  width: int
  activation: ActivationLike = "tanh"
  kernel_init: InitLike = "glorot_normalized"

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    z = Dense(self.width, kernel_init=resolve_init(self.kernel_init), name="dense")(h)
    if not self.is_initializing():  # taps exist only when diagnostics ask (mutable=['perturbations'])
      z = self.perturb("preact", z)
    a = resolve_activation(self.activation)(checkpoint_name(z, PREACT))
    self.sow("intermediates", "act", a)
    return a


class _ScanBody(nn.Module):
  """Adapter: (carry, xs) → (carry, ys) signature for `nn.scan`."""
  width: int
  activation: ActivationLike
  kernel_init: InitLike

  @nn.compact
  def __call__(self, h, _):
    return DenseLayer(self.width, self.activation, self.kernel_init,
                      name="layer")(h), None


def scan_layers(body: type[nn.Module], length: int, remat: bool,
                name: str, unroll: int = 1, **kwargs) -> nn.Module:
  """`length` copies of `body` as one `nn.scan` (params stacked on axis 0).

  Compile time stays flat in `length`; with ``remat`` the backward pass
  recomputes each layer's forward instead of storing it, except the carry and
  the pre-activation z = W h + b the layer tags `PREACT` (`REMAT_POLICY`): the
  backward pass of h' = φ(z) (and of ROAF's α O h + β φ(z)) needs only h and
  φ'(z), so it recomputes no matmul, and activation memory is two arrays of
  width per layer rather than one per op. ``unroll`` layers run per
  loop iteration (fewer iterations of XLA's while loop, whose per-iteration
  overhead matters for small layers on CPU; compile time grows with it).
  """
  target = nn.remat(body, prevent_cse=False, policy=REMAT_POLICY) if remat else body
  scanned = nn.scan(
      target,
      variable_axes={c: 0 for c in SCAN_COLLECTIONS},
      split_rngs={"params": True},
      length=length,
      unroll=unroll,
  )
  return scanned(name=name, **kwargs)


class DeepMLP(nn.Module):
  """A deep MLP: `depth` hidden layers h_l = φ(W_l h_{l−1} + b_l), then ``output``.

  The first hidden layer (``input``, fan-in = input size) has its own
  parameters; the other depth − 1 identical width×width layers run through
  one `nn.scan` (``hidden``; params stacked on a leading axis of size
  depth − 1), so compile time does not grow with depth. This is the network of
  Glorot & Bengio (2010) with depth = number of hidden layers.

  Attributes:
    width: hidden units per layer.
    depth: number of hidden layers (≥ 1).
    num_classes: output units (logits).
    activation: registry name or callable φ.
    kernel_init: registry name or callable for hidden kernels; the output
      layer uses the same initializer.
    remat: rematerialize each scanned layer in the backward pass.
  """
  width: int
  depth: int
  num_classes: int
  activation: ActivationLike = "tanh"
  kernel_init: InitLike = "glorot_normalized"
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.depth < 1:
      raise ValueError(f"DeepMLP depth must be >= 1, got {self.depth}")
    h = x.reshape(x.shape[0], -1)
    h = DenseLayer(self.width, self.activation, self.kernel_init, name="input")(h)
    if self.depth > 1:
      h, _ = scan_layers(_ScanBody, self.depth - 1, self.remat, "hidden",
                         width=self.width, activation=self.activation,
                         kernel_init=self.kernel_init)(h, None)
    return nn.Dense(self.num_classes, kernel_init=resolve_init(self.kernel_init),
                    name="output")(h)

  @nn.nowrap
  def lsc_transitions(self, params, x: jax.Array, key: jax.Array, time_samples: int = 2) -> dict:
    """The transitions whose Jacobians LSC sets (Herranz-Celotti & Rouat 2023/24; `stable_training.lsc`).

      depth (stacked over the L − 1 scanned layers, one point per example):
        h_l ↦ h_{l+1} = φ(W_{l+1}ᵀ h_l + b_{l+1}) at the forward pass's h_l,
        Jacobian diag φ'(z_{l+1}) W_{l+1}ᵀ (flax kernel W [in, out]); length L.
      readout: h_{L−1} ↦ W_outᵀ h_{L−1} + b_out (`dense_readout`).
    The first layer (input → width) is not square and has no LSC target.
    `key` → (depth key, read-out key); `time_samples` is unused (no time axis).
    """
    del time_samples
    from stable_training.lsc.protocol import Transitions, dense_readout
    x = x.reshape(x.shape[0], -1)
    _, inter = self.apply({"params": params}, x, mutable=["intermediates"])
    acts = jax.lax.stop_gradient(hidden_stack(inter["intermediates"]))  # [L, B, W]
    layer = DenseLayer(self.width, self.activation, self.kernel_init, parent=None)
    k_d, k_r = jax.random.split(key)
    stacked = params["hidden"]["layer"] if "hidden" in params else None
    depth = Transitions(fn=lambda p, _, u: layer.apply({"params": p}, u), theta=stacked,
                        points=acts[:-1], keys=k_d, length=self.depth)
    return {"depth": depth, "readout": dense_readout(params["output"], acts[-1], k_r)}


def hidden_stack(tree: Any, leaf: str = "act") -> jax.Array:
  """Stacks a DeepMLP's per-layer taps into one array [depth, ...].

  `tree` is the ``intermediates`` (leaf ``act``, values are sow tuples) or the
  ``perturbations`` / their gradients (leaf ``preact``) collection of a
  `DeepMLP` call; layer 0 is ``input``, layers 1.. are the scanned ``hidden``.
  """
  def get(t):
    v = t[leaf]
    return v[0] if isinstance(v, tuple) else v
  first = get(tree["input"])[None]
  if "hidden" not in tree:
    return first
  rest = get(tree["hidden"]["layer"])
  return jnp.concatenate([first, rest], axis=0)


class ConvNet(nn.Module):
  """Small CNN: conv 8 → 16 → 64 (3×3, each + φ + 2×2 max-pool), dense 1024 → 256 → ``output``.

  The CNN of the tGELU classification study (Ramaswamy, Bhatnagar & Saxena
  2023). Accepts [B, H, W, C] images or flat [B, H·W] inputs with
  `image_shape` giving (H, W, C).
  """
  num_classes: int
  activation: ActivationLike = "gelu"
  kernel_init: InitLike = "lecun_normal"
  image_shape: Sequence[int] = (28, 28, 1)
  features: Sequence[int] = (8, 16, 64)
  dense: Sequence[int] = (1024, 256)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = resolve_activation(self.activation)
    init = resolve_init(self.kernel_init)
    if x.ndim == 2:
      x = x.reshape((x.shape[0], *self.image_shape))
    for i, f in enumerate(self.features):
      x = nn.Conv(f, (3, 3), kernel_init=init, name=f"conv{i}")(x)
      x = act(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = x.reshape(x.shape[0], -1)
    for i, d in enumerate(self.dense):
      x = DenseLayer(d, self.activation, self.kernel_init, name=f"dense{i}")(x)
    return nn.Dense(self.num_classes, kernel_init=init, name="output")(x)


def _activation_from_cfg(cfg) -> ActivationLike:
  kwargs = dict(cfg.get("activation_kwargs", None) or {})
  return acts.get_activation(cfg.activation, **kwargs) if kwargs else cfg.activation


@register_model("deep_mlp", keys={**common_keys(), "name": Key(str, "deep_mlp")})
def _build_deep_mlp(cfg, *, num_classes, input_shape):
  del input_shape
  return DeepMLP(width=cfg.width, depth=cfg.depth, num_classes=num_classes,
                 activation=_activation_from_cfg(cfg), kernel_init=cfg.kernel_init,
                 remat=cfg.remat)


_CONV_KEYS = {k: v for k, v in common_keys().items() if k in ("activation", "activation_kwargs", "kernel_init")}


@register_model("convnet", keys={"name": Key(str, "convnet"), **_CONV_KEYS})
def _build_convnet(cfg, *, num_classes, input_shape):
  image_shape = input_shape if len(input_shape) == 3 else (28, 28, 1)
  return ConvNet(num_classes=num_classes, activation=_activation_from_cfg(cfg),
                 kernel_init=cfg.kernel_init, image_shape=tuple(image_shape))
