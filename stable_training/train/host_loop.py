"""The one host loop every trainer runs: resume, checkpoints, records, progress, preemption.

A trainer hands `run` its `Pieces` — purejaxrl's ``make_train`` cut at chunk
boundaries: ``init() -> state``, ``chunk(state, step, k)`` (one compiled call
advancing every seed k steps), ``record`` (what a chunk adds to
metrics.jsonl), ``summarize`` (summary.json from the records) and the few
policies that differ between trainers (where chunks end, when to checkpoint,
what counts as non-finite). Everything else is written once, here:

- one run per workdir (`lock.workdir_lock`, taken once per run);
- ``config.json`` checked or written, its record and hash in every checkpoint
  (a checkpoint of another config is refused, a lost config.json restored);
- resume from the newest intact checkpoint the records reach (metrics past it
  dropped, checkpoints past the records retrained), a finished run's summary
  returned (rebuilt from metrics.jsonl when summary.json is missing or stale);
- metrics.jsonl / TensorBoard (`MetricWriter`), a progress bar;
- SIGTERM / SIGINT: a checkpoint at the next chunk boundary, then
  `lock.Preempted` (the launcher's exit status 75);
- chunk timing (a chunk that compiled is not timed) and summary.json.

Multi-host: process 0 decides whether the workdir is resumed and alone writes
files; every process runs the same loop (restores are collective).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from stable_training.train import checkpoint as ckpt_lib
from stable_training.train import lock as lock_lib
from stable_training.train import records as rec_lib


class NonFiniteError(FloatingPointError):
  """Loss or gradient became NaN/Inf under the trainer's stop policy (or too many skips)."""


@dataclasses.dataclass
class Timing:
  """Seconds spent: running chunks that did not compile (``run_steps`` steps), and compiling."""
  run_seconds: float = 0.0
  run_steps: int = 0
  compile_seconds: float = 0.0


class Pieces:
  """What a trainer gives the host loop; subclasses set the attributes and override the methods.

  Attributes: ``config`` (the resolved config: config.json and each
  checkpoint's record), ``defaults`` (flat ``{"group.key": default}`` for
  `checkpoint.config_diff`, or None), ``num_steps`` (steps to train, in the
  trainer's unit), ``steps_key`` (the config key that sets it, for messages),
  ``unit`` (progress unit), ``progress`` (show a bar), ``layer_names``
  (TensorBoard), ``from_records`` (summary keys that follow from
  metrics.jsonl alone: a finished run's summary.json must agree on them).
  """
  config: Any = None
  defaults: dict | None = None
  num_steps: int = 0
  steps_key: str = "num_steps"
  unit: str = "step"
  progress: bool = True
  layer_names: tuple = ()
  from_records: tuple[str, ...] = ("final", "history")

  def init(self) -> Any:
    """The fresh state of every seed (on the host or its devices)."""
    raise NotImplementedError

  def place(self, state):
    """`state` on the run's devices and shardings."""
    return state

  def to_tree(self, state):
    """The checkpointed pytree of `state`."""
    return state

  def from_tree(self, tree):
    """The state of a restored checkpoint tree."""
    return tree

  def check_workdir(self, workdir: str) -> None:
    """Trainer-specific refusals of a resumed workdir (after config.json was checked)."""

  def start(self, state, start_step: int, restored: bool, writer: "MetricWriter"):
    """Before the first chunk (e.g. pre-training a fresh state); returns the state placed on its devices."""
    del start_step, restored, writer
    return self.place(state)

  def next_stop(self, step: int) -> int:
    """The step the chunk starting at `step` ends at (a record is written there)."""
    raise NotImplementedError

  def is_checkpoint(self, step: int) -> bool:
    """Whether to save a checkpoint at chunk boundary `step`."""
    raise NotImplementedError

  def chunk(self, state, step: int, k: int) -> tuple[Any, Any, float]:
    """(state after steps step … step + k − 1, the chunk's outputs on the host, seconds spent compiling)."""
    raise NotImplementedError

  def check(self, state, out, kept: Callable[[], int | None]) -> None:
    """Raises `NonFiniteError` when the chunk's outputs break the non-finite policy; `kept()`: the last checkpoint."""

  def record(self, step: int, state, out, writer: "MetricWriter") -> dict:
    """The metrics.jsonl record of the chunk ending at `step` (evaluations included)."""
    raise NotImplementedError

  def status(self, rec: dict) -> str:
    """The progress bar's text for a record."""
    del rec
    return ""

  def note(self, rec: dict) -> str | None:
    """A line to print above the bar for a record (e.g. an evaluation), or None."""
    del rec
    return None

  def after_chunk(self, state, step: int) -> None:
    """After the record and checkpoint of `step` (e.g. a limit on skipped updates)."""

  def summarize(self, records: list[dict], timing: Timing | None, previous: dict) -> dict:
    """summary.json from the records; `timing` None: a finished run, speed taken from `previous` (its summary)."""
    raise NotImplementedError

  def loaded(self, summary: dict) -> dict:
    """A summary read back from summary.json as the trainer returns it."""
    return summary


