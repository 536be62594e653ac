"""stable_training: training very deep and very long networks stably (JAX/Flax)."""
__version__ = "0.1.0"
