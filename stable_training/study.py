"""What every `scripts/reproduce_*.py` sweep shares: flags, where runs and results go, running a config.

A study is a list of configs run through the one engine
(`stable_training.train.trainers.run`), then tables and figures made from
their ``summary.json`` files (big_vision's way). Flag convention, shared by
every study script (absl)::

  --out            results folder (default: results/<study> for the full setting;
                   a fresh temporary folder for --quick / --tiny, so smoke budgets
                   never write over committed results)
  --workdir_root   where each run's workdir goes (default: a temporary folder);
                   rerunning with the same root resumes killed runs
  --quick / --tiny smaller budgets (minutes / seconds)
  --tag            suffix of the output file names
  --host_devices   CPU devices to split each run's seeds over (auto: see
                   `setup_process`)
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from absl import flags

from stable_training.config import apply_overrides  # noqa: F401  (the study configs' name for it)
from stable_training.data.sources import FASHION_MNIST_DIR
from stable_training.studies import sweep as _sweep
# Flag-free helpers that live in studies/sweep.py (package code), under their former names here.
from stable_training.studies.sweep import (CURVE_LABELS, curve_metric, finished_before,  # noqa: F401
                                           plot_curve_panels, previous_payload, run_curve, set_budget,
                                           train_records)


def define_flags(study: str) -> None:
  """Defines the shared flags (see the module docstring) for study `study`."""
  flags.DEFINE_string("out", None, f"Results folder (default: results/{study} for the full setting, "
                      "a temporary folder for --quick/--tiny).")
  flags.DEFINE_string("workdir_root", None, "Folder of the runs' workdirs (default: a temporary folder).")
  flags.DEFINE_bool("quick", False, "Minutes-long budget.")
  flags.DEFINE_bool("tiny", False, "Seconds-long smoke budget (the test suite's).")
  flags.DEFINE_string("tag", "", "Suffix of the output file names (runs outside the presets).")
  flags.DEFINE_string("host_devices", "auto", "CPU devices to split each run's seeds over: N, 0 = one "
                      "device, auto = the largest divisor of every run's seed count within the cores.")
  flags.register_validator("host_devices", lambda v: v == "auto" or v.isdigit(),
                           message="must be auto or an integer >= 0")
  flags.DEFINE_string("data_dir", "", "Dataset folder (default: the loader's, e.g. " + FASHION_MNIST_DIR + ").")


def app_run(main, *, compilation_cache: bool = True) -> None:
  """A study script's entry point (``if __name__ == "__main__": study.app_run(main)``): the allocator
  choice, the persistent compilation cache (`stable_training.compilation_cache`; off for a benchmark
  that times compiles: ``compilation_cache=False``), then absl's ``app.run(main)``.

  The allocator belongs to the program, not the library: only here (the script run as the program)
  does the process re-execute itself with tcmalloc preloaded where it is installed
  (`stable_training.allocator.setup`; ``STABLE_TRAINING_ALLOCATOR`` chooses otherwise). A main
  called in-process (tests, another study) never re-executes. A run stopped by SIGTERM/SIGINT (its
  checkpoint saved, `stable_training.train.lock.Preempted`) ends the script with the launcher's status
  75 and one line; rerunning the same command resumes it.
  """
  from absl import app
  from stable_training import allocator
  allocator.setup("__main__")
  if compilation_cache:
    from stable_training import compilation_cache as cache
    try:
      cache.setup("__main__")
    except ValueError as e:   # a bad STABLE_TRAINING_COMPILATION_CACHE: one line, the launcher's status 2
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  try:
    with TemporaryWorkdirs():  # the script's temporary workdirs, removed when main returns or raises
      app.run(main)
  except KeyboardInterrupt as e:
    # imported here: stable_training.train (orbax) is heavy and only a training run raises Preempted
    from stable_training.train.lock import EXIT_PREEMPTED, Preempted
    if not isinstance(e, Preempted):
      raise
    print(f"{e}", file=sys.stderr, flush=True)   # SIGTERM/SIGINT, checkpoint saved: rerunning resumes
    sys.exit(EXIT_PREEMPTED)


def quiet_logging() -> None:
  """Library INFO logging off unless this script's command line has ``-v``/``--verbosity``
  (`records.quiet_logging` of ``sys.argv[1:]``: the script is the program, so it may read argv)."""
  from stable_training.train import records
  records.quiet_logging(sys.argv[1:])


def setup_process(seed_counts=()) -> int:
  """First thing in a study's main: the process set up as `experiments.main` sets up one run.

  The CPU cores as devices for runs of `seed_counts` seeds: with
     ``--host_devices=auto``, d = `sharding.auto_host_devices` (the largest
     divisor of every count within the cores), so the engine splits each run's
     vmapped seeds over d devices; a study that mixes counts with no common
     divisor (or passes none) keeps one device (splitting one seed's batch over
     CPU devices is slower). Must run before JAX starts its backend (XLA reads
     the flag then); no effect on GPU/TPU backends.

  Returns the CPU devices requested (0: none).
  """
  from stable_training.train.sharding import auto_host_devices, usable_cores, with_host_devices
  value = flags.FLAGS.host_devices
  n = auto_host_devices(seed_counts, usable_cores()) if value == "auto" else int(value)
  xla = os.environ.get("XLA_FLAGS", "")
  if n < 2 or "xla_force_host_platform_device_count" in xla:
    return 0
  os.environ["XLA_FLAGS"] = with_host_devices(xla, n)
  # JAX has no public "backends started?" query: start the CPU backend now (the study would next) and
  # check that it read the flag; a backend started earlier keeps its device count.
  import jax
  if len(jax.devices("cpu")) != n:
    os.environ["XLA_FLAGS"] = xla
    raise RuntimeError("setup_process must run before JAX starts its backend")
  return n


def setting() -> str:
  """``tiny``, ``quick`` or ``full`` from the flags."""
  f = flags.FLAGS
  return "tiny" if f.tiny else "quick" if f.quick else "full"


def out_dir(study: str) -> str:
  """`--out`, else results/<study> (full) or a fresh temporary folder (--quick / --tiny)."""
  f = flags.FLAGS
  if f.out:
    path = f.out
  elif setting() == "full":
    path = os.path.join("results", study)
  else:
    path = tempfile.mkdtemp(prefix=f"{study}_{setting()}_")
  os.makedirs(path, exist_ok=True)
  return path


def stem(name: str) -> str:
  """Output file stem: ``name[_quick|_tiny][_tag]``."""
  s = setting()
  tag = flags.FLAGS.tag
  return name + ("" if s == "full" else f"_{s}") + (f"_{tag}" if tag else "")


def command(script: str, only=None) -> str:
  """``python SCRIPT --flag=value …`` with the flags given on this run's command line (the Regenerate line).

  `only`: these flag names, in this order (default: every flag but ``--workdir_root``, sorted).
  """
  f = flags.FLAGS
  names = list(only) if only is not None else sorted(n for n in f if n != "workdir_root")
  return " ".join(["python", script, *(f[n].serialize() for n in names if f[n].present)])


def define_preset_flags(preset: dict) -> None:
  """One flag per key of a budget preset (int, float or comma-list str), default None = the preset's value."""
  define = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
  for key, value in preset.items():
    define[type(value)](key, None, f"Override of the preset{' (comma list)' if isinstance(value, str) else ''}; "
                        f"full: {value}.")


