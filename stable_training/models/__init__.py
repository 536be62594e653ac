"""Models (flax.linen). Every classifier's last layer is named ``output``.

Each model module registers its builders with `register_model`; importing
this package imports them all, so `build_model(config.model, ...)` sees every
model by name.
"""
from stable_training.models.mlp import ConvNet, DeepMLP, DenseLayer, hidden_stack, scan_layers
from stable_training.models.registry import build_model, model_keys, names, register_model, resolve_model_config

# Imported for their registrations too: ROAF (Ceni 2022), recurrent classifiers, deep RNNs (LSC).
from stable_training.models import recurrent, roaf  # noqa: F401,E402
from stable_training.models import deep_rnn  # noqa: F401,E402  (LSC, Herranz-Celotti & Rouat)
from stable_training.models.deep_rnn import DeepRNN  # noqa: E402
from stable_training.models.recurrent import (CELLS, GRUCell, LSTMCell, RecurrentClassifier,  # noqa: E402
                                              ROAFRNNCell, SimpleRNNCell, make_cell, scan_cell)
from stable_training.models.roaf import ROAFLayer, ROAFMLP  # noqa: E402

__all__ = ["CELLS", "ConvNet", "DeepMLP", "DeepRNN", "DenseLayer", "GRUCell", "LSTMCell", "ROAFLayer", "ROAFMLP",
           "ROAFRNNCell", "RecurrentClassifier", "SimpleRNNCell", "build_model", "hidden_stack", "make_cell",
           "names", "register_model", "scan_cell", "scan_layers"]
