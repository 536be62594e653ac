"""`train_and_evaluate(config, workdir)`: the ``supervised`` trainer of the one engine.

Data flow: data (arrays, or a generated sequence task) → model from the
registry → optax chain from the config (`optim.make_optimizer`) → a
vmapped-over-seeds, scanned-over-steps compiled chunk, sharded over a ``data``
mesh axis → metrics.jsonl / summary.json / orbax checkpoints.

The function is assembled from small parts: `load_data` (numpy arrays or a
task), `build` (model, loss, optimizer, compiled chunk and evaluator),
`init_state` (per-seed init), and the host loop every trainer shares
(`stable_training.train.host_loop`: resume, checkpoints, records, progress,
preemption), to which `_Supervised` hands these pieces.

Multi-host: call ``jax.distributed.initialize()`` in every process before
this (``experiments.main --distributed``); the mesh then spans
``jax.devices()`` of all hosts and each host feeds the same global indices, so
the code path is identical to one CPU.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any, Callable, MutableMapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training import config as config_lib
from stable_training import data as data_lib
from stable_training import models as models_lib
from stable_training import optim as optim_lib
from stable_training.data import sequence_tasks
from stable_training.train import host_loop
from stable_training.train import losses as losses_lib
from stable_training.train import records as rec_lib
from stable_training.train import sharding as sharding_lib
from stable_training.train.steps import (TrainState, first_nonfinite_path, gather_batch, layer_names,
                                         make_chunk_fn, make_eval_step, make_objective, make_train_step)
from stable_training.train.host_loop import NonFiniteError  # noqa: F401  (re-exported)


def validate(config) -> None:
  """The supervised trainer's config check (`stable_training.config.validate`)."""
  config_lib.validate(config)


def resolve(config, *, given: tuple[str, ...] = ()):
  """`config` once `stable_training.config.validate` accepts it (`given`: groups whose objects the caller
  passes, see there); what `run_resolved` trains without checking again.

  Raises:
    ConfigError: one line naming the key, its value and what is valid.
  """
  config_lib.validate(config, given=given)
  return config


# ----------------------------------------------------------------------------- data
def load_data(config) -> dict[str, Any]:
  """The run's data as numpy arrays (or a generated task), after subsetting, split, view and standardization.

  Keys: ``x_train``/``y_train`` (None for a generated task, whose batches are
  drawn inside the step), ``x_val``/``y_val`` (the last ``dataset.num_val``
  training examples, or a fixed generated set; None when num_val = 0),
  ``x_test``/``y_test``, ``num_classes`` (output units), ``name``, ``task``
  (a `sequence_tasks.TaskSpec` or None), ``info`` (e.g. the task's baseline loss).

  Raises:
    DataError: missing or malformed data files (the message names the file).
  """
  dc = config.dataset
  if dc.name in sequence_tasks.names():
    return _load_task(config)
  data_dir = dc.data_dir or None
  train = data_lib.load(dc.name, "train", data_dir=data_dir, seed=config.seed,
                        num_generated=dc.get("num_generated", 0))
  test = data_lib.load(dc.name, "test", data_dir=data_dir, seed=config.seed)
  xtr, ytr, xte, yte = train.x, train.y, test.x, test.y
  if dc.num_train:
    xtr, ytr = xtr[:dc.num_train], ytr[:dc.num_train]
  if dc.num_test:
    xte, yte = xte[:dc.num_test], yte[:dc.num_test]
  if xtr.shape[1:] != xte.shape[1:]:
    raise data_lib.DataError(f"dataset {dc.name!r}: train examples are {tuple(xtr.shape[1:])} but test examples "
                             f"{tuple(xte.shape[1:])}; both splits need one shape")
  num_val = dc.get("num_val", 0)
  if num_val >= len(xtr):
    raise config_lib.ConfigError(f"config.dataset.num_val={num_val}: must be < the {len(xtr)} training examples")
  xva, yva = (xtr[len(xtr) - num_val:], ytr[len(ytr) - num_val:]) if num_val else (None, None)
  xtr, ytr = xtr[:len(xtr) - num_val], ytr[:len(ytr) - num_val]
  if dc.get("standardize", True):  # statistics of the training part only
    _, xte = data_lib.standardize(xtr, xte)
    xtr, xva = data_lib.standardize(xtr, xva if xva is not None else xtr[:0])
    xva = xva if num_val else None
  view_seed = dc.get("view_seed", 0)
  view = lambda a: None if a is None else np.asarray(data_lib.apply_view(a, dc.view, seed=view_seed), np.float32)
  return {"x_train": view(xtr), "y_train": np.asarray(ytr, np.int32),
          "x_val": view(xva), "y_val": None if yva is None else np.asarray(yva, np.int32),
          "x_test": view(xte), "y_test": np.asarray(yte, np.int32),
          "num_classes": train.num_classes, "name": train.name, "task": None, "info": {}}


