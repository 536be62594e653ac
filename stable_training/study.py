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

import atexit
import json
import os
import shutil
import tempfile

from absl import flags

from stable_training.config import apply_overrides  # noqa: F401  (the study configs' name for it)
from stable_training.data.sources import FASHION_MNIST_DIR


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


def app_run(main) -> None:
  """A study script's entry point (``if __name__ == "__main__": study.app_run(main)``): the allocator
  choice, then absl's ``app.run(main)``.

  The allocator belongs to the program, not the library: only here (the script run as the program)
  does the process re-execute itself with tcmalloc preloaded where it is installed
  (`stable_training.allocator`; XLA:CPU's large per-step temporaries then cost no page faults). A main
  called in-process (tests, another study) never re-executes.
  """
  from absl import app
  from stable_training import allocator
  allocator.reexec_with_tcmalloc("__main__")
  app.run(main)


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
  from jax._src import xla_bridge
  from stable_training.train.sharding import auto_host_devices, usable_cores, with_host_devices
  value = flags.FLAGS.host_devices
  n = auto_host_devices(seed_counts, usable_cores()) if value == "auto" else int(value)
  xla = os.environ.get("XLA_FLAGS", "")
  if n < 2 or "xla_force_host_platform_device_count" in xla:
    return 0
  if xla_bridge.backends_are_initialized():
    raise RuntimeError("setup_process must run before JAX starts its backend")
  os.environ["XLA_FLAGS"] = with_host_devices(xla, n)
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


_ROOT: dict[str, str] = {}


def workdir(study: str, run_name: str) -> str:
  """The workdir of run `run_name`: ``--workdir_root/run_name`` (root: a temporary folder by default)."""
  root = flags.FLAGS.workdir_root
  if not root:
    if study not in _ROOT:
      _ROOT[study] = tempfile.mkdtemp(prefix=f"{study}_runs_")
      print(f"[{study}] temporary workdirs in {_ROOT[study]} (removed at exit; --workdir_root keeps them)",
            flush=True)
      atexit.register(shutil.rmtree, _ROOT[study], ignore_errors=True)
    root = _ROOT[study]
  return os.path.join(root, run_name)


def run(config, study: str, run_name: str) -> dict:
  """Runs `config` through its trainer in `workdir(study, run_name)`; returns the summary.

  ``dataset.data_dir`` is set from ``--data_dir`` when given.
  """
  from stable_training.train import trainers
  from stable_training.train.records import quiet_logging
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
  Debian package's folder), else ``digits``."""
  if name != "auto":
    return name
  from stable_training.data import DataError
  from stable_training.data.sources import _find_idx_file
  try:
    folder = flags.FLAGS.data_dir if "data_dir" in flags.FLAGS else ""   # scripts without the study flags
    _find_idx_file(folder or FASHION_MNIST_DIR, "train-images-idx3-ubyte")
  except DataError:
    return "digits"
  return "fashion_mnist"


def set_budget(config, num_steps: int, *, log_every: int | None = None, eval_every: int | None = None):
  """Sets num_steps and keeps log/eval/checkpoint intervals consistent (multiples of log_every)."""
  config.num_steps = num_steps
  config.num_epochs = 0
  config.log_every = log_every or min(config.log_every, num_steps)
  config.eval_every = eval_every or num_steps
  config.checkpoint_every = config.eval_every
  return config


