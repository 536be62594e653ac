"""The default "stability study" (the project's main job, `scripts/run.sh`).

A deep MLP (depth 20, width 128) trained with SGD under several arms; each
arm is a variant of this config: ``stability.py:tanh-standard`` etc.
Later methods add arms to `ARMS` (one line each) and appear as new rows.
``stability.py:tiny`` is the tanh-normalized arm shrunk by `default.tiny`
(digits, width 16, 20 steps; depth stays 20).
"""
from experiments.configs import default
from stable_training.study import apply_overrides

# arm name -> {dotted key: value} applied on top of the base config.
ARMS = {
    "tanh-standard": {"model.activation": "tanh", "model.kernel_init": "glorot_standard"},
    "tanh-normalized": {"model.activation": "tanh", "model.kernel_init": "glorot_normalized"},
    "softsign-standard": {"model.activation": "softsign", "model.kernel_init": "glorot_standard"},
    "softsign-normalized": {"model.activation": "softsign", "model.kernel_init": "glorot_normalized"},
    # tGELU's slope at 0 is 0.5 (like GELU), so it needs He's gain 2/n_in to keep
    # the signal through 20 layers; with Glorot's normalized init it vanishes.
    "tgelu-he-clip": {"model.activation": "tgelu", "model.kernel_init": "he_normal",
                      "optimizer.clip_output_norm": 1.0},
    "tgelu-normalized-clip": {"model.activation": "tgelu", "model.kernel_init": "glorot_normalized",
                              "optimizer.clip_output_norm": 1.0},
    # ROAF (Ceni 2022): α·O_l·x + β·tanh(W x + b), default α = 0.99 and critical W gain.
    "roaf-tanh": {"model.name": "roaf_mlp", "model.activation": "tanh"},
    # LSC (Herranz-Celotti & Rouat): pre-train the failing standard init to radius 1.
    "tanh-standard-lsc": {"model.activation": "tanh", "model.kernel_init": "glorot_standard",
                          "lsc.enabled": True, "lsc.rho": 1.0, "lsc.steps": 200},
}


def get_config(arm: str = "tanh-standard"):
  """Base config of the study with `arm` applied (or ``tiny``); raises ValueError for an unknown arm."""
  if arm == "tiny":
    return default.tiny(get_config("tanh-normalized"))
  if arm not in ARMS:
    raise ValueError(f"unknown arm {arm!r} of stability.py; valid: {', '.join(ARMS)}, tiny")
  c = default.get_config()
  c.model.depth = 20
  c.model.width = 128
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.0
  c.batch_size = 64
  c.num_steps = 3000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.num_seeds = 3
  return apply_overrides(c, ARMS[arm])