def _load_task(config) -> dict[str, Any]:
  dc = config.dataset
  task = sequence_tasks.get_task(dc.name)
  xte, yte = sequence_tasks.fixed_set(dc.name, dc.num_test or 1000, dc.lag, "test")
  xva = yva = None
  if dc.get("num_val", 0):
    xva, yva = sequence_tasks.fixed_set(dc.name, dc.num_val, dc.lag, "validation")
  return {"x_train": None, "y_train": None, "x_val": xva, "y_val": yva, "x_test": xte, "y_test": yte,
          "num_classes": task.num_outputs, "name": f"{dc.name}(T={dc.lag})", "task": task,
          "info": {"baseline_loss": task.baseline(dc.lag), "lag": dc.lag}}


def steps_per_epoch(config, d) -> int | None:
  """⌊N_train / batch_size⌋ (`data.batch_indices` drops the remainder); None for a generated task."""
  return None if d["task"] is not None else d["x_train"].shape[0] // config.batch_size


def total_steps(config, d) -> int:
  """``num_epochs`` · steps_per_epoch when num_epochs > 0, else ``num_steps``."""
  if config.get("num_epochs", 0):
    return int(config.num_epochs) * steps_per_epoch(config, d)
  return int(config.num_steps)


# ---------------------------------------------------------------------------- setup
@dataclasses.dataclass
class Setup:
  """What the host loop needs: the model, optimizer, compiled pieces and data feeders."""
  model: Any
  tx: optax.GradientTransformation
  loss: losses_lib.Loss
  objective: Callable
  chunk: Callable           # jitted (state, data, xs) -> (state, stopped, metrics)
  evaluate: Callable        # jitted (params, x, y) -> {name: [S]}
  batch_xs: Callable        # (step, k) -> xs [K, S, ...] on the host
  host_batch: Callable      # (seed, step) -> batch, for error reports
  device_data: Any
  seeds: np.ndarray
  num_steps: int
  mesh: Any
  split: str                # what the mesh splits: 'seeds' or 'batch'


