"""One run per workdir (an exclusive ``flock`` on ``workdir/.lock``), and stopping it cleanly.

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
import signal
import sys
import threading
import time
from typing import Iterator

LOCK_NAME = ".lock"


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
  and writes this process's pid into it. Yields the lock file's path. A run
  takes it once (`stable_training.train.host_loop.run`); a second
  ``workdir_lock`` on the same workdir, from another process or from this one
  (another thread, a nested call), is refused like any other holder.

  Raises:
    WorkdirBusy: at once (no waiting) if the lock is held; the message names
      the workdir and the holder's pid.
  """
  path = os.path.join(os.path.realpath(workdir), LOCK_NAME)
  if _secondary_process():
    yield path
    return
  os.makedirs(workdir, exist_ok=True)
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
    try:
      yield path
    finally:
      os.ftruncate(fd, 0)  # while still locked: a stale pid would mislead a reader
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


EXIT_PREEMPTED = 75  # os.EX_TEMPFAIL: "try again later"; the launcher's exit status after a clean stop


class Preempted(KeyboardInterrupt):
  """The run stopped on SIGTERM/SIGINT at `step`, its checkpoint saved there (a KeyboardInterrupt: not an error)."""

  def __init__(self, signum: int, step: int):
    self.signum, self.step = signum, step
    name = signal.Signals(signum).name
    super().__init__(f"stopped by {name} before the first step: nothing to resume" if step == 0 else
                     f"stopped by {name} at step {step}, checkpoint saved; rerun the same command to resume")


class StopSignals:
  """Turns SIGTERM and SIGINT into a request the host loop polls between compiled chunks.

  A scheduler's SIGTERM (or Ctrl-C) would otherwise kill the run mid-chunk and
  lose everything since the last checkpoint. Inside the ``with`` block the
  first signal only sets `signum`; a second one raises KeyboardInterrupt at
  once (stop without saving). The previous handlers come back on exit.
  Outside the main thread (where Python cannot install handlers) it does nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
    self.signum = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}
    return False
