"""Benchmark: deep-MLP train step — compile seconds and steps/s vs depth and vs seeds.

Uses the engine's own compiled chunk (`make_train_step` → `make_chunk_fn`: vmap over
seeds, scan over steps) on synthetic data, width 128, batch 128, SGD. Expected: compile
time roughly flat in depth (layers are one `nn.scan`), and N seeds costing far less than
N× one seed per step at small width (vmap batches the matmuls).

  python scripts/bench_train_step.py                 # depths 10,100,1000,10000; seeds 1,4,16
  python scripts/bench_train_step.py --quick         # writes to a temporary folder unless --out is given
  python scripts/bench_train_step.py --host_devices=1,2 --out=results/bench_train_step/devices
      # every core a device: seeds split over N CPU devices (the engine's mesh, `--host_devices`),
      # each count in its own process, interleaved; cost of S seeds vs 1 seed on 1 device
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training.models import DeepMLP
from stable_training.train import cross_entropy, init_state, make_chunk_fn, make_train_step, sharding

flags.DEFINE_bool("quick", False, "Depths 10, 100 and seeds 1, 4 only.")
flags.DEFINE_string("out", None, "Output folder (default: results/bench_train_step; a temporary folder "
                    "with --quick).")
flags.DEFINE_list("host_devices", None, "CPU device counts to compare (each in a subprocess): seeds split over "
                  "the devices as the engine's mesh does; replaces the depth/seed sweep.")
flags.DEFINE_list("seeds", ["1", "2", "4", "16"], "Seed counts of the --host_devices comparison.")
flags.DEFINE_list("widths", ["128", "32"], "Widths of the --host_devices comparison.")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds of the --host_devices comparison (best kept).")
flags.DEFINE_string("child", None, "Internal: 'DEPTH,WIDTH,SEEDS' measured in this process (one JSON line).")
FLAGS = flags.FLAGS


def bench(depth, seeds, width=128, batch=128, steps=10, remat=True, repeats=3):
  """Compile seconds and steps/s of the engine chunk; state split over the devices like the engine's
  mesh: by seed when the device count divides the seeds, else by batch."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = sharding.data_mesh()
  n_dev = mesh.devices.size
  by_seed = seeds % n_dev == 0
  model = DeepMLP(width=width, depth=depth, num_classes=10, activation="tanh", remat=remat)
  tx = optax.sgd(1e-3)
  chunk = jax.jit(make_chunk_fn(make_train_step(model, cross_entropy, tx), stop_on_nonfinite=True),
                  donate_argnums=(0,))
  rng = np.random.default_rng(0)
  n = 4 * batch
  x = jnp.asarray(rng.normal(size=(n, 784)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  idx = jnp.asarray(rng.integers(0, n, (steps, seeds, batch)).astype(np.int32))
  state = init_state(model, tx, np.arange(seeds), x[:1])
  if n_dev > 1:
    lead = lambda a: NamedSharding(mesh, P("data") if by_seed and a.ndim else P())
    state = jax.device_put(state, jax.tree.map(lead, state))
    x, y = jax.device_put((x, y), sharding.replicated(mesh))
    idx = jax.device_put(idx, sharding.batch_sharded(mesh, 3, axis=1 if by_seed else 2))
  t0 = time.perf_counter()
  compiled = chunk.lower(state, (x, y), idx).compile()
  compile_s = time.perf_counter() - t0
  state, _, m = compiled(state, (x, y), idx)  # warm-up
  jax.block_until_ready(m)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, _, m = compiled(state, (x, y), idx)
    jax.block_until_ready(m)
    best = min(best, time.perf_counter() - t0)
  return {"depth": depth, "width": width, "seeds": seeds, "devices": n_dev,
          "split": ("seeds" if by_seed else "batch") if n_dev > 1 else "-", "compile_s": compile_s, "steps_per_s": steps / best,
          "seed_steps_per_s": steps * seeds / best}


def compare_devices(a) -> None:
  """S seeds on N CPU devices, each N in its own process (the device count is fixed at backend start)."""
  import subprocess
  import sys
  out = a.out or tempfile.mkdtemp(prefix="bench_devices_")
  best = {}
  for _ in range(a.rounds):
    for w in map(int, a.widths):
      for s in map(int, a.seeds):
        for n in map(int, a.host_devices):
          env = dict(os.environ, XLA_FLAGS=sharding.with_host_devices(os.environ.get("XLA_FLAGS", ""), n))
          r = subprocess.run([sys.executable, __file__, f"--child=100,{w},{s}"], env=env, check=True,
                             capture_output=True, text=True)
          row = json.loads(r.stdout.strip().splitlines()[-1])
          print(row, flush=True)
          k = (w, s, n)
          if k not in best or row["steps_per_s"] > best[k]["steps_per_s"]:
            best[k] = row
  lines = ["| width | seeds | CPU devices | split | steps/s | seed-steps/s | cost per step vs 1 seed on 1 device |",
           "|---|---|---|---|---|---|---|"]
  for (w, s, n), r in sorted(best.items()):
    base = best.get((w, 1, 1))
    rel = f"{base['steps_per_s'] / r['steps_per_s']:.2f}×" if base else "—"
    lines.append(f"| {w} | {s} | {n} | {r['split']} | {r['steps_per_s']:.1f} | {r['seed_steps_per_s']:.1f} | {rel} |")
  table = "\n".join(lines)
  print(table)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(f"Deep MLP train step, depth 100, batch 128, seeds split over N CPU devices "
            f"(best of {a.rounds} interleaved rounds), {os.cpu_count()} cores.\n\nRegenerate: "
            f"`python scripts/bench_train_step.py --host_devices={','.join(a.host_devices)} "
            f"--seeds={','.join(a.seeds)} --widths={','.join(a.widths)} --out={out}`\n\n{table}\n")
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(list(best.values()), f, indent=2)
  print(f"wrote {os.path.join(out, 'table.md')}")


def main(argv):
  del argv
  a = FLAGS
  if a.child:
    depth, width, seeds = map(int, a.child.split(","))
    print(json.dumps(bench(depth, seeds, width=width)), flush=True)
    return
  if a.host_devices:
    return compare_devices(a)
  out = a.out or (tempfile.mkdtemp(prefix="bench_train_step_quick_") if a.quick else "results/bench_train_step")
  depths = [10, 100] if a.quick else [10, 100, 1000, 10000]
  seeds = [1, 4] if a.quick else [1, 4, 16]
  rows = []
  for d in depths:
    rows.append(bench(d, 1, steps=5 if d >= 1000 else 10))
    print(rows[-1], flush=True)
  # Seeds sweep at depth 100: width 128 (compute-bound on CPU: N seeds ≈ N× one seed)
  # and width 32 (small matmuls leave the cores idle; vmap fills them).
  for w in (128, 32):
    for s in seeds:
      if not (w == 128 and s == 1):
        rows.append(bench(100, s, width=w))
        print(rows[-1], flush=True)
  lines = ["| depth | width | seeds | compile s | steps/s | seed-steps/s | cost per step vs 1 seed |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    base = next(b for b in rows if b["depth"] == 100 and b["seeds"] == 1 and b["width"] == r["width"])
    rel = f"{base['steps_per_s'] / r['steps_per_s']:.2f}×" if r["depth"] == 100 else "—"
    lines.append(f"| {r['depth']} | {r['width']} | {r['seeds']} | {r['compile_s']:.2f} | {r['steps_per_s']:.1f} | "
                 f"{r['seed_steps_per_s']:.1f} | {rel} |")
  table = "\n".join(lines)
  print(table)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(f"Deep MLP train step (batch 128, remat, SGD, tanh; engine chunk of 10 steps), "
            f"{jax.devices()[0].platform}, {os.cpu_count()} cores\n\n{table}\n")
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print(f"wrote {os.path.join(out, 'table.md')}")


if __name__ == "__main__":
  app.run(main)
