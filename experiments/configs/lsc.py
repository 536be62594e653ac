"""LSC pre-training studies (Herranz-Celotti & Rouat 2023/24).

Variants:
  ``ffn-ACT-INIT-ARM``   DeepMLP 30 × 128 on Fashion-MNIST; ACT ∈ {sin, relu, cos},
                         INIT ∈ {glorot, he}, ARM ∈ {none, lsc} (lsc: ρ = 1 pre-training).
                         e.g. ``lsc.py:ffn-sin-glorot-lsc``.
  ``rnn-CELL-DEPTH-RHO`` DeepRNN on sequential Fashion-MNIST; CELL ∈ {lstm, gru,
                         relu_rnn, sigmoid_rnn, alif, lru}, DEPTH ∈ 1..7, RHO ∈ {none, 1,
                         0.5, unbalanced}. ALIF reads spike-latency encoded images
                         (28 steps × 784 inputs, no standardization); the others read
                         one 28-pixel row per step. e.g. ``lsc.py:rnn-lstm-2-0.5``.
  ``tiny``               seconds-long smoke run on scikit-learn digits: ``ffn-sin-glorot-lsc``
                         at depth 4, shrunk by `default.tiny`.
  ``tiny-VARIANT``       any variant above shrunk the same way (``tiny-ffn`` = ``tiny``,
                         ``tiny-rnn`` = ``tiny-rnn-lstm-2-1``); recurrent nets read digits
                         one 8-pixel row per step.
The optimizer is Adam (the paper sweeps the learning rate; the scripts do).
"""
from __future__ import annotations

from experiments.configs import default

FFN_ACTS = ("sin", "relu", "cos")
FFN_INITS = {"glorot": "glorot_normalized", "he": "he_normal"}
ARMS = ("none", "lsc")
CELLS = ("lstm", "gru", "relu_rnn", "sigmoid_rnn", "tanh_rnn", "alif", "lru")
RHOS = ("none", "1", "0.5", "unbalanced")


def _ffn(parts):
  if len(parts) != 3:
    raise ValueError(f"lsc.py ffn variant {'-'.join(['ffn', *parts])!r}: expected ffn-ACT-INIT-ARM")
  act, init, arm = parts
  if act not in FFN_ACTS:
    raise ValueError(f"lsc.py activation {act!r}; valid: {', '.join(FFN_ACTS)}")
  if init not in FFN_INITS:
    raise ValueError(f"lsc.py init {init!r}; valid: {', '.join(FFN_INITS)}")
  if arm not in ARMS:
    raise ValueError(f"lsc.py arm {arm!r}; valid: {', '.join(ARMS)}")
  c = default.get_config()
  c.model.name = "deep_mlp"
  c.model.depth = 30
  c.model.width = 128
  c.model.activation = act
  c.model.kernel_init = FFN_INITS[init]
  c.lsc.enabled = arm == "lsc"
  c.lsc.rho = 1.0
  return c


def _rnn(parts):
  if len(parts) != 3:
    raise ValueError(f"lsc.py rnn variant {'-'.join(['rnn', *parts])!r}: expected rnn-CELL-DEPTH-RHO")
  cell, depth, rho = parts
  if cell not in CELLS:
    raise ValueError(f"lsc.py cell {cell!r}; valid: {', '.join(CELLS)}")
  if not depth.isdigit() or not 1 <= int(depth) <= 7:
    raise ValueError(f"lsc.py depth {depth!r}; valid: 1..7")
  if rho not in RHOS:
    raise ValueError(f"lsc.py rho {rho!r}; valid: {', '.join(RHOS)}")
  c = default.get_config()
  c.model.name = "deep_rnn"
  c.model.cell = cell
  c.model.depth = int(depth)
  c.model.width = 64
  c.model.readout = "last"
  c.model.step_features = 28
  c.model.encoding = "none"
  c.model.latency_steps = 28
  if cell == "alif":
    c.model.encoding = "latency"
    c.dataset.standardize = False   # the latency code reads intensities in [0, 1]
  c.lsc.enabled = rho != "none"
  if rho == "unbalanced":
    c.lsc.targets = "unbalanced"
  elif rho != "none":
    c.lsc.rho = float(rho)
  c.lsc.batch = 16
  c.lsc.time_samples = 2
  return c


TINY_DEFAULTS = {"": "ffn-sin-glorot-lsc", "ffn": "ffn-sin-glorot-lsc", "rnn": "rnn-lstm-2-1"}


def tiny(c):
  """Shrinks an arm's config to a seconds-long smoke run on digits (`default.tiny`, depth ≤ 4)."""
  default.tiny(c)
  c.model.depth = min(c.model.depth, 4)
  if c.model.name == "deep_rnn" and c.dataset.name == "digits":
    c.model.step_features = 8     # one row of the 8 × 8 image per step
    c.model.latency_steps = 8
  return c


def get_config(variant: str = "rnn-lstm-2-1"):
  """The config of one study arm (see module doc)."""
  if variant == "tiny" or variant.startswith("tiny-"):
    rest = variant[len("tiny-"):] if variant != "tiny" else ""
    return tiny(get_config(TINY_DEFAULTS.get(rest, rest)))
  kind, *parts = variant.split("-") if variant else ["rnn"]
  if kind == "ffn":
    c = _ffn(parts)
  elif kind == "rnn":
    c = _rnn(parts)
  else:
    raise ValueError(f"lsc.py variant {variant!r}: expected ffn-ACT-INIT-ARM, rnn-CELL-DEPTH-RHO or tiny[-VARIANT]")
  c.dataset.name = "fashion_mnist"
  c.dataset.view = "flatten"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.batch_size = 128
  c.num_steps = 2000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.lsc.steps = 200
  return c
