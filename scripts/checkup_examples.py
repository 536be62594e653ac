"""The stability check-up (`stable_training.checkup`) of three models, for WORKSPACE.md.

  1. ``tanh30``: a 30-layer tanh MLP (width 64) with Glorot & Bengio's *standard* init U[−1/√n, 1/√n];
  2. ``roaf1000``: the ROAF MLP (Ceni 2022) at depth 1,000, width 64, α = 0.99, critical init;
  3. ``lstm``: a Flax stack of two ``nn.RNN(nn.LSTMCell(64))`` layers + a Dense read-out on 28-step rows.

Each on one batch of 64 Fashion-MNIST images (digits when the IDX files are absent), measured at init,
every applicable remedy measured and ranked. Writes ``<out>/<name>/{report.md, checkup.png, checkup.json}``:

  python scripts/checkup_examples.py                      # results/checkup (minutes)
  python scripts/checkup_examples.py --tiny               # seconds (temporary --out; the suite's smoke test)
"""
from __future__ import annotations

import os
import tempfile

from absl import flags

from stable_training import study

flags.DEFINE_string("out", None, "Output folder (default: results/checkup; a temporary folder with --tiny).")
flags.DEFINE_bool("tiny", False, "Seconds: small widths and depths, few LSC steps.")
flags.DEFINE_list("models", ["tanh30", "roaf1000", "lstm"], "Which models.")
flags.DEFINE_integer("lsc_steps", 100, "LSC pre-training steps of the LSC remedies.")
FLAGS = flags.FLAGS


def make(name: str, tiny: bool):
  """(model, input batch shape) of one example model."""
  import flax.linen as nn
  import jax.numpy as jnp
  import stable_training as st
  width = 8 if tiny else 64

  class StandardTanhMLP(nn.Module):
    """depth × width tanh MLP, every kernel from Glorot & Bengio's standard init."""
    depth: int
    width: int

    @nn.compact
    def __call__(self, x):
      x = x.reshape(x.shape[0], -1)
      for _ in range(self.depth):
        x = jnp.tanh(nn.Dense(self.width, kernel_init=st.glorot_standard())(x))
      return nn.Dense(10, kernel_init=st.glorot_standard())(x)

  class LSTMStack(nn.Module):
    """Two nn.RNN(nn.LSTMCell) layers over the image rows, read-out from the last step."""
    width: int

    @nn.compact
    def __call__(self, x):
      x = x.reshape(x.shape[0], x.shape[1], -1)
      for _ in range(2):
        x = nn.RNN(nn.LSTMCell(self.width))(x)
      return nn.Dense(10)(x[:, -1])

  if name == "tanh30":
    return StandardTanhMLP(6 if tiny else 30, width), "flat"
  if name == "roaf1000":
    return st.ROAFMLP(width=width, depth=10 if tiny else 1000, num_classes=10, alpha=0.99), "flat"
  if name == "lstm":
    return LSTMStack(width), "rows"
  raise ValueError(f"--models: unknown {name!r}; valid: tanh30, roaf1000, lstm")


REGENERATE = "Regenerate: `python scripts/checkup_examples.py --models={name}`"


def add_command(report_path: str, name: str) -> None:
  """Puts the line that regenerates this report under its title (once)."""
  text = open(report_path).read()
  line = REGENERATE.format(name=name)
  if line not in text:
    title, _, rest = text.partition("\n")
    with open(report_path, "w") as f:
      f.write(f"{title}\n\n{line}\n{rest}")


def main(argv):
  del argv
  import jax
  import numpy as np
  import stable_training as st
  from stable_training import study
  name = study.pick_dataset("auto")
  tr = st.data.load(name, "train")
  x_img, y = np.asarray(tr.x[:64]), np.asarray(tr.y[:64])
  x_img = (x_img - tr.x[:1000].mean()) / tr.x[:1000].std()
  out = FLAGS.out or (tempfile.mkdtemp(prefix="checkup_tiny_") if FLAGS.tiny else os.path.join("results", "checkup"))
  for m in FLAGS.models:
    model, shape = make(m, FLAGS.tiny)
    x = x_img.reshape(len(x_img), -1) if shape == "flat" else x_img[..., 0]
    if FLAGS.tiny:
      x = x[:16, ..., :64] if shape == "flat" else x[:16, :6, :8]
      yb = y[:16]
    else:
      yb = y
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
    r = st.checkup(model, params, (x, yb), lsc_steps=5 if FLAGS.tiny else FLAGS.lsc_steps)
    r["dataset"] = name
    paths = st.checkup.write_outputs(r, os.path.join(out, m))
    add_command(paths["report"], m)
    print(f"{m}: {r['verdict_line']}")
    print(f"  wrote {paths}")


if __name__ == "__main__":
  study.app_run(main)
