"""stable_training: training very deep and very long networks stably (JAX/Flax).

The public API — ``import stable_training as st`` — for a researcher's own Flax
model and optax chain:

=====================  =====================================================  ==========================
what                   names                                                  paper
=====================  =====================================================  ==========================
activations            ``st.tgelu``, ``st.tgelu_range``, ``st.softsign``, …   Ramaswamy et al. 2023
initializers           ``st.glorot_standard``, ``st.glorot_normalized``, …    Glorot & Bengio 2010
models                 ``st.ROAFMLP``, ``st.ROAFRNNCell``, ``st.DeepMLP``,    Ceni 2022
                       ``st.RecurrentClassifier``, ``st.DeepRNN``, cells
optax transforms       ``st.clip_output_layer``, ``st.averaged_gradient``     Ramaswamy et al. 2023;
                                                                              ICLR 2025 submission
LSC pre-training       ``st.lsc`` (``st.lsc.pretrain(model, params, x, 1.0)``)  Herranz-Celotti & Rouat
per-layer monitoring   ``st.diagnostics``                                     Glorot & Bengio 2010
stability check-up     ``st.checkup(model, params, (x, y))``                  all of the above
the engine             ``st.train`` (``st.train.fit``), ``st.data``
=====================  =====================================================  ==========================

Names are imported on first use (PEP 562), so ``import stable_training`` is cheap
and has no side effect on the process.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None: the module itself.
_EXPORTS = {
    # activations (Ramaswamy, Bhatnagar & Saxena 2023; Glorot & Bengio 2010)
    **{n: ("stable_training.activations", n) for n in (
        "tgelu", "tgelu_range", "softsign", "sigmoid", "tanh", "relu", "gelu", "get_activation")},
    # initializers (Glorot & Bengio 2010; He et al. 2015)
    **{n: ("stable_training.initializers", n) for n in (
        "glorot_standard", "glorot_normalized", "he_normal", "lecun_normal", "orthogonal", "get_initializer")},
    # models (Ceni 2022 ROAF; recurrent cells; deep MLPs)
    "ROAFMLP": ("stable_training.models.roaf", "ROAFMLP"),
    "ROAFLayer": ("stable_training.models.roaf", "ROAFLayer"),
    "DeepMLP": ("stable_training.models.mlp", "DeepMLP"),
    "RecurrentClassifier": ("stable_training.models.recurrent", "RecurrentClassifier"),
    "DeepRNN": ("stable_training.models.deep_rnn", "DeepRNN"),
    "make_cell": ("stable_training.models.recurrent", "make_cell"),
    "ROAFRNNCell": ("stable_training.models.recurrent", "ROAFRNNCell"),
    "SimpleRNNCell": ("stable_training.models.recurrent", "SimpleRNNCell"),
    "LSTMCell": ("stable_training.models.recurrent", "LSTMCell"),
    "GRUCell": ("stable_training.models.recurrent", "GRUCell"),
    # optax transforms
    "clip_output_layer": ("stable_training.optim", "clip_output_layer"),
    "averaged_gradient": ("stable_training.optim", "averaged_gradient"),
    # subpackages
    **{n: (f"stable_training.{n}", None) for n in (
        "activations", "initializers", "models", "optim", "lsc", "diagnostics", "train", "data", "studies")},
    "checkup": ("stable_training.checkup", None),   # a callable module: st.checkup(model, params, batch)
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'stable_training' has no attribute {name!r}")
  module, attr = _EXPORTS[name]
  mod = importlib.import_module(module)
  value = mod if attr is None else getattr(mod, attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