def write_results(out_dir: str, table: str, payload: dict, name: str = "table") -> None:
  """Writes ``<name>.md`` and ``<name>.json`` (``results.json`` for the default name) into `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(table.rstrip() + "\n")
  with open(os.path.join(out_dir, "results.json" if name == "table" else f"{name}.json"), "w") as f:
    json.dump(payload, f, indent=2)


# ------------------------------------------------------------ learning curves ---
# Learning-curve metrics: (short name, y label, log y).
CURVE_LABELS = {"test_accuracy": ("test accuracy", "test accuracy", False),
                "train_loss": ("training loss", "training loss (log scale)", True)}


def finished_before(workdir: str, num_steps: int) -> bool:
  """Whether `workdir` already holds a run trained to `num_steps` (its summary.json): the engine then
  returns that summary without training, so a study keeps the time that run took when it trained."""
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      history = json.load(f).get("history") or []
  except (OSError, ValueError):
    return False
  return bool(history) and history[-1].get("step") == num_steps


def previous_payload(path: str, key: str, value) -> dict:
  """The results JSON at `path` that a rerun is about to overwrite, if its `key` equals `value` (the
  settings it was written with), else {}: finished runs keep the training times recorded there."""
  try:
    with open(path) as f:
      prev = json.load(f)
  except (OSError, ValueError):
    return {}
  return prev if prev.get(key) == value else {}


def train_records(workdir: str) -> list[dict]:
  """The ``kind == "train"`` records of a run's metrics.jsonl (held-out metrics sit in those of eval steps)."""
  from stable_training.train.records import read_records
  return [r for r in read_records(os.path.join(workdir, "metrics.jsonl")) if r.get("kind") == "train"]


def curve_metric(workdirs, held_out: str, fallback: str) -> str:
  """`held_out` (e.g. ``test_accuracy``) if every run in `workdirs` evaluated it more than once, else
  `fallback` (a training metric of every logging window, e.g. ``train_loss``)."""
  n_evals = min((sum(held_out in r for r in train_records(wd)) for wd in workdirs), default=0)
  return held_out if n_evals >= 2 else fallback


def run_curve(workdir: str, metric: str, transform=None) -> dict:
  """One run's learning curve from its metrics.jsonl: ``{"run", "step": [T], "values": [S][T]}`` (per seed;
  `transform` maps each value, e.g. accuracy ↦ error %)."""
  f = transform or (lambda v: v)
  recs = [r for r in train_records(workdir) if metric in r]
  return {"run": os.path.basename(os.path.normpath(workdir)), "step": [r["step"] for r in recs],
          "values": [[f(a) for a in v] for v in zip(*(r[metric]["per_seed"] for r in recs))]}


def plot_curve_panels(curves: dict, path: str) -> None:
  """Draws a study payload's ``curves`` into the PNG `path`, one panel per entry of ``curves["panels"]``
  (``{"title", "curves": {arm: run_curve}, "chance": optional y}``) with
  `stable_training.diagnostics.plot.plot_learning_curves`; ``curves`` also holds ``ylabel``, ``title``,
  optional ``log_y`` and ``ncols``. A chance line keeps ≥ 10 units below it in view, so a run stuck at
  chance reads flat rather than as magnified noise."""
  from stable_training.diagnostics.plot import plot_learning_curves   # sets the Agg backend
  import matplotlib.pyplot as plt
  from matplotlib.ticker import LogFormatter

  class PlainLog(LogFormatter):   # the ticks LogFormatter labels, as plain numbers (2.2, not 2.2×10⁰)
    def __call__(self, x, pos=None):
      return f"{x:g}" if super().__call__(x, pos) else ""

  panels, log_y = curves["panels"], curves.get("log_y", False)
  ncols = max(1, min(len(panels), curves.get("ncols") or len(panels)))
  nrows = -(-len(panels) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(max(8.0, 6.2 * ncols), 1.2 + 4.0 * nrows), squeeze=False,
                           layout="constrained")
  for ax, p in zip(axes.flat, panels):
    plot_learning_curves(p["curves"], curves["ylabel"], log_y=log_y, title=p["title"], ax=ax)
    if log_y:
      ax.yaxis.set_major_formatter(PlainLog())
      ax.yaxis.set_minor_formatter(PlainLog(labelOnlyBase=False))
    if p.get("chance") is not None:
      ax.axhline(p["chance"], color="0.5", lw=0.8, ls=":", label=f"chance ({p['chance']:.1f} %)")
      ax.legend(fontsize=8)
      lo, hi = ax.get_ylim()
      ax.set_ylim(min(lo, p["chance"] - 10), max(hi, p["chance"] + 1))
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  fig.suptitle(curves["title"], fontsize=11)
  fig.savefig(path, dpi=110)
  plt.close(fig)



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
