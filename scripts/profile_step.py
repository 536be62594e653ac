"""Where a train step's time goes, from a `jax.profiler` trace (not a test).

Traces `--steps` calls of a compiled, warmed-up train step and attributes the
self time of every XLA op executed (the trace's events on XLA's worker
threads; a `while` loop's own time excludes its body's ops) to categories:
matmul (``dot``/XNNPACK ``ynn_fusion``), sort, element-wise fusions, scan
slicing (``dynamic-slice`` / ``dynamic-update-slice``), copies, broadcasts,
loop overhead. Per-step milliseconds = total / steps. The trace itself
(``perfetto_trace.json.gz``, openable in ui.perfetto.dev or TensorBoard's
profile plugin) stays under ``--trace_dir``.

  python scripts/profile_step.py --step_depths=1000 --filter_modes=perm,identity --tag=d1000
  python scripts/profile_step.py --model=rnn --tag=rnn
  python scripts/profile_step.py --tiny            # seconds (the suite's smoke run)

Models: ``roaf_mlp`` (`bench_roaf.py`'s train step: SGD, remat; its flags
--width, --batch, --step_depths, --filter_modes) and ``rnn``
(`RecurrentClassifier` fwd+bwd, psMNIST shape, H = B = --width; `--cells`).
Writes ``<out>/profile[_tiny][_TAG].md`` (``--out`` default: results/roaf;
a temporary folder under --quick / --tiny).
"""
from __future__ import annotations

import os
import tempfile

from absl import flags

# A sibling script, found because Python puts the running script's folder first on sys.path
# (`python scripts/profile_step.py`); it defines --width, --batch, --step_depths, --filter_modes, --tiny, ...
import bench_roaf
from stable_training import study
from stable_training.train.profiling import markdown_table, trace_self_times

flags.DEFINE_enum("model", "roaf_mlp", ["roaf_mlp", "rnn"], "What to profile.")
flags.DEFINE_list("cells", ["elman", "roaf", "roaf_perm"], "RNN cells (--model=rnn), one profile each.")
flags.DEFINE_integer("seq_len", 784, "RNN sequence length (--model=rnn; 20 under --tiny).")
flags.DEFINE_integer("steps", 3, "Traced steps per profile.")
flags.DEFINE_string("trace_dir", None, "Where the traces go (default: a temporary folder).")
FLAGS = flags.FLAGS

def rnn_runner(cell: str, hidden: int, seq_len: int):
  """A warmed-up fwd+bwd of `RecurrentClassifier` (psMNIST shape: one input feature, last-step read-out)."""
  import jax
  import jax.numpy as jnp
  import optax
  from stable_training.models.recurrent import RecurrentClassifier
  kw = {"filter_mode": "perm"} if cell == "roaf_perm" else {}
  model = RecurrentClassifier(cell="roaf" if cell == "roaf_perm" else cell, hidden=hidden, num_classes=10, **kw)
  x = jax.random.normal(jax.random.PRNGKey(0), (hidden, seq_len))
  y = jnp.arange(hidden) % 10
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  grad = jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, x), y).mean()))
  jax.block_until_ready(grad(params))
  return lambda: jax.block_until_ready(grad(params))


def main(argv):
  del argv
  study.setup_process()
  from stable_training import allocator
  study.quiet_logging()
  import jax
  a = bench_roaf.settings()
  seq_len = 20 if FLAGS.tiny else FLAGS.seq_len
  root = FLAGS.trace_dir or tempfile.mkdtemp(prefix="profile_step_")
  out = study.out_dir(bench_roaf.STUDY)
  head = (f"# Train-step profiles ({jax.default_backend()}, {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} host cores, {allocator.describe()}; `jax.profiler` trace, {FLAGS.steps} steps each)")
  cmd = " ".join(["python scripts/profile_step.py", *(FLAGS[n].serialize() for n in
                  ("model", "tiny", "quick", "tag", "width", "batch", "step_depths", "filter_modes", "cells",
                   "seq_len", "steps") if FLAGS[n].present)])
  parts = [head, "", f"Regenerate: `{cmd}`"]
  if FLAGS.model == "roaf_mlp":
    runs = [(f"ROAF MLP depth {d}, width {a['width']}, batch {a['batch']}, filter_mode={m}",
             lambda d=int(d), m=m: bench_roaf.jax_train_runner(d, a["width"], a["batch"], m))
            for d in a["step_depths"].split(",") for m in a["filter_modes"].split(",")]
  else:
    runs = [(f"RNN {c}, {seq_len} steps, H = B = {a['width']}", lambda c=c: rnn_runner(c, a["width"], seq_len))
            for c in FLAGS.cells]
  for i, (title, make) in enumerate(runs):
    run = make()
    run()
    times, wall = trace_self_times(run, FLAGS.steps, os.path.join(root, str(i)))
    parts += ["", markdown_table(title, times, wall, FLAGS.steps)]
    print(parts[-1], flush=True)
  path = os.path.join(out, study.stem("profile") + ".md")
  with open(path, "w") as f:
    f.write("\n".join(parts) + "\n")
  print(f"wrote {path}; traces under {root}")


if __name__ == "__main__":
  study.app_run(main)
