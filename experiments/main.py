r"""Launcher: ``python -m experiments.main --config=CONFIG.py[:variant] --workdir=DIR [--config.KEY=VALUE ...]``.

Examples::

  python -m experiments.main --config=experiments/configs/default.py --workdir=/tmp/run1 \
      --config.model.depth=50 --config.seed=3
  python -m experiments.main --config=experiments/configs/default.py:digits --workdir=/tmp/d

Every config is validated before anything runs: an unknown key, a wrong type
or an invalid value prints one line naming the key and the valid choices and
exits with status 2, writing nothing. Re-running a killed command resumes it.

Exit status: 0 done; 2 bad input (flags, config file or values, data, a
workdir of another run), one line, nothing written; 3 the run failed (a
non-finite loss, a checkpoint that cannot be written), one line;
75 (``EX_TEMPFAIL``) stopped by SIGTERM or SIGINT with a checkpoint saved at
the current step (rerun the same command to resume: the result equals an
uninterrupted run's); 130 a second SIGINT (or one before training began)
stopped it without saving.

Multi-host (e.g. a TPU pod slice or several GPU hosts): start the same command
on every host with ``--distributed`` (plus the coordinator environment
variables JAX expects, or none on Cloud TPU), which calls
``jax.distributed.initialize()`` first; the data mesh then spans all hosts.
"""
from __future__ import annotations

import importlib.util
import logging as std_logging
import os
import re
import shutil
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (optionally :variant).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and summary.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
_HOST_DEVICES = flags.DEFINE_string(
    "host_devices", "auto", "CPU devices to expose (XLA's host platform): N, 0 = leave as is, or auto = the "
    "largest divisor of config.num_seeds that is <= the cores this process may use (not --distributed, "
    "XLA_FLAGS not already setting it), so the seeds split over the cores, one program "
    "each. No effect on GPU/TPU backends.")


def _usage_error(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def _load_config(argv):
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if path is None:
    return None
  spec = importlib.util.spec_from_file_location("_config_for_errors", path.split(":")[0])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*([path.split(":", 1)[1]] if ":" in path else []))


def _config_key_error(argv, err: Exception) -> str:
  """Turns a config_flags override error into one line naming the key."""
  text = (str(err).splitlines() or [type(err).__name__])[0]
  try:
    cfg = _load_config(argv)
  except Exception as e:  # noqa: BLE001 - the config file itself is broken
    return f"--config: {e}".splitlines()[0]
  if cfg is None:
    return text
  overrides = []
  for arg in argv[1:]:
    m = re.match(r"--config\.([\w.]+)(?:=(.*))?$", arg)
    if m:
      overrides.append((m.group(1), m.group(2)))
  for key, _ in overrides:  # unknown keys first: they explain most errors
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        where = "config." + ".".join(parts[:i]) if i else "config"
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a group)"
        return f"unknown key config.{key}; valid keys of {where}: {valid}"
      node = node[part]
  for key, value in overrides:
    node = cfg
    for part in key.split("."):
      node = node[part]
    if not _parses_as(value, node):
      return f"config.{key}={value!r}: expected a value of type {type(node).__name__}"
  return text


def _parses_as(value, like) -> bool:
  """Whether the override string `value` parses as the type of `like`."""
  if value is None or isinstance(like, str):
    return True
  try:
    if isinstance(like, bool):
      return value.lower() in ("true", "false", "1", "0")
    if isinstance(like, int):
      int(value)
    elif isinstance(like, float):
      float(value)
  except ValueError:
    return False
  return True


def _config_file_error(argv, err: BaseException) -> str:
  """One line for a config file that fails to load: the exception and where in the file it was raised."""
  arg = next((a for a in argv if a.startswith("--config=")), "--config")
  path = os.path.abspath(arg.split("=", 1)[1].split(":")[0]) if "=" in arg else ""
  where = ""
  if isinstance(err, SyntaxError) and err.lineno:
    where = f" (line {err.lineno})"
  tb = err.__traceback__
  while tb is not None:  # the innermost frame in the config file itself
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
      where = f" (line {tb.tb_lineno})"
    tb = tb.tb_next
  msg = (str(err.msg if isinstance(err, SyntaxError) else err).strip().splitlines() or [""])[0]
  return f"{arg}: cannot load the config file: {type(err).__name__}{': ' + msg if msg else ''}{where}"


