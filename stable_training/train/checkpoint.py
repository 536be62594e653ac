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
again.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging as std_logging
import os
import re
import sys
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

# Keys that may change between a run and its resumption: how long to train
# and how often to log/evaluate/save do not change what a step computes.
RESUMABLE_KEYS = frozenset({"num_steps", "log_every", "eval_every", "checkpoint_every",
                            "progress", "eval_batch_size", "step_loop", "scan_unroll"})


class WorkdirConfigMismatch(RuntimeError):
  """The workdir was made by a different config; it is never overwritten."""


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


def check_or_write_config(workdir: str, config, defaults: dict | None = None) -> bool:
  """Refuses a workdir made by another config; writes ``config.json`` otherwise.

  Returns True if the workdir already held this run (a resume). `defaults`
  (flat ``{"group.key": default}``): a key missing from the stored config
  that the new one sets to its default is no difference — a key added to the
  package after the run began, at the default that keeps the old behaviour.

  Raises:
    WorkdirConfigMismatch: naming the first differing keys.
  """
  path = os.path.join(workdir, "config.json")
  new = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    a, b = _flatten(old), _flatten(new)
    defaults = defaults or {}
    added_at_default = lambda k: k not in a and k in defaults and b.get(k) == defaults[k]
    diff = sorted(k for k in set(a) | set(b)
                  if k not in RESUMABLE_KEYS and a.get(k) != b.get(k) and not added_at_default(k))
    if diff:
      shown = "; ".join(f"config.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:3])
      raise WorkdirConfigMismatch(
          f"workdir {workdir} holds a run of a different config ({shown}); "
          "use a new --workdir or the original config")
    return True
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(new, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return False


_STATE = "state"
_SUMS = "checksums"
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
  if _QUIET is None:
    quiet_orbax()
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      item_names=(_STATE, _SUMS),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


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


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Saves `state` at `step` with its checksum record (asynchronously; atomic on disk).

  The record is computed here, synchronously, from the same arrays orbax
  copies to the host before this returns, and is written as a second item of
  the same checkpoint: it is committed with the arrays, never before or after.
  """
  record = checksum_record(state)
  manager.save(step, args=ocp.args.Composite(**{
      _STATE: ocp.args.StandardSave(state), _SUMS: ocp.args.JsonSave(record)}))


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


_LEFTOVERS_HIDDEN = False


def _is_orbax_read_leftover(u) -> bool:
  code = getattr(u.object, "cr_code", None)
  if code is not None:  # an abandoned read coroutine of orbax
    return f"{os.sep}orbax{os.sep}" in code.co_filename
  tb = u.exc_traceback  # TensorStore's completion callback on orbax's closed event loop
  return (u.object is None and isinstance(u.exc_value, RuntimeError) and tb is not None
          and str(u.exc_value) == "Event loop is closed" and tb.tb_frame.f_code.co_name == "call_soon_threadsafe")


def _hide_orbax_read_leftovers() -> None:
  """From now on, drops the errors Python prints for the reads orbax abandoned after a failed one.

  When one array of a damaged checkpoint fails to read, orbax raises that
  error (reported in our one line) and abandons the other reads: their
  coroutines die unawaited and TensorStore's callbacks hit the closed event
  loop, and Python prints each ("Exception ignored in <coroutine ...>", a
  60-line TensorStore spec apiece; "Event loop is closed") at random later
  times. Only those two kinds are dropped; installed once, on the first failed
  restore, for the rest of the process.
  """
  global _LEFTOVERS_HIDDEN
  if _LEFTOVERS_HIDDEN:
    return
  prev = sys.unraisablehook

  def hook(u):
    if not _is_orbax_read_leftover(u):
      prev(u)

  sys.unraisablehook = hook
  _LEFTOVERS_HIDDEN = True


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
  try:
    record = manager.restore(step, args=ocp.args.Composite(**{_SUMS: ocp.args.JsonRestore()}))[_SUMS]
  except Exception as e:  # pylint: disable=broad-except
    return f"no readable checksum record: {_short(e)}", None
  if not isinstance(record, dict) or not isinstance(record.get("leaves"), dict):
    return "no readable checksum record", None
  _check_structure(step, record, like)
  try:
    state = manager.restore(step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract)}))[_STATE]
  except Exception as e:  # pylint: disable=broad-except
    _hide_orbax_read_leftovers()
    gc.collect()  # most leftovers die now rather than amid training
    return f"unreadable: {_short(e)}", None
  bad = _verify(record, state)
  if bad is not None:
    return f"checksum mismatch in {bad}", None
  return None, state


def restore_latest(manager: ocp.CheckpointManager, like: Any, *,
                   quarantine: bool = True) -> tuple[int, Any] | None:
  """(step, state) of the newest intact checkpoint, restored with `like`'s structure, shapes and shardings.

  Tries checkpoints newest first. One that fails to restore (any orbax error:
  truncated or garbage data, missing ``_METADATA``), has no checksum record,
  or whose restored arrays differ from the record (a flipped bit) is reported
  in one warning line and, if `quarantine`, moved to
  ``workdir/checkpoints_damaged/<step>`` (so the resumed run can save that
  step again); the one before it is tried next. Returns None (start from
  scratch) if there is no checkpoint, or none is intact (with a warning).

  Raises:
    CheckpointMismatch: a checkpoint's record names leaves, shapes or dtypes
      other than `like`'s (not damage; nothing is moved).
  """
  manager.reload()  # the directory may have changed since the manager was made
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  damaged = []
  found = None
  done = False
  try:
    for step in sorted(manager.all_steps(), reverse=True):
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
