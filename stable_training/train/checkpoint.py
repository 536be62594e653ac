"""Checkpoints (orbax) and the workdir's config guard.

A workdir holds ``config.json`` (the config that made it), ``checkpoints/``
(orbax, atomic: a save interrupted by SIGKILL leaves only a temporary folder
that is ignored), ``metrics.jsonl`` and ``summary.json``. Re-running the same
command resumes from the latest intact checkpoint; a different config is
refused.

Each checkpoint ``checkpoints/<step>/`` holds two orbax items: ``state`` (the
pytree) and ``checksums`` (JSON: sha256, shape and dtype of every array leaf,
computed on the host from the very arrays handed to orbax). Both are written
by one orbax save and committed together, so a checkpoint never exists without
its record. ``restore_latest`` verifies the restored arrays against it and
falls back to the previous checkpoint when the newest is damaged; damaged ones
are moved to ``checkpoints_damaged/`` so that the run can save those steps
again. A third item, ``config`` (JSON: the config and its sha256,
`config_record`), ties each checkpoint to the config that made it: a
checkpoint of another config is refused, and a workdir whose ``config.json``
is lost gets it back from its newest checkpoint (`check_or_write_config`).

A save is complete when `save` returns: a failed write (disk full, an
unwritable directory) is reported there as `CheckpointSaveError`, its
temporary folder removed and the earlier checkpoints left as they were.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging as std_logging
import math
import os
import re
import shutil
import sys
from typing import Any

from absl import logging
import jax
import numpy as np

ocp = ts = None   # orbax.checkpoint and tensorstore, imported by `_orbax` at the first checkpoint operation


def _orbax():
  """orbax.checkpoint, imported on first use: 0.17 s of every process's start-up otherwise, also of those
  that never checkpoint (a launcher refusing its flags, the check-up, the benchmarks).

  Orbax logs through absl while it is imported, and absl's first record configures Python's root
  logger (logging.basicConfig) when it has no handler yet: a handler held during the import keeps
  it from changing the process's logging.
  """
  global ocp, ts
  if ocp is None:
    guard = std_logging.NullHandler()
    std_logging.root.addHandler(guard)
    try:
      import orbax.checkpoint as ocp_module
      import tensorstore as ts_module
    finally:
      std_logging.root.removeHandler(guard)
    ocp, ts = ocp_module, ts_module
  return ocp


def _tensorstore():
  """tensorstore (orbax's storage layer), imported with orbax by `_orbax`."""
  _orbax()
  return ts

# Keys that may change between a run and its resumption: how long to train
# and how often to log/evaluate/save do not change what a step computes.
RESUMABLE_KEYS = frozenset({"num_steps", "log_every", "eval_every", "checkpoint_every",
                            "progress", "eval_batch_size", "step_loop", "scan_unroll"})


class WorkdirConfigMismatch(RuntimeError):
  """The workdir was made by a different config; it is never overwritten."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (one line: the step, the directory, the OS or orbax error)."""


class CheckpointMismatch(RuntimeError):
  """A checkpoint holds a state of another structure, shape or dtype than the run's.

  Not damage (the older checkpoints would differ the same way): the code that
  builds the state changed under an existing workdir.
  """


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_to_dict(config) -> dict:
  """A JSON-safe nested dict of a ConfigDict."""
  return json.loads(config.to_json_best_effort())


def _config_hash(flat: dict) -> str:
  """sha256 of a flattened config without the `RESUMABLE_KEYS` (what a step computes)."""
  kept = {k: v for k, v in flat.items() if k not in RESUMABLE_KEYS}
  return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def config_record(config) -> dict:
  """``{"sha256", "config"}``: what each checkpoint stores about the config that made it."""
  d = config_to_dict(config)
  return {"sha256": _config_hash(_flatten(d)), "config": d}


def config_diff(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
  """``config.KEY: old -> new`` for the keys (outside `RESUMABLE_KEYS`) that differ; [] when none.

  `defaults` (flat ``{"group.key": default}``): a key missing from `old` that
  `new` sets to its default is no difference (a key added to the package
  after the run began, at the default that keeps the old behaviour).
  """
  a, b = _flatten(old), _flatten(new)
  defaults = defaults or {}
  added_at_default = lambda k: k not in a and k in defaults and b.get(k) == defaults[k]
  diff = sorted(k for k in set(a) | set(b)
                if k not in RESUMABLE_KEYS and a.get(k) != b.get(k) and not added_at_default(k))
  return [f"config.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff]


def _read_json_dict(path: str) -> dict | None:
  """The JSON object at `path`; None when missing, unreadable or not an object."""
  try:
    with open(path) as f:
      out = json.load(f)
  except (OSError, ValueError):
    return None
  return out if isinstance(out, dict) else None


def _holds_a_run(workdir: str) -> bool:
  """Whether `workdir` holds records of a run: checkpoints, metrics or a summary."""
  ckpt = os.path.join(workdir, "checkpoints")
  steps = [n for n in os.listdir(ckpt) if n.isdigit()] if os.path.isdir(ckpt) else []
  return bool(steps) or any(os.path.exists(os.path.join(workdir, n)) for n in ("metrics.jsonl", "summary.json"))


def check_or_write_config(workdir: str, config, defaults: dict | None = None,
                          manager: ocp.CheckpointManager | None = None) -> bool:
  """Refuses a workdir made by another config; writes ``config.json`` otherwise.

  Returns True if the workdir already held this run (a resume). A missing or
  damaged ``config.json`` of a workdir that holds a run is taken back from
  the newest checkpoint's config record (via `manager`) and compared the same
  way; with no such record the workdir is refused (never resumed under a
  config it may not belong to). See `config_diff` for `defaults`.

  Raises:
    WorkdirConfigMismatch: naming the first differing keys, or the missing config.
  """
  path = os.path.join(workdir, "config.json")
  new = config_to_dict(config)
  old = _read_json_dict(path)
  restored_from = None
  if old is None and _holds_a_run(workdir):
    state = "damaged" if os.path.exists(path) else "missing"
    found = _latest_config_record(manager) if manager is not None else None
    if found is None:
      raise WorkdirConfigMismatch(
          f"workdir {workdir} holds a run but its config.json is {state} and no checkpoint records the "
          "config; use a new --workdir or put back its config.json")
    restored_from, old = found[0], found[1]["config"]
  if old is not None:
    diff = config_diff(old, new, defaults)
    if diff:
      where = f" (config of its checkpoint {restored_from}: config.json is lost)" if restored_from is not None else ""
      raise WorkdirConfigMismatch(
          f"workdir {workdir} holds a run of a different config{where} ({'; '.join(diff[:3])}); "
          "use a new --workdir or the original config")
    if restored_from is None:
      return True
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(old if restored_from is not None else new, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  if restored_from is not None:
    logging.warning("config.json of %s was lost: restored from checkpoint %d", workdir, restored_from)
  return restored_from is not None


_STATE = "state"
_SUMS = "checksums"
_CONFIG = "config"
_FORMAT = 1
DAMAGED_DIR = "checkpoints_damaged"


class _DropOrbaxInfo(std_logging.Filter):
  """Drops orbax's records below a level; orbax logs through absl's logger."""

  def __init__(self, level: int):
    super().__init__()
    self.level = level

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= self.level or f"{os.sep}orbax{os.sep}" not in record.pathname


_QUIET: _DropOrbaxInfo | None = None


def quiet_orbax(level: int = std_logging.WARNING) -> None:
  """Hides orbax's log records below `level` (default WARNING); other absl logs are kept.

  Orbax logs a dozen INFO lines per save through the shared ``absl`` logger
  (hundreds in a short run), so a filter on the record's source file is the
  only way to quiet it alone. Idempotent; the last call's level wins.
  """
  global _QUIET
  if _QUIET is None:
    _QUIET = _DropOrbaxInfo(level)
    std_logging.getLogger("absl").addFilter(_QUIET)
  _QUIET.level = level


def make_manager(workdir: str) -> ocp.CheckpointManager:
  """An orbax CheckpointManager on ``workdir/checkpoints`` keeping the last 2.

  Quiets orbax's INFO logs unless `quiet_orbax` was called already (then its
  level stays). Orbax removes the oldest checkpoint only after the newest one
  is committed, so an intact previous checkpoint exists while a save is in
  flight.
  """
  ocp = _orbax()
  if _QUIET is None:
    quiet_orbax()
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      item_names=(_STATE, _SUMS, _CONFIG),
      # Synchronous saves: `save` waits for every write anyway, and an async manager counts that wait
      # as "waiting for the previous save" at the next one (a spurious orbax warning on loaded machines).
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False))


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _path(path) -> str:
  return "/".join(_key_name(k) for k in path)


def _host(x) -> np.ndarray | None:
  """The leaf's full value on this host; None when this process holds only part of it."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if not x.sharding.is_fully_replicated:
        return None  # multi-process sharded: no process sees every byte
      x = x.addressable_data(0)
  return np.asarray(x)


def _leaf_record(x) -> dict:
  a = _host(x)
  if a is None:
    return {"sha256": None, "shape": list(x.shape), "dtype": str(x.dtype)}
  flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # no copy when already contiguous
  return {"sha256": hashlib.sha256(flat).hexdigest(), "shape": list(a.shape), "dtype": str(a.dtype)}


def checksum_record(state: Any) -> dict:
  """sha256, shape and dtype of every leaf of `state`, keyed by its path (e.g. ``params/Dense_0/kernel``).

  Hashes the leaves' bytes as copied to the host. A leaf sharded over several
  processes gets ``sha256: None`` (not checked).
  """
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return {"format": _FORMAT, "leaves": {_path(p): _leaf_record(x) for p, x in leaves}}


def save(manager: ocp.CheckpointManager, step: int, state: Any, config_rec: dict | None = None) -> None:
  """Saves `state` at `step` with its checksum record and `config_record`; complete on return.

  The record is computed here, synchronously, from the same arrays orbax
  copies to the host, and is written as a second item of the same checkpoint:
  it is committed with the arrays, never before or after. The save is awaited
  so that a failed write is reported at this step rather than at the next
  save or at exit.

  A disk too full for the state's bytes is refused before orbax writes
  anything: a write that fails midway leaves orbax's other writes pending on
  an event loop it has closed, and TensorStore reports each of them on stderr
  ("Exception ignored ... Event loop is closed") when it completes.

  Raises:
    CheckpointSaveError: the write failed or could not fit (ENOSPC); the step's
      temporary folder is removed, the earlier checkpoints are untouched.
  """
  ocp = _orbax()
  items = {_STATE: ocp.args.StandardSave(state), _SUMS: ocp.args.JsonSave(checksum_record(state))}
  if config_rec is not None:
    items[_CONFIG] = ocp.args.JsonSave(config_rec)
  try:
    _check_free_space(manager, state)
    manager.save(step, args=ocp.args.Composite(**items))
    manager.wait_until_finished()
    manager.check_for_errors()   # a writer thread's stored error, raised here rather than at close
    _check_committed(manager, step, list(items))
  except Exception as e:  # pylint: disable=broad-except  (orbax wraps OS errors in several types)
    try:
      manager.close()
    except Exception:  # pylint: disable=broad-except
      pass
    _join_orbax_threads()  # its other writer threads still run: let them end before removing their folder
    _remove_tmp(manager, step)
    raise CheckpointSaveError(f"cannot save checkpoint {step} in {manager.directory}: {_short(e)}") from None


def _check_committed(manager: ocp.CheckpointManager, step: int, names: list[str]) -> None:
  """Raises unless checkpoint `step` was committed with every item (a JSON item: its ``metadata`` file).

  Orbax's save can return while an item's writer thread failed (its error is
  then stored and re-raised only at ``manager.close()``, outside the save):
  the step is refused here instead, with that stored error when closing the
  manager yields one, and its incomplete folder removed.
  """
  root = _local_root(manager)
  if root is None:
    return
  folder = os.path.join(root, str(step))
  missing = [n for n in names
             if not os.path.isdir(os.path.join(folder, n))
             or (n != _STATE and not os.path.isfile(os.path.join(folder, n, "metadata")))]
  if not missing:
    return
  _join_orbax_threads()
  try:
    manager.close()  # re-raises the failed writer's error where orbax stored one
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  raise OSError(f"checkpoint {step} was committed without its item(s) {', '.join(missing)}")


def _check_free_space(manager: ocp.CheckpointManager, state: Any) -> None:
  """Raises ENOSPC when the checkpoints' file system has fewer free bytes than `state`'s arrays
  hold uncompressed (an upper bound of what orbax writes); no check where the space cannot be read."""
  need = sum(math.prod(shape) * np.dtype(dtype).itemsize
             for shape, dtype in map(_meta, jax.tree_util.tree_leaves(state)))
  try:
    free = shutil.disk_usage(str(manager.directory)).free
  except OSError:
    return
  if free < need:
    raise OSError(errno.ENOSPC, f"No space left on device (the state needs {need / 2**20:.1f} MiB, "
                  f"{free / 2**20:.1f} MiB free)")


def _join_orbax_threads(timeout: float = 60.0) -> None:
  """Waits (at most `timeout` s in all) for orbax's writer threads of a failed save to end.

  Threads still waiting for a signal of the failed save (e.g. "directory
  created", which never comes) are not waited for: they write nothing.
  """
  import threading
  import time
  frames = sys._current_frames()  # pylint: disable=protected-access

  def waits_for_signal(t):
    f = frames.get(t.ident)
    while f is not None:
      if f.f_code.co_name == "wait_for_signals":
        return True
      f = f.f_back
    return False
  deadline = time.monotonic() + timeout
  for t in threading.enumerate():
    if (t is not threading.current_thread() and type(t).__module__.startswith("orbax")
        and not waits_for_signal(t)):
      t.join(max(0.0, deadline - time.monotonic()))


def _local_root(manager: ocp.CheckpointManager) -> str | None:
  """The checkpoints folder where this process is the primary one and it is a local directory, else None
  (another process's, or e.g. ``gs://``, which `os.path` cannot read: neither checked nor cleaned here)."""
  root = str(manager.directory)
  return root if jax.process_index() == 0 and os.path.isdir(root) else None


def _remove_tmp(manager: ocp.CheckpointManager, step: int) -> None:
  """Removes the temporary folder(s) a failed save of `step` left (``<step>.orbax-checkpoint-tmp*``)."""
  root = _local_root(manager)
  if root is None:
    return
  for name in os.listdir(root):
    if name.startswith(f"{step}.orbax-checkpoint-tmp"):
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _latest_config_record(manager: ocp.CheckpointManager) -> tuple[int, dict] | None:
  """(step, config record) of the newest checkpoint that has a readable one, or None."""
  manager.reload()
  for step in sorted(manager.all_steps(), reverse=True):
    rec = _config_of(manager, step)
    if rec is not None:
      return step, rec
  return None


def _config_of(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """Checkpoint `step`'s config record; None for a checkpoint without one (older format) or unreadable."""
  ocp = _orbax()
  if not os.path.isdir(os.path.join(str(manager.directory), str(step), _CONFIG)):
    return None
  try:
    rec = manager.restore(step, args=ocp.args.Composite(**{_CONFIG: ocp.args.JsonRestore()}))[_CONFIG]
  except Exception:  # pylint: disable=broad-except
    return None
  return rec if isinstance(rec, dict) and isinstance(rec.get("config"), dict) else None


def _short(e: BaseException) -> str:
  """One line for an orbax error; prefers TensorStore's status line (``OUT_OF_RANGE: ...``) from the cause chain."""
  chain = []
  while e is not None and len(chain) < 8:
    chain.append(e)
    e = e.__cause__
  lines = [(c, (str(c).strip().splitlines() or [""])[0]) for c in chain]
  c, msg = next(((c, m) for c, m in lines if re.match(r"[A-Z_]{4,}: ", m)), lines[0])
  msg = msg[:200] + ("..." if len(msg) > 200 else "")
  return f"{type(c).__name__}: {msg}" if msg else type(c).__name__


def _meta(x) -> list:
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    x = np.asarray(x)
  return [list(x.shape), str(np.dtype(x.dtype))]


def _check_structure(step: int, record: dict, like: Any) -> None:
  want = {_path(p): _meta(x) for p, x in jax.tree_util.tree_flatten_with_path(like)[0]}
  have = {k: [v["shape"], v["dtype"]] for k, v in record["leaves"].items()}
  for k in sorted(set(want) | set(have)):
    if want.get(k) != have.get(k):
      def fmt(v):
        return "absent" if v is None else f"{v[1]}{v[0]}"
      raise CheckpointMismatch(
          f"checkpoint {step} does not fit this run's state: {k} is {fmt(have.get(k))} there, "
          f"{fmt(want.get(k))} here (the code that builds the state changed?); use a new --workdir")


def _verify(record: dict, state: Any) -> str | None:
  """The first leaf whose restored bytes differ from the record, or None."""
  for p, x in jax.tree_util.tree_flatten_with_path(state)[0]:
    want = record["leaves"].get(_path(p))
    if want is None:
      return _path(p)
    if want["sha256"] is not None and _leaf_record(x)["sha256"] != want["sha256"]:
      return _path(p)
  return None


def _unreadable_array(item_dir: str) -> str | None:
  """The first array of the orbax item in `item_dir` that TensorStore cannot read and decode (its name
  and error, one line), or None when every one reads.

  Reads each array whole, one at a time, each read awaited to its end. Orbax
  (0.12.8) reads all arrays concurrently on an event loop it closes as soon as
  one read fails: the others are then abandoned mid-flight, and Python prints
  each at random later times ("Exception ignored in <coroutine
  _read_array_index_and_device_put>" with a 60-line TensorStore spec;
  "Event loop is closed" from TensorStore's completion callbacks). Checked
  first, a damaged checkpoint never reaches orbax's read; an intact one is
  read twice (the second time from the page cache).
  """
  ts = _tensorstore()
  root = os.path.abspath(item_dir)
  if os.path.exists(os.path.join(root, "manifest.ocdbt")):  # orbax's default layout: one OCDBT database
    base = {"driver": "ocdbt", "base": f"file://{root}/"}
  else:
    base = {"driver": "file", "path": root + "/"}
  context = ts.Context()
  try:
    keys = ts.KvStore.open(base, context=context).result().list().result()
  except Exception as e:  # pylint: disable=broad-except  (TensorStore raises ValueError and others)
    return _short(e)
  for key in sorted(k.decode() for k in keys):
    for marker, driver in (("/.zarray", "zarr"), ("/zarr.json", "zarr3")):
      if not key.endswith(marker):
        continue
      name = key[:-len(marker)]
      spec = {"driver": driver, "kvstore": {**base, "path": name + "/"}, "fill_missing_data_reads": False}
      try:
        ts.open(spec, open=True, read=True, context=context).result().read().result()
      except Exception as e:  # pylint: disable=broad-except
        return f"{name}: {_short(e)}"
  return None


def _quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves a damaged step out of orbax's directory: orbax would not save that step again otherwise."""
  root = os.path.dirname(os.path.abspath(str(manager.directory)))
  dest = os.path.join(root, DAMAGED_DIR, str(step))
  n = 1
  while os.path.exists(dest):
    dest = os.path.join(root, DAMAGED_DIR, f"{step}.{n}")
    n += 1
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(os.path.join(str(manager.directory), str(step)), dest)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"stable_training:quarantine:{step}")
  return dest


def _problem(manager: ocp.CheckpointManager, step: int, like: Any, abstract: Any) -> tuple[str | None, Any]:
  """(None, state) if checkpoint `step` restores and matches its record, else (what is wrong, None)."""
  ocp = _orbax()
  try:
    record = manager.restore(step, args=ocp.args.Composite(**{_SUMS: ocp.args.JsonRestore()}))[_SUMS]
  except Exception as e:  # pylint: disable=broad-except
    return f"no readable checksum record: {_short(e)}", None
  if not isinstance(record, dict) or not isinstance(record.get("leaves"), dict):
    return "no readable checksum record", None
  _check_structure(step, record, like)
  bad = _unreadable_array(os.path.join(str(manager.directory), str(step), _STATE))
  if bad is not None:  # orbax is never handed arrays it would fail to read (see `_unreadable_array`)
    return f"unreadable: {bad}", None
  try:
    state = manager.restore(step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract)}))[_STATE]
  except Exception as e:  # pylint: disable=broad-except
    return f"unreadable: {_short(e)}", None
  bad = _verify(record, state)
  if bad is not None:
    return f"checksum mismatch in {bad}", None
  return None, state


def restore_latest(manager: ocp.CheckpointManager, like: Any, *, quarantine: bool = True,
                   config_rec: dict | None = None, defaults: dict | None = None,
                   max_step: int | None = None) -> tuple[int, Any] | None:
  """(step, state) of the newest intact checkpoint, restored with `like`'s structure, shapes and shardings.

  Tries checkpoints newest first. One that fails to restore (any orbax error:
  truncated or garbage data, missing ``_METADATA``), has no checksum record,
  or whose restored arrays differ from the record (a flipped bit) is reported
  in one warning line and, if `quarantine`, moved to
  ``workdir/checkpoints_damaged/<step>`` (so the resumed run can save that
  step again); the one before it is tried next. Returns None (start from
  scratch) if there is no checkpoint, or none is intact (with a warning).

  `max_step`: only checkpoints at or before it (e.g. the last step
  metrics.jsonl records). `config_rec` (`config_record` of the run): a
  checkpoint recording another config is refused (see `config_diff` for
  `defaults`).

  Raises:
    CheckpointMismatch: a checkpoint's record names leaves, shapes or dtypes
      other than `like`'s (not damage; nothing is moved).
    WorkdirConfigMismatch: a checkpoint was made by another config.
  """
  ocp = _orbax()
  manager.reload()  # the directory may have changed since the manager was made
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  damaged = []
  found = None
  done = False
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      if max_step is not None and step > max_step:
        continue
      if config_rec is not None:
        rec = _config_of(manager, step)
        diff = config_diff(rec["config"], config_rec["config"], defaults) if rec is not None else []
        if diff:
          raise WorkdirConfigMismatch(
              f"checkpoint {step} in {manager.directory} was made by a different config ({'; '.join(diff[:3])}); "
              "use a new --workdir or the original config")
      problem, state = _problem(manager, step, like, abstract)
      if problem is None:
        found = (step, state)
        break
      where = f"; moved to {_quarantine(manager, step)}" if quarantine else ""
      damaged.append(f"checkpoint {step} in {manager.directory} is damaged ({problem}){where}")
    done = True
  finally:
    if quarantine and damaged:
      manager.reload()
    if done:
      outcome = f"; using {found[0]}" if found else "; no intact checkpoint left, starting from scratch"
    else:
      outcome = ""
    for line in damaged:
      logging.warning("%s%s", line, outcome)
  return found