def preset_values(names, presets: dict) -> dict:
  """``{name: flag value}`` with the current setting's preset (`setting()`) applied where a flag was not given."""
  f = flags.FLAGS
  values = {k: f[k].value for k in names}
  for k, v in presets.get(setting(), {}).items():
    if not f[k].present:
      values[k] = v
  return values


class TemporaryWorkdirs:
  """The temporary folders of a script's run workdirs when ``--workdir_root`` is not given, owned by
  the caller's ``with TemporaryWorkdirs():`` block (`app_run` holds one around the script's main):
  `workdir` makes one folder per study in the innermost open block on first use, with one line saying
  where, and the block's end removes them."""
  _open: list[TemporaryWorkdirs] = []   # the instances inside their `with` block, innermost last

  def __init__(self):
    self.roots: dict[str, str] = {}

  def __enter__(self) -> TemporaryWorkdirs:
    TemporaryWorkdirs._open.append(self)
    return self

  def __exit__(self, *exc) -> None:
    TemporaryWorkdirs._open.remove(self)
    for path in self.roots.values():
      shutil.rmtree(path, ignore_errors=True)
    self.roots.clear()

  def root(self, study: str) -> str:
    """Study `study`'s temporary folder, made on the first call."""
    if study not in self.roots:
      self.roots[study] = tempfile.mkdtemp(prefix=f"{study}_runs_")
      print(f"[{study}] temporary workdirs in {self.roots[study]} (removed at exit; --workdir_root keeps them)",
            flush=True)
    return self.roots[study]


