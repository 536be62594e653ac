"""Checkpoints (orbax) and the workdir's config guard.

A workdir holds ``config.json`` (the config that made it), ``checkpoints/``
(orbax, atomic: a save interrupted by SIGKILL leaves only a temporary folder
that is ignored), ``metrics.jsonl`` and ``summary.json``. Re-running the same
command resumes from the latest checkpoint; a different config is refused.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

# Keys that may change between a run and its resumption: how long to train
# and how often to log/evaluate/save do not change what a step computes.
RESUMABLE_KEYS = frozenset({"num_steps", "log_every", "eval_every", "checkpoint_every",
                            "progress", "eval_batch_size", "scan_unroll"})


class WorkdirConfigMismatch(RuntimeError):
  """The workdir was made by a different config; it is never overwritten."""


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


def check_or_write_config(workdir: str, config) -> bool:
  """Refuses a workdir made by another config; writes ``config.json`` otherwise.

  Returns True if the workdir already held this run (a resume).

  Raises:
    WorkdirConfigMismatch: naming the first differing keys.
  """
  path = os.path.join(workdir, "config.json")
  new = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    a, b = _flatten(old), _flatten(new)
    diff = sorted(k for k in set(a) | set(b)
                  if k not in RESUMABLE_KEYS and a.get(k) != b.get(k))
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


def make_manager(workdir: str) -> ocp.CheckpointManager:
  """An orbax CheckpointManager on ``workdir/checkpoints`` keeping the last 2."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Saves `state` at `step` (asynchronously; atomic on disk)."""
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, like: Any) -> tuple[int, Any] | None:
  """(step, state) of the latest checkpoint restored with `like`'s structure, shapes and shardings; None if none."""
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
