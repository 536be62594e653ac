"""A run you can trust and read: workdir lock, damaged checkpoints, bad paths, finished reruns,
skip-mode limits, a quiet console, TensorBoard events, results hygiene."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import default
from stable_training import train
from stable_training.data import idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=experiments/configs/default.py:tiny"]


def _cli(args, wait=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  p = subprocess.Popen([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if not wait:
    return p
  out, err = p.communicate(timeout=900)
  return p.returncode, out, err


def _one_line(err):
  lines = [l for l in err.strip().splitlines() if l.strip()]
  assert len(lines) == 1, err
  return lines[0]


def test_second_run_on_a_busy_workdir_is_refused_and_metrics_stay_clean(tmp_path):
  """A second run on a workdir in use exits 2 at once naming the holder's pid, and the holder's
  metrics.jsonl holds each step once, in order. The first run is given far more steps than it can
  do while the second starts (on an idle machine a tiny run finishes 3000 steps in ~2 s), and is
  stopped once the second has been refused."""
  wd = tmp_path / "wd"
  flags = TINY + [f"--workdir={wd}", "--config.num_steps=1000000", "--config.log_every=100",
                  "--config.eval_every=1000000", "--config.checkpoint_every=1000"]
  first = _cli(flags, wait=False)
  try:
    deadline = time.time() + 600  # until the first run is training: its first record is written
    metrics = wd / "metrics.jsonl"
    while (not metrics.exists() or b"\n" not in metrics.read_bytes()) and first.poll() is None \
        and time.time() < deadline:
      time.sleep(0.1)
    assert first.poll() is None, first.communicate()[1][-2000:]
    t0 = time.time()
    rc, _, err = _cli(flags)
    refused_after = time.time() - t0
    assert first.poll() is None, "the first run ended before the second was refused"
  finally:
    first.kill()
    first.communicate(timeout=900)
  assert rc == 2 and f"pid {first.pid}" in _one_line(err), err
  assert refused_after < 600   # at once, not after an orbax timeout (a hang guard, not a speed test)
  lines = (wd / "metrics.jsonl").read_text().splitlines()
  steps = []
  for i, line in enumerate(lines):
    try:
      steps.append(json.loads(line)["step"])
    except json.JSONDecodeError:
      assert i == len(lines) - 1, "only the line being written when the run was killed may be partial"
  assert steps and steps == list(range(100, 100 * len(steps) + 1, 100))


@pytest.mark.parametrize("args,expect", [
    (["--config=experiments/configs/nosuch.py"], "cannot load the config file"),
    (TINY + ["--config.dataset.name=fashion_mnist", "--config.dataset.data_dir=/nonexistent"], "file not found"),
    (["--config=experiments/configs/roaf.py:tiny", "--config.model.alhpa=0.5"], "unknown key config.model.alhpa"),
    # β defaults to None (= 1 − α): a typed placeholder, so the command line can set it (and is checked)
    (["--config=experiments/configs/roaf.py:tiny", "--config.model.beta=-0.5"], "config.model.beta=-0.5: must be in (0, inf)"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, expect):
  wd = tmp_path / "never"
  rc, _, err = _cli(args + [f"--workdir={wd}"])
  assert rc == 2 and expect in _one_line(err), err
  assert not wd.exists()


@pytest.mark.parametrize("config,key,value,expect", [
    ("roaf.py:tiny", "model.alpha", 1.5, "config.model.alpha=1.5: must be in (0, 1)"),
    ("roaf.py:tiny", "optimizer.learning_rate", float("nan"), "finite"),
    ("default.py:digits", "optimizer.learning_rate", 0.0, "config.optimizer.learning_rate=0"),
    ("default.py:digits", "model.activation", "swish", "valid choices are cos, gelu"),
    ("default.py:digits", "optimizer.name", "lbfgs", "config.optimizer.name='lbfgs': valid choices"),
    ("default.py:digits", "dataset.name", "imagenet21k", "config.dataset.name='imagenet21k'"),
])
def test_config_validation_first_line_names_the_value(config, key, value, expect):
  """The launcher's one line for a config it refuses is the first line of `trainers.resolve`'s error
  (experiments/main.py); that path, one line and exit 2 are the subprocess tests above."""
  import importlib
  from stable_training.config import ConfigError
  from stable_training.train import trainers
  name, variant = config.split(":")
  c = importlib.import_module(f"experiments.configs.{name[:-3]}").get_config(variant)
  group, field = key.split(".")
  setattr(c[group], field, value)
  with pytest.raises((ConfigError, ValueError)) as e:
    trainers.resolve(c)
  assert expect in str(e.value).splitlines()[0]


def test_bad_workdirs_and_truncated_data_are_one_line(tmp_path):
  afile = tmp_path / "afile"
  afile.write_text("keep me")
  rc, _, err = _cli(TINY + [f"--workdir={afile}"])
  assert rc == 2 and "not a directory" in _one_line(err) and afile.read_text() == "keep me"
  rc, _, err = _cli(TINY + ["--workdir=/proc/stable_training_never"])
  assert rc == 2 and "cannot create it" in _one_line(err)
  # A truncated IDX file in data_dir: the reader's message, one line.
  data = tmp_path / "fmnist"
  data.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 20), ("t10k", 5)):
    idx.write_idx(str(data / f"{prefix}-images-idx3-ubyte"), rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
    idx.write_idx(str(data / f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, n, dtype=np.uint8))
  img = data / "train-images-idx3-ubyte"
  img.write_bytes(img.read_bytes()[:1000])
  wd = tmp_path / "never"
  rc, _, err = _cli(TINY + [f"--workdir={wd}", "--config.dataset.name=fashion_mnist",
                            f"--config.dataset.data_dir={data}"])
  assert rc == 2 and "train-images-idx3-ubyte" in _one_line(err) and not wd.exists()


def _small(**over):
  c = default.get_config("tiny")
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 20, 10, 10, 10
  c.update(over)
  return c


def test_finished_rerun_keeps_summary_and_fewer_steps_is_refused(tmp_path):
  train.train_and_evaluate(_small(), str(tmp_path))
  before = (tmp_path / "summary.json").read_bytes()
  json.loads(before)  # strict JSON (no NaN)
  train.train_and_evaluate(_small(), str(tmp_path))
  assert (tmp_path / "summary.json").read_bytes() == before
  with pytest.raises(train.WorkdirConfigMismatch, match="trained to step 20 > config.num_steps=10"):
    train.train_and_evaluate(_small(num_steps=10), str(tmp_path))
  assert (tmp_path / "summary.json").read_bytes() == before


def test_truncated_latest_checkpoint_falls_back_to_the_same_result(tmp_path):
  ref = train.train_and_evaluate(_small(), str(tmp_path / "ref"))
  wd = tmp_path / "dmg"
  train.train_and_evaluate(_small(), str(wd))
  files = [f for f in glob.glob(str(wd / "checkpoints" / "20" / "state" / "**" / "*"), recursive=True)
           if os.path.isfile(f) and os.path.getsize(f) > 200 and "METADATA" not in f]
  big = max(files, key=os.path.getsize)
  with open(big, "r+b") as f:
    f.truncate(os.path.getsize(big) // 2)
  os.remove(wd / "summary.json")
  s = train.train_and_evaluate(_small(), str(wd))   # restores step 10, retrains 10 → 20
  assert s["final"]["test_loss"]["per_seed"] == ref["final"]["test_loss"]["per_seed"]
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps == [10, 20]


_TB_PROBE = r"""
import importlib.util, sys
from stable_training.train import records
tb = records.TensorBoard(sys.argv[1])
tb.write({"step": 3, "train_loss": {"mean": 0.25}})
tb.close()
print("torch imported:", "torch" in sys.modules)
if importlib.util.find_spec("torch") is not None:   # hidden for tensorboardX's import only
  import torch
  print("torch after:", float(torch.ones(2).sum()))
