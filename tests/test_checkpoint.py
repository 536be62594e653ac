"""Checkpoints that fall back past damage, and the one-run-per-workdir lock."""
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from stable_training.train import checkpoint as ckpt
from stable_training.train.lock import WorkdirBusy, workdir_lock
from stable_training.train.steps import TrainState

LOCK_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "stable_training", "train", "lock.py")


def make_state(seed: int) -> TrainState:
  """A small TrainState; the kernel is random bits, incompressible, so its bytes lie raw on disk."""
  k = jax.random.PRNGKey(seed)
  kernel = jax.lax.bitcast_convert_type(jax.random.bits(k, (64, 128), jnp.uint32), jnp.float32)
  params = {"dense": {"kernel": kernel, "bias": jnp.full((128,), float(seed))}}
  return TrainState(step=jnp.int32(seed), params=params, opt_state=optax.adam(1e-3).init(params), rng=k)


def same(a, b) -> bool:
  """Leaf-by-leaf byte equality (NaN payloads included)."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
      for x, y in zip(la, lb))


def save_steps(workdir, steps=(1, 2)):
  m = ckpt.make_manager(str(workdir))
  for s in steps:
    ckpt.save(m, s, make_state(s))
  m.wait_until_finished()
  m.close()


def restore(workdir):
  m = ckpt.make_manager(str(workdir))
  try:
    return ckpt.restore_latest(m, make_state(0))
  finally:
    m.close()


def array_file(workdir, step) -> str:
  """The data file holding the kernel's bytes: the largest file of the step's ``state`` item."""
  root = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
  return max(files, key=os.path.getsize)


def truncate(workdir, step):
  p = array_file(workdir, step)
  os.truncate(p, os.path.getsize(p) // 2)


def delete_metadata(workdir, step):
  os.remove(os.path.join(workdir, "checkpoints", str(step), "state", "_METADATA"))


def flip_bit(workdir, step):
  p = array_file(workdir, step)
  b = bytearray(open(p, "rb").read())
  b[len(b) // 2] ^= 0x10
  open(p, "wb").write(bytes(b))


def garbage(workdir, step):
  """4 KiB of random bytes written over the middle of the file, in place (its size unchanged)."""
  p = array_file(workdir, step)
  with open(p, "r+b") as f:
    f.seek(os.path.getsize(p) // 2 - 2048)
    f.write(np.random.default_rng(0).bytes(4096))


def replace_by_garbage(workdir, step):
  """The whole file replaced by 4 KiB of random bytes."""
  open(array_file(workdir, step), "wb").write(np.random.default_rng(1).bytes(4096))


def warnings_of(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_round_trip_records_every_leaf(tmp_path):
  save_steps(tmp_path)
  step, state = restore(tmp_path)
  assert step == 2 and same(state, make_state(2))
  rec = ckpt.checksum_record(make_state(2))["leaves"]
  assert {"step", "rng", "params/dense/kernel", "opt_state/0/mu/dense/bias"} <= set(rec)
  assert rec["params/dense/kernel"]["shape"] == [64, 128]
  assert restore(tmp_path / "empty") is None


@pytest.mark.parametrize("damage,reason", [
    (truncate, "unreadable"), (delete_metadata, "unreadable"),
    (flip_bit, "checksum mismatch in params/dense/kernel"),
    (garbage, "checksum mismatch in params/dense/kernel"), (replace_by_garbage, "unreadable")])
def test_damaged_latest_falls_back_to_previous(tmp_path, caplog, damage, reason):
  save_steps(tmp_path)
  damage(str(tmp_path), 2)
  with caplog.at_level(logging.WARNING):
    step, state = restore(tmp_path)
  assert step == 1 and same(state, make_state(1))
  (line,) = warnings_of(caplog)  # one line, no traceback
  assert "checkpoint 2" in line and "is damaged" in line and reason in line and line.endswith("using 1")
  assert "\n" not in line
  # moved aside, so the resumed run can save step 2 again (orbax skips steps <= its latest)
  assert os.path.isdir(tmp_path / "checkpoints_damaged" / "2")
  save_steps(tmp_path, steps=(2,))
  step, state = restore(tmp_path)
  assert step == 2 and same(state, make_state(2))


def test_no_intact_checkpoint_starts_from_scratch(tmp_path, caplog):
  save_steps(tmp_path, steps=(1,))
  flip_bit(str(tmp_path), 1)
  with caplog.at_level(logging.WARNING):
    assert restore(tmp_path) is None
  (line,) = warnings_of(caplog)
  assert "checkpoint 1" in line and "starting from scratch" in line


def test_checkpoint_without_checksum_record_is_not_trusted(tmp_path, caplog):
  # the layout before checksums: one "default" item
  old = ocp.CheckpointManager(str(tmp_path / "checkpoints"),
                              options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  old.save(3, args=ocp.args.StandardSave(make_state(3)))
  old.wait_until_finished()
  old.close()
  with caplog.at_level(logging.WARNING):
    assert restore(tmp_path) is None
  (line,) = warnings_of(caplog)
  assert "checkpoint 3" in line and "no readable checksum record" in line


def test_other_state_structure_raises_and_moves_nothing(tmp_path):
  save_steps(tmp_path)
  m = ckpt.make_manager(str(tmp_path))
  like = make_state(0).replace(rng=jnp.zeros((3,), jnp.uint32))
  with pytest.raises(ckpt.CheckpointMismatch, match=r"checkpoint 2 .* rng is uint32\[2\] there, uint32\[3\] here"):
    ckpt.restore_latest(m, like)
  m.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_keeps_two_and_orbax_info_is_quiet(tmp_path, caplog):
  def orbax_info():
    return [r for r in caplog.records if f"{os.sep}orbax{os.sep}" in r.pathname and r.levelno < logging.WARNING]

  try:
    # The absl logger's own level too: an earlier launcher test in this worker may have set it to WARNING.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="absl"):
      ckpt.quiet_orbax(logging.DEBUG)  # orbax as it is: chatty
      save_steps(tmp_path / "loud", steps=(1,))
      assert orbax_info()
      caplog.clear()
      ckpt.quiet_orbax()
      save_steps(tmp_path, steps=(1, 2, 3))
      assert not orbax_info()
  finally:
    ckpt.quiet_orbax()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]


def _lock_script(body: str) -> list:
  """A python command that loads lock.py by path (not the package: no jax import, fast)."""
  return [sys.executable, "-c", textwrap.dedent(f"""
      import importlib.util, sys, time
      spec = importlib.util.spec_from_file_location("lock", {LOCK_PY!r})
      lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock)
      """) + textwrap.dedent(body)]


def test_workdir_lock_across_processes(tmp_path):
  wd = str(tmp_path / "wd")
  holder = subprocess.Popen(_lock_script(f"""
      with lock.workdir_lock({wd!r}):
        print("locked", flush=True)
        time.sleep(60)
      """), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    t0 = time.perf_counter()
    other = subprocess.run(_lock_script(f"""
        try:
          with lock.workdir_lock({wd!r}):
            print("acquired")
        except lock.WorkdirBusy as e:
          print("busy:", e)
        """), capture_output=True, text=True, timeout=900)
    assert other.returncode == 0, other.stderr
    msg = other.stdout.strip()
    assert msg.startswith("busy:") and f"pid {holder.pid}" in msg and wd in msg and "\n" not in msg
    assert time.perf_counter() - t0 < 10  # refused at once, not after a wait
    with pytest.raises(WorkdirBusy, match=rf"pid {holder.pid}"):  # this process too
      with workdir_lock(wd):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert os.path.exists(os.path.join(wd, ".lock"))  # left behind by SIGKILL ...
  with workdir_lock(wd) as path:  # ... yet it does not block a rerun
    assert open(path).read().strip() == str(os.getpid())
    # A run takes the lock once: a second taker in this very process (a nested call,
    # another thread) is refused like another process, naming this pid.
    with pytest.raises(WorkdirBusy, match=rf"pid {os.getpid()}\)"):
      with workdir_lock(wd):
        pass
    assert open(path).read().strip() == str(os.getpid())  # still held
  assert open(path).read() == ""


_ABANDONED_READS = """
import gc, os, sys, time
import jax, jax.numpy as jnp, numpy as np
from stable_training.train import checkpoint as ckpt
wd = sys.argv[1]
def state(s):   # 20 arrays of 4 MB read concurrently; rounded normals: zstd really compresses them
  # (drawn by NumPy: the suite's unoptimized XLA code drew them 3x slower than the whole test otherwise takes)
  return {f"a{i:02d}": jnp.asarray(np.round(np.random.default_rng(100 * s + i).standard_normal(1_000_000, np.float32)))
          for i in range(20)}
