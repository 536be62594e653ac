"""Glorot & Bengio (2010) Table 1: activation × initialization in a 5×1000 MLP.

Variant ``ACTIVATION-INIT[-DATASET]``, e.g. ``glorot.py:tanh-normalized`` or
``glorot.py:sigmoid-standard-shapeset``: activation ∈ {sigmoid, tanh,
softsign}, init ∈ {standard, normalized} (= glorot_standard
U[−1/√n, 1/√n], glorot_normalized U[±√6/√(n_in+n_out)]), dataset ∈
{fashion_mnist (default), shapeset, mnist_5k}. The paper's setup: 5 hidden layers of
1000 units, plain SGD, minibatch 10, learning rate picked on validation
(`scripts/reproduce_glorot_table1.py` does the picking), softmax output and
the negative log-likelihood. Diagnostics (per-layer monitors) are on.
``mnist_5k`` is a 5,000-image subset of MNIST (4,000 train / 1,000 test,
`stable_training.data.mnist5k`), not the paper's 60,000-image MNIST.

``tiny``: the tanh-normalized cell shrunk by `default.tiny` (digits, width 16,
20 steps) with a 64-example validation split, as the script uses it.
"""
from __future__ import annotations

from experiments.configs import default

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
INITS = {"standard": "glorot_standard", "normalized": "glorot_normalized"}
DATASETS = ("fashion_mnist", "shapeset", "mnist_5k")


def parse_variant(variant: str) -> tuple[str, str, str]:
  """``"tanh-normalized-shapeset"`` → ("tanh", "glorot_normalized", "shapeset")."""
  parts = variant.split("-") if variant else ["tanh", "normalized"]
  if len(parts) == 2:
    parts.append("fashion_mnist")
  if len(parts) != 3:
    raise ValueError(f"glorot.py variant {variant!r}: expected ACTIVATION-INIT[-DATASET]")
  act, init, ds = parts
  if act not in ACTIVATIONS:
    raise ValueError(f"glorot.py activation {act!r}; valid: {', '.join(ACTIVATIONS)}")
  if init not in INITS:
    raise ValueError(f"glorot.py init {init!r}; valid: {', '.join(INITS)}")
  if ds not in DATASETS:
    raise ValueError(f"glorot.py dataset {ds!r}; valid: {', '.join(DATASETS)}")
  return act, INITS[init], ds


def get_config(variant: str = "tanh-normalized"):
  """The Table-1 config for one (activation, init, dataset) cell (or ``tiny``)."""
  if variant == "tiny":
    c = get_config("tanh-normalized")
    c.dataset.num_val = 64
    return default.tiny(c)
  act, init, ds = parse_variant(variant)
  c = default.get_config()
  c.dataset.name = ds
  c.model.name = "deep_mlp"
  c.model.depth = 5
  c.model.width = 1000
  c.model.activation = act
  c.model.kernel_init = init
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01   # the script picks it on validation
  c.optimizer.momentum = 0.0
  c.batch_size = 10
  c.eval_batch_size = 1000
  c.num_steps = 20000
  c.log_every = 500
  c.eval_every = 5000
  c.checkpoint_every = 5000
  c.num_seeds = 1
  c.diagnostics.enabled = True
  c.diagnostics.every = 5000
  return c
