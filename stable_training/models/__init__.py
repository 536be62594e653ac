"""Models (flax.linen). Every classifier's last layer is named ``output``."""
from stable_training.models.mlp import ConvNet, DeepMLP, DenseLayer, hidden_stack, scan_layers

__all__ = ["ConvNet", "DeepMLP", "DenseLayer", "hidden_stack", "scan_layers"]
