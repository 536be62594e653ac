"""Benchmark: env steps/s of the jitted, seed-vmapped DQN vs PyTorch and rejax.

Three implementations of the same agent (CartPole-v1, 4→128→128→2 MLP,
batch 256, one update per env step, uniform replay), timed side by side:

* ``stable_training``: `stable_training.rl.dqn` (tGELU(−1, 1) — or GELU with
  ``--activations gelu`` — no target network, output-layer clipping λ = 1,
  SGD) as ``jax.jit(jax.vmap(train))`` at 1, 8 and 32 seeds.
* ``torch``: a plain PyTorch + gymnasium loop of the same network, loss and
  optimizer (one seed; N seeds would be N sequential runs, so its aggregate
  rate does not grow with N).
* ``rejax``: ``rejax.DQN`` (gymnax CartPole, 128-128 GELU Q-network, Polyak
  target, its fixed Adam optimizer; evaluation disabled) vmapped over seeds.

Throughput excludes compilation (reported separately). On a shared CPU the
wall-clock rate depends on the other processes' load, so the table also gives
env steps per CPU-second of this process (`time.process_time`, all threads).
A benchmark, not a test: short budgets; compare rows of the same run only.

  .venv/bin/python scripts/bench_dqn.py                 # all three
  .venv/bin/python scripts/bench_dqn.py --seeds 1,8 --steps 1500 --skip rejax
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from stable_training import allocator, benchmarking
from stable_training.rl import dqn


def _split(keys, split: bool):
  """`keys` split over this process's devices along the seed axis (the DQN trainer's
  `seed_sharding`), or as they are."""
  from stable_training.rl.trainer import seed_sharding
  sh = seed_sharding(keys.shape[0]) if split else None
  return jax.device_put(keys, sh) if sh is not None else keys


def bench_ours(seeds: int, steps: int, warmup: int,
               activation: str = "tgelu", split: bool = False) -> tuple[float, callable]:
  config = dict(activation=activation, target="none", total_steps=steps,
                learning_starts=warmup, eval_every=steps, eval_episodes=1,
                eval_max_steps=100, buffer_size=max(steps, 256))
  return _compiled_runner(jax.jit(jax.vmap(dqn.make_train(config))), seeds, split)


def _compiled_runner(train, seeds: int, split: bool) -> tuple[float, callable]:
  """(compile seconds, run): `run()` is one whole training run of the compiled `train` on `seeds` keys."""
  keys = _split(jax.random.split(jax.random.key(0), seeds), split)
  t0 = time.perf_counter()
  compiled = train.lower(keys).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(keys))   # warm-up run: first-call allocations out of the timing
  return compile_s, lambda: jax.block_until_ready(compiled(keys))


class _FiveTupleEnv:
  """gymnax 1.0.1's step returns (obs, state, r, terminated, truncated, info);
  rejax 0.1.3 unpacks 5 values (obs, state, r, done, info)."""

  def __init__(self, env):
    self._env = env

  def __getattr__(self, name):
    if name.startswith("__") or name == "_env":  # copy/pickle probes
      raise AttributeError(name)
    return getattr(self._env, name)

  def step(self, key, state, action, params=None):
    obs, state, r, term, trunc, info = self._env.step(key, state, action,
                                                      params)
    return obs, state, r, jnp.logical_or(term, trunc), info


def bench_rejax(seeds: int, steps: int, warmup: int, split: bool = False) -> tuple[float, callable]:
  import flax.linen as nn
  import rejax
  from rejax.networks import DiscreteQNetwork, EpsilonGreedyPolicy
  algo = rejax.DQN.create(
      env="CartPole-v1", total_timesteps=steps, eval_freq=steps,
      skip_initial_evaluation=True, num_envs=1, buffer_size=max(steps, 256),
      fill_buffer=warmup, batch_size=256, learning_rate=3e-4, gamma=0.99,
      ddqn=False, polyak=0.995, target_update_freq=1)
  # rejax's create_agent hard-codes hidden_layer_sizes=(64, 64); swap the net.
  agent = EpsilonGreedyPolicy(DiscreteQNetwork)(
      hidden_layer_sizes=(128, 128), action_dim=2, activation=nn.gelu)
  algo = algo.replace(agent=agent, env=_FiveTupleEnv(algo.env),
                      eval_callback=lambda algo, ts, rng: jnp.zeros(()))
  return _compiled_runner(jax.jit(jax.vmap(algo.train)), seeds, split)


def bench_torch(steps: int, warmup: int, threads: int, subnormals: str = "flush") -> tuple[float, callable]:
  """(0, run): `run()` is one whole training run of the PyTorch + gymnasium loop (see module doc), its
  float32 subnormals flushed as XLA:CPU's or kept (`benchmarking.set_torch_subnormals`)."""
  import torch
  if threads:
    torch.set_num_threads(threads)
  benchmarking.set_torch_subnormals(subnormals)
  return 0.0, lambda: _torch_run(steps, warmup)