def workdir(study: str, run_name: str) -> str:
  """The workdir of run `run_name`: ``--workdir_root/run_name``, else in the open `TemporaryWorkdirs`."""
  root = flags.FLAGS.workdir_root
  if not root:
    if not TemporaryWorkdirs._open:
      raise ValueError(f"run {run_name!r} of study {study!r}: --workdir_root is not set and no "
                       "study.TemporaryWorkdirs block is open (study.app_run holds one); pass either")
    root = TemporaryWorkdirs._open[-1].root(study)
  return os.path.join(root, run_name)


def run(config, study: str, run_name: str) -> dict:
  """Runs `config` through its trainer in `workdir(study, run_name)`; returns the summary.

  ``dataset.data_dir`` is set from ``--data_dir`` when given.
  """
  from stable_training.train import trainers
  quiet_logging()
  with_data_dir(config)
  wd = workdir(study, run_name)
  print(f"[{study}] {run_name}: workdir {wd}", flush=True)
  return trainers.run(config, wd)


def with_data_dir(config):
  """`config` with ``dataset.data_dir`` set from ``--data_dir`` when that flag was given (in place)."""
  if "dataset" in config and flags.FLAGS.data_dir:
    config.dataset.data_dir = flags.FLAGS.data_dir
  return config


def load_data(config) -> dict:
  """The engine's `train.load_data` of `config` with ``--data_dir`` applied (for studies that measure
  data outside `run`, e.g. spectra at init)."""
  from stable_training.train import load_data as engine_load_data
  return engine_load_data(with_data_dir(config))


def pick_dataset(name: str = "auto") -> str:
  """``auto`` → ``fashion_mnist`` when its IDX files exist (in ``--data_dir`` if given, else the
  Debian package's folder), else ``digits`` (`sweep.pick_dataset` with the flag)."""
  folder = flags.FLAGS.data_dir if "data_dir" in flags.FLAGS else ""   # scripts without the study flags
  return _sweep.pick_dataset(name, folder)


