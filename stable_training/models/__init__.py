"""Models (flax.linen). Every classifier's last layer is named ``output``.

Each model module registers its builders with `register_model`; importing
this package imports them all, so `build_model(config.model, ...)` sees every
model by name.
"""
from stable_training.models.mlp import ConvNet, DeepMLP, DenseLayer, hidden_stack, scan_layers
from stable_training.models.registry import build_model, model_keys, names, register_model, resolve_model_config

__all__ = ["ConvNet", "DeepMLP", "DenseLayer", "build_model", "hidden_stack",
           "names", "register_model", "scan_layers"]
# Imported for their registrations: ROAF (Ceni 2022) and recurrent classifiers.
from stable_training.models import recurrent, roaf  # noqa: F401,E402
from stable_training.models import deep_rnn  # noqa: F401,E402  (LSC, Herranz-Celotti & Rouat)