class _DropConfigFlagsWarnings(std_logging.Filter):
  """config_flags logs "get_config() returned None" itself; the launcher says it in its one line."""

  def filter(self, record):
    return not record.pathname.endswith("config_flags.py")


def parse_flags(argv):
  """absl flag parsing whose every error is one line and exit status 2."""
  quiet = _DropConfigFlagsWarnings()
  std_logging.getLogger("absl").addFilter(quiet)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    cause = e.__cause__ or e.__context__ or e
    _usage_error(_config_key_error(argv, cause) if "config" in str(e) else str(e))
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    _usage_error(_config_key_error(argv, e))
  except Exception as e:  # noqa: BLE001 - the config file raised (or does not parse) while loading
    _usage_error(_config_file_error(argv, e))
  finally:
    std_logging.getLogger("absl").removeFilter(quiet)


def _config_or_exit():
  """The parsed config, or one line naming the config file and why it could not be loaded (exit 2)."""
  try:
    config = _CONFIG.value
    if config is not None:
      config.keys()  # the lazy placeholder of a file that failed to load raises here
    return config
  except Exception as e:  # noqa: BLE001 - config_flags defers a broken/missing file to first access
    cause = e.__cause__ or e
    lines = [l.strip() for l in str(cause).splitlines() if l.strip()]
    detail = next((l for l in reversed(lines) if "Errno" in l or "Error" in l), lines[-1] if lines else "")
    arg = next((a for a in sys.argv if a.startswith("--config=")), "--config")
    _usage_error(f"{arg}: cannot load the config file: {detail}")


def _prepare_workdir(path: str) -> bool:
  """Creates `path` (one line, exit 2, when it is a file or cannot be created); True if it was created."""
  if os.path.exists(path) and not os.path.isdir(path):
    _usage_error(f"--workdir={path}: exists and is not a directory")
  if os.path.isdir(path):
    if not os.access(path, os.W_OK | os.X_OK):
      _usage_error(f"--workdir={path}: not writable")
    return False
  try:
    os.makedirs(path)
    probe = os.path.join(path, ".write_test")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    _usage_error(f"--workdir={path}: cannot create it ({e.strerror or e})")
  return True


def _quiet_logging() -> None:
  from stable_training.train.records import quiet_logging
  quiet_logging(sys.argv[1:])  # the program's own arguments: -v/--verbosity keeps library INFO logs


def host_device_count(value, config, cores: int, xla_flags: str, distributed: bool) -> int:
  """CPU devices to expose for `--host_devices=value` (0: leave XLA's default); both trainers split
  the seeds over them.

  ``auto``: `sharding.auto_host_devices` of ``config.num_seeds`` — the largest
  d <= `cores` dividing it, so the engine splits the seeds over d devices.
  """
  if value != "auto":
    try:
      n = int(value)
    except ValueError:
      n = -1
    if n < 0:
      raise ValueError(f"--host_devices={value}: must be auto or an integer >= 0")
    return n
  if distributed or "xla_force_host_platform_device_count" in xla_flags or config is None:
    return 0
  from stable_training.train.sharding import auto_host_devices
  seeds = config.get("num_seeds", 1)
  return auto_host_devices([seeds], cores) if isinstance(seeds, int) else 0


