"""Default config: the deep-MLP stability study on Fashion-MNIST.

Every study config starts from this one (`get_config()`), changes fields and
may add model-specific keys; `--config.KEY=VALUE` overrides any field.
Variants: `default.py:digits` uses scikit-learn's digits (no files needed).
"""
import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the default ConfigDict; `variant` selects a preset (see module doc)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 1          # seeds trained at once by jax.vmap: seed, seed+1, ...
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_steps = 2000
  c.log_every = 100        # eval_every / checkpoint_every / diagnostics.every are multiples of it
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.scan_unroll = 1         # steps per loop iteration of a chunk; 0 = host loop of 1-step programs (conv nets on CPU)
  c.on_nonfinite = "stop"  # or "skip" (optax.apply_if_finite)
  c.progress = "auto"      # tqdm bar on a terminal; "none" to disable

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "fashion_mnist"
  c.dataset.data_dir = ""  # "" = the loader's default location
  c.dataset.view = "flatten"
  c.dataset.num_train = 0  # 0 = all examples, else the first N
  c.dataset.num_test = 0
  c.dataset.standardize = True

  c.model = ml_collections.ConfigDict()
  c.model.name = "deep_mlp"
  c.model.width = 128
  c.model.depth = 20
  c.model.activation = "tanh"
  c.model.activation_kwargs = ml_collections.ConfigDict()  # e.g. t_left/t_right for tgelu
  c.model.kernel_init = "glorot_normalized"
  c.model.remat = False

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.momentum = 0.9
  c.optimizer.decay = 0.9
  c.optimizer.eps = 1e-8
  c.optimizer.clip_output_norm = 0.0  # > 0: output-layer clipping (Ramaswamy et al. 2023)
  c.optimizer.avg_grad = ml_collections.ConfigDict()
  c.optimizer.avg_grad.method = "secant"
  c.optimizer.avg_grad.num_points = 2

  c.lsc = ml_collections.ConfigDict()
  c.lsc.enabled = False
  c.lsc.rho = "1"          # "1" | "0.5" | "unbalanced"
  c.lsc.steps = 200
  c.lsc.batch = 16         # training examples the radii are measured on
  c.lsc.batch_samples = 4  # random examples of those per step (0 = all): one host eig each
  c.lsc.method = "exact"   # "exact" (eig of the Jacobian) | "power" (matrix-free)

  c.diagnostics = ml_collections.ConfigDict()
  c.diagnostics.enabled = False
  c.diagnostics.every = 500

  if variant == "digits":
    c.dataset.name = "digits"
    c.batch_size = 64
    c.eval_batch_size = 360
    c.num_steps = 500
    c.log_every = 50
    c.eval_every = 250
    c.checkpoint_every = 250
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of default.py; valid: '', 'digits'")
  return c
