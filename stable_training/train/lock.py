"""One run per workdir: an exclusive ``flock`` on ``workdir/.lock``.

Two runs writing one workdir interleave their checkpoints and metrics
(orbax FileExistsError/TimeoutError, duplicated or out-of-order steps in
``metrics.jsonl``). ``workdir_lock`` refuses the second run at once instead.

The lock belongs to the open file, not to the file's existence: the OS drops
it when the holder exits or is killed (SIGKILL included), so a ``.lock`` file
left behind never blocks a rerun. ``flock`` is per host; on network
filesystems (NFS) it may not exclude a run on another machine.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import threading
import time
from typing import Iterator

LOCK_NAME = ".lock"

# Lock files this process holds -> nesting depth: the launcher and the trainer
# it calls may both take the lock (a second flock from this process would fail).
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


class WorkdirBusy(RuntimeError):
  """Another live process holds the workdir's lock."""


def _secondary_process() -> bool:
  """True in the processes other than 0 of a ``jax.distributed`` job: process 0 alone locks the shared workdir."""
  jax = sys.modules.get("jax")
  return jax is not None and jax.distributed.is_initialized() and jax.process_index() > 0


def _read_pid(fd: int) -> str:
  """The pid the holder wrote, or '?' while it has not written it yet."""
  for _ in range(20):  # the holder writes its pid right after locking
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    if text:
      return text
    time.sleep(0.005)
  return "?"


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[str]:
  """Holds an exclusive, non-blocking lock on `workdir` for the ``with`` block.

  Creates `workdir` if needed, locks ``workdir/.lock`` with ``fcntl.flock``
  and writes this process's pid into it. Yields the lock file's path.
  Re-entrant within one process: a nested ``workdir_lock`` on the same
  workdir just yields.

  Raises:
    WorkdirBusy: at once (no waiting) if another process holds the lock; the
      message names the workdir and the holder's pid.
  """
  path = os.path.join(os.path.realpath(workdir), LOCK_NAME)
  if _secondary_process():
    yield path
    return
  os.makedirs(workdir, exist_ok=True)
  with _HELD_GUARD:
    nested = path in _HELD
    if nested:
      _HELD[path] += 1
  if nested:
    try:
      yield path
    finally:
      with _HELD_GUARD:
        _HELD[path] -= 1
    return
  # O_CLOEXEC (Python's default): child processes do not inherit the lock.
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise WorkdirBusy(
          f"workdir {os.path.abspath(workdir)} is in use by another run (pid {_read_pid(fd)}); "
          "wait for it to finish, stop it, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    with _HELD_GUARD:
      _HELD[path] = 1
    try:
      yield path
    finally:
      with _HELD_GUARD:
        del _HELD[path]
      os.ftruncate(fd, 0)  # while still locked: a stale pid would mislead a reader
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