def main(argv):
  del argv
  from stable_training import allocator
  allocator.setup(__name__)  # before anything is written (see stable_training/allocator.py)
  _quiet_logging()
  config = _config_or_exit()
  if config is None and any(a.startswith("--config=") for a in sys.argv):
    arg = next(a for a in sys.argv if a.startswith("--config="))
    _usage_error(f"{arg}: get_config() returned None (a missing return statement?)")
  if _WORKDIR.value is not None and _WORKDIR.value != _WORKDIR.value.strip():
    _usage_error(f"--workdir={_WORKDIR.value!r}: blank or padded with spaces")
  try:
    from stable_training.train.sharding import usable_cores
    cores = usable_cores()
    n_host = host_device_count(_HOST_DEVICES.value, config, cores, os.environ.get("XLA_FLAGS", ""),
                               _DISTRIBUTED.value)
  except ValueError as e:
    _usage_error(str(e))
  if n_host:  # read when the CPU backend starts, i.e. after this
    from stable_training.train.sharding import with_host_devices
    os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS", ""), n_host)
  if config is None or not _WORKDIR.value:
    _usage_error("--config and --workdir are required")
  from stable_training.config import ConfigError
  from stable_training.train import trainers
  try:
    resolved = trainers.resolve(config)  # validated here, once: trainers.run does not check it again
  except (ConfigError, ValueError) as e:
    _usage_error(str(e).splitlines()[0])
  from stable_training import compilation_cache
  try:
    compilation_cache.setup(__name__)  # a rerun or resume of this config skips XLA's compile
  except ValueError as e:
    _usage_error(str(e))
  primary = True
  if _DISTRIBUTED.value:
    import jax
    jax.distributed.initialize()
    primary = jax.process_index() == 0  # process 0 prepares (and on refusal removes) the shared workdir
  from stable_training.data import DataError
  from stable_training.train import NonFiniteError, WorkdirConfigMismatch
  from stable_training.train.checkpoint import CheckpointMismatch
  from stable_training.train.checkpoint import CheckpointSaveError
  from stable_training.train.lock import EXIT_PREEMPTED, Preempted, WorkdirBusy
  from stable_training.train.checkpoint import quiet_orbax
  # Orbax's failures reach the run as exceptions, reported in one line; its own
  # ERROR records (a traceback per writer thread) would repeat them hundreds of lines long.
  quiet_orbax(std_logging.CRITICAL)
  workdir = _WORKDIR.value
  created = _prepare_workdir(workdir) if primary else False
  try:
    summary = trainers.run(resolved, workdir)
  except (ConfigError, WorkdirConfigMismatch, DataError, WorkdirBusy, CheckpointMismatch) as e:
    if created:  # a run refused before it started leaves nothing behind
      shutil.rmtree(workdir, ignore_errors=True)
    _usage_error(str(e).splitlines()[0])
  except (NonFiniteError, CheckpointSaveError) as e:
    _run_error(str(e))
  except OSError as e:  # e.g. the disk filled while writing metrics
    _run_error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
  except Preempted as e:
    print(f"{e}", file=sys.stderr, flush=True)
    sys.exit(EXIT_PREEMPTED)
  except KeyboardInterrupt as e:  # before the run could take the signal, or a second one
    print(f"interrupted: {e or 'before training began'}; nothing saved since the last checkpoint",
          file=sys.stderr, flush=True)
    sys.exit(130)
  print(f"done: {_final_line(summary)}")


_HARD_EXIT = False   # set by the program entry point below; main() called in-process raises SystemExit


def _run_error(msg: str) -> None:
  print(f"error: {(msg.splitlines() or [''])[0]}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  if _HARD_EXIT:
    # Not sys.exit: after a failed save, orbax leaves non-daemon threads waiting for
    # signals that never come, and the interpreter would wait for them at exit.
    # The run's files are closed and its lock released by now.
    sys.stderr.flush()
    os._exit(3)
  sys.exit(3)


def _final_line(summary: dict) -> str:
  """``key=mean±std`` for the final train/held-out losses and metrics of a summary."""
  final = summary.get("final", {})
  keys = [k for k in final if k.startswith(("train_", "test_", "val_", "eval_"))
          and isinstance(final[k], dict) and "std" in final[k]]
  fmt = lambda v: "nan" if v is None else f"{v:.4f}"
  return " ".join(f"{k}={fmt(final[k]['mean'])}±{fmt(final[k]['std'])}" for k in keys)


if __name__ == "__main__":
  _HARD_EXIT = True
  app.run(main, flags_parser=parse_flags)
