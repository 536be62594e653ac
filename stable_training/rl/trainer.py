"""The ``dqn`` trainer: `stable_training.rl.dqn` run by the one train engine.

``python -m experiments.main --config=experiments/configs/dqn.py:tiny --workdir=DIR``
dispatches here (`stable_training.train.trainers`). What it gives mirrors the
supervised trainer (`stable_training.train.loop`):

- `validate(config)`: one-line `ConfigError` before anything is written;
- seeds ``seed … seed + num_seeds − 1`` (seed s ↦ ``jax.random.PRNGKey(s)``)
  vmapped in one compiled program;
- a host loop over chunks of ``eval_every`` env steps, each one call of
  ``jax.jit(jax.vmap(dqn.make_chunk(config)))`` (the same pure pieces
  `dqn.make_train` scans, so the numbers are `make_train`'s);
- ``config.json`` (the resolved config; a different config is refused),
  ``metrics.jsonl`` (one record per chunk), ``summary.json`` and a progress bar;
- orbax checkpoints of the whole vmapped `dqn.Runner` (networks, optimizer
  state, replay buffer, env state, RNG) every ``checkpoint_every`` env steps
  and at the end: rerunning a killed command resumes and ends with the same
  numbers as an uninterrupted run;
- a non-finite TD loss, Q-value or parameter stops the run with
  `NonFiniteError` (``on_nonfinite = "stop"``) or is recorded
  (``"continue"``: GELU without a target network is expected to diverge on
  some seeds, Ramaswamy et al. 2023).
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from stable_training.config import ConfigError
from stable_training.rl import dqn
from stable_training.train import checkpoint as ckpt_lib
from stable_training.train import lock as lock_lib
from stable_training.train import records as records_lib
from stable_training.train.checkpoint import WorkdirConfigMismatch
from stable_training.train.loop import NonFiniteError

# Engine keys' defaults when a config omits them (the launcher configs in
# experiments/configs/dqn.py set them all). checkpoint_every None: at the end.
ENGINE_DEFAULTS = dict(trainer="dqn", seed=0, num_seeds=1, progress="auto",
                       on_nonfinite="stop", checkpoint_every=None)
assert set(ENGINE_DEFAULTS) == set(dqn.ENGINE_KEYS)
ON_NONFINITE = ("stop", "continue")
PROGRESS = ("auto", "none")
# Per-chunk metrics reported as `records.stats` (per seed, mean, std).
STAT_KEYS = ("eval_return", "train_return", "loss", "q_mean")


def resolve(config) -> ml_collections.ConfigDict:
  """The full launcher config: `dqn.resolve_config(config)` (defaults filled,
  ``clip_output_norm = None`` resolved) plus the engine keys (defaults from
  `ENGINE_DEFAULTS`; ``checkpoint_every`` defaults to ``total_steps``).

  Raises:
    ConfigError: one line ``config.KEY=VALUE: what is valid``.
  """
  values = dict(config)
  c = dqn.resolve_config(values)  # unknown keys and DQN values
  eng = {k: values.get(k, d) for k, d in ENGINE_DEFAULTS.items()}
  if eng["checkpoint_every"] is None:
    eng["checkpoint_every"] = c.total_steps
  if eng["trainer"] != "dqn":
    raise ConfigError(f"config.trainer={eng['trainer']!r}: this is the 'dqn' trainer")
  for key, lo in (("seed", 0), ("num_seeds", 1), ("checkpoint_every", 1)):
    v = eng[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
      raise ConfigError(f"config.{key}={v!r}: must be an integer >= {lo}")
  if eng["checkpoint_every"] % c.eval_every:
    raise ConfigError(f"config.checkpoint_every={eng['checkpoint_every']}: must be a "
                      f"multiple of config.eval_every={c.eval_every}")
  for key, valid in (("progress", PROGRESS), ("on_nonfinite", ON_NONFINITE)):
    if eng[key] not in valid:
      raise ConfigError(f"config.{key}={eng[key]!r}: valid choices are {', '.join(valid)}")
  c.update({k: (int(v) if k in ("seed", "num_seeds", "checkpoint_every") else v)
            for k, v in eng.items()})
  return c


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


def _bytes_per_seed(tree, num_seeds: int) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))) // num_seeds


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


def _check_resumable(workdir: str, config) -> None:
  """DQN-specific part of the workdir guard: ``eval_every`` sets where the
  evaluation key is split off the run's RNG, so unlike for the supervised
  trainer it changes the numbers and a run cannot resume with another value."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  if old.get("eval_every") != config.eval_every:
    raise WorkdirConfigMismatch(
        f"workdir {workdir} holds a run of a different config (config.eval_every: "
        f"{old.get('eval_every')!r} -> {config.eval_every!r}); use a new --workdir or the "
        "original config")


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
     chunks), 'env_steps_per_sec' (× num_seeds), 'run_seconds',
     'compile_seconds', 'memory_bytes_per_seed' (params + target +
     optimizer state), 'buffer_bytes_per_seed'}. NaN where a value is
     undefined (no update or episode in the chunk) or diverged.

  Raises:
    ConfigError: invalid config (nothing written).
    WorkdirConfigMismatch: the workdir holds another config's run.
    NonFiniteError: non-finite TD loss / Q-value / parameters with
      ``on_nonfinite='stop'`` (names the env step and seed).
    WorkdirBusy: another process is running in `workdir`.
  """
  c = resolve(config)
  with lock_lib.workdir_lock(workdir):
    return _train(c, workdir)


def _train(c, workdir: str) -> dict:
  """The host loop of `train_and_evaluate` (`c` resolved, the workdir locked)."""
  seeds = c.seed + np.arange(c.num_seeds)
  _check_resumable(workdir, c)
  resumed = ckpt_lib.check_or_write_config(workdir, c)
  program = json.dumps(program_config(c), sort_keys=True)
  t0 = time.perf_counter()
  init = _compiled_init(program)
  compile_s = time.perf_counter() - t0  # ≈ 0 when cached
  runs = [init(k) for k in seed_keys(c)]
  runner = jax.tree.map(lambda *a: jnp.stack(a), *runs)
  del runs
  learner = dict(params=runner.params, target_params=runner.target_params,
                 opt_state=runner.opt_state)
  sizes = {"memory_bytes_per_seed": _bytes_per_seed(learner, c.num_seeds),
           "buffer_bytes_per_seed": _bytes_per_seed(runner.buffer_state, c.num_seeds)}

  manager = ckpt_lib.make_manager(workdir)
  start = 0
  restored = ckpt_lib.restore_latest(manager, _runner_tree(runner)) if resumed else None
  if restored is not None:
    start, tree = restored
    runner = _runner_from_tree(tree)
    if int(np.asarray(runner.t)[0]) != start:
      raise RuntimeError(f"checkpoint {start} of {workdir} holds env step "
                         f"{int(np.asarray(runner.t)[0])}")
    print(f"resumed {workdir} at env step {start}", file=sys.stderr, flush=True)
  last_ckpt = start if restored is not None else None
  sharding = seed_sharding(c.num_seeds)
  if sharding is not None:
    runner = jax.device_put(runner, sharding)

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  records = [_nan_for_none(r) for r in records_lib.truncate_records(metrics_path, start)]
  progress = records_lib.Progress(c.total_steps, start, c.progress == "auto",
                                  desc=os.path.basename(os.path.normpath(workdir)),
                                  unit="env step")
  run_s, run_steps = 0.0, 0
  tb = records_lib.TensorBoard(workdir)
  chunks = range(start // c.eval_every, c.total_steps // c.eval_every)
  try:
    if len(chunks):
      t0 = time.perf_counter()
      chunk = _compiled_chunk(program, c.num_seeds, sharding)
      compile_s += time.perf_counter() - t0
    for k in chunks:
      t0 = time.perf_counter()
      runner, m = chunk(runner, np.int32(k))
      m = jax.device_get(m)
      run_s += time.perf_counter() - t0
      run_steps += c.eval_every
      step = (k + 1) * c.eval_every
      if np.any(np.asarray(m["nonfinite_step"]) >= 0) and c.on_nonfinite == "stop":
        raise NonFiniteError(_nonfinite_message(m, seeds, last_ckpt))
      rec = _record(step, m)
      records.append(rec)
      records_lib.append_record(metrics_path, rec)
      tb.write(rec)
      progress.update(step, c.eval_every, f"eval_return={rec['eval_return']['mean']:.1f} "
                      f"loss={rec['loss']['mean']:.3g}")
      if step % c.checkpoint_every == 0 or step == c.total_steps:
        # A copy: the next chunk donates (reuses) `runner`'s buffers while
        # orbax may still be writing.
        ckpt_lib.save(manager, step, jax.tree.map(jnp.copy, _runner_tree(runner)))
        last_ckpt = step
  finally:
    progress.close()
    tb.close()
    manager.wait_until_finished()
    manager.close()

  summary_path = os.path.join(workdir, "summary.json")
  if run_steps:
    timing = {"steps_per_sec": run_steps / run_s,
              "env_steps_per_sec": c.num_seeds * run_steps / run_s,
              "run_seconds": run_s, "compile_seconds": compile_s}
  elif os.path.exists(summary_path):  # a finished run rerun: keep its timings
    with open(summary_path) as f:
      old = _nan_for_none(json.load(f))
    timing = {k: old.get(k, float("nan")) for k in
              ("steps_per_sec", "env_steps_per_sec", "run_seconds", "compile_seconds")}
  else:
    timing = {k: float("nan") for k in
              ("steps_per_sec", "env_steps_per_sec", "run_seconds", "compile_seconds")}
  summary = _summary(records, c, seeds, timing, sizes)
  summary["devices"] = sharding.mesh.devices.size if sharding is not None else 1  # the seeds' split
  records_lib.write_json(summary_path, summary)
  return summary