def build(config, d, *, model=None, tx=None) -> Setup:
  """Model, loss, optax chain, compiled chunk and evaluator for `config` on data `d`.

  `model` / `tx`: a caller's flax module / optax transformation used instead of
  the ones `config.model` / `config.optimizer` name (`stable_training.train.fit`).

  Raises:
    ConfigError: values that only the data can rule out (batch size vs
      examples or devices, a loss that does not fit the task).
  """
  task = d["task"]
  loss_name = config.get("loss", "cross_entropy")
  if task is not None and loss_name != task.loss:
    raise config_lib.ConfigError(
        f"config.loss={loss_name!r}: the {config.dataset.name} task needs loss {task.loss!r}")
  loss = losses_lib.get_loss(loss_name)
  x_example = d["x_test"]
  if model is None:
    model = models_lib.build_model(config.model, num_classes=d["num_classes"], input_shape=x_example.shape[1:])
  check_model(model, config, x_example[:1])
  num_steps = total_steps(config, d)
  if tx is None:
    tx = optim_lib.make_optimizer(config.optimizer, num_steps=num_steps)
  check_seed_memory(model, tx, config, x_example[:1])
  seeds = config.seed + np.arange(config.num_seeds)
  skip = config.on_nonfinite == "skip"
  if skip:  # the host stops the run after max_consecutive_skips (see _check_skips)
    tx = optax.apply_if_finite(tx, max_consecutive_errors=np.iinfo(np.int32).max)
  loss_fn = losses_lib.mean_loss(loss_name)
  objective = make_objective(model, loss_fn, loss.metrics)
  train_step = make_train_step(model, loss_fn, tx, metrics_fn=loss.metrics)

  mesh = sharding_lib.data_mesh()
  n_dev = mesh.devices.size
  # Seeds are independent programs: split them over the devices when they divide
  # evenly (no cross-device traffic at all); otherwise split each batch.
  by_seed = n_dev > 1 and config.num_seeds % n_dev == 0
  if not by_seed and config.batch_size % n_dev:
    raise config_lib.ConfigError(
        f"config.batch_size={config.batch_size}: must be divisible by the {n_dev} devices of the data mesh "
        f"(or use a multiple of {n_dev} seeds)")
  repl = sharding_lib.replicated(mesh)
  xs_axis = 1 if by_seed else 2
  bs = config.batch_size
  if task is None:
    n_train = d["x_train"].shape[0]
    if bs > n_train:
      raise config_lib.ConfigError(f"config.batch_size={bs}: must be <= the {n_train} training examples")
    device_data = (jax.device_put(d["x_train"], repl), jax.device_put(d["y_train"], repl))
    make_batch = gather_batch

    def batch_xs(step, k):
      idx = np.stack([np.stack([data_lib.batch_indices(n_train, bs, seed=int(s), step=step + j) for s in seeds])
                      for j in range(k)]).astype(np.int32)
      return jax.device_put(idx, sharding_lib.batch_sharded(mesh, idx.ndim, axis=xs_axis))

    def host_batch(seed, step):
      idx = data_lib.batch_indices(n_train, bs, seed=int(seed), step=step)
      return jnp.asarray(d["x_train"][idx]), jnp.asarray(d["y_train"][idx])
  else:
    lag = config.dataset.lag
    device_data = ()

    def make_batch(_, seed_step):  # drawn inside the step: nothing stored, resume exact
      return task.sample(sequence_tasks.batch_key(seed_step[0], seed_step[1]), bs, lag)

    def batch_xs(step, k):
      ss = np.stack(np.broadcast_arrays(seeds[None, :], step + np.arange(k)[:, None]), -1)
      return jax.device_put(ss.astype(np.int32), sharding_lib.batch_sharded(mesh, 3, axis=1) if by_seed else repl)

    def host_batch(seed, step):
      return jax.jit(make_batch)((), jnp.asarray([seed, step], jnp.int32))

  unroll = 0 if config.get("step_loop", "scan") == "host" else config.get("scan_unroll", 1)
  chunk = make_chunk_fn(train_step, stop_on_nonfinite=not skip, unroll=unroll, make_batch=make_batch)
  n_eval = min(config.eval_batch_size, d["x_test"].shape[0])
  evaluate = jax.jit(make_eval_step(model, loss, batch_size=n_eval))
  return Setup(model, tx, loss, objective, jax.jit(chunk, donate_argnums=(0,)), evaluate, batch_xs,
               host_batch, device_data, seeds, num_steps, mesh, "seeds" if by_seed else "batch")


def check_model(model, config, sample_x) -> None:
  """Traces ``model.init`` abstractly (`jax.eval_shape`: no FLOPs, no memory) before anything is written.

  Raises:
    ConfigError: the model rejects its settings (e.g. ROAF α ∉ (0, 1)); one
      line naming ``config.model`` and the model's own message.
  """
  try:
    jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jnp.asarray(sample_x))
  except (ValueError, TypeError) as e:
    msg = next((l for l in str(e).splitlines() if l.strip()), type(e).__name__)
    raise config_lib.ConfigError(f"config.model (name={config.model.name!r}): {msg}") from None
  if config.lsc.enabled:
    from stable_training import lsc as lsc_lib
    if not lsc_lib.supports(model):
      raise config_lib.ConfigError(
          f"config.lsc.enabled=True: model {config.model.name!r} does not declare its transition Jacobians "
          "(lsc_transitions); LSC supports deep_mlp, roaf_mlp, rnn_classifier and deep_rnn")