m = ckpt.make_manager(wd)
for s in (1, 2):
  ckpt.save(m, s, state(s))
m.close()
data = os.path.join(wd, "checkpoints", "2", "state", "ocdbt.process_0", "d")
p = max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)
n = os.path.getsize(p)
with open(p, "r+b") as f:   # 4 KiB of garbage amid compressed chunks: one of them cannot decode
  f.seek(n // 2 - 2048)
  f.write(np.random.default_rng(0).bytes(4096))
m = ckpt.make_manager(wd)
step, _ = ckpt.restore_latest(m, state(0))
m.close()
gc.collect(); time.sleep(1); gc.collect()   # what orbax abandoned would be reported by now
print("restored", step, sys.unraisablehook is sys.__unraisablehook__, flush=True)
"""


def test_a_damaged_checkpoint_leaves_no_stray_errors(tmp_path):
  """Compressed chunks that fail to decode are reported in one warning line: orbax never starts reading
  them (its abandoned concurrent reads printed "Exception ignored in <coroutine ...>" and "Event loop is
  closed" at random later times), and Python's unraisable hook is the default one throughout."""
  p = subprocess.run([sys.executable, "-c", _ABANDONED_READS, str(tmp_path)], capture_output=True, text=True,
                     timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert p.returncode == 0, p.stderr[-3000:]
  assert p.stdout.strip() == "restored 1 True"
  # orbax's own timing notice ("Waiting for previous save to complete took 1.1 seconds") appears on a
  # loaded machine: not an error line, not what this test is about.
  lines = [l for l in p.stderr.splitlines() if l.strip() and "Waiting for previous save to complete" not in l]
  assert len(lines) == 1 and "checkpoint 2" in lines[0] and "is damaged (unreadable: a" in lines[0], p.stderr[-3000:]
  assert "FAILED_PRECONDITION: Error reading" in lines[0] and lines[0].endswith("using 1")   # zstd cannot decode


def test_a_disk_too_full_for_the_state_is_refused_before_writing(tmp_path, monkeypatch):
  """Fewer free bytes than the state holds: CheckpointSaveError (ENOSPC, both sizes) before orbax writes,
  no temporary folder, the earlier checkpoint intact."""
  m = ckpt.make_manager(str(tmp_path))
  ckpt.save(m, 1, make_state(1))
  need = sum(np.asarray(x).nbytes for x in jax.tree.leaves(make_state(2)))   # the PRNG key: 2 uint32
  usage = ckpt.shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: usage._replace(free=need - 1))
  with pytest.raises(ckpt.CheckpointSaveError, match=(
      rf"cannot save checkpoint 2 in {tmp_path}/checkpoints: OSError: \[Errno 28\] No space left on device "
      rf"\(the state needs {need / 2**20:.1f} MiB, {(need - 1) / 2**20:.1f} MiB free\)$")):
    ckpt.save(m, 2, make_state(2))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
  monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: usage._replace(free=need))
  m = ckpt.make_manager(str(tmp_path))
  ckpt.save(m, 2, make_state(2))   # exactly enough: saved
  m.close()
  assert restore(tmp_path)[0] == 2
