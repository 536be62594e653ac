"""Faults a user or a cluster causes, each ending in the correct numbers or one line with a documented
exit code: preemption by a real signal, a full disk at save time, an unwritable checkpoints folder,
a lost or damaged config.json / summary.json / metrics.jsonl, broken config files, bad data, seeds and
learning rates out of range. One tiny baseline run is shared by the tests that compare results."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import default
from stable_training import config as config_lib
from stable_training import train
from stable_training.data import DataError, idx
from stable_training.train import loop
from stable_training.train.checkpoint import WorkdirConfigMismatch
from stable_training.train.lock import EXIT_PREEMPTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 200
FLAGS = {"log_every": 10, "eval_every": 50, "checkpoint_every": 100}
CLI = ["--config=experiments/configs/default.py:tiny", "--host_devices=0",
       *(f"--config.{k}={v}" for k, v in FLAGS.items())]
HANG_GUARD = 600  # seconds: a hang fails the test instead of stalling the suite


def _config(**over):
  c = default.get_config("tiny")
  c.update(dict(FLAGS, num_steps=STEPS))
  c.update(over)
  return c


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu")


def _cli(args, prelude=None):
  """(exit status, stderr) of the launcher; `prelude` is Python run first in the same process (fault injection)."""
  if prelude is None:
    cmd = [sys.executable, "-m", "experiments.main", *args]
  else:
    run = ("import sys; from absl import app; from experiments import main; "
           "sys.argv = ['main'] + sys.argv[1:]; app.run(main.main, flags_parser=main.parse_flags)")
    cmd = [sys.executable, "-c", prelude + "\n" + run, *args]
  p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD)
  return p.returncode, p.stderr


def _one_line(err):
  lines = [l for l in err.strip().splitlines() if l.strip()]
  assert len(lines) == 1, err
  return lines[0]


def _same_results(a, b):
  for key in ("final", "history", "best", "lsc"):
    assert a.get(key) == b.get(key), key


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
  """(workdir, summary) of an uninterrupted tiny run of STEPS steps, checkpoints at 100 and 200."""
  wd = tmp_path_factory.mktemp("faults") / "baseline"
  return wd, train.train_and_evaluate(_config(), str(wd))


def _copy(baseline, tmp_path):
  wd = tmp_path / "copy"
  shutil.copytree(baseline[0], wd)
  return wd


def test_sigterm_saves_at_its_step_and_the_rerun_equals_an_uninterrupted_run(tmp_path, baseline):
  """A real SIGTERM mid-run: one line, exit 75, a checkpoint at the signal's step (not a multiple of
  checkpoint_every), metrics flushed, lock released; resuming ends equal to the uninterrupted run."""
  sig = signal.SIGTERM
  wd = tmp_path / "wd"
  p = subprocess.Popen([sys.executable, "-m", "experiments.main", *CLI, f"--workdir={wd}",
                        "--config.num_steps=100000000"], cwd=ROOT, env=_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = wd / "metrics.jsonl"
  deadline = time.time() + HANG_GUARD
  while p.poll() is None and time.time() < deadline and not (metrics.exists() and metrics.stat().st_size):
    time.sleep(0.005)
  p.send_signal(sig)
  _, err = p.communicate(timeout=HANG_GUARD)
  line = _one_line(err)
  step = int(line.split(" at step ")[1].split(",")[0])
  assert p.returncode == EXIT_PREEMPTED
  assert line == (f"stopped by {sig.name} at step {step}, checkpoint saved; "
                  "rerun the same command to resume")
  assert step % 10 == 0 and str(step) in os.listdir(wd / "checkpoints")
  assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
  assert (wd / ".lock").read_text() == ""   # released: no stale pid
  steps = STEPS if step < STEPS else step + 10
  ref = baseline[1] if step < STEPS else train.train_and_evaluate(_config(num_steps=steps), str(tmp_path / "ref"))
  _same_results(train.train_and_evaluate(_config(num_steps=steps), str(wd)), ref)


def test_sigint_in_process_stops_at_the_next_chunk_with_a_checkpoint(tmp_path, baseline, monkeypatch):
  """Ctrl-C raised while step 50 is evaluated: the loop finishes that chunk, saves step 50 and raises
  Preempted (a KeyboardInterrupt); the previous SIGINT handler is back; the rerun equals the baseline."""
  evaluate = loop._eval_record

  def eval_then_interrupt(setup, state, d):
    out = evaluate(setup, state, d)
    if int(np.asarray(state.step)[0]) == 50:
      signal.raise_signal(signal.SIGINT)
    return out
  monkeypatch.setattr(loop, "_eval_record", eval_then_interrupt)
  before = signal.getsignal(signal.SIGINT)
  wd = tmp_path / "wd"
  with pytest.raises(KeyboardInterrupt, match="stopped by SIGINT at step 50, checkpoint saved"):
    train.train_and_evaluate(_config(), str(wd))
  assert signal.getsignal(signal.SIGINT) is before
  assert sorted(os.listdir(wd / "checkpoints")) == ["50"]
  monkeypatch.setattr(loop, "_eval_record", evaluate)
  _same_results(train.train_and_evaluate(_config(), str(wd)), baseline[1])


_DISK_FULL_AT_200 = """
import errno
from orbax.checkpoint._src.handlers import json_checkpoint_handler as h
_save = h.JsonCheckpointHandler._save_fn
async def _full(self, x, directory):
  if "/200.orbax-checkpoint-tmp" in str(directory):
    raise OSError(errno.ENOSPC, "No space left on device")
  return await _save(self, x, directory)
