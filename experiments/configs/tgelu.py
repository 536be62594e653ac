"""tGELU + output-layer clipping classification study (Ramaswamy, Bhatnagar & Saxena 2023).

The ConvNet (conv 8→16→64, dense 1024→256) on Fashion-MNIST, SGD lr 3e-3,
batch 256, many seeds in one vmapped run. Variants: ``tgelu-clip`` (tGELU(−1, 3)
and output-layer clipping λ = 1), ``gelu``, ``gelu-clip``; ``tiny``: the
tgelu-clip arm shrunk by `default.tiny` (digits as 8×8 images, 2 seeds, 20 steps).
"""
from experiments.configs import default
from stable_training.study import apply_overrides

ARMS = {
    "tgelu-clip": {"model.activation": "tgelu", "optimizer.clip_output_norm": 1.0},
    "gelu": {"model.activation": "gelu", "optimizer.clip_output_norm": 0.0},
    "gelu-clip": {"model.activation": "gelu", "optimizer.clip_output_norm": 1.0},
}


def get_config(arm: str = "tgelu-clip"):
  """The study's config with `arm` applied (or ``tiny``); ValueError for an unknown arm."""
  if arm == "tiny":
    return default.tiny(get_config("tgelu-clip"))
  if arm not in ARMS:
    raise ValueError(f"unknown arm {arm!r} of tgelu.py; valid: {', '.join(ARMS)}, tiny")
  c = default.get_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.view = "image"
  c.model.name = "convnet"
  c.model.kernel_init = "lecun_normal"
  c.model.activation_kwargs.t_left = -1.0
  c.model.activation_kwargs.t_right = 3.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 3e-3
  c.batch_size = 256
  c.num_seeds = 8
  c.step_loop = "host"  # host loop: XLA:CPU convs inside a while loop are ≈ 5× slower (train.loop)
  steps_per_epoch = 60000 // 256  # 234 = 6 × 39
  c.log_every = 39
  c.eval_every = steps_per_epoch
  c.checkpoint_every = steps_per_epoch
  c.num_steps = 5 * steps_per_epoch
  apply_overrides(c, ARMS[arm])
  if c.model.activation != "tgelu":
    c.model.activation_kwargs = {}
  return c
