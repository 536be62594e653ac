"""`train_and_evaluate(config, workdir)`: the one train engine every study uses.

Data flow: load (numpy) → model from the registry → optax chain from the
config → vmapped-over-seeds, scanned-over-steps compiled chunk, sharded over a
``data`` mesh axis → metrics.jsonl / summary.json / orbax checkpoints.

Multi-host: call ``jax.distributed.initialize()`` in every process before
this (``experiments.main --distributed``); the mesh then spans
``jax.devices()`` of all hosts and each host feeds the same global indices, so
the code path is identical to one CPU.
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
import numpy as np
import optax

from stable_training import config as config_lib
from stable_training import data as data_lib
from stable_training import models as models_lib
from stable_training import optim as optim_lib
from stable_training.train import checkpoint as ckpt_lib
from stable_training.train import sharding as sharding_lib
from stable_training.train.steps import (TrainState, cross_entropy, first_nonfinite_path,
                                         layer_names, make_chunk_fn, make_eval_step,
                                         make_objective, make_train_step)


class NonFiniteError(FloatingPointError):
  """Loss or gradient became NaN/Inf with ``on_nonfinite='stop'``."""


def _stats(values) -> dict:
  v = np.asarray(values, dtype=np.float64)
  return {"per_seed": v.tolist(), "mean": float(v.mean(axis=0).mean()) if v.ndim > 1 else float(v.mean()),
          "std": float(v.std())}


def load_data(config) -> dict[str, Any]:
  """Train/test arrays after subsetting, view and standardization (numpy)."""
  dc = config.dataset
  data_dir = dc.data_dir or None
  train = data_lib.load(dc.name, "train", data_dir=data_dir, seed=config.seed)
  test = data_lib.load(dc.name, "test", data_dir=data_dir, seed=config.seed)
  xtr, ytr, xte, yte = train.x, train.y, test.x, test.y
  if dc.num_train:
    xtr, ytr = xtr[:dc.num_train], ytr[:dc.num_train]
  if dc.num_test:
    xte, yte = xte[:dc.num_test], yte[:dc.num_test]
  if dc.get("standardize", True):
    xtr, xte = data_lib.standardize(xtr, xte)
  view_seed = dc.get("view_seed", 0)
  xtr = data_lib.apply_view(xtr, dc.view, seed=view_seed)
  xte = data_lib.apply_view(xte, dc.view, seed=view_seed)
  return {"x_train": np.asarray(xtr, np.float32), "y_train": np.asarray(ytr, np.int32),
          "x_test": np.asarray(xte, np.float32), "y_test": np.asarray(yte, np.int32),
          "num_classes": train.num_classes, "name": train.name}


def init_state(model, tx, seeds: np.ndarray, sample_x: jax.Array) -> TrainState:
  """Per-seed init, stacked on a leading seed axis: seed s ↦ PRNGKey(s)."""
  def one(seed):
    k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(k_init, sample_x)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), rng=k_run)
  # One compiled init called per seed, then stacked: vmapping threefry-based
  # initializers compiles several times slower on CPU than this.
  init_one = jax.jit(one)
  states = [init_one(jnp.uint32(s)) for s in seeds]
  return jax.tree.map(lambda *a: jnp.stack(a), *states)


def _read_metrics(path: str, upto_step: int | None) -> list[dict]:
  """Records of metrics.jsonl (those with step <= upto_step when given)."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:  # a line cut by a kill mid-write
        continue
      if upto_step is None or rec["step"] <= upto_step:
        out.append(rec)
  return out