def write_results(out_dir: str, table: str, payload: dict, name: str = "table") -> None:
  """Writes ``<name>.md`` and ``<name>.json`` (``results.json`` for the default name) into `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(table.rstrip() + "\n")
  with open(os.path.join(out_dir, "results.json" if name == "table" else f"{name}.json"), "w") as f:
    json.dump(payload, f, indent=2)


# ------------------------------------------------ library studies (studies/) ---
def run_library_study(study: str, module, name: str, command: str, **overrides) -> str:
  """The body of a thin script over a `stable_training.studies` module: settings of the flags' setting
  (``module.tiny`` / ``module.quick`` / ``module.Settings``, with `overrides` that are not None), runs in
  ``--workdir_root/name``, then ``<out>/<stem>.{md,json}`` (and ``.png`` where the module has ``plot``).
  Returns the markdown path."""
  from stable_training.studies import sweep
  setup_process()
  make = {"tiny": module.tiny, "quick": module.quick, "full": module.Settings}[setting()]
  payload = module.run(make(**{k: v for k, v in overrides.items() if v is not None}), workdir(study, name))
  table = module.table(payload, command)
  out, base = out_dir(study), stem(name)
  md, _ = sweep.write_payload(out, base, table, payload)
  if hasattr(module, "plot"):
    module.plot(payload, os.path.join(out, base + ".png"))
  print(table)
  print(f"wrote {md}")
  return md


def run_preset_study(study: str, module, name: str, script: str) -> str:
  """The body of a thin script over a `stable_training.studies` module with one flag per preset key
  (``define_preset_flags(module.PRESETS["full"])``) whose ``run`` records its command, figure and run times
  (`sweep.run_and_write`; `lsc_ffn`, `lsc_rnn`): ``module.Settings`` of the flags' preset, runs in
  ``--workdir_root/<run>``, then ``<out>/<stem>.{md,json,png}``. Returns the markdown path."""
  from absl import app
  try:
    s = module.Settings(**preset_values(module.PRESETS["full"], module.PRESETS), preset=setting(),
                        data_dir=flags.FLAGS.data_dir)
  except ValueError as e:   # e.g. "arms: unknown arm 'x'; valid: …" names the flag
    raise app.UsageError(f"--{e}") from None
  setup_process([s.seeds])
  quiet_logging()
  cmd = command(script, ["quick", "tiny", "tag", "data_dir", *module.PRESETS["full"]])
  table, md = _sweep.run_and_write(module, s, os.path.normpath(workdir(study, "")), out_dir(study), stem(name), cmd)
  print(table)
  print(f"wrote {md}, {md[:-3]}.png")
  return md


def settings_from_flags(module, lists: dict | None = None):
  """``module.Settings`` of this run's preset (``module.tiny`` / ``module.quick`` / ``module.Settings``) with
  every flag named in ``module.SETTING_FIELDS`` that was given on the command line over it (a given flag
  wins). `lists`: ``{flag: element type}`` of comma-list flags, turned into tuples. A bad value → absl's
  one-line usage error naming the flag."""
  from absl import app
  f = flags.FLAGS
  given = {k: f[k].value for k in module.SETTING_FIELDS if f[k].present}
  for k, kind in (lists or {}).items():
    if k in given:
      given[k] = tuple(kind(v) for v in str(given[k]).split(","))
  make = {"tiny": module.tiny, "quick": module.quick, "full": module.Settings}[setting()]
  try:
    return make(**given, quick=f.quick, tiny=f.tiny, tag=f.tag, data_dir=f.data_dir)
  except ValueError as e:
    raise app.UsageError(f"--{e}") from None


def render_json(module, stem: str) -> str:
  """``stem.md`` (``module.table(payload)``) and ``stem.png`` (``module.plot``, optional) from ``stem.json``;
  prints the table and returns it. `stem` may end in ``.json``; a missing or unreadable file, or a payload
  the table cannot read, is a one-line `app.UsageError` and nothing is written."""
  from absl import app
  stem = stem.removesuffix(".json")
  try:
    with open(stem + ".json") as fh:
      payload = json.load(fh)
    table = module.table(payload)
  except (OSError, ValueError) as e:
    raise app.UsageError(f"--render_only={stem}: cannot read {stem}.json ({e})") from None
  except KeyError as e:
    raise app.UsageError(f"--render_only={stem}: {stem}.json has no field {e}; is it this study's output?") from None
  with open(stem + ".md", "w") as fh:
    fh.write(table + "\n")
  try:
    module.plot(payload, stem + ".png")
  except Exception as e:  # plotting is optional (no matplotlib, an old payload without a field)
    print("plot skipped:", e)
  print(table)
  return table