h.JsonCheckpointHandler._save_fn = _full
"""


def test_disk_full_at_save_is_one_line_at_that_save_and_resumes_exactly(tmp_path, baseline):
  wd = tmp_path / "wd"
  rc, err = _cli([*CLI, f"--workdir={wd}", f"--config.num_steps={STEPS}"], prelude=_DISK_FULL_AT_200)
  assert rc == 3 and _one_line(err) == (f"error: cannot save checkpoint 200 in {wd}/checkpoints: "
                                        "OSError: [Errno 28] No space left on device"), err
  assert sorted(os.listdir(wd / "checkpoints")) == ["100"]   # the earlier one intact, no temporary folder
  _same_results(train.train_and_evaluate(_config(), str(wd)), baseline[1])


_JSON_LOST_AT_200 = """
from orbax.checkpoint._src.handlers import json_checkpoint_handler as h
_save = h.JsonCheckpointHandler._save_fn
async def _lost(self, x, directory):
  if "/200.orbax-checkpoint-tmp" in str(directory):
    return   # the write never happens and no error is raised: orbax commits the step without the file
  return await _save(self, x, directory)
h.JsonCheckpointHandler._save_fn = _lost
"""


def test_a_checkpoint_committed_without_an_item_is_refused_at_that_save(tmp_path):
  """Orbax can return from a save whose JSON writer failed in its own thread (the error surfaces only at
  close): `checkpoint.save` checks that every item of the step was written, so such a step is reported
  at that save in one line and removed, never left as a checkpoint without its checksums."""
  wd = tmp_path / "wd"
  rc, err = _cli([*CLI, f"--workdir={wd}", f"--config.num_steps={STEPS}"], prelude=_JSON_LOST_AT_200)
  assert rc == 3 and _one_line(err) == (f"error: cannot save checkpoint 200 in {wd}/checkpoints: "
                                        "OSError: checkpoint 200 was committed without its item(s) "
                                        "checksums, config"), err
  assert sorted(os.listdir(wd / "checkpoints")) == ["100"]


def test_unwritable_checkpoints_is_one_line_and_does_not_hang(tmp_path):
  wd = tmp_path / "wd"
  wd.mkdir()
  (wd / "checkpoints").write_text("")   # not a folder: writing under it fails (chmod does not stop root)
  rc, err = _cli([*CLI, f"--workdir={wd}", "--config.num_steps=10", "--config.checkpoint_every=10",
                  "--config.eval_every=10"])
  assert rc == 3 and _one_line(err).startswith(f"error: cannot save checkpoint 10 in {wd}/checkpoints: "
                                               "NotADirectoryError"), err


def test_lost_config_json_is_restored_from_the_checkpoint_and_another_config_refused(tmp_path, baseline):
  wd = _copy(baseline, tmp_path)
  os.remove(wd / "config.json")
  with pytest.raises(WorkdirConfigMismatch, match=r"config of its checkpoint 200: config.json is lost.*"
                     r"config.optimizer.learning_rate: 0.05 -> 0.1"):
    train.train_and_evaluate(_config(optimizer=dict(learning_rate=0.1)), str(wd))
  assert not (wd / "config.json").exists()
  (wd / "config.json").write_text('{"seed": 0, "mod')   # damaged: the same as lost
  _same_results(train.train_and_evaluate(_config(), str(wd)), baseline[1])
  assert json.loads((wd / "config.json").read_text())["optimizer"]["learning_rate"] == 0.05


def test_lost_config_without_a_config_record_is_refused(tmp_path, baseline):
  wd = _copy(baseline, tmp_path)
  os.remove(wd / "config.json")
  shutil.rmtree(wd / "checkpoints")   # metrics alone say nothing about the config
  with pytest.raises(WorkdirConfigMismatch) as e:
    train.train_and_evaluate(_config(optimizer=dict(learning_rate=0.1)), str(wd))
  assert str(e.value) == (f"workdir {wd} holds a run but its config.json is missing and no checkpoint records "
                          "the config; use a new --workdir or put back its config.json")


def test_a_checkpoint_of_another_config_is_never_resumed(tmp_path, baseline):
  """config.json says lr 0.05 but the checkpoints were made at lr 0.1 (the issue's silent case 1)."""
  other = tmp_path / "other"
  train.train_and_evaluate(_config(num_steps=100, optimizer=dict(learning_rate=0.1)), str(other))
  wd = _copy(baseline, tmp_path)
  shutil.rmtree(wd / "checkpoints")
  shutil.copytree(other / "checkpoints", wd / "checkpoints")
  with pytest.raises(WorkdirConfigMismatch, match=r"checkpoint 100 .* was made by a different config "
                     r"\(config.optimizer.learning_rate: 0.1 -> 0.05\)"):
    train.train_and_evaluate(_config(num_steps=300), str(wd))


@pytest.mark.parametrize("damage,why", [
    ("delete", "missing"), ("garbage", "damaged"), ("empty", "edited or incomplete"), ("edit", "edited or incomplete")])
def test_a_finished_runs_summary_is_rebuilt_from_metrics(tmp_path, baseline, capfd, damage, why):
  wd = _copy(baseline, tmp_path)
  path = wd / "summary.json"
  if damage == "delete":
    os.remove(path)
  elif damage == "garbage":
    path.write_text('{"final": {"test_loss": ')
  elif damage == "empty":
    path.write_text("{}")
  else:
    s = json.loads(path.read_text())
    s["final"]["test_loss"]["mean"] = 0.0001
    path.write_text(json.dumps(s))
  capfd.readouterr()
  s = train.train_and_evaluate(_config(), str(wd))
  assert f"{path} was {why}" in capfd.readouterr().err
  _same_results(s, baseline[1])
  _same_results(json.loads(path.read_text()), baseline[1])


def test_a_finished_run_without_records_retrains_rather_than_reporting_empty(tmp_path, baseline, capfd):
  wd = _copy(baseline, tmp_path)
  os.remove(wd / "summary.json")
  os.remove(wd / "metrics.jsonl")
  capfd.readouterr()
  _same_results(train.train_and_evaluate(_config(), str(wd)), baseline[1])
  assert (f"{wd / 'metrics.jsonl'} is missing but checkpoints reach step 200: retraining from step 0"
          in capfd.readouterr().err)


def test_a_cut_metrics_line_is_repaired_and_the_gap_retrained(tmp_path, baseline, capfd):
  """metrics.jsonl cut inside the record of step 110 while checkpoint 200 exists: the lines from the cut on
  are dropped (one line says so) and steps 100..200 retrained from checkpoint 100: no gap in the history."""
  wd = _copy(baseline, tmp_path)
  path = wd / "metrics.jsonl"
  lines = path.read_text().splitlines(keepends=True)
  cut = next(i for i, l in enumerate(lines) if json.loads(l)["step"] == 110)
  path.write_text("".join(lines[:cut]) + lines[cut][:25])
  os.remove(wd / "summary.json")
  capfd.readouterr()
  s = train.train_and_evaluate(_config(), str(wd))
  err = capfd.readouterr().err
  assert f"{path}: line {cut + 1} is cut or damaged: dropped it (records end at step 100)" in err
  assert "retraining from step 100" in err
  _same_results(s, baseline[1])
  assert [r["step"] for r in s["history"]] == list(range(10, STEPS + 1, 10))


@pytest.mark.parametrize("name,body,expect", [
    ("raises", "def get_config():\n  raise RuntimeError('no data here')\n",
     "cannot load the config file: RuntimeError: no data here (line 2)"),
    ("syntax", "def get_config(:\n  pass\n", "cannot load the config file: SyntaxError: invalid syntax (line 1)"),
    ("none", "def get_config():\n  c = 1\n", "get_config() returned None (a missing return statement?)"),
])
def test_broken_config_files_are_one_line_exit_2(tmp_path, name, body, expect):
  path = tmp_path / f"{name}.py"
  path.write_text(body)
  rc, err = _cli([f"--config={path}", f"--workdir={tmp_path / 'never'}"])
  assert rc == 2 and _one_line(err) == f"error: --config={path}: {expect}", err
  assert not (tmp_path / "never").exists()


def test_blank_workdir_is_refused(tmp_path):
  rc, err = _cli([*CLI, "--workdir= "])
  assert rc == 2 and _one_line(err) == "error: --workdir=' ': blank or padded with spaces", err


@pytest.mark.parametrize("over,expect", [
    ({"seed": 2**32}, "config.seed=4294967296: must be in [0, 4.29497e+09]"),
    ({"seed": -1}, "config.seed=-1: must be in [0, 4.29497e+09]"),
    ({"seed": 2**32 - 2, "num_seeds": 3}, "config.num_seeds=3: seeds 4294967294..4294967296 pass 4294967295"),
    ({"optimizer": {"learning_rate": 1e308}}, "config.optimizer.learning_rate=1e+308: outside float32's range"),
])
def test_seeds_and_learning_rates_out_of_range_are_refused(over, expect):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(_config(**over))
  assert str(e.value).startswith(expect), str(e.value)


def test_a_seed_count_the_memory_cannot_hold_is_refused_before_allocation(tmp_path):
  c = _config(num_seeds=10**9)
  with pytest.raises(config_lib.ConfigError, match=r"config.num_seeds=1000000000: the training state needs about "
                     r"\d+\.\d GiB \(\d+\.\d\d MiB per seed\), more than the"):
    train.train_and_evaluate(c, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()


def _idx_dataset(root, train_shape, test_shape):
  root.mkdir()
  rng = np.random.default_rng(0)
  for prefix, shape in (("train", train_shape), ("t10k", test_shape)):
    idx.write_idx(str(root / f"{prefix}-images-idx3-ubyte"), rng.integers(0, 255, shape, dtype=np.uint8))
    idx.write_idx(str(root / f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, shape[0], dtype=np.uint8))


@pytest.mark.parametrize("test_shape,expect", [
    ((5, 14, 14), "dataset 'fashion_mnist': train examples are (28, 28, 1) but test examples (14, 14, 1)"),
    ((0, 28, 28), "dataset 'fashion_mnist': the test split is empty"),
])
def test_inconsistent_or_empty_data_is_one_line_and_writes_nothing(tmp_path, test_shape, expect):
  _idx_dataset(tmp_path / "data", (40, 28, 28), test_shape)
  c = _config(dataset=dict(name="fashion_mnist", data_dir=str(tmp_path / "data")))
  with pytest.raises(DataError) as e:
    loop.train_and_evaluate(c, str(tmp_path / "never"))
  assert str(e.value).startswith(expect), str(e.value)
  assert not (tmp_path / "never").exists()
