"""The ``dqn`` trainer: `stable_training.rl.dqn` run by the one train engine.

``python -m experiments.main --config=experiments/configs/dqn.py:tiny --workdir=DIR``
dispatches here (`stable_training.train.trainers`). What it gives mirrors the
supervised trainer (`stable_training.train.loop`):

- `validate(config)`: one-line `ConfigError` before anything is written;
- seeds ``seed … seed + num_seeds − 1`` (seed s ↦ ``jax.random.PRNGKey(s)``)
  vmapped in one compiled program;
- the host loop every trainer shares (`stable_training.train.host_loop`)
  over chunks of ``eval_every`` env steps, each one call of
  ``jax.jit(jax.vmap(dqn.make_chunk(config)))`` (the same pure pieces
  `dqn.make_train` scans, so the numbers are `make_train`'s);
- ``config.json`` (the resolved config; a different config is refused),
  ``metrics.jsonl`` (one record per chunk), ``summary.json`` and a progress bar;
- orbax checkpoints of the whole vmapped `dqn.Runner` (networks, optimizer
  state, replay buffer, env state, RNG) with the config's record and hash,
  every ``checkpoint_every`` env steps and at the end: rerunning a killed
  command resumes and ends with the same numbers as an uninterrupted run;
- SIGTERM / SIGINT: a checkpoint at the next chunk boundary, then
  `stable_training.train.lock.Preempted` (the launcher exits with status 75);
- a non-finite TD loss, Q-value or parameter stops the run with
  `NonFiniteError` (``on_nonfinite = "stop"``) or is recorded
  (``"continue"``: GELU without a target network is expected to diverge on
  some seeds, Ramaswamy et al. 2023).
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from stable_training import config as config_lib
from stable_training import schema as schema_lib
from stable_training.rl import dqn
from stable_training.schema import ConfigError, Key
from stable_training.train import host_loop
from stable_training.train import records as records_lib
from stable_training.train.checkpoint import WorkdirConfigMismatch
from stable_training.train.host_loop import NonFiniteError

# The engine keys of a DQN launcher config (experiments/configs/dqn.py sets
# them all), checked like every config group; checkpoint_every None: at the end.
ENGINE_SCHEMA = {
    "trainer": Key(str, "dqn", choices=("dqn",)),
    "seed": config_lib.TOP_KEYS["seed"],
    "num_seeds": config_lib.TOP_KEYS["num_seeds"],
    "progress": config_lib.TOP_KEYS["progress"],
    "on_nonfinite": Key(str, "stop", choices=("stop", "continue")),
    "checkpoint_every": Key(int, None, lo=1, nullable=True),
}
ENGINE_DEFAULTS = schema_lib.defaults(ENGINE_SCHEMA)
assert set(ENGINE_DEFAULTS) == set(dqn.ENGINE_KEYS)
# Per-chunk metrics reported as `records.stats` (per seed, mean, std).
STAT_KEYS = ("eval_return", "train_return", "loss", "q_mean")
TIMING_KEYS = ("steps_per_sec", "env_steps_per_sec", "run_seconds", "compile_seconds")


def resolve(config) -> ml_collections.ConfigDict:
  """The full launcher config: `dqn.resolve_config(config)` (defaults filled,
  ``clip_output_norm = None`` resolved) plus the engine keys (`ENGINE_SCHEMA`;
  ``checkpoint_every`` defaults to ``total_steps``).

  Raises:
    ConfigError: one line ``config.KEY=VALUE: what is valid``.
  """
  values = dict(config)
  c = dqn.resolve_config(values)  # unknown keys and DQN values
  eng = schema_lib.check_group({k: values[k] for k in ENGINE_SCHEMA if k in values}, ENGINE_SCHEMA, "")
  if eng["checkpoint_every"] is None:
    eng["checkpoint_every"] = c.total_steps
  last_seed = eng["seed"] + eng["num_seeds"] - 1
  if last_seed > config_lib.MAX_SEED:  # seed s ↦ PRNGKey(s), a uint32
    raise ConfigError(f"config.num_seeds={eng['num_seeds']}: seeds {eng['seed']}..{last_seed} "
                      f"pass {config_lib.MAX_SEED} (seeds are uint32)")
  if eng["checkpoint_every"] % c.eval_every:
    raise ConfigError(f"config.checkpoint_every={eng['checkpoint_every']}: must be a "
                      f"multiple of config.eval_every={c.eval_every}")
  c.update({k: (int(v) if k in ("seed", "num_seeds", "checkpoint_every") else v)
            for k, v in eng.items()})
  return c


def defaults() -> dict:
  """``{key: default}`` of a DQN launcher config's schema, as config.json stores them (tuples as
  lists), for `checkpoint.config_diff`."""
  return json.loads(json.dumps({**schema_lib.defaults(dqn.DQN_KEYS), **ENGINE_DEFAULTS}))


def validate(config) -> None:
  """Checks a DQN launcher config without running or writing anything.

  Raises:
    ConfigError: one line ``config.KEY=VALUE: what is valid`` (unknown keys,
      wrong types, out-of-range, NaN or inf values).
  """
  resolve(config)


def program_config(config) -> dict:
  """The DQN keys of `config` (what `dqn.make_chunk` computes from)."""
  return {k: v for k, v in dict(config).items() if k not in dqn.ENGINE_KEYS}


def seed_keys(config) -> jax.Array:
  """Stacked ``jax.random.PRNGKey(s)`` for s = seed … seed + num_seeds − 1."""
  return jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(config.num_seeds)])


def _program_dict(program_json: str) -> dict:
  cfg = json.loads(program_json)
  cfg["hidden"] = tuple(cfg["hidden"])
  return cfg


# Cached so that runs of one program in one process (a stopped run retried
# with on_nonfinite='continue', the arms of a study, tests) compile once.
@functools.lru_cache(maxsize=8)
def _compiled_init(program_json: str):
  """The compiled per-seed ``init(key) -> Runner``."""
  # Compiled for one seed and called per seed, then stacked (as train/loop.py
  # does): vmapped threefry-based initializers compile slower on CPU.
  init = jax.jit(dqn.make_init(_program_dict(program_json)))
  return init.lower(jax.random.PRNGKey(0)).compile()


def seed_sharding(num_seeds: int):
  """The seeds split over this process's devices (one 1-d mesh), or None (one device, a count that
  does not divide the seeds, or several processes). On a CPU host with `--host_devices` the vmapped
  seeds then run one group per core: measured on 2 cores, 8 seeds 1.9× and 32 seeds 1.3× the env
  steps/s of one device (the small per-seed matmuls leave one device's threads idle)."""
  devs = jax.local_devices()
  if len(devs) < 2 or num_seeds % len(devs) or jax.process_count() > 1:
    return None
  return NamedSharding(jax.sharding.Mesh(np.asarray(devs), ("data",)), P("data"))


@functools.lru_cache(maxsize=8)
def _compiled_chunk(program_json: str, num_seeds: int, sharding: NamedSharding | None = None):
  """The compiled ``vmap(chunk)`` over `num_seeds` seeds (donates the runner), its inputs split
  as `sharding` says (`seed_sharding`; None: one device)."""
  cfg = _program_dict(program_json)
  one = jax.eval_shape(dqn.make_init(cfg), jax.random.PRNGKey(0))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct((num_seeds, *s.shape), s.dtype, sharding=sharding), one)
  # k (the chunk index) is shared by the seeds: the warm-up test stays a branch.
  chunk = jax.jit(jax.vmap(dqn.make_chunk(cfg), in_axes=(0, None)), donate_argnums=0)
  return chunk.lower(abstract, jax.ShapeDtypeStruct((), jnp.int32)).compile()