def _rewrite_metrics(path: str, records: list[dict]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  os.replace(tmp, path)


class _Progress:
  """tqdm on a terminal, absl log lines otherwise."""

  def __init__(self, total, initial, enabled):
    self.bar = None
    if enabled and sys.stderr.isatty():
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step, n, text):
    if self.bar is not None:
      self.bar.update(n)
      self.bar.set_postfix_str(text)
    else:
      logging.info("step %d %s", step, text)

  def close(self):
    if self.bar is not None:
      self.bar.close()


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config.num_seeds` seeds of `config` and returns the summary dict.

  Resumes from ``workdir/checkpoints`` when present (same config required).
  See `experiments/configs/default.py` for the fields.

  Returns:
    {'final': {'test_accuracy'|'test_loss'|'train_loss'|'train_accuracy':
     {'per_seed', 'mean', 'std'}}, 'history': [...], 'steps_per_sec',
     'compile_seconds', 'dataset', 'layer_names', 'skipped_steps'}.

  Raises:
    ConfigError: invalid config (nothing written).
    WorkdirConfigMismatch: workdir holds another config's run.
    NonFiniteError: non-finite loss/gradient with ``on_nonfinite='stop'``.
  """
  config_lib.validate(config)
  d = load_data(config)
  seeds = config.seed + np.arange(config.num_seeds)
  model = models_lib.build_model(config.model, num_classes=d["num_classes"],
                                 input_shape=d["x_train"].shape[1:])
  tx = optim_lib.make_optimizer(config.optimizer)
  skip = config.on_nonfinite == "skip"
  if skip:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=np.iinfo(np.int32).max)
  grad_factory = functools.partial(optim_lib.make_grad_fn, config.optimizer)
  train_step = make_train_step(model, cross_entropy, tx, make_grad_fn=grad_factory)
  # scan_unroll = 0: a host loop over one-step programs. XLA:CPU runs convolutions
  # inside a while loop ≈ 5× slower (ConvNet, 8 seeds, batch 256: 5.7 s vs 1.2 s
  # per step), and fully unrolling K steps keeps every step's buffers alive
  # (a 30-step unrolled ConvNet chunk ran out of 24 GiB).
  host_loop = config.get("scan_unroll", 1) == 0
  chunk_fn = make_chunk_fn(train_step, stop_on_nonfinite=not skip,
                           unroll=config.get("scan_unroll", 1))

  mesh = sharding_lib.data_mesh()
  n_dev = mesh.devices.size
  if config.batch_size % n_dev:
    raise config_lib.ConfigError(
        f"config.batch_size={config.batch_size}: must be divisible by the {n_dev} devices of the data mesh")
  n_train = d["x_train"].shape[0]
  if config.batch_size > n_train:
    raise config_lib.ConfigError(
        f"config.batch_size={config.batch_size}: must be <= the {n_train} training examples")

  resumed = ckpt_lib.check_or_write_config(workdir, config)
  repl = sharding_lib.replicated(mesh)
  x_all = jax.device_put(d["x_train"], repl)
  y_all = jax.device_put(d["y_train"], repl)
  x_test = jax.device_put(d["x_test"], repl)
  y_test = jax.device_put(d["y_test"], repl)

  state = init_state(model, tx, seeds, jnp.asarray(d["x_train"][:1]))
  manager = ckpt_lib.make_manager(workdir)
  restored = ckpt_lib.restore_latest(manager, state) if resumed else None
  lsc_radii = None
  if restored is not None:
    start_step, state = restored
    logging.info("resumed %s at step %d", workdir, start_step)
  else:
    start_step = 0
    if config.lsc.enabled:
      state, lsc_radii = _lsc_pretrain(model, tx, state, d, config)
  state = jax.device_put(state, repl)

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  records = _read_metrics(metrics_path, start_step)
  _rewrite_metrics(metrics_path, records)  # drop records past the checkpoint
  if lsc_radii is not None:
    records.append({"step": 0, "kind": "lsc", **lsc_radii})
    _append(metrics_path, records[-1])

  diag = _make_diagnostics(config, model, workdir) if config.diagnostics.enabled else None
  eval_fn = jax.jit(make_eval_step(model, batch_size=min(config.eval_batch_size, d["x_test"].shape[0])))
  jitted_chunk = jax.jit(chunk_fn, donate_argnums=(0,))
  compiled = {}
  compile_seconds = 0.0
  lnames = layer_names(jax.tree.map(lambda a: a[0], state.params))

  def run_chunk(state, step, k):
    nonlocal compile_seconds
    idx = np.stack([np.stack([data_lib.batch_indices(n_train, config.batch_size, seed=int(s), step=step + j)
                              for s in seeds]) for j in range(k)]).astype(np.int32)
    idx = jax.device_put(idx, sharding_lib.batch_sharded(mesh, idx.ndim, axis=2))
    kc = 1 if host_loop else k
    if kc not in compiled:
      t0 = time.perf_counter()
      compiled[kc] = jitted_chunk.lower(state, x_all, y_all, idx[:kc]).compile()
      compile_seconds += time.perf_counter() - t0
    if not host_loop:
      return compiled[k](state, x_all, y_all, idx)
    ms = []
    for j in range(k):
      state, stopped, m = compiled[1](state, x_all, y_all, idx[j:j + 1])
      ms.append(m)
      if not skip and bool(stopped):  # frozen at the last good state; the caller reports it
        break
    return state, stopped, jax.tree.map(lambda *a: jnp.concatenate(a), *ms)

  progress = _Progress(config.num_steps, start_step, config.progress == "auto")
  step = start_step
  run_time, run_steps = 0.0, 0
  try:
    while step < config.num_steps:
      k = min(config.log_every, config.num_steps - step)
      t0 = time.perf_counter()
      prev_state = state if not skip else None
      state, stopped, m = run_chunk(state, step, k)
      m = jax.device_get(m)
      dt = time.perf_counter() - t0
      if step > start_step or len(compiled) > 1:
        run_time += dt
        run_steps += k
      if bool(stopped):
        bad_step = int(np.asarray(state.step)[0])
        raise NonFiniteError(_nonfinite_message(bad_step, state, model, tx, d, seeds, config))
      del prev_state
      step += k
      rec = _train_record(step, m, state if skip else None)
      if step % config.eval_every == 0 or step == config.num_steps:
        tl, ta = jax.device_get(eval_fn(state.params, x_test, y_test))
        rec["test_loss"], rec["test_accuracy"] = _stats(tl), _stats(ta)
      if diag is not None and (step % config.diagnostics.every == 0):
        diag(step, state.params, d)
      records.append(rec)
      _append(metrics_path, rec)
      progress.update(step, k, f"loss={rec['train_loss']['mean']:.4f}")
      if step % config.checkpoint_every == 0 or step == config.num_steps:
        ckpt_lib.save(manager, step, state)
  finally:
    progress.close()
    manager.wait_until_finished()
    manager.close()

  summary = _summary(records, d["name"], lnames, run_steps / run_time if run_time else float("nan"),
                     compile_seconds)
  tmp = os.path.join(workdir, "summary.json.tmp")
  with open(tmp, "w") as f:
    json.dump(summary, f, indent=2)
  os.replace(tmp, os.path.join(workdir, "summary.json"))
  return summary


def _append(path, rec):
  with open(path, "a") as f:
    f.write(json.dumps(rec) + "\n")


def _train_record(step, m, state) -> dict:
  """Means over the chunk's K steps, per seed."""
  rec = {"step": step, "kind": "train"}
  for key, name in (("loss", "train_loss"), ("accuracy", "train_accuracy"),
                    ("grad_norm", "grad_norm"), ("update_norm", "update_norm"),
                    ("update_var", "update_var")):
    rec[name] = _stats(np.mean(m[key], axis=0))
  if m["loss"].shape[0] > 1:  # loss smoothness: mean |L_k − L_{k−1}| within the chunk
    rec["loss_abs_diff"] = _stats(np.mean(np.abs(np.diff(m["loss"], axis=0)), axis=0))
  lg = np.mean(m["layer_grad_norms"], axis=0)  # [S, L]
  rec["layer_grad_norms"] = {"per_seed": lg.tolist(), "mean": lg.mean(0).tolist()}
  if state is not None:  # optax.apply_if_finite counts skipped updates
    rec["skipped_steps"] = np.asarray(state.opt_state.total_notfinite).tolist()
  return rec


def _summary(records, name, lnames, steps_per_sec, compile_seconds) -> dict:
  train = [r for r in records if r.get("kind") == "train"]
  evals = [r for r in train if "test_accuracy" in r]
  final = {}
  if train:
    last = train[-1]
    final["train_loss"] = last["train_loss"]
    final["train_accuracy"] = last["train_accuracy"]
    final["layer_grad_norms"] = last["layer_grad_norms"]
    if "skipped_steps" in last:
      final["skipped_steps"] = last["skipped_steps"]
  if evals:
    final["test_loss"] = evals[-1]["test_loss"]
    final["test_accuracy"] = evals[-1]["test_accuracy"]
  history = [{"step": r["step"], "train_loss": r["train_loss"],
              **({"test_loss": r["test_loss"], "test_accuracy": r["test_accuracy"]}
                 if "test_accuracy" in r else {})} for r in train]
  lsc = [r for r in records if r.get("kind") == "lsc"]
  out = {"final": final, "history": history, "dataset": name, "layer_names": lnames,
         "steps_per_sec": steps_per_sec, "compile_seconds": compile_seconds}
  if lsc:
    out["lsc"] = {k: v for k, v in lsc[-1].items() if k not in ("step", "kind")}
  return out


def _nonfinite_message(bad_step, state, model, tx, d, seeds, config) -> str:
  """Names the step and the first parameter whose gradient (or update) is not finite.

  `state` is the last good state, so re-running its step on the host finds
  the culprit without having stored anything extra.
  """
  objective = make_objective(model, cross_entropy)
  grad = jax.jit(jax.value_and_grad(lambda p, b: objective(p, b, None)[0]))
  hint = "; kept the last good checkpoint; config.on_nonfinite='skip' skips such updates instead"
  for i, s in enumerate(seeds):
    idx = data_lib.batch_indices(d["x_train"].shape[0], config.batch_size, seed=int(s), step=bad_step)
    params = jax.tree.map(lambda a: a[i], state.params)
    batch = (jnp.asarray(d["x_train"][idx]), jnp.asarray(d["y_train"][idx]))
    loss, g = grad(params, batch)
    where = f"at step {bad_step + 1} (seed {int(s)})"
    if not bool(jnp.isfinite(loss)):
      path = first_nonfinite_path(g)
      return f"non-finite loss={float(loss)} {where}" + (f", first parameter: {path}" if path else "") + hint
    path = first_nonfinite_path(g)
    if path is not None:
      return f"non-finite gradient {where}, first parameter: {path}" + hint
    opt_state = jax.tree.map(lambda a: a[i], state.opt_state)
    updates, _ = tx.update(g, opt_state, params)
    path = first_nonfinite_path(updates)
    if path is not None:
      return f"non-finite update {where} (gradient finite), first parameter: {path}" + hint
  return f"non-finite loss or gradient at step {bad_step + 1}" + hint


def _lsc_pretrain(model, tx, state, d, config):
  """LSC pre-training (Herranz-Celotti & Rouat) of every seed before training."""
  from stable_training import lsc as lsc_lib
  xb = jnp.asarray(d["x_train"][:config.batch_size])
  new_params, before, after = [], [], []
  for i in range(config.num_seeds):
    params = jax.tree.map(lambda a: a[i], state.params)
    p, radii = lsc_lib.pretrain_from_config(model, params, xb, config.lsc,
                                            jax.random.PRNGKey(int(config.seed) + i))
    new_params.append(p)
    before.append(radii["before"])
    after.append(radii["after"])
  params = jax.tree.map(lambda *a: jnp.stack(a), *new_params)
  state = state.replace(params=params, opt_state=jax.vmap(tx.init)(params))
  to_py = lambda r: jax.tree.map(lambda a: np.asarray(a).tolist(), r)
  return state, {"lsc_before": to_py(before), "lsc_after": to_py(after)}


def _make_diagnostics(config, model, workdir):
  """Per-layer monitoring every `diagnostics.every` steps (Glorot & Bengio 2010).

  A separate compiled function, traced only when enabled: the train chunk is
  the same program with diagnostics on or off.
  """
  from stable_training import diagnostics as diag_lib
  writer = diag_lib.DiagnosticsWriter(workdir)
  n = min(256, config.batch_size * 2)
  act = config.model.activation
  # vmap over the seed axis of params; the monitoring batch is shared.
  per_seed = jax.jit(jax.vmap(
      lambda p, x, y: diag_lib.compute_diagnostics(model, p, x, y, cross_entropy, activation_name=act),
      in_axes=(0, None, None)))

  def run(step, params, d):
    stats = jax.device_get(per_seed(params, jnp.asarray(d["x_train"][:n]),
                                    jnp.asarray(d["y_train"][:n])))
    for i in range(config.num_seeds):
      writer.write(step, jax.tree.map(lambda a: a[i], stats), seed=int(config.seed) + i)
  return run