def _torch_run(steps: int, warmup: int) -> None:
  import gymnasium as gym
  import torch

  def phi(t):  # standard normal CDF of a Python float
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))

  def tgelu(x, tl=-1.0, tr=1.0):  # same piecewise definition as activations.tgelu
    nd = torch.special.ndtr
    hi = tr * phi(tr) + (x - tr) * (1 - nd(x - tr))
    lo = tl * phi(-tl) + (x - tl) * nd(x - tl)
    mid = torch.where(x >= 0, x * nd(x), x * nd(-x))
    return torch.where(x >= tr, hi, torch.where(x >= tl, mid, lo))

  class QNet(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.h0, self.h1 = torch.nn.Linear(4, 128), torch.nn.Linear(128, 128)
      self.output = torch.nn.Linear(128, 2)

    def forward(self, x):
      return self.output(tgelu(self.h1(tgelu(self.h0(x)))))

  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  net = QNet()
  opt = torch.optim.SGD(net.parameters(), lr=3e-4)
  cap = max(steps, 256)
  buf_o = np.zeros((cap, 4), np.float32)
  buf_n = np.zeros((cap, 4), np.float32)
  buf_a = np.zeros(cap, np.int64)
  buf_r = np.zeros(cap, np.float32)
  buf_d = np.zeros(cap, np.float32)
  env = gym.make("CartPole-v1")
  obs, _ = env.reset(seed=0)
  for t in range(steps):
    eps = max(0.1, 1.0 - 0.9 * t / 100_000)
    if t < warmup or rng.random() < eps:
      a = int(rng.integers(2))
    else:
      with torch.no_grad():
        a = int(net(torch.as_tensor(obs)).argmax())
    nobs, r, term, trunc, _ = env.step(a)
    i = t % cap
    buf_o[i], buf_n[i], buf_a[i], buf_r[i], buf_d[i] = obs, nobs, a, r, term
    obs = nobs
    if term or trunc:
      obs, _ = env.reset()
    if t >= warmup:
      idx = rng.integers(0, min(t + 1, cap), 256)
      o, n = torch.as_tensor(buf_o[idx]), torch.as_tensor(buf_n[idx])
      with torch.no_grad():  # no target network: the online net, no gradient
        y = torch.as_tensor(buf_r[idx]) + 0.99 * (
            1 - torch.as_tensor(buf_d[idx])) * net(n).max(1).values
      q = net(o).gather(1, torch.as_tensor(buf_a[idx])[:, None])[:, 0]
      loss = ((q - y) ** 2).mean()
      opt.zero_grad()
      loss.backward()
      torch.nn.utils.clip_grad_norm_(net.output.parameters(), 1.0)
      opt.step()


def _interleaved_rows(n: int, args, split: bool, skip: set) -> list[dict]:
  """One row per implementation at `n` seeds: whole training runs timed in `args.reps` interleaved rounds
  (`benchmarking.interleaved`); run and CPU seconds are medians, `vs_rejax` the per-round ratio of
  run times (rejax as shipped / this implementation)."""
  makers, rows = {}, []
  if "ours" not in skip:
    for act in args.activations.split(","):
      makers[f"stable_training {act} (jit+vmap{', seeds split' if split else ''})"] = (
          lambda act=act: bench_ours(n, args.steps, args.warmup, act, split))
  if "rejax" not in skip:
    makers["rejax DQN (jit+vmap, as shipped)"] = lambda: bench_rejax(n, args.steps, args.warmup)
    if split:
      makers["rejax DQN (jit+vmap, seeds split like ours)"] = lambda: bench_rejax(n, args.steps, args.warmup, True)
  if "torch" not in skip and n == 1:   # one seed: N seeds would be N sequential runs
    makers["torch + gymnasium loop"] = lambda: bench_torch(args.steps, args.warmup, args.torch_threads,
                                                           args.torch_subnormals)
  runs, compile_s, cpu = {}, {}, {}
  for impl, make in makers.items():
    try:
      compile_s[impl], run = make()
    except Exception as e:  # report, keep benchmarking the others
      rows.append(dict(impl=impl, seeds=n, error=f"{type(e).__name__}: {e}"))
      print(rows[-1], flush=True)
      continue
    cpu[impl] = []

    def timed(run=run, impl=impl):
      c0 = time.process_time()
      run()
      cpu[impl].append(time.process_time() - c0)
    runs[impl] = timed
  ts = benchmarking.interleaved(runs, args.reps)
  ref = "rejax DQN (jit+vmap, as shipped)"
  for impl, t in ts.items():
    seeds = 1 if impl.startswith("torch") else n
    run_s = statistics.median(t)
    rows.append(dict(impl=impl, seeds=seeds, compile_s=compile_s[impl], run_s=run_s,
                     cpu_s=statistics.median(cpu[impl]), steps_per_s=seeds * args.steps / run_s, times=t,
                     vs_rejax=benchmarking.ratio(ts[ref], t) if ref in ts and impl != ref else None))
    print(rows[-1], flush=True)
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seeds", default="1,8,32")
  p.add_argument("--steps", type=int, default=2000,
                 help="env steps per seed (including warm-up)")
  p.add_argument("--warmup", type=int, default=500)
  p.add_argument("--activations", default="tgelu",
                 help="our Q-network's activation(s): tgelu,gelu")
  p.add_argument("--torch_threads", type=int, default=1,
                 help="torch intra-op threads (0 = torch's default); 1 avoids "
                 "OpenMP spinning on a shared CPU")
  p.add_argument("--skip", default="", help="comma list of torch,rejax,ours")
  p.add_argument("--torch_subnormals", default="flush", choices=benchmarking.SUBNORMAL_MODES,
                 help="PyTorch's float32 subnormals: flush (as XLA:CPU) or keep (PyTorch's default)")
  p.add_argument("--reps", type=int, default=3, help="interleaved rounds (whole training runs of each)")
  p.add_argument("--out", default="results/dqn")
  p.add_argument("--tag", default="", help="output stem bench_TAG.{md,json} (default bench.{md,json})")
  p.add_argument("--host_devices", type=int, default=0,
                 help="expose N CPU devices; ours (and a second rejax row) then split the "
                 "seeds over them, as `experiments.main --host_devices=auto` does")
  args = p.parse_args(argv)
  allocator.setup(__name__)   # as the launcher runs (STABLE_TRAINING_ALLOCATOR; default tcmalloc where installed)
  if args.host_devices:  # read when the CPU backend starts, i.e. after this
    from stable_training.train.sharding import with_host_devices
    os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS", ""), args.host_devices)
  split = args.host_devices > 1
  skip = set(filter(None, args.skip.split(",")))
  seeds = [int(s) for s in args.seeds.split(",")]
  rows = []
  for n in seeds:
    rows += _interleaved_rows(n, args, split, skip)
  env = os.environ.get(allocator.ENV)   # the allocator decides the ratio: part of the command
  cmd = " ".join([*([f"{allocator.ENV}={env}"] if env else []), "python scripts/bench_dqn.py",
                  *(argv if argv is not None else sys.argv[1:])])
  lines = [f"Regenerate: `{cmd}`", "",
           f"DQN throughput, CartPole-v1, {args.steps} env steps/seed "
           f"({args.warmup} warm-up), batch 256, 128-128 MLP, "
           f"{len(jax.devices())} device(s); {args.reps} interleaved rounds per seed count (one whole "
           "training run of each implementation per round): medians, and the per-round ratio to rejax "
           "as shipped [min–max]", "", benchmarking.header(
               (args.torch_threads or "default") if "torch" not in skip else None,
               args.torch_subnormals), "",
           "| implementation | seeds | env steps/s (all seeds) | per seed | vs rejax [range] | "
           "env steps per CPU-s | compile s | run s | CPU s |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['impl']} | {r['seeds']} | error: {r['error'][:80]} | | | | | | |")
    else:
      vs = benchmarking.fmt_ratio(r["vs_rejax"]) if r.get("vs_rejax") else "—"
      lines.append(f"| {r['impl']} | {r['seeds']} | {r['steps_per_s']:.0f} | "
                   f"{r['steps_per_s'] / r['seeds']:.0f} | {vs} | "
                   f"{r['seeds'] * args.steps / r['cpu_s']:.0f} | "
                   f"{r['compile_s']:.1f} | {r['run_s']:.2f} | "
                   f"{r['cpu_s']:.2f} |")
  table = "\n".join(lines)
  print(table)
  os.makedirs(args.out, exist_ok=True)
  stem = os.path.join(args.out, f"bench_{args.tag}" if args.tag else "bench")
  with open(stem + ".md", "w") as f:
    f.write(table + "\n")
  with open(stem + ".json", "w") as f:
    json.dump(dict(args=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
  main()
