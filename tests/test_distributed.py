"""Multi-host: 2 processes × 2 CPU devices (jax.distributed, Gloo) train what 1 process × 4 devices trains.

Both runs go through the launcher. The 2 processes share one workdir, as the
hosts of a real multi-host run share one (orbax writes a checkpoint from all
processes into one directory); they start with ``--distributed`` and the
environment a SLURM job step gives each task (``SLURM_*``), with
``JAX_COORDINATOR_ADDRESS`` on a free local port: `jax.distributed.initialize()`
reads no process count or id from the environment except through such a
cluster manager.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_GUARD_S = 600

# The launcher, then the process/device counts it ran with (printed before
# jax.distributed's exit hooks run): two independent 2-device runs would give
# the same numbers as one 4-device run, so the test checks that they were one job.
LAUNCH = r"""
import runpy, sys
sys.argv = ["experiments.main", *sys.argv[1:]]
try:
  runpy.run_module("experiments.main", run_name="__main__", alter_sys=True)
finally:
  import jax
  print(f"jax: process {jax.process_index()} of {jax.process_count()}, {jax.device_count()} devices",
        file=sys.stderr, flush=True)
"""

ARGS = ["--config=experiments/configs/default.py:tiny", "--config.num_seeds=2",
        "--config.num_steps=20", "--config.batch_size=32", "--config.log_every=10",
        "--config.eval_every=20", "--config.checkpoint_every=20", "--config.progress=none"]
KEYS = ("train_loss", "test_loss", "test_accuracy", "grad_norm")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip(), **extra)
  return env


def _start(args, env):
  return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_all(procs, timeout=HANG_GUARD_S):
  """Waits for every process; as soon as one fails, stops the others (a peer would wait on it)."""
  deadline = time.monotonic() + timeout
  while any(p.poll() is None for p in procs):
    failed = [p for p in procs if p.poll() not in (None, 0)]
    if failed or time.monotonic() > deadline:
      for p in procs:
        if p.poll() is None:
          p.kill()
    time.sleep(0.2)
  outs = [p.communicate() for p in procs]
  report = "\n".join(f"--- process {i}: exit {p.returncode}\n{err[-3000:]}"
                     for i, (p, (_, err)) in enumerate(zip(procs, outs)))
  assert time.monotonic() <= deadline, f"hang guard ({timeout} s) hit:\n{report}"
  assert all(p.returncode == 0 for p in procs), report
  return outs


def _per_seed(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    final = json.load(f)["final"]
  return {k: np.asarray(final[k]["per_seed"]) for k in KEYS}


def _distributed(workdir, extra=()):
  port = _free_port()
  procs = [_start([*ARGS, *extra, f"--workdir={workdir}", "--distributed"],
                  _env(2, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", SLURM_JOB_ID="1",
                       SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2", SLURM_PROCID=str(i),
                       SLURM_LOCALID=str(i)))
           for i in range(2)]
  return _wait_all(procs)


def _history(workdir, step):
  with open(os.path.join(workdir, "summary.json")) as f:
    rec, = [r for r in json.load(f)["history"] if r["step"] == step]
  return {k: np.asarray(rec[k]["per_seed"]) for k in ("train_loss", "test_loss", "test_accuracy")}


@pytest.mark.slow
def test_two_processes_of_two_devices_equal_one_process_of_four(tmp_path):
  ref, mh = tmp_path / "one_process", tmp_path / "two_processes"
  # One process × 4 devices trains 30 steps while the 2 processes train 20,
  # then resume from their step-20 checkpoint to 30.
  one = _start([*ARGS, "--config.num_steps=30", f"--workdir={ref}"], _env(4))
  try:
    outs = _distributed(mh)
  except BaseException:
    one.kill()
    one.communicate()
    raise
  (_, ref_err), = _wait_all([one])
  assert "jax: process 0 of 1, 4 devices" in ref_err
  for i, (out, err) in enumerate(outs):
    assert f"jax: process {i} of 2, 4 devices" in err, err[-2000:]
    assert "done:" in out
  # Every process ends with the same summary; process 0 wrote the workdir's files once.
  assert outs[0][0].splitlines()[-1] == outs[1][0].splitlines()[-1]
  with open(mh / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [10, 20]
  assert sorted(os.listdir(mh / "checkpoints")) == ["20"]
  a, b = _history(ref, 20), _history(mh, 20)
  assert len(set(np.round(a["test_loss"], 6))) == 2  # two different seeds
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"step 20: {k}")

  # Resume: the two processes restore step 20 together and train on to 30.
  outs = _distributed(mh, ["--config.num_steps=30"])
  assert all("resumed" in err for _, err in outs)
  with open(mh / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [10, 20, 30]
  a, b = _per_seed(ref), _per_seed(mh)
  for k in KEYS:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"step 30: {k}")
