"""Benchmark: wall-clock overhead of per-layer diagnostics (Glorot & Bengio 2010 monitoring).

Trains the stability study's deep MLP (experiments/configs/stability.py:tanh-normalized)
with diagnostics off and on at the default interval (`diagnostics.every`), alternating
off/on `--repeats` times in one process, and prints the best wall-clock of each and their
ratio. Wall-clock covers the whole `train_and_evaluate` call (compiles, evaluation,
checkpoints, and for "on" the diagnostics' own compile, Jacobian SVDs and .npz writes).

  python scripts/bench_diagnostics.py                # 2000 steps, every 500
  python scripts/bench_diagnostics.py --num_steps=500 --every=100
"""
from __future__ import annotations

import tempfile
import time

from absl import app, flags

from experiments.configs import stability
from stable_training.study import pick_dataset
from stable_training.train import train_and_evaluate

flags.DEFINE_integer("num_steps", 2000, "Steps per run.")
flags.DEFINE_integer("num_seeds", 1, "Seeds per run (vmapped).")
flags.DEFINE_integer("every", 0, "Diagnostics interval (0 = the config's default).")
flags.DEFINE_integer("repeats", 2, "Off/on pairs; the best of each is reported.")
flags.DEFINE_string("dataset", "auto", "fashion_mnist | digits | auto (Fashion-MNIST if its files exist).")
FLAGS = flags.FLAGS


def run(enabled: bool, args, dataset: str, root: str) -> float:
  c = stability.get_config("tanh-normalized")
  c.dataset.name = dataset
  if dataset == "digits":
    c.eval_batch_size = 360
  c.progress = "none"
  c.num_seeds = args.num_seeds
  c.num_steps = args.num_steps
  c.log_every = 100
  c.eval_every = c.checkpoint_every = args.num_steps
  c.diagnostics.enabled = enabled
  if args.every:
    c.diagnostics.every = args.every
  t0 = time.perf_counter()
  train_and_evaluate(c, tempfile.mkdtemp(dir=root))
  return time.perf_counter() - t0


def main(argv):
  del argv
  a = FLAGS
  dataset = pick_dataset(a.dataset)
  every = a.every or stability.get_config("tanh-normalized").diagnostics.every
  root = tempfile.mkdtemp(prefix="bench_diag_")
  off, on = [], []
  for _ in range(a.repeats):
    off.append(run(False, a, dataset, root))
    on.append(run(True, a, dataset, root))
    print(f"off {off[-1]:.1f} s, on {on[-1]:.1f} s", flush=True)
  print(f"| dataset | steps | every | seeds | off s (best) | on s (best) | overhead |\n|---|---|---|---|---|---|---|\n"
        f"| {dataset} | {a.num_steps} | {every} | {a.num_seeds} | {min(off):.1f} | {min(on):.1f} | "
        f"{100 * (min(on) / min(off) - 1):+.1f} % |")


if __name__ == "__main__":
  app.run(main)
