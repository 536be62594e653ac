"""Default config: the deep-MLP stability study on Fashion-MNIST.

Every study config starts from this one (`get_config()`), changes fields and
may add model-specific keys; `--config.KEY=VALUE` overrides any field.
Variants: `default.py:digits` uses scikit-learn's digits (no files needed);
`default.py:tiny` is the seconds-long smoke run on digits.
"""
import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the default ConfigDict; `variant` selects a preset (see module doc)."""
  from stable_training import config as schema
  from stable_training.optim.schema import AVG_GRAD_KEYS
  # Every key at its one declared default (`stable_training.config`, `optim/schema.py`, the model registry);
  # only this study's own choices are set below.
  c = schema.schema_config()
  c.optimizer.avg_grad = schema.schema_group(AVG_GRAD_KEYS)  # method "secant", num_points 2

  # The deep-MLP stability study (Glorot & Bengio 2010): a 20 × 128 tanh MLP, SGD.
  c.model.name = "deep_mlp"
  c.model.width = 128
  c.model.depth = 20
  c.model.activation = "tanh"
  c.model.activation_kwargs = ml_collections.ConfigDict()  # e.g. t_left/t_right for tgelu
  c.model.kernel_init = "glorot_normalized"
  c.model.remat = False

  if variant == "digits":
    c.dataset.name = "digits"
    c.batch_size = 64
    c.eval_batch_size = 360
    c.num_steps = 500
    c.log_every = 50
    c.eval_every = 250
    c.checkpoint_every = 250
  elif variant == "tiny":
    tiny(c)
    c.model.depth = 3
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of default.py; valid: '', 'digits', 'tiny'")
  return c


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks any supervised config to a seconds-long smoke run (digits unless generated data).

  Keeps the model family, optimizer and methods; cuts width, data and steps.
  """
  from stable_training.data import sequence_tasks
  if c.dataset.name not in sequence_tasks.names():
    c.dataset.name = "digits"
    c.dataset.num_train = 0
    c.dataset.num_test = 0
  else:
    c.dataset.lag = min(c.dataset.lag, 20)
    c.dataset.num_test = 64
  c.dataset.num_val = min(c.dataset.num_val, 64)
  c.model.width = min(c.model.width, 16)
  c.batch_size = 32
  c.eval_batch_size = 360
  c.num_epochs = 0
  c.num_steps = 20
  c.log_every = 10
  c.eval_every = 20
  c.checkpoint_every = 20
  c.num_seeds = min(c.num_seeds, 2)
  c.progress = "none"
  c.lsc.steps = min(c.lsc.steps, 5)
  c.lsc.batch = min(c.lsc.batch, 4)
  c.diagnostics.every = 20
  return c
