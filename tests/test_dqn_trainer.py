"""The ``dqn`` trainer: same numbers as `dqn.make_train`, resume after SIGKILL,
one-line config errors, the non-finite guard."""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import jax
import numpy as np
import pytest

from experiments.configs import dqn as dqn_configs
from stable_training.config import ConfigError
from stable_training.rl import dqn, trainer
from stable_training.train import NonFiniteError, WorkdirConfigMismatch, trainers
from stable_training.train.lock import EXIT_PREEMPTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 20 chunks of 16 env steps, a checkpoint after each: long enough to be
# killed between its first checkpoint and its end.
RUN = {"total_steps": 320, "checkpoint_every": 16, "progress": "none"}
CLI = ["--config=experiments/configs/dqn.py:tiny"] + [f"--config.{k}={v}" for k, v in RUN.items()]


def tiny(**over):
  c = dqn_configs.get_config("tiny")
  c.update(dict(RUN, **over))
  return c


def per_seed(rec, key):
  return np.asarray(rec[key]["per_seed"], dtype=float)  # null (NaN) → nan


def _kill_after_first_checkpoint(p: subprocess.Popen, ckpt, timeout=900) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline and p.poll() is None:
    if ckpt.exists() and any(d.isdigit() for d in os.listdir(ckpt)):
      break
    time.sleep(0.01)
  p.send_signal(signal.SIGKILL)
  p.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Three compiles overlapped on the two cores: a launcher run killed by a
  watcher thread after its first checkpoint, `make_train`'s program (a
  thread) and the uninterrupted trainer run (here)."""
  base = tmp_path_factory.mktemp("dqn")
  # A persistent compilation cache shared by the killed run and its rerun:
  # the rerun does not compile again.
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(base / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  cmd = [sys.executable, "-m", "experiments.main", *CLI, f"--workdir={base / 'killed'}"]
  killed = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  watcher = threading.Thread(target=_kill_after_first_checkpoint,
                             args=(killed, base / "killed" / "checkpoints"))
  watcher.start()
  keys = trainer.seed_keys(tiny())
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    train = pool.submit(lambda: jax.jit(jax.vmap(dqn.make_train(tiny()))).lower(keys).compile())
    summary = trainers.run(tiny(), str(base / "full"))
    _, metrics = train.result()(keys)
  watcher.join()
  return types.SimpleNamespace(summary=summary, full=base / "full", metrics=metrics, keys=keys,
                               killed=killed, rerun=cmd, env=env, wd=base / "killed")


def _same(key, got, want):
  """Chunk-mean losses to 1 ulp (XLA may order a sum differently per program or device split);
  the trajectory itself (returns) exactly."""
  if key in ("loss", "q_mean"):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6, err_msg=key)
  else:
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=key)


def test_trainer_equals_vmapped_make_train(runs):
  summary, wd, m = runs.summary, runs.full, runs.metrics
  c = tiny()
  np.testing.assert_array_equal(np.asarray(runs.keys), np.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
  hist = summary["history"]
  assert [r["step"] for r in hist] == list(dqn.eval_steps(c))
  for key in trainer.STAT_KEYS:
    _same(key, np.stack([per_seed(r, key) for r in hist], axis=1), m[key])  # [seeds, chunks]
  assert np.isfinite(per_seed(summary["final"], "loss")).all()
  assert summary["seeds"] == [0, 1]
  assert summary["first_nonfinite_step"] == [-1, -1]
  # 4→8→8→2 MLP, no target, SGD + clipping keep no state.
  assert summary["memory_bytes_per_seed"] == 4 * (4 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2)
  on_disk = json.load(open(wd / "summary.json"))
  assert on_disk["final"]["eval_return"] == summary["final"]["eval_return"]
  assert json.load(open(wd / "config.json"))["clip_output_norm"] == 1.0


def test_resume_after_sigkill_matches_uninterrupted(runs):
  full, wd = runs.summary, runs.wd
  assert runs.killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (wd / "summary.json").exists()
  r = subprocess.run(runs.rerun, cwd=ROOT, env=runs.env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed" in r.stderr
  assert r.stdout.startswith("done: eval_return=")
  got = json.load(open(wd / "summary.json"))
  # The CLI run splits its 2 seeds over 2 CPU devices (--host_devices=auto on 2 cores), the full run
  # in this process has one device: the same trajectories.
  assert got["devices"] == min(2, len(os.sched_getaffinity(0))) and full["devices"] == 1
  for key in trainer.STAT_KEYS:
    _same(key, per_seed(got["final"], key), per_seed(full["final"], key))
    _same(key, [per_seed(h, key) for h in got["history"]], [per_seed(h, key) for h in full["history"]])
  steps = [json.loads(line)["step"] for line in open(wd / "metrics.jsonl")]
  assert steps == list(range(16, 321, 16))  # each chunk once


@pytest.mark.parametrize("over,expect", [
    ({"target": "hard"}, "config.target='hard': valid choices are polyak, none"),
    ({"learning_rate": float("nan")}, "config.learning_rate=nan: must be a finite number"),
    ({"learning_rate": 0.0}, "config.learning_rate=0.0: must be in (0, inf)"),
    ({"gamma": float("inf")}, "config.gamma=inf: must be a finite number"),
    ({"gamma": 1.5}, "config.gamma=1.5: must be in [0, 1]"),
    ({"hidden": (8, 0)}, "config.hidden=(8, 0): must be a non-empty tuple"),
    ({"batch_size": 8.0}, "config.batch_size=8.0: must be an integer"),
    ({"checkpoint_every": 24}, "config.checkpoint_every=24: must be a multiple of config.eval_every=16"),
    ({"on_nonfinite": "skip"}, "config.on_nonfinite='skip': valid choices are stop, continue"),
    ({"num_seeds": 0}, "config.num_seeds=0: must be in [1, inf)"),
    ({"seed": 2**32 - 1}, "config.num_seeds=2: seeds 4294967295..4294967296 pass 4294967295"),
    ({"lr": 0.1}, "unknown key config.lr; valid top-level keys: activation, batch_size"),
])
def test_bad_value_one_line_writes_nothing(tmp_path, over, expect):
  wd = tmp_path / "never"
  with pytest.raises(ConfigError) as e:
    trainers.run(dict(tiny(), **over), str(wd))
  assert "\n" not in str(e.value) and str(e.value).startswith(expect), str(e.value)
  assert not wd.exists()


def test_workdir_of_other_eval_every_is_refused(runs):
  wd = runs.full
  with pytest.raises(WorkdirConfigMismatch, match=r"config.eval_every: 16 -> 32"):
    trainers.run(tiny(eval_every=32, checkpoint_every=32), str(wd))


# GELU with a Polyak target and lr 1e6 overflows within the first updates.
DIVERGE = dict(activation="gelu", target="polyak", clip_output_norm=0.0, learning_rate=1e6,
               total_steps=64, checkpoint_every=16)


def test_nonfinite_stop_names_step_and_seed(tmp_path):
  with pytest.raises(NonFiniteError, match=r"non-finite .* at env step \d+ \(seed [01]"):
    trainers.run(tiny(**DIVERGE), str(tmp_path))
  assert not (tmp_path / "summary.json").exists()


def test_nonfinite_continue_records_and_resumes_with_target(tmp_path):
  s = trainers.run(tiny(**DIVERGE, on_nonfinite="continue"), str(tmp_path))  # compiled above
  first = s["first_nonfinite_step"]
  assert all(17 <= f <= 64 for f in first), first  # after the 16 warm-up steps
  assert np.all(np.isnan(per_seed(s["final"], "loss")))
  recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert recs[-1]["loss"]["mean"] is None  # NaN written as null
  # Rerunning the finished run restores the checkpoint holding the target
  # network (checksums verified) and trains nothing.
  again = trainers.run(tiny(**DIVERGE, on_nonfinite="continue"), str(tmp_path))
  assert again["first_nonfinite_step"] == first
  assert len(again["history"]) == 4


def test_launcher_exit_codes(tmp_path, monkeypatch):
  """`experiments.main.main` dispatches to the dqn trainer: exit status 3 on
  non-finite values, 2 on a bad value (nothing written).

  In-process with the parsed flags stubbed (flag parsing is tested in
  tests/test_train.py), so the program compiled by the tests above is reused.
  """
  from experiments import main as launcher
  monkeypatch.setattr(launcher, "_DISTRIBUTED", types.SimpleNamespace(value=False))
  monkeypatch.setattr(launcher, "_HOST_DEVICES", types.SimpleNamespace(value=0))
  for over, code, wd in ((DIVERGE, 3, tmp_path / "nan"), ({"target": "hard"}, 2, tmp_path / "bad")):
    monkeypatch.setattr(launcher, "_CONFIG", types.SimpleNamespace(value=tiny(**over)))
    monkeypatch.setattr(launcher, "_WORKDIR", types.SimpleNamespace(value=str(wd)))
    with pytest.raises(SystemExit) as e:
      launcher.main([])
    assert e.value.code == code
  assert (tmp_path / "nan" / "config.json").exists() and not (tmp_path / "bad").exists()


def _one_line(err):
  lines = [l for l in err.strip().splitlines() if l.strip()]
  assert len(lines) == 1, err
  return lines[0]


def test_sigterm_saves_at_its_chunk_and_the_rerun_equals_an_uninterrupted_run(runs, tmp_path):
  """A real SIGTERM to a launcher DQN run: the shared host loop saves a checkpoint at the next chunk
  boundary and exits 75 with one line (metrics flushed, lock released); rerunning the same command
  resumes there and ends with the uninterrupted run's numbers."""
  wd = tmp_path / "wd"
  cmd = [*runs.rerun[:-1], f"--workdir={wd}"]
  p = subprocess.Popen(cmd, cwd=ROOT, env=runs.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = wd / "metrics.jsonl"
  deadline = time.time() + 900
  while p.poll() is None and time.time() < deadline and not (metrics.exists() and metrics.stat().st_size):
    time.sleep(0.005)
  p.send_signal(signal.SIGTERM)
  _, err = p.communicate(timeout=900)
  assert p.returncode == EXIT_PREEMPTED, f"exit {p.returncode} (finished before the signal?): {err[-3000:]}"
  line = _one_line(err)
  step = int(line.split(" at step ")[1].split(",")[0])
  assert line == f"stopped by SIGTERM at step {step}, checkpoint saved; rerun the same command to resume"
  assert step % 16 == 0 and 16 <= step < 320
  assert str(step) in os.listdir(wd / "checkpoints")
  assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
  assert (wd / ".lock").read_text() == ""   # released: no stale pid
  assert not (wd / "summary.json").exists()
  r = subprocess.run(cmd, cwd=ROOT, env=runs.env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resumed {wd} at env step {step}" in r.stderr
  got = json.load(open(wd / "summary.json"))
  for key in trainer.STAT_KEYS:
    _same(key, [per_seed(h, key) for h in got["history"]], [per_seed(h, key) for h in runs.summary["history"]])
  assert got["first_nonfinite_step"] == runs.summary["first_nonfinite_step"]
  assert [json.loads(l)["step"] for l in open(metrics)] == list(range(16, 321, 16))  # each chunk once


def test_checkpoints_record_their_config_and_another_config_is_refused(runs, tmp_path):
  """Each DQN checkpoint holds the config record: with config.json lost, another config is refused
  (one line naming the key) and the run's own config gets config.json back; a checkpoint whose
  record differs from config.json is never resumed."""
  other = dict(tiny(), learning_rate=0.02)
  lost = tmp_path / "lost"
  shutil.copytree(runs.full, lost)
  os.remove(lost / "config.json")
  with pytest.raises(WorkdirConfigMismatch) as e:
    trainers.run(other, str(lost))
  assert str(e.value) == (f"workdir {lost} holds a run of a different config (config of its checkpoint 320: "
                          "config.json is lost) (config.learning_rate: 0.01 -> 0.02); use a new --workdir "
                          "or the original config")
  assert not (lost / "config.json").exists()
  again = trainers.run(tiny(), str(lost))   # finished: its summary, config.json restored from the checkpoint
  assert json.load(open(lost / "config.json")) == json.load(open(runs.full / "config.json"))
  _same("eval_return", per_seed(again["final"], "eval_return"), per_seed(runs.summary["final"], "eval_return"))
  edited = tmp_path / "edited"
  shutil.copytree(runs.full, edited)
  stored = json.load(open(edited / "config.json"))
  (edited / "config.json").write_text(json.dumps(dict(stored, learning_rate=0.02)))
  with pytest.raises(WorkdirConfigMismatch) as e:
    trainers.run(other, str(edited))
  assert "\n" not in str(e.value) and str(e.value).startswith(
      f"checkpoint 320 in {edited}/checkpoints was made by a different config (config.learning_rate: 0.01 -> 0.02)")


def test_a_run_validates_its_config_once(runs, tmp_path, monkeypatch):
  """`trainers.run` checks a config once (none more for one `trainers.resolve` already checked)."""
  calls = []
  real = trainer.resolve
  monkeypatch.setattr(trainer, "resolve", lambda c: calls.append(1) or real(c))
  wd = tmp_path / "copy"
  shutil.copytree(runs.full, wd)
  trainers.run(tiny(), str(wd))
  assert len(calls) == 1
  resolved = trainers.resolve(tiny())
  s = trainers.run(resolved, str(wd))
  assert len(calls) == 2 and resolved.trainer == "dqn" and resolved.config.clip_output_norm == 1.0
  assert s["first_nonfinite_step"] == runs.summary["first_nonfinite_step"]
