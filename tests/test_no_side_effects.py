"""Importing any module of the library changes no process-wide state; what a script needs it asks for.

`test_public_api` checks the top-level lazy names; here every submodule of `stable_training` and
`experiments` is imported in a fresh interpreter, one at a time, and the global state a library must
leave alone is compared before and after each: the unraisable and exception hooks, matplotlib's
backend setting, the root's and every existing logger's level, handlers and filters, ``warnings``
filters, ``os.environ``, ``sys.path``, atexit callbacks (but those a dependency registers while it is
imported: its own), the SIGINT/SIGTERM handlers, NumPy's error state and JAX's config.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = r'''
import atexit, importlib, json, logging, os, pkgutil, signal, sys, traceback, warnings
os.environ.pop("MPLBACKEND", None)   # the backend as matplotlib picks it, so that a switch would show
import matplotlib
import numpy as np
import jax   # imported first: JAX's config is part of the state compared

# Exit callbacks that a dependency registers while our module imports it (pyplot's, chex's,
# TensorStore's) are the dependency's own; each registration is attributed to the module calling
# atexit.register, and only the others count.
FOREIGN = []
_register = atexit.register

def _attributed_register(func, *args, **kwargs):
  caller = sys._getframe(1).f_globals.get("__name__", "")
  if caller.split(".")[0] not in ("stable_training", "experiments"):
    FOREIGN.append(caller)
  return _register(func, *args, **kwargs)

atexit.register = _attributed_register

def loggers():
  out = {}
  for name, lg in [("", logging.root), *sorted(logging.root.manager.loggerDict.items())]:
    if isinstance(lg, logging.Logger):
      out[name] = (lg.level, tuple(map(id, lg.handlers)), tuple(map(id, lg.filters)), lg.propagate, lg.disabled)
  return out

def snapshot():
  return {
      "sys.unraisablehook": sys.unraisablehook, "sys.excepthook": sys.excepthook,
      "matplotlib backend": dict.__getitem__(matplotlib.rcParams, "backend"),   # the raw setting, unresolved
      "loggers": loggers(), "logging.disable": logging.root.manager.disable,
      "warnings.filters": list(warnings.filters),
      "os.environ": dict(os.environ), "sys.path": list(sys.path),
      "atexit callbacks (ours)": atexit._ncallbacks() - len(FOREIGN),
      "SIGINT handler": signal.getsignal(signal.SIGINT), "SIGTERM handler": signal.getsignal(signal.SIGTERM),
      "numpy errstate": np.geterr(), "jax.config": dict(jax.config.values),
  }

def diff(before, after):
  out = []
  for key, old in before.items():
    new = after[key]
    if key == "loggers":   # loggers made by the import are new, not changed
      out += [f"logger {n or 'root'!r}: (level, handlers, filters, propagate, disabled) {old[n]} -> {new.get(n)}"
              for n in old if new.get(n) != old[n]]
    elif isinstance(old, list) and isinstance(new, list):   # warnings filters, sys.path: what came and went
      out += [f"{key}: added {x!r}" for x in new if x not in old] + [f"{key}: removed {x!r}" for x in old if x not in new]
      if not out and new != old:
        out.append(f"{key}: reordered")
    elif isinstance(old, dict) and isinstance(new, dict):
      out += [f"{key}[{k!r}]: {old.get(k)!r} -> {new.get(k)!r}"
              for k in sorted(set(old) | set(new), key=str) if old.get(k) != new.get(k)]
    elif new is not old and new != old:
      out.append(f"{key}: {old!r} -> {new!r}")
  return out

def module_names(package):
  """Every module of `package` (pkgutil.iter_modules over its folders: nothing is imported to list them)."""
  names, todo = [], [(package, os.path.join(os.getcwd(), *package.split(".")))]
  while todo:
    name, path = todo.pop()
    names.append(name)
    for info in pkgutil.iter_modules([path]):
      if info.ispkg:
        todo.append((f"{name}.{info.name}", os.path.join(path, info.name)))
      else:
        names.append(f"{name}.{info.name}")
  return sorted(names)

changed, failed = {}, {}
seen = []
for package in ("stable_training", "experiments"):
  for name in module_names(package):
    before = snapshot()
    try:
      importlib.import_module(name)
    except BaseException as e:   # an optional dependency missing, or a module that fails on import
      failed[name] = "".join(traceback.format_exception_only(type(e), e)).strip()
      continue
    seen.append(name)
    d = diff(before, snapshot())
    if d:
      changed[name] = d
print("RESULT " + json.dumps({"imported": seen, "changed": changed, "failed": failed}), flush=True)
'''


def _probe() -> dict:
  env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
  p = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(next(l for l in p.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])


def test_importing_any_module_changes_no_global_state():
  r = _probe()
  assert not r["failed"], "modules that could not be imported (a missing optional dependency?):\n" + "\n".join(
      f"  {m}: {why}" for m, why in r["failed"].items())
  assert not r["changed"], "modules that change process-wide state on import:\n" + "\n".join(
      f"  {m}: {'; '.join(d)}" for m, d in r["changed"].items())
  # every module was seen: the walk found the engine, the studies and the launcher
  for name in ("stable_training.train.checkpoint", "stable_training.study", "stable_training.data.tfds_source",
               "stable_training.allocator", "experiments.main", "experiments.configs.default"):
    assert name in r["imported"], name
  assert len(r["imported"]) >= 60, len(r["imported"])


_STUDY_SCRIPT = r'''
import atexit, os, sys
from stable_training import study
study.define_flags("probe")

def main(argv):
  callbacks = atexit._ncallbacks()   # app_run's own (the allocator's exit freeze) are registered by now
  wd = study.workdir("probe", "run_a")
  os.makedirs(wd)
  open(os.path.join(wd, "f"), "w").close()
  print("WORKDIR", wd, flush=True)
  assert atexit._ncallbacks() == callbacks, "an atexit callback was registered"

study.app_run(main)
'''


def test_a_script_without_workdir_root_removes_its_temporary_workdirs(tmp_path):
  """A study script run without --workdir_root: its runs go to a temporary folder made on first use (one
  line says where), removed when main ends; no atexit callback; outside such a script, a clear error."""
  env = dict(os.environ, TMPDIR=str(tmp_path), STABLE_TRAINING_ALLOCATOR="system")
  p = subprocess.run([sys.executable, "-c", _STUDY_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  lines = p.stdout.splitlines()
  root = lines[0].split(" temporary workdirs in ")[1].split(" (")[0]
  assert lines[0] == f"[probe] temporary workdirs in {root} (removed at exit; --workdir_root keeps them)"
  assert os.path.dirname(root) == str(tmp_path) and os.path.basename(root).startswith("probe_runs_")
  assert lines[1] == f"WORKDIR {os.path.join(root, 'run_a')}"
  assert not os.path.exists(root) and os.listdir(tmp_path) == []


def test_workdir_without_root_or_owner_is_a_one_line_error():
  code = ("from absl import flags; from stable_training import study; study.define_flags('probe'); "
          "flags.FLAGS(['prog']); study.workdir('probe', 'run_a')")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert p.returncode == 1
  assert p.stderr.strip().splitlines()[-1] == (
      "ValueError: run 'run_a' of study 'probe': --workdir_root is not set and no study.TemporaryWorkdirs "
      "block is open (study.app_run holds one); pass either")


def test_a_study_script_stopped_by_a_signal_exits_75_in_one_line(tmp_path):
  """A run of a study script stopped by SIGTERM (the host loop raises `Preempted` after saving): exit status 75
  (EX_TEMPFAIL, as the launcher) and the one-line reason, not a traceback; the temporary workdirs still go."""
  script = _STUDY_SCRIPT.replace('  assert atexit._ncallbacks() == callbacks, "an atexit callback was registered"\n',
                                 "  from stable_training.train.lock import Preempted\n"
                                 "  raise Preempted(15, 40)\n")
  env = dict(os.environ, TMPDIR=str(tmp_path), STABLE_TRAINING_ALLOCATOR="system")
  p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 75, p.stderr[-3000:]
  assert p.stderr.strip().splitlines()[-1] == ("stopped by SIGTERM at step 40, checkpoint saved; rerun the same "
                                               "command to resume")
  assert "Traceback" not in p.stderr and os.listdir(tmp_path) == []
