"""Averaged-gradient RMSProp vs RMSProp on a very deep tanh MLP (ICLR 2025 submission).

"Efficient Gradient-Based Algorithm for Training Deep Learning Models With
Many Nonlinear Activations": RMSProp fed with the averaged gradient
ḡ = ∫₀¹ ∇L(w + tΔw) dt over the predicted step Δw (the previous update)
trains a 30-hidden-layer fully connected tanh network on Fashion-MNIST in
fewer iterations than RMSProp.

Variant ``METHOD[-shallow][-mnist_5k]``: METHOD ∈ {rmsprop (baseline), secant,
midpoint, gauss_legendre} (the last three are ``avg_grad_rmsprop`` with that
estimator; see `stable_training.optim.avg_grad`); ``-shallow`` is the
1-hidden-layer control; ``-mnist_5k`` trains on the paper's dataset, MNIST,
as a 5,000-image subset (4,000 train / 1,000 test,
`stable_training.data.mnist5k`; not the full 60,000). The learning rate is swept by `scripts/reproduce_avg_grad.py`
(1e-4 … 1e-2). Width 64 and batch 128 are this reproduction's choices (sized
for a 2-core CPU), not the paper's.

``tiny``: the secant arm (30 hidden layers) shrunk by `default.tiny` to a
seconds-long smoke run on digits.
"""
from __future__ import annotations

from experiments.configs import default

METHODS = ("rmsprop", "secant", "midpoint", "gauss_legendre")
DEEP_DEPTH = 30
SHALLOW_DEPTH = 1


def parse_variant(variant: str) -> tuple[str, int]:
  """``"secant-shallow"`` → ("secant", 1); ``"rmsprop"`` → ("rmsprop", 30) (a ``-mnist_5k`` suffix is allowed)."""
  return _parse(variant)[:2]


def _parse(variant: str) -> tuple[str, int, str]:
  parts = (variant or "rmsprop").split("-")
  method, rest = parts[0], parts[1:]
  if method not in METHODS:
    raise ValueError(f"avg_grad.py method {method!r}; valid: {', '.join(METHODS)} (or the variant tiny)")
  dataset = "fashion_mnist"
  if rest[-1:] == ["mnist_5k"]:
    dataset, rest = "mnist_5k", rest[:-1]
  if rest not in ([], ["shallow"]):
    raise ValueError(f"avg_grad.py variant {variant!r}: expected METHOD[-shallow][-mnist_5k]")
  return method, SHALLOW_DEPTH if rest else DEEP_DEPTH, dataset


def get_config(variant: str = "rmsprop"):
  """The config for one (method, depth) arm (or ``tiny``); learning_rate set by the sweep."""
  if variant == "tiny":
    return default.tiny(get_config("secant"))
  method, depth, dataset = _parse(variant)
  c = default.get_config()
  c.dataset.name = dataset
  c.model.name = "deep_mlp"
  c.model.depth = depth
  c.model.width = 64
  c.model.activation = "tanh"
  c.model.kernel_init = "glorot_normalized"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.decay = 0.9
  c.optimizer.eps = 1e-8
  c.optimizer.clip_output_norm = 0.0
  if method == "rmsprop":
    c.optimizer.name = "rmsprop"
  else:
    c.optimizer.name = "avg_grad_rmsprop"
    c.optimizer.avg_grad.method = method
    c.optimizer.avg_grad.num_points = 2
  c.batch_size = 128
  c.num_steps = 1500
  c.log_every = 50
  c.eval_every = 1500
  c.checkpoint_every = 1500
  c.num_seeds = 3
  c.on_nonfinite = "stop"
  c.progress = "none"
  return c