"""


def test_tensorboard_writer_leaves_torch_unimported(tmp_path):
  """tensorboardX imports torch where it is installed (1.5 s per launch); our writer does not."""
  r = subprocess.run([sys.executable, "-c", _TB_PROBE, str(tmp_path)], cwd=ROOT, capture_output=True,
                     text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr[-3000:]
  assert "torch imported: False" in r.stdout
  import importlib.util
  if importlib.util.find_spec("torch") is not None:
    assert "torch after: 2.0" in r.stdout
  events, = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert _read_scalars(events) == [(3, "train/loss", 0.25)]


def _read_scalars(path):
  """(step, tag, value) of an event file: TFRecord framing (u64 length, u32 crc, data, u32 crc)."""
  import struct
  from tensorboardX.proto import event_pb2
  out = []
  with open(path, "rb") as f:
    while header := f.read(12):
      (n,) = struct.unpack("<Q", header[:8])
      ev = event_pb2.Event.FromString(f.read(n))
      f.read(4)
      for v in ev.summary.value:
        out.append((ev.step, v.tag, v.simple_value))
  return out


def test_every_committed_table_names_its_command():
  tables = glob.glob(os.path.join(ROOT, "results", "**", "*.md"), recursive=True)
  assert tables
  missing = [os.path.relpath(t, ROOT) for t in tables
             if "scripts/" not in open(t).read() and "python" not in open(t).read()]
  assert not missing, f"tables without the command that regenerates them: {missing}"


def test_host_devices_auto_policy():
  """--host_devices=auto: the largest divisor of num_seeds within the cores (seeds split, never one
  seed's batch); nothing for one seed, --distributed or an XLA_FLAGS that sets it."""
  from experiments.main import host_device_count
  c = default.get_config("tiny")
  for seeds, cores, want in ((1, 2, 0), (2, 2, 2), (4, 2, 2), (3, 2, 0), (6, 4, 3), (16, 16, 16), (12, 8, 6)):
    c.num_seeds = seeds
    assert host_device_count("auto", c, cores, "", False) == want, (seeds, cores)
  c.num_seeds = 4
  assert host_device_count("auto", c, 2, "--xla_force_host_platform_device_count=3", False) == 0
  assert host_device_count("auto", c, 2, "", True) == 0
  assert host_device_count("5", c, 2, "", False) == 5 and host_device_count("0", c, 2, "", False) == 0
  with pytest.raises(ValueError, match=r"--host_devices=two: must be auto or an integer >= 0"):
    host_device_count("two", c, 2, "", False)
  # A study's runs: the largest divisor of every run's seed count (studies call it before JAX starts).
  from stable_training.train.sharding import auto_host_devices
  assert auto_host_devices([4, 8, 2], 16) == 2 and auto_host_devices([6, 9], 16) == 3
  assert auto_host_devices([8, 3], 2) == 0 and auto_host_devices([2, 1], 2) == 0 and auto_host_devices([], 4) == 0


def test_host_devices_auto_splits_seeds_with_the_same_numbers_and_the_console_is_quiet(tmp_path):
  """Two seeds on a 2-core CLI run: auto exposes 2 CPU devices and splits the seeds (one per device);
  per-seed results equal the single-device run (the same config in this one-device process). The same
  launch's console: named progress lines and evaluations, no orbax/XLA chatter; TensorBoard events written."""
  import jax
  assert jax.device_count() == 1
  wd = tmp_path / "auto"
  rc, _, err = _cli(TINY + [f"--workdir={wd}", "--config.num_seeds=2", "--host_devices=auto",
                            "--config.progress=auto"])
  assert rc == 0, err[-2000:]
  assert "orbax" not in err.lower() and "backend 'tpu'" not in err and "I1" not in err
  assert "[auto] step 20/20" in err and "test_accuracy=" in err     # named bar lines, eval printed
  events = glob.glob(str(wd / "events.out.tfevents.*"))
  assert events
  loss = [(st, v) for st, tag, v in _read_scalars(events[0]) if tag == "train/loss"]
  assert [st for st, _ in loss] == [10, 20]
  assert loss[-1][1] == pytest.approx(json.loads((wd / "summary.json").read_text())["final"]["train_loss"]["mean"],
                                      rel=1e-6)
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("the seed split needs 2 cores")
  c = default.get_config("tiny")
  c.num_seeds = 2
  runs = {"auto": json.loads((tmp_path / "auto" / "summary.json").read_text()),
          "0": train.train_and_evaluate(c, str(tmp_path / "0"))}
  assert runs["auto"]["info"]["devices"] == 2 and runs["auto"]["info"]["mesh_splits"] == "seeds"
  assert runs["0"]["info"]["devices"] == 1
  for key in ("train_loss", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(runs["auto"]["final"][key]["per_seed"], runs["0"]["final"][key]["per_seed"],
                               rtol=1e-5, atol=1e-6)
  rc, _, err = _cli(TINY + [f"--workdir={tmp_path / 'bad'}", "--host_devices=-1"])
  assert rc == 2 and _one_line(err) == "error: --host_devices=-1: must be auto or an integer >= 0"
  assert not (tmp_path / "bad").exists()