class MetricWriter:
  """metrics.jsonl records (each step once, even across resumes) and TensorBoard events."""

  def __init__(self, workdir: str, start_step: int, layer_names, primary: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.primary = primary  # False: another process writes the files; keep the records in memory
    if primary:
      self.records = rec_lib.truncate_records(self.path, start_step)  # drop records past the checkpoint
      self.tb = rec_lib.TensorBoard(workdir, list(layer_names))
    else:
      self.records, self.tb = rec_lib.read_records(self.path, start_step), None

  def write(self, rec: dict) -> None:
    """Keeps `rec` and appends it to metrics.jsonl (and TensorBoard for ``kind: train``)."""
    self.records.append(rec)
    if not self.primary:
      return
    rec_lib.append_record(self.path, rec)
    if rec.get("kind") == "train":
      self.tb.write(rec)

  def close(self) -> None:
    """Closes the TensorBoard writer."""
    if self.tb is not None:
      self.tb.close()


def run(pieces: Pieces, workdir: str) -> dict:
  """Trains `pieces` in `workdir` (locked for the run) and returns the summary.

  Raises:
    WorkdirBusy: another process runs in `workdir`.
    WorkdirConfigMismatch: the workdir or one of its checkpoints holds another config's run.
    NonFiniteError: the trainer's non-finite policy stopped the run.
    Preempted: SIGTERM/SIGINT; a checkpoint was saved at the step it names.
  """
  with lock_lib.workdir_lock(workdir):
    manager = ckpt_lib.make_manager(workdir)
    try:
      # From here SIGTERM/SIGINT only ask to stop; the loop saves and stops at its next chunk boundary.
      with lock_lib.StopSignals() as stop:
        summary = _run(pieces, workdir, manager, stop)
    except BaseException:
      # A failed save leaves orbax's error stored: closing re-raises it, which must not replace the
      # one-line error already on its way (e.g. "cannot save checkpoint N …").
      try:
        manager.close()
      except Exception:  # pylint: disable=broad-except
        pass
      raise
    manager.close()
    return summary


@dataclasses.dataclass
class _Begin:
  """Where a run begins: its state and step, whether it was restored, the records so far."""
  state: Any
  step: int
  restored: bool
  resumed: bool
  records: list
  last_record: int


def _run(pieces: Pieces, workdir: str, manager, stop) -> dict:
  primary = jax.process_index() == 0
  config_rec = ckpt_lib.config_record(pieces.config)
  begin = _begin(pieces, workdir, manager, config_rec, primary)
  summary_path = os.path.join(workdir, "summary.json")
  n = pieces.num_steps
  if begin.resumed and begin.last_record >= n and begin.step in (0, n):
    # Finished (its checkpoints possibly deleted to save disk): the summary is rebuilt from the records.
    if begin.restored or not manager.all_steps():
      return _finished_summary(pieces, begin.records, summary_path, primary)
  if begin.restored:
    print(f"resumed {workdir} at {pieces.unit} {begin.step}", file=sys.stderr, flush=True)
  writer = MetricWriter(workdir, begin.step, pieces.layer_names, primary)
  try:
    state = pieces.start(begin.state, begin.step, begin.restored, writer)
    timing = _loop(pieces, workdir, manager, stop, state, begin.step, writer, config_rec)
  finally:
    writer.close()
  summary = pieces.summarize(writer.records, timing, {})
  if primary:
    rec_lib.write_json(summary_path, summary)
  return summary


def _begin(pieces: Pieces, workdir: str, manager, config_rec: dict, primary: bool) -> _Begin:
  """Checks or writes config.json, then restores the newest intact checkpoint the records reach."""
  resumed = ckpt_lib.check_or_write_config(workdir, pieces.config, pieces.defaults, manager) if primary else False
  if jax.process_count() > 1:  # process 0 decided; all take the same path (restore is collective)
    from jax.experimental import multihost_utils
    resumed = bool(multihost_utils.broadcast_one_to_all(np.int32(resumed)))
  pieces.check_workdir(workdir)
  state = pieces.init()
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  # The records are the run's history: resume from a checkpoint they reach (a
  # cut or lost metrics.jsonl retrains the missing steps instead of leaving a gap).
  records = rec_lib.read_records(metrics_path, report=primary) if resumed else []
  last_record = max((r["step"] for r in records if r.get("kind") == "train"), default=0)
  restored = None
  if resumed:
    # Restored straight into the run's sharding: each process reads its own
    # part (a restored single-device array cannot be moved across hosts).
    restored = ckpt_lib.restore_latest(manager, pieces.to_tree(pieces.place(state)), config_rec=config_rec,
                                       defaults=pieces.defaults, max_step=last_record)
    _drop_checkpoints_past(manager, restored[0] if restored else 0, last_record, metrics_path)
  step, state = (restored[0], pieces.from_tree(restored[1])) if restored is not None else (0, state)
  if step > pieces.num_steps:
    raise ckpt_lib.WorkdirConfigMismatch(
        f"workdir {workdir} holds a run trained to step {step} > config.{pieces.steps_key}={pieces.num_steps}; "
        "use a new --workdir or at least that many steps")
  return _Begin(state, step, restored is not None, resumed, records, last_record)


def _loop(pieces: Pieces, workdir: str, manager, stop, state, start: int, writer: MetricWriter,
          config_rec: dict) -> Timing:
  """Chunks from `start` to ``pieces.num_steps``: record, checkpoint, and stop cleanly on a signal."""
  timing = Timing()
  progress = rec_lib.Progress(pieces.num_steps, start, pieces.progress,
                              desc=os.path.basename(os.path.normpath(workdir)), unit=pieces.unit)
  step = saved = start
  try:
    while step < pieces.num_steps:
      if stop.signum is not None:  # between compiled chunks: save where we are, then stop
        if step > saved:
          ckpt_lib.save(manager, step, pieces.to_tree(state), config_rec)
        raise lock_lib.Preempted(stop.signum, step)
      k = pieces.next_stop(step) - step
      t0 = time.perf_counter()
      state, out, tc = pieces.chunk(state, step, k)
      timing.compile_seconds += tc
      if not tc:  # a chunk that compiled is not timed
        timing.run_seconds += time.perf_counter() - t0
        timing.run_steps += k
      pieces.check(state, out, manager.latest_step)
      step += k
      rec = pieces.record(step, state, out, writer)
      note = pieces.note(rec)
      if note:
        progress.write(note)
      writer.write(rec)
      progress.update(step, k, pieces.status(rec))
      if pieces.is_checkpoint(step):
        ckpt_lib.save(manager, step, pieces.to_tree(state), config_rec)
        saved = step
      pieces.after_chunk(state, step)
  finally:
    progress.close()
  return timing


def _finished_summary(pieces: Pieces, records: list[dict], summary_path: str, primary: bool) -> dict:
  """A finished run's summary: summary.json if it agrees with metrics.jsonl, else rebuilt from it (one line)."""
  old = rec_lib.read_json_or_none(summary_path)
  old = old if isinstance(old, dict) else None
  rebuilt = rec_lib.finite_json(pieces.summarize(
      [r for r in records if r["step"] <= pieces.num_steps], None, old or {}))
  if old is not None and all(old.get(k) == rebuilt.get(k) for k in pieces.from_records):
    return pieces.loaded(old)
  if primary:
    why = ("missing" if not os.path.exists(summary_path) else "damaged" if old is None
           else "edited or incomplete (it does not match metrics.jsonl)")
    print(f"{summary_path} was {why}: rebuilt from metrics.jsonl", file=sys.stderr, flush=True)
    rec_lib.write_json(summary_path, rebuilt)
  return pieces.loaded(rebuilt)


def _drop_checkpoints_past(manager, kept: int, last_record: int, metrics_path: str) -> None:
  """Deletes checkpoints after `kept` that the records do not reach, so the steps up to them are retrained.

  They are of the same config (checked), so retraining writes them again,
  bit for bit; orbax would not save over an existing step.
  """
  past = [s for s in manager.all_steps() if s > kept]
  if not past:
    return
  have = f"ends at step {last_record}" if os.path.exists(metrics_path) else "is missing"
  print(f"{metrics_path} {have} but checkpoints reach step {max(past)}: "
        f"retraining from step {kept} to rebuild the records", file=sys.stderr, flush=True)
  if jax.process_index() == 0:
    for s in past:
      manager.delete(s)
  manager.reload()
