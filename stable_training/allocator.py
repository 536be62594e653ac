"""The process's memory allocator: tcmalloc where it is installed.

XLA:CPU allocates every large temporary of a compiled step afresh (the
zeros buffer of a scanned layer stack's stacked weight gradients, the
stacked states of an RNN's time loop) and frees it after the step. glibc
serves allocations above 32 MiB with ``mmap`` and returns them with
``munmap``, so every step pays page faults to touch them again: in the
trace of the depth-1,000 ROAF step (width = batch = 128) zero-filling the
64 MiB gradient buffer took 23 ms of a 225 ms step, 6 ms under tcmalloc
(which keeps freed pages), and the step 225 → 178 ms (`scripts/profile_step.py`,
same run). The allocator can only be chosen before the process starts
(``LD_PRELOAD``), so the launcher and the study scripts re-execute themselves
once with tcmalloc preloaded when it is installed (Debian/Ubuntu:
``apt-get install libtcmalloc-minimal4``) and not yet loaded, and only for a
run on the CPU backend (`uses_accelerator`): on a GPU/TPU the step's
temporaries live in device memory, and the preload would only add a second
allocator next to the CUDA/TPU runtime's. Numbers do not depend on the
allocator; ``STABLE_TRAINING_ALLOCATOR=system`` opts out, a path selects
another library (preloaded whatever the backend).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from typing import Callable, Mapping, Sequence

ENV = "STABLE_TRAINING_ALLOCATOR"
_REEXEC_MARK = "_STABLE_TRAINING_REEXEC"
TCMALLOC_PATHS = tuple(f"{d}/libtcmalloc{v}.so.4" for d in (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
                       for v in ("_minimal", ""))


def find_tcmalloc(env=None) -> str | None:
  """The tcmalloc library to preload: ``$STABLE_TRAINING_ALLOCATOR`` if it is a file, else the first
  of `TCMALLOC_PATHS` that exists; None when there is none or the variable says ``system``."""
  choice = (os.environ if env is None else env).get(ENV, "auto")
  if choice == "system":
    return None
  if choice != "auto":
    return choice if os.path.isfile(choice) else None
  return next((p for p in TCMALLOC_PATHS if os.path.isfile(p)), None)


def installed_accelerator_plugins() -> list[str]:
  """The GPU/TPU plugins JAX would load when it starts, found without importing them or JAX: the
  ``jax_plugins`` entry points (e.g. ``jax_cuda12_plugin``), the modules of the ``jax_plugins``
  namespace package, and ``libtpu``."""
  names = [ep.value for ep in importlib.metadata.entry_points(group="jax_plugins")]
  spec = importlib.util.find_spec("jax_plugins")
  if spec is not None and spec.submodule_search_locations:
    names += [f"jax_plugins.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)]
  if importlib.util.find_spec("libtpu") is not None:
    names.append("libtpu")
  return names


def uses_accelerator(env: Mapping[str, str],
                     plugins: Callable[[], Sequence[str]] = installed_accelerator_plugins) -> bool:
  """Whether a run in environment `env` puts JAX on a GPU/TPU, decided without starting JAX.

  ``JAX_PLATFORMS`` (a comma list whose first entry is the default backend;
  else the older ``JAX_PLATFORM_NAME``) decides when set: True unless that
  first entry is ``cpu``. Unset, JAX starts the highest-priority backend it
  can (TPU, then GPU, then CPU), so True when `plugins()` names an installed
  GPU/TPU plugin (a CUDA plugin on a machine without a GPU then reads True
  although JAX falls back to the CPU: the run keeps the system allocator).
  """
  if not isinstance(env, Mapping):
    raise ValueError(f"env={env!r}: must be a mapping of environment variables (e.g. os.environ)")
  for var in ("JAX_PLATFORMS", "JAX_PLATFORM_NAME"):
    first = env.get(var, "").split(",")[0].strip().lower()
    if first:
      return first != "cpu"
  return bool(plugins())


def tcmalloc_loaded() -> bool:
  """Whether a tcmalloc library is mapped into this process (Linux: /proc/self/maps)."""
  try:
    with open("/proc/self/maps") as f:
      return "libtcmalloc" in f.read()
  except OSError:
    return False


def env_with_preload(env, library: str) -> dict:
  """`env` with `library` first in ``LD_PRELOAD`` (kept once; other entries kept after it)."""
  rest = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != library]
  return {**env, "LD_PRELOAD": " ".join([library, *rest])}


def reexec_with_tcmalloc(caller: str) -> bool:
  """Re-executes this process (same interpreter and command line) with tcmalloc preloaded.

  `caller`: the ``__name__`` of the module whose main function calls this;
  only a module run as the program (``"__main__"``) re-executes, never one
  imported by another program (a test calling a launcher's main in-process).
  Does nothing (returns False) off Linux, when tcmalloc is already loaded or
  not installed, with ``STABLE_TRAINING_ALLOCATOR=system``, when the run will
  use a GPU/TPU (`uses_accelerator`; unless the variable names a library), or
  when this process is itself the re-executed one (the preload may have
  failed). Call it first thing in a main function, before any output or file
  is written.
  """
  if (caller != "__main__" or not sys.platform.startswith("linux") or os.environ.get(_REEXEC_MARK)
      or tcmalloc_loaded()):
    return False
  lib = find_tcmalloc()
  if lib is None or (os.environ.get(ENV, "auto") == "auto" and uses_accelerator(os.environ)):
    return False
  env = env_with_preload(os.environ, lib)
  env[_REEXEC_MARK] = "1"
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
  return True  # not reached


def describe() -> str:
  """``tcmalloc`` or ``system malloc``: for benchmark headers."""
  return "tcmalloc" if tcmalloc_loaded() else "system malloc"
