"""The entry points' persistent XLA compilation cache: a second launch of the same program skips XLA.

Every launch of a config compiles the same programs again (model init, train chunk, evaluator):
on this project's 2-core CPU machine that is half of a tiny run's wall time (`default.py:tiny`:
6.2 s → 3.2 s from the second launch on, measured in WORKSPACE.md). JAX can keep compiled
executables on disk (`jax_compilation_cache_dir`) and load them when the same program (same
HLO, compile options, XLA flags, JAX version and device kind) is compiled again, so a resumed
run (after preemption), a rerun, another launch of a sweep or study, or a multi-seed split into
several launches pays the compile once. A cached executable is the executable XLA produced, so
every number is the same.

`setup`, called by the entry points only (``experiments.main`` and the study scripts through
`stable_training.study.app_run`; never on import, nor by the benchmarks, whose tables time the
compile), turns it on unless the user chose otherwise. ``STABLE_TRAINING_COMPILATION_CACHE``:

* ``auto`` (default): ``$XDG_CACHE_HOME/stable_training/xla`` (``~/.cache/…``), at most
  `MAX_BYTES` on disk (JAX evicts the least recently used entries), only programs whose compile
  took ≥ ``jax_persistent_cache_min_compile_time_secs`` (JAX's default, 1 s); skipped quietly
  where that folder cannot be created (a read-only home);
* ``off``: no cache;
* a folder path: that folder (created if missing).

A cache the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``, or
``jax.config.update("jax_compilation_cache_dir", …)`` before the call) always wins.

A damaged entry (JAX writes an entry in place, so a process killed or a disk filled mid-write leaves a
truncated one, which JAX then never rewrites) costs one warning line and a compile: `setup` has the
program's warnings report it in one line and remove that program's entries, so the compile that follows
writes a good one.
"""
from __future__ import annotations

import glob
import os
import re
import sys
import warnings
from typing import Mapping

ENV = "STABLE_TRAINING_COMPILATION_CACHE"
MAX_BYTES = 2 * 2**30


def default_dir(env: Mapping[str, str] | None = None) -> str:
  """``$XDG_CACHE_HOME/stable_training/xla``, or ``~/.cache/stable_training/xla`` (XDG Base Directory)."""
  env = os.environ if env is None else env
  root = env.get("XDG_CACHE_HOME", "")
  if not os.path.isabs(root):   # the spec: a relative value is ignored
    root = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
  return os.path.join(root, "stable_training", "xla")


def resolve(env: Mapping[str, str] | None = None) -> str | None:
  """The folder ``STABLE_TRAINING_COMPILATION_CACHE`` asks for (None: ``off``), created if missing.

  Raises:
    ValueError: an explicit path that is not a usable folder; one line naming the value and what is
      valid. (The ``auto`` folder that cannot be created gives None instead: no cache, no failure.)
  """
  env = os.environ if env is None else env
  choice = env.get(ENV, "auto").strip() or "auto"
  if choice == "off":
    return None
  path = default_dir(env) if choice == "auto" else os.path.abspath(os.path.expanduser(choice))
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(13, "not writable")
  except OSError as e:
    if choice == "auto":
      return None
    raise ValueError(f"{ENV}={choice!r}: not a usable folder ({e.strerror or e}); "
                     "valid: auto, off or a writable folder path") from None
  return path


def setup(caller: str, env: Mapping[str, str] | None = None) -> str | None:
  """Turns JAX's persistent compilation cache on for the program (see the module doc).

  `caller`: the entry point module's ``__name__``; nothing happens unless it is ``"__main__"`` (a
  main called in-process, e.g. by a test or a notebook, leaves the process's JAX config alone).
  Call it before the first compile. Returns the cache folder in use, or None.

  Raises:
    ValueError: a bad ``STABLE_TRAINING_COMPILATION_CACHE`` (see `resolve`).
  """
  if caller != "__main__":
    return None
  import jax
  if jax.config.jax_compilation_cache_dir:   # the user's own JAX setting wins
    return jax.config.jax_compilation_cache_dir
  path = resolve(env)
  if path is None:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  if jax.config.jax_compilation_cache_max_size == -1:   # JAX's default: unbounded
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  warnings.showwarning = _reporting_damaged_entries(path, warnings.showwarning)
  return path


_DAMAGED = re.compile(r"Error reading persistent compilation cache entry for '([^']+)': (.*)", re.S)
_NOT_DAMAGE = ("Timeout", "PermissionError", "FileNotFoundError", "InterruptedError")   # the read failed, not the entry


def remove_entries(path: str, program: str) -> list[str]:
  """Removes every cache entry of the program named `program` (e.g. ``jit_chunk``) from the folder `path`:
  JAX names an entry ``<program>-<sha256 key>-cache`` (plus ``-atime``). Returns the removed entries."""
  removed = []
  for f in sorted(glob.glob(os.path.join(glob.escape(path), f"{glob.escape(program)}-*"))):
    if re.fullmatch(re.escape(program) + r"-[0-9a-f]{64}-(cache|atime)", os.path.basename(f)):
      try:
        os.remove(f)
        removed.append(os.path.basename(f))
      except OSError:
        pass   # gone already (another launch repaired it) or not ours to remove: the compile goes on
  return removed


def _reporting_damaged_entries(path: str, show):
  """`warnings.showwarning` that turns JAX's damaged-entry warning into one line and removes that program's
  entries (`remove_entries`); every other warning goes to `show`."""
  def showwarning(message, category, filename, lineno, file=None, line=None):
    m = _DAMAGED.match(str(message))
    if m is None or m.group(2).startswith(_NOT_DAMAGE):   # e.g. another launch held the cache's lock too long
      return show(message, category, filename, lineno, file, line)
    removed = [e for e in remove_entries(path, m.group(1)) if e.endswith("-cache")]
    detail = m.group(2).strip().splitlines()[0] if m.group(2).strip() else "unreadable"
    print(f"warning: compilation cache entry of {m.group(1)} in {path} is damaged ({detail}); "
          f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} of it, compiling anew",
          file=sys.stderr if file is None else file, flush=True)
  return showwarning