def available_memory() -> int:
  """Bytes the run may use: the local accelerators' memory limit, or the host's MemAvailable (CPU)."""
  devs = jax.local_devices()
  stats = devs[0].memory_stats() if hasattr(devs[0], "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) * len(devs)
  try:
    with open("/proc/meminfo") as f:
      kb = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    return kb * 1024
  except (OSError, StopIteration, ValueError):
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_seed_memory(model, tx, config, sample_x) -> None:
  """Refuses `config.num_seeds` when the seeds' training state alone exceeds `available_memory`.

  Sized by `jax.eval_shape` (nothing allocated): params and optimizer state
  per seed, times 3 (the state, its successor in the step, the gradients).

  Raises:
    ConfigError: one line with the sizes.
  """
  def one():
    params = model.init(jax.random.PRNGKey(0), sample_x)["params"]
    return params, tx.init(params)
  per_seed = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(jax.eval_shape(one)))
  need, have = 3 * per_seed * int(config.num_seeds), available_memory()
  if need > have:
    raise config_lib.ConfigError(
        f"config.num_seeds={config.num_seeds}: the training state needs about {need / 2**30:.1f} GiB "
        f"({3 * per_seed / 2**20:.2f} MiB per seed), more than the {have / 2**30:.1f} GiB available")


# The init program runs once per run: XLA:CPU's default LLVM level (3) spends 1–2 s optimizing threefry's
# rolled-loop bodies for nothing; level 2 compiles it 2–3× faster with bit-identical parameters (tested;
# level 0 does not give the same bits).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


def init_compiler_options(xla_flags: str | None = None) -> dict | None:
  """`INIT_COMPILER_OPTIONS` on the CPU backend, unless ``XLA_FLAGS`` sets its own optimization level
  (the user's choice, e.g. the test suite's level 0, wins); None elsewhere (XLA's defaults)."""
  xla_flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
  if "xla_backend_optimization_level" in xla_flags or jax.default_backend() != "cpu":
    return None
  return INIT_COMPILER_OPTIONS


def init_state(model, tx, seeds: np.ndarray, sample_x: jax.Array) -> TrainState:
  """Per-seed init, stacked on a leading seed axis: seed s ↦ PRNGKey(s).

  The params are ``model.init(k_init, sample_x)['params']``, the optimizer
  state ``tx.init(params)``, and ``k_init, k_run = split(PRNGKey(s))``.
  """
  def one(seed):
    k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(k_init, sample_x)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), rng=k_run)
  # One compiled init called per seed, then stacked: vmapping threefry-based
  # initializers compiles several times slower on CPU than this.
  init_one = jax.jit(one, compiler_options=init_compiler_options())
  states = [init_one(jnp.uint32(s)) for s in seeds]
  return _stack(states)


@jax.jit
def _stack(trees):
  """Stacks a list of equal pytrees on a new leading axis (one compile, not one per leaf shape)."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


# -------------------------------------------------------------------------- records
def _train_record(step, m, state) -> dict:
  """Means over the chunk's K steps, per seed."""
  rec = {"step": step, "kind": "train"}
  for key in m:
    if key in ("layer_grad_norms", "finite"):
      continue
    rec[key if key.endswith(("_norm", "_var")) else f"train_{key}"] = rec_lib.stats(np.mean(m[key], axis=0))
  if m["loss"].shape[0] > 1:  # loss smoothness: mean |L_k − L_{k−1}| within the chunk
    rec["loss_abs_diff"] = rec_lib.stats(np.mean(np.abs(np.diff(m["loss"], axis=0)), axis=0))
  lg = np.mean(m["layer_grad_norms"], axis=0)  # [S, L]
  rec["layer_grad_norms"] = {"per_seed": lg.tolist(), "mean": lg.mean(0).tolist()}
  if state is not None:  # optax.apply_if_finite counts skipped updates
    rec["skipped_steps"] = np.asarray(state.opt_state.total_notfinite).tolist()
  return rec


def _eval_record(setup: Setup, state, d) -> dict:
  """Held-out metrics as ``test_*`` (and ``val_*`` when a validation split exists)."""
  out = {}
  for prefix, x, y in (("test", d["x_test"], d["y_test"]), ("val", d["x_val"], d["y_val"])):
    if x is None:
      continue
    vals = jax.device_get(setup.evaluate(state.params, x, y))
    out.update({f"{prefix}_{k}": rec_lib.stats(v) for k, v in vals.items()})
  return out


