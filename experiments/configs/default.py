"""Default config: the deep-MLP stability study on Fashion-MNIST.

Every study config starts from this one (`get_config()`), changes fields and
may add model-specific keys; `--config.KEY=VALUE` overrides any field.
Variants: `default.py:digits` uses scikit-learn's digits (no files needed);
`default.py:tiny` is the seconds-long smoke run on digits.
"""
import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the default ConfigDict; `variant` selects a preset (see module doc)."""
  c = ml_collections.ConfigDict()
  c.trainer = "supervised"  # stable_training.train.trainers: supervised | dqn
  c.loss = "cross_entropy"  # stable_training.train.losses: cross_entropy | mse
  c.seed = 0
  c.num_seeds = 1          # seeds trained at once by jax.vmap: seed, seed+1, ...
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_steps = 2000
  c.num_epochs = 0          # > 0: train this many epochs instead (num_steps is then derived)
  c.log_every = 100        # eval_every / checkpoint_every / diagnostics.every are multiples of it
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.step_loop = "scan"      # "scan": K steps in one compiled lax.scan; "host": a host loop of 1-step programs (conv nets on CPU)
  c.scan_unroll = 1         # steps per loop iteration of the scan (step_loop="scan")
  c.on_nonfinite = "stop"  # or "skip" (optax.apply_if_finite)
  c.max_consecutive_skips = 100  # skip mode: stop (exit 3) after this many skipped updates in a row
  c.progress = "auto"      # tqdm bar on a terminal; "none" to disable

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "fashion_mnist"
  c.dataset.data_dir = ""  # "" = the loader's default location
  c.dataset.view = "flatten"
  c.dataset.num_train = 0  # 0 = all examples, else the first N
  c.dataset.num_test = 0
  c.dataset.num_val = 0    # the last N training examples become a validation split (model selection)
  c.dataset.lag = 100      # generated sequence tasks (adding, copy): the lag T
  c.dataset.standardize = True
  c.dataset.num_generated = 0  # generated datasets (shapeset): training images drawn; 0 = the fixed split

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
  c.optimizer.clip_global_norm = 0.0  # > 0: clip the global gradient norm first
  c.optimizer.weight_decay = 0.0      # > 0: AdamW for adam, an L2 term otherwise
  c.optimizer.schedule = "constant"   # constant | warmup_cosine | step
  c.optimizer.warmup_steps = 0        # warmup_cosine: linear warm-up steps
  c.optimizer.end_lr_factor = 0.0     # warmup_cosine: final lr / peak lr
  c.optimizer.step_boundaries = ()    # step: update counts where lr is multiplied by step_factor
  c.optimizer.step_factor = 0.1
  c.optimizer.avg_grad = ml_collections.ConfigDict()
  c.optimizer.avg_grad.method = "secant"
  c.optimizer.avg_grad.num_points = 2

  c.lsc = ml_collections.ConfigDict()
  c.lsc.enabled = False
  c.lsc.rho = 1.0          # target radius ρ of every transition (the paper's 1 or 0.5)
  c.lsc.targets = "uniform"  # or "unbalanced": ρ_time = T/(L+T), ρ_depth = L/(L+T)
  c.lsc.steps = 200
  c.lsc.batch = 16         # training examples the radii are measured on
  c.lsc.batch_samples = 4  # random examples of those per step (>= lsc.batch: all): one host eig each
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