def precompile(config) -> float:
  """Compiles (and caches in this process) the programs `train_and_evaluate`
  runs for `config`; returns the seconds it took (≈ 0 if cached).

  XLA compiles release the GIL: a study compiles its arms in threads first,
  then runs them one by one with undisturbed timings.
  """
  c = resolve(config)
  program = json.dumps(program_config(c), sort_keys=True)
  t0 = time.perf_counter()
  _compiled_init(program)
  _compiled_chunk(program, c.num_seeds, seed_sharding(c.num_seeds))
  return time.perf_counter() - t0


def _runner_tree(r: dqn.Runner) -> dict:
  """The Runner as a dict for orbax; no ``target_params`` entry without a
  target network (None is not a checkpointable leaf)."""
  d = r._asdict()
  if d["target_params"] is None:
    del d["target_params"]
  return d


def _runner_from_tree(d: dict) -> dqn.Runner:
  return dqn.Runner(**{"target_params": None, **d})


def _bytes(tree) -> int:
  """Bytes of the array leaves of a (possibly abstract) pytree."""
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _nan_for_none(obj: Any) -> Any:
  """Records read back from JSON: null (a non-finite float) → NaN."""
  if obj is None:
    return float("nan")
  if isinstance(obj, dict):
    return {k: _nan_for_none(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_nan_for_none(v) for v in obj]
  return obj


def _record(step: int, m: dict) -> dict:
  """One metrics.jsonl record of a chunk's per-seed metrics."""
  rec = {"step": step, "kind": "train"}
  for key in STAT_KEYS:
    rec[key] = records_lib.stats(m[key])
  rec["updates"] = int(np.asarray(m["updates"]).max())
  rec["episodes"] = np.asarray(m["episodes"]).tolist()
  rec["nonfinite_step"] = np.asarray(m["nonfinite_step"]).tolist()  # −1: finite
  return rec


def _nonfinite_message(m: dict, seeds: np.ndarray, ckpt_step: int | None) -> str:
  bad = np.asarray(m["nonfinite_step"])
  i = min(np.flatnonzero(bad >= 0), key=lambda j: bad[j])
  others = int((bad >= 0).sum()) - 1
  kept = (f"the checkpoint at env step {ckpt_step} is kept" if ckpt_step is not None
          else "no checkpoint was written")
  return (f"non-finite TD loss, Q-value or parameter at env step {int(bad[i])} "
          f"(seed {int(seeds[i])}" + (f"; {others} other seed(s) too" if others else "")
          + f"); {kept}; config.on_nonfinite='continue' records it and keeps training")


def _summary(records: list[dict], c, seeds, timing: dict, sizes: dict) -> dict:
  train = [r for r in records if r.get("kind") == "train"]
  final = {k: train[-1][k] for k in STAT_KEYS} if train else {}
  first_bad = []
  for i in range(len(seeds)):
    steps = [r["nonfinite_step"][i] for r in train if r["nonfinite_step"][i] >= 0]
    first_bad.append(min(steps) if steps else -1)
  return {"final": final, "history": train, "seeds": [int(s) for s in seeds],
          "env_name": c.env_name, "total_steps": c.total_steps,
          "first_nonfinite_step": first_bad, **timing, **sizes}


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains every seed of a DQN launcher config in `workdir`; returns the summary.

  Resumes from ``workdir/checkpoints`` when the workdir holds a run of the
  same config (the metrics past the restored env step are dropped first).

  Returns:
    {'final': {'eval_return'|'train_return'|'loss'|'q_mean': {'per_seed',
     'mean', 'std'}} (last chunk), 'history': the metrics.jsonl records
     (one per chunk: 'step' = env steps done, those four stats, 'updates',
     per-seed 'episodes' and 'nonfinite_step'), 'seeds', 'env_name',
     'total_steps', 'first_nonfinite_step' (per seed, −1 if never),
     'steps_per_sec' (env steps per seed per second of this process's
     chunks, a chunk that compiled not counted), 'env_steps_per_sec'
     (× num_seeds), 'run_seconds', 'compile_seconds', 'memory_bytes_per_seed'
     (params + target + optimizer state), 'buffer_bytes_per_seed', 'devices'}.
     NaN where a value is undefined (no update or episode in the chunk) or diverged.

  Raises:
    ConfigError: invalid config (nothing written).
    WorkdirConfigMismatch: the workdir, or one of its checkpoints, holds another config's run.
    NonFiniteError: non-finite TD loss / Q-value / parameters with
      ``on_nonfinite='stop'`` (names the env step and seed).
    WorkdirBusy: another process is running in `workdir`.
    Preempted: SIGTERM/SIGINT (a checkpoint saved at the env step it names).
  """
  return run_resolved(resolve(config), workdir)


def run_resolved(c, workdir: str, *, memo=None) -> dict:
  """`train_and_evaluate` of a config `resolve` returned (not checked again), through the host loop
  every trainer shares (`stable_training.train.host_loop`). `memo` is accepted for a uniform trainer
  interface and unused: DQN has no pre-computation to keep across runs."""
  del memo
  return host_loop.run(_DQN(c), workdir)


class _DQN(host_loop.Pieces):
  """The DQN trainer's pieces of the host loop: the vmapped `dqn.Runner` and `dqn.make_chunk`'s program,
  one chunk of ``eval_every`` env steps per record."""
  unit = "env step"
  steps_key = "total_steps"
  from_records = ("final", "history", "seeds", "env_name", "total_steps", "first_nonfinite_step")

  def __init__(self, c):
    self.config, self.defaults = c, defaults()
    self.num_steps, self.progress = c.total_steps, c.progress == "auto"
    self.seeds = c.seed + np.arange(c.num_seeds)
    self.program = json.dumps(program_config(c), sort_keys=True)
    self.sharding = seed_sharding(c.num_seeds)
    one = jax.eval_shape(dqn.make_init(_program_dict(self.program)), jax.random.PRNGKey(0))  # one seed's Runner
    self.sizes = {"memory_bytes_per_seed": _bytes((one.params, one.target_params, one.opt_state)),
                  "buffer_bytes_per_seed": _bytes(one.buffer_state)}
    self.init_seconds = 0.0
    self.compiled_chunk = None

  def init(self):
    t0 = time.perf_counter()
    init = _compiled_init(self.program)
    self.init_seconds = time.perf_counter() - t0  # ≈ 0 when cached
    runs = [init(k) for k in seed_keys(self.config)]
    return jax.tree.map(lambda *a: jnp.stack(a), *runs)

  def place(self, state):
    return state if self.sharding is None else jax.device_put(state, self.sharding)

  def to_tree(self, state):
    return _runner_tree(state)

  def from_tree(self, tree):
    return _runner_from_tree(tree)

  def check_workdir(self, workdir):
    """``eval_every`` sets where the evaluation key is split off the run's RNG, so unlike for the
    supervised trainer it changes the numbers: a run cannot resume with another value."""
    old = records_lib.read_json_or_none(os.path.join(workdir, "config.json")) or {}
    if old.get("eval_every") != self.config.eval_every:
      raise WorkdirConfigMismatch(
          f"workdir {workdir} holds a run of a different config (config.eval_every: "
          f"{old.get('eval_every')!r} -> {self.config.eval_every!r}); use a new --workdir or the "
          "original config")

  def start(self, state, start_step, restored, writer):
    if restored and int(np.asarray(state.t)[0]) != start_step:
      raise RuntimeError(f"checkpoint {start_step} holds env step {int(np.asarray(state.t)[0])}")
    return self.place(state)

  def next_stop(self, step):
    return min(step + self.config.eval_every, self.num_steps)

  def is_checkpoint(self, step):
    return step % self.config.checkpoint_every == 0 or step == self.num_steps

  def chunk(self, state, step, k):
    tc = 0.0
    if self.compiled_chunk is None:
      hits = _compiled_chunk.cache_info().hits
      t0 = time.perf_counter()
      self.compiled_chunk = _compiled_chunk(self.program, self.config.num_seeds, self.sharding)
      if _compiled_chunk.cache_info().hits == hits:  # compiled now, not found in this process's cache
        tc = time.perf_counter() - t0
    state, m = self.compiled_chunk(state, np.int32(step // self.config.eval_every))
    return state, jax.device_get(m), tc

  def check(self, state, out, kept):
    if self.config.on_nonfinite == "stop" and np.any(np.asarray(out["nonfinite_step"]) >= 0):
      raise NonFiniteError(_nonfinite_message(out, self.seeds, kept()))

  def record(self, step, state, out, writer):
    return _record(step, out)

  def status(self, rec):
    return f"eval_return={rec['eval_return']['mean']:.1f} loss={rec['loss']['mean']:.3g}"

  def summarize(self, records, timing, previous):
    if timing is None:  # a finished run: its timings as its summary has them
      times = {k: _nan_for_none(previous.get(k)) for k in TIMING_KEYS}
    else:
      s, n = timing.run_seconds, timing.run_steps
      times = {"steps_per_sec": n / s if s else float("nan"),
               "env_steps_per_sec": self.config.num_seeds * n / s if s else float("nan"),
               "run_seconds": s, "compile_seconds": self.init_seconds + timing.compile_seconds}
    summary = _summary([_nan_for_none(r) for r in records], self.config, self.seeds, times, self.sizes)
    summary["devices"] = self.sharding.mesh.devices.size if self.sharding is not None else 1  # the seeds' split
    return summary

  def loaded(self, summary):
    return _nan_for_none(summary)