def summarize(records, name, lnames, steps_per_sec, compile_seconds, info) -> dict:
  """summary.json: final train/held-out stats, the best validation step, history, speed."""
  train = [r for r in records if r.get("kind") == "train"]
  evals = [r for r in train if "test_loss" in r]
  final = {}
  if train:
    final.update({k: v for k, v in train[-1].items() if k not in ("step", "kind")})
  if evals:
    final.update({k: v for k, v in evals[-1].items() if k.startswith(("test_", "val_"))})
  heldout = lambda r: {k: v for k, v in r.items() if k.startswith(("test_", "val_"))}
  history = [{"step": r["step"], "train_loss": r["train_loss"], **heldout(r)} for r in train]
  out = {"final": final, "history": history, "dataset": name, "layer_names": lnames,
         "steps_per_sec": steps_per_sec, "compile_seconds": compile_seconds, "info": info}
  vals = [r for r in evals if "val_loss" in r]
  if vals:  # model selection on the validation split (mean over seeds)
    key = "val_accuracy" if "val_accuracy" in vals[0] else "val_loss"
    sign = -1.0 if key == "val_accuracy" else 1.0
    best = min(vals, key=lambda r: sign * r[key]["mean"])
    out["best"] = {"step": best["step"], "by": key, **heldout(best)}
  lsc = [r for r in records if r.get("kind") == "lsc"]
  if lsc:
    out["lsc"] = {k: v for k, v in lsc[-1].items() if k not in ("step", "kind")}
  return out


