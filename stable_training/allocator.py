"""The process's memory allocator: tcmalloc where installed; glibc tuned to keep freed memory on request.

XLA:CPU allocates a compiled program's large temporaries (the stacked
carries, pre-activations and weight gradients of a scanned layer stack:
3 × 64 MiB at depth 1,000, width = batch = 128; the stacked states of an RNN's
time loop) on its worker threads at each call and frees them after it. glibc
serves blocks that large with ``mmap`` (a thread's arena holds at most
64 MiB) and returns them with ``munmap``, so a program called once per
train step page-faults them back in every step: 48 k minor faults per
depth-1,000 ROAF step. The engine runs K steps per call (a scanned chunk), so
its temporaries are allocated once per K steps and the allocator does not
show in its step time (measured: depth-1,000 MLP chunk 65.6–69.7 ms/step under
glibc vs 68.6 under tcmalloc).

`setup`, called by the program's entry points (launcher, study and benchmark
scripts; never on import), re-executes the program once with tcmalloc
preloaded where it is installed (Debian/Ubuntu: ``apt-get install
libtcmalloc-minimal4``; ``LD_PRELOAD`` can only act at process start) and the
run is on the CPU backend (`uses_accelerator`: on a GPU/TPU the temporaries
live in device memory).

`keep_freed_memory` is the no-root, no-package alternative for a program
that calls a deep step once per step (a user's own jitted loop, the
benchmark's step): glibc's ``mallopt`` thresholds raised and JAX's CPU calls
run on the calling thread, set in-process (48 k → 0 faults per depth-1,000
step). It is opt-in, not a default: a loop of sub-millisecond steps loses the
overlap of Python's dispatch with the previous step (a 0.5 ms step took
0.56–0.91 ms instead of 0.49–0.53 ms, measured), and the engine does not need it.

`setup` also has the interpreter skip its last garbage collections at exit
(`skip_exit_collection`: 0.25–0.3 s of every launch).

Numbers do not depend on the allocator. ``STABLE_TRAINING_ALLOCATOR``:
``auto`` (default: tcmalloc where installed), ``glibc`` (tuned glibc,
`keep_freed_memory`, even where tcmalloc is installed), ``system``
(neither), or a path: that library preloaded, whatever the backend.
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import warnings
from typing import Callable, Mapping, Sequence

ENV = "STABLE_TRAINING_ALLOCATOR"
_REEXEC_MARK = "_STABLE_TRAINING_REEXEC"
TCMALLOC_PATHS = tuple(f"{d}/libtcmalloc{v}.so.4" for d in (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
                       for v in ("_minimal", ""))


def find_tcmalloc(env=None) -> str | None:
  """The tcmalloc library to preload: ``$STABLE_TRAINING_ALLOCATOR`` if it is a file, else the first
  of `TCMALLOC_PATHS` that exists; None when there is none or the variable says ``system`` or ``glibc``."""
  choice = (os.environ if env is None else env).get(ENV, "auto")
  if choice in ("system", "glibc"):
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


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_KEEP = 2 ** 31 - 1   # the largest value mallopt's int argument takes (2 GiB)
_glibc_tuned = False


def keep_freed_memory() -> bool:
  """Tunes glibc's malloc and JAX's CPU dispatch, in this process, so a deep step's freed temporaries
  are kept for the next call instead of returned to the OS.

  For a program that calls a deep step once per step (a user's own jitted
  loop): XLA:CPU allocates the step's large temporaries at each call and frees
  them after it. Run on one of XLA's worker threads (JAX's asynchronous CPU
  dispatch), a block that large comes from that thread's arena, which holds
  at most 64 MiB, so glibc serves it with ``mmap``, returns it with
  ``munmap``, and every step page-faults it back in (48 k minor faults per
  depth-1,000 ROAF step). Here: blocks up to 2 GiB come from the heap, not
  ``mmap`` (``M_MMAP_THRESHOLD``); freed heap memory up to 2 GiB is kept
  (``M_TRIM_THRESHOLD``); and JAX runs each CPU call on the calling thread
  (``jax_cpu_enable_async_dispatch = False``), whose main arena is the one
  glibc lets grow past 64 MiB. Measured: 0 faults per step, the depth-1,000
  ``perm`` step 251 / 298 ms instead of 409 / 367 ms (WORKSPACE.md). XLA's
  worker threads keep their own arenas for their small allocations (the
  earlier one-arena setting, ``M_ARENA_MAX = 1``, serialized them: the 1-seed
  DQN loop ran 15–20 % slower). Set at run time (no re-exec, no root, no extra
  package). Call it before JAX starts its backend (before the first array is
  made): the dispatch setting is read when the CPU client is created. The cost:
  a call no longer returns before its work is done, so Python cannot dispatch
  the next step meanwhile, which a loop of sub-millisecond steps feels
  (a 0.5 ms step took 0.56–0.91 ms instead of 0.49–0.53 ms); a loop that calls from a thread other
  than the main one keeps that thread's 64 MiB arena limit. Numbers do not
  depend on the allocator or the dispatch.

  Returns True when the settings were applied (Linux with glibc, not under
  tcmalloc, and not already done), else False; called after JAX started its
  CPU backend, it changes nothing and says so in a one-line warning
  (`jax_backend_started`).
  """
  global _glibc_tuned
  if _glibc_tuned or not sys.platform.startswith("linux") or tcmalloc_loaded():
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):   # musl and other libcs have no mallopt
    return False
  if jax_backend_started():
    warnings.warn("keep_freed_memory() came after JAX started its backend, whose CPU client keeps "
                  "asynchronous dispatch: nothing changed; call it before JAX makes its first array", stacklevel=2)
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  if not all(mallopt(k, v) == 1 for k, v in ((_M_MMAP_THRESHOLD, _GLIBC_KEEP), (_M_TRIM_THRESHOLD, _GLIBC_KEEP))):
    return False
  import jax
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  _glibc_tuned = True
  return True


def jax_backend_started() -> bool:
  """Whether JAX has started its backends (False also when JAX is not imported); starts nothing.

  JAX refuses a change of ``jax_num_cpu_devices`` once its backends exist
  (RuntimeError) and accepts it before: the setting is changed and at once
  restored, so nothing changes either way.
  """
  if "jax" not in sys.modules:
    return False
  import jax
  n = jax.config.values["jax_num_cpu_devices"]
  try:
    jax.config.update("jax_num_cpu_devices", n + 2)
  except RuntimeError:
    return True
  jax.config.update("jax_num_cpu_devices", n)
  return False


def setup(caller: str) -> str:
  """The program's allocator, chosen by ``STABLE_TRAINING_ALLOCATOR`` (see the module doc).

  ``auto``: tcmalloc where installed and the run is on the CPU backend
  (`reexec_with_tcmalloc`); ``glibc``: `keep_freed_memory` (CPU backend
  only); ``system``: nothing; a path: that library preloaded. `caller`: the
  ``__name__`` of the entry point's module; nothing happens unless it is
  ``"__main__"`` (a main called in-process, e.g. by a test, leaves the calling
  process alone). Call it first thing in a main function, before any output
  or file is written and before JAX starts its backend. Returns `describe()`.
  """
  if caller == "__main__":
    skip_exit_collection()
    choice = os.environ.get(ENV, "auto")
    if choice == "glibc":
      if not uses_accelerator(os.environ):
        keep_freed_memory()
    elif choice != "system":
      reexec_with_tcmalloc(caller)   # does not return where it re-executes
  return describe()


def skip_exit_collection() -> None:
  """At exit, the interpreter's last garbage collections skip every object alive then (`gc.freeze`).

  Finalization otherwise walks the whole JAX/XLA/orbax object graph once more:
  0.25–0.3 s of every launch (``import stable_training.train.loop`` then exit:
  1.23 → 0.91 s, measured). Objects are still freed by reference counting; only
  reference cycles alive at exit are left to the OS, whose ``__del__`` Python
  never promised to run at exit. Files, the TensorBoard writer, checkpoints and
  the workdir lock are closed explicitly before then. For entry points only
  (`setup`): a library call must not change the interpreter's exit.
  """
  atexit.register(gc.freeze)


def describe() -> str:
  """``tcmalloc``, ``glibc malloc (tuned: …)`` or ``system malloc``: for benchmark headers."""
  if tcmalloc_loaded():
    return "tcmalloc"
  return "glibc malloc (tuned: keeps freed memory; synchronous CPU dispatch)" if _glibc_tuned else "system malloc"