# ------------------------------------------------------------------------- the loop
def _stops(config, d, num_steps):
  """(next record step after `step`, whether to evaluate there, whether to checkpoint there)."""
  spe = steps_per_epoch(config, d) if config.get("num_epochs", 0) else None

  def next_stop(step):
    nxt = min((step // config.log_every + 1) * config.log_every, num_steps)
    if spe:
      nxt = min(nxt, (step // spe + 1) * spe)
    return nxt

  def is_eval(step):
    return step % config.eval_every == 0 or step == num_steps or bool(spe and step % spe == 0)

  def is_ckpt(step):
    return step % config.checkpoint_every == 0 or step == num_steps
  return next_stop, is_eval, is_ckpt


def _run_chunk(setup: Setup, compiled: dict, state, step: int, k: int, per_step: bool, skip: bool):
  """Advances every seed k steps (`per_step`: k calls of a one-step program); compiles each chunk length once
  (time returned)."""
  xs = setup.batch_xs(step, k)
  kc = 1 if per_step else k
  t_compile = 0.0
  if kc not in compiled:
    t0 = time.perf_counter()
    compiled[kc] = setup.chunk.lower(state, setup.device_data, xs[:kc]).compile()
    t_compile = time.perf_counter() - t0
  if not per_step:
    return (*compiled[k](state, setup.device_data, xs), t_compile)
  ms = []
  for j in range(k):
    state, stopped, m = compiled[1](state, setup.device_data, xs[j:j + 1])
    ms.append(m)
    if not skip and bool(stopped):  # frozen at the last good state; the caller reports it
      break
  return state, stopped, jax.tree.map(lambda *a: jnp.concatenate(a), *ms), t_compile


def _leaf_sharding(setup: Setup, a):
  """A state leaf's sharding: split on its leading seed axis when the mesh splits seeds."""
  if setup.split == "seeds" and getattr(a, "ndim", 0) >= 1:
    return sharding_lib.batch_sharded(setup.mesh, a.ndim, axis=0)
  return sharding_lib.replicated(setup.mesh)


def _check_skips(state, config, step):
  """Stops a skip-mode run whose last `max_consecutive_skips` updates were all skipped."""
  limit = config.get("max_consecutive_skips", 100)
  run = int(np.max(np.asarray(state.opt_state.notfinite_count)))
  if run >= limit:
    raise NonFiniteError(
        f"{run} consecutive updates skipped as non-finite up to step {step} "
        f"(config.max_consecutive_skips={limit}); the run cannot recover")


def train_and_evaluate(config, workdir: str, *, model=None, tx=None, data: dict | None = None,
                       memo: MutableMapping | None = None) -> dict:
  """Trains `config.num_seeds` seeds of `config` and returns the summary dict.

  Resumes from ``workdir/checkpoints`` when present (same config required).
  See `experiments/configs/default.py` for the fields. `model`, `tx`, `data`:
  a caller's flax module, optax transformation and data dict (the format of
  `load_data`) instead of those the config names (see `stable_training.train.fit`).
  `memo`: a mapping the caller keeps across runs (e.g. a `BoundedMemo` held by a
  learning-rate sweep) in which each seed's LSC pre-training is kept, so runs
  that re-initialize the same seeds pre-train them once; None: nothing is kept
  past this run. A hit equals a fresh pre-training (it is deterministic).

  Returns:
    {'final': {'train_loss', 'test_loss', 'test_accuracy' (classification),
     'val_*' (with a validation split), ...: {'per_seed', 'mean', 'std'}},
     'best' (with a validation split), 'history', 'steps_per_sec',
     'compile_seconds', 'dataset', 'layer_names', 'info'}.

  Raises:
    ConfigError: invalid config (nothing written).
    WorkdirConfigMismatch: workdir holds another config's run.
    NonFiniteError: non-finite loss/gradient with ``on_nonfinite='stop'``.
    WorkdirBusy: another process is running in `workdir`.
    Preempted: SIGTERM/SIGINT (a checkpoint saved at the step it names).
  """
  given = tuple(g for g, v in (("model", model), ("optimizer", tx), ("dataset", data)) if v is not None)
  return run_resolved(resolve(config, given=given), workdir, model=model, tx=tx, data=data, memo=memo)


def run_resolved(config, workdir: str, *, model=None, tx=None, data: dict | None = None,
                 memo: MutableMapping | None = None) -> dict:
  """`train_and_evaluate` of a config `resolve` accepted (not checked again): data, build, the host loop."""
  d = load_data(config) if data is None else data
  setup = build(config, d, model=model, tx=tx)
  return host_loop.run(_Supervised(config, d, setup, workdir, memo), workdir)


class _Supervised(host_loop.Pieces):
  """The supervised trainer's pieces of the host loop (`host_loop.Pieces`): a `Setup`'s compiled chunk."""
  # Parts of summary.json that follow from metrics.jsonl alone (speed and info do not).
  from_records = ("final", "history", "best", "lsc", "dataset", "layer_names")

  def __init__(self, config, d, setup: Setup, workdir: str, memo: MutableMapping | None):
    self.config, self.d, self.setup, self.workdir, self.memo = config, d, setup, workdir, memo
    self.defaults = config_lib.schema_defaults(config)
    self.num_steps = setup.num_steps
    self.progress = config.progress == "auto"
    self.skip = config.on_nonfinite == "skip"
    self.per_step = config.get("step_loop", "scan") == "host"   # conv nets on XLA:CPU (see make_chunk_fn)
    self.next_stop, self.is_eval, self.is_checkpoint = _stops(config, d, setup.num_steps)
    self.compiled = {}
    self.diag = None
    params = jax.eval_shape(lambda x: setup.model.init(jax.random.PRNGKey(0), x)["params"],
                            jnp.asarray(d["x_test"][:1]))   # one seed's, abstract
    self.layer_names = layer_names(params)
    self.info = {**d["info"], "num_params": int(sum(np.prod(a.shape) for a in jax.tree.leaves(params))),
                 "devices": int(setup.mesh.devices.size), "mesh_splits": setup.split}

  def init(self):
    return init_state(self.setup.model, self.setup.tx, self.setup.seeds, jnp.asarray(self.d["x_test"][:1]))

  def place(self, state):
    return jax.device_put(state, jax.tree.map(lambda a: _leaf_sharding(self.setup, a), state))

  def start(self, state, start_step, restored, writer):
    """LSC pre-training of a fresh state, then diagnostics of the initialization (G&B Fig. 6–7)."""
    if not restored and self.config.lsc.enabled:
      state, lsc_radii = _lsc_pretrain(self.setup.model, self.setup.tx, state, self.d, self.config, memo=self.memo,
                                       desc=os.path.basename(os.path.normpath(self.workdir)))
      writer.write({"step": 0, "kind": "lsc", **lsc_radii})
    state = self.place(state)
    if self.config.diagnostics.enabled:
      self.diag = _make_diagnostics(self.config, self.setup, self.workdir, start_step)
      if start_step == 0:  # before the first update
        self.diag(0, state.params, self.d)
    return state

  def chunk(self, state, step, k):
    state, stopped, m, tc = _run_chunk(self.setup, self.compiled, state, step, k, self.per_step, self.skip)
    return state, (stopped, jax.device_get(m)), tc

  def check(self, state, out, kept):
    if bool(out[0]):
      raise NonFiniteError(_nonfinite_message(int(np.asarray(state.step)[0]), state, self.setup, kept()))

  def record(self, step, state, out, writer):
    rec = _train_record(step, out[1], state if self.skip else None)
    if self.is_eval(step):
      rec.update(_eval_record(self.setup, state, self.d))
    if self.diag is not None and step % self.config.diagnostics.every == 0:
      self.diag(step, state.params, self.d)
      if writer.tb is not None:
        writer.tb.histograms(step, jax.tree.map(lambda a: a[0], state.params))
    return rec

  def status(self, rec):
    return f"loss={rec['train_loss']['mean']:.4f}"

  def note(self, rec):
    held = [f"{k}={v['mean']:.4f}" for k, v in rec.items() if k.startswith(("test_", "val_"))]
    return f"step {rec['step']}: " + " ".join(held) if held else None

  def after_chunk(self, state, step):
    if self.skip:
      _check_skips(state, self.config, step)

  def summarize(self, records, timing, previous):
    nan = float("nan")
    if timing is None:  # a finished run: its speed and info as its summary has them
      return summarize(records, self.d["name"], self.layer_names, previous.get("steps_per_sec", nan),
                       previous.get("compile_seconds", nan), previous.get("info", self.info))
    speed = timing.run_steps / timing.run_seconds if timing.run_seconds else nan
    return summarize(records, self.d["name"], self.layer_names, speed, timing.compile_seconds, self.info)


def _nonfinite_message(bad_step, state, setup: Setup, kept: int | None) -> str:
  """Names the step and the first parameter whose gradient (or update) is not finite.

  `state` is the last good state, so re-running its step on the host finds
  the culprit without having stored anything extra. `kept`: the step of the
  last checkpoint (None: none).
  """
  grad = jax.jit(jax.value_and_grad(lambda p, b: setup.objective(p, b, None)[0]))
  hint = ((f"; kept the last good checkpoint (step {kept})" if kept is not None else "; no checkpoint was saved")
          + "; config.on_nonfinite='skip' skips such updates instead")
  for i, s in enumerate(setup.seeds):
    params = jax.tree.map(lambda a: a[i], state.params)
    batch = setup.host_batch(int(s), bad_step)
    loss, g = grad(params, batch)
    where = f"at step {bad_step + 1} (seed {int(s)})"
    path = first_nonfinite_path(g)
    if not bool(jnp.isfinite(loss)):
      return f"non-finite loss={float(loss)} {where}" + (f", first parameter: {path}" if path else "") + hint
    if path is not None:
      return f"non-finite gradient {where}, first parameter: {path}" + hint
    opt_state = jax.tree.map(lambda a: a[i], state.opt_state)
    grad_fn = lambda p, *_, b=batch: jax.grad(lambda q: setup.objective(q, b, None)[0])(p)
    updates, _ = optax.with_extra_args_support(setup.tx).update(g, opt_state, params, grad_fn=grad_fn)
    path = first_nonfinite_path(updates)
    if path is not None:
      return f"non-finite update {where} (gradient finite), first parameter: {path}" + hint
  return f"non-finite loss or gradient at step {bad_step + 1}" + hint


class BoundedMemo(collections.OrderedDict):
  """A least-recently-used mapping holding at most `max_bytes` of array data.

  A memo the caller owns and passes to `train_and_evaluate` (``memo=``): a
  sweep that re-initializes the same seeds (e.g. over learning rates) keeps
  one, so each (model, params, inputs, config.lsc, key) is LSC pre-trained
  once. Pre-training is deterministic in that key, so a hit returns exactly
  what a fresh pre-training would.
  """

  def __init__(self, max_bytes: int = 512 * 2**20):
    super().__init__()
    self.max_bytes = int(max_bytes)

  def __getitem__(self, key):
    value = super().__getitem__(key)
    self.move_to_end(key)
    return value

  def __setitem__(self, key, value):
    super().__setitem__(key, value)
    self.move_to_end(key)
    size = lambda v: sum(int(getattr(a, "nbytes", 0)) for a in jax.tree.leaves(v))
    while len(self) > 1 and sum(size(v) for v in self.values()) > self.max_bytes:
      self.popitem(last=False)  # the oldest; the newest entry is kept whatever its size


def _lsc_pretrain(model, tx, state, d, config, memo=None, desc=None):
  """LSC pre-training (Herranz-Celotti & Rouat) of every seed before training.

  Any model that declares its transition Jacobians (`stable_training.lsc.supports`).
  `memo`: an optional mapping the caller keeps across runs (e.g. a learning-rate
  sweep re-initializing the same seeds) so each (model, params, inputs,
  config.lsc, key) is pre-trained once; the compiled programs are reused across
  seeds and runs by `jax.jit` itself.
  """
  from stable_training import lsc as lsc_lib
  x_src = d["x_train"] if d["x_train"] is not None else d["x_test"]
  xb = jnp.asarray(x_src[:config.batch_size])
  new_params, before, after = [], [], []
  bar = rec_lib.Progress(config.num_seeds, 0, config.progress == "auto",
                         desc=f"{desc} LSC ({config.lsc.steps} steps per seed)" if desc else "LSC", unit="seed")
  for i in range(config.num_seeds):
    params = jax.tree.map(lambda a: a[i], state.params)
    p, radii = lsc_lib.pretrain_from_config(model, params, xb, config.lsc,
                                            jax.random.PRNGKey(int(config.seed) + i), memo=memo)
    new_params.append(p)
    before.append(radii["before"])
    after.append(radii["after"])
    radius = lambda r: float(np.mean(np.concatenate([np.ravel(np.asarray(v)) for k, v in r.items()
                                                     if k in ("depth", "time")] or [np.zeros(1)])))
    bar.update(i + 1, 1, f"mean radius {radius(radii['before']):.3f} -> {radius(radii['after']):.3f}")
  bar.close()
  params = _stack(new_params)
  state = state.replace(params=params, opt_state=jax.vmap(tx.init)(params))
  to_py = lambda r: jax.tree.map(lambda a: np.asarray(a).tolist(), r)
  return state, {"lsc_before": to_py(before), "lsc_after": to_py(after)}


def _make_diagnostics(config, setup: Setup, workdir, start_step: int = 0):
  """Per-layer monitoring at step 0 and every `diagnostics.every` steps (Glorot & Bengio 2010).

  A separate compiled function, traced only when enabled: the train chunk is
  the same program with diagnostics on or off. Records past `start_step` (a
  killed run's, beyond the checkpoint it resumes from) are dropped first, so
  each step is stored once.
  """
  from stable_training import diagnostics as diag_lib
  writer = diag_lib.DiagnosticsWriter(workdir) if jax.process_index() == 0 else None  # process 0 writes
  if writer is not None:
    writer.truncate(start_step)
  n = min(256, config.batch_size * 2)
  act = config.model.get("activation")   # None for a caller's module (bounds then from the data)
  loss_fn = losses_lib.mean_loss(config.get("loss", "cross_entropy"))
  # vmap over the seed axis of params; the monitoring batch is shared.
  per_seed = jax.jit(jax.vmap(
      lambda p, x, y: diag_lib.compute_diagnostics(setup.model, p, x, y, loss_fn, activation_name=act),
      in_axes=(0, None, None)))

  def run(step, params, d):
    x_src, y_src = (d["x_train"], d["y_train"]) if d["x_train"] is not None else (d["x_test"], d["y_test"])
    # On one device, not split like the training state (see `sharding.on_one_device`: deadlock otherwise).
    stats = jax.device_get(per_seed(sharding_lib.on_one_device(params), jnp.asarray(x_src[:n]),
                                    jnp.asarray(y_src[:n])))
    for i in range(config.num_seeds if writer is not None else 0):
      writer.write(step, jax.tree.map(lambda a: a[i], stats), seed=int(config.seed) + i)
  return run
