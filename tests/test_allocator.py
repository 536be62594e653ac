"""tcmalloc preloading (stable_training/allocator.py): where it is installed, the launcher re-executes
itself once with it; STABLE_TRAINING_ALLOCATOR=system or a missing library leaves the process alone."""
import os
import subprocess
import sys

import pytest

from stable_training import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("from stable_training import allocator; import os; allocator.reexec_with_tcmalloc(__name__); "
         "print(allocator.tcmalloc_loaded(), os.getpid(), os.environ.get('LD_PRELOAD', ''))")


def _probe(**env):
  e = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV)}
  e.update(env)
  p = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=e, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-2000:]
  loaded, _pid, *preload = p.stdout.split(maxsplit=2)
  return loaded == "True", (preload[0] if preload else "")


def test_env_with_preload_puts_the_library_first_once():
  assert allocator.env_with_preload({}, "/l/t.so")["LD_PRELOAD"] == "/l/t.so"
  env = allocator.env_with_preload({"LD_PRELOAD": "/a.so:/l/t.so /b.so", "X": "1"}, "/l/t.so")
  assert env["LD_PRELOAD"] == "/l/t.so /a.so /b.so" and env["X"] == "1"


def test_find_tcmalloc_honours_the_variable(tmp_path):
  assert allocator.find_tcmalloc({allocator.ENV: "system"}) is None
  lib = tmp_path / "libtcmalloc_custom.so.4"
  lib.write_bytes(b"")
  assert allocator.find_tcmalloc({allocator.ENV: str(lib)}) == str(lib)
  assert allocator.find_tcmalloc({allocator.ENV: str(tmp_path / "missing.so")}) is None
  auto = allocator.find_tcmalloc({})
  assert auto is None or (auto in allocator.TCMALLOC_PATHS and os.path.isfile(auto))


def test_an_imported_main_never_reexecutes(monkeypatch):
  """A main called in-process (e.g. by a test) must not replace the calling process."""
  monkeypatch.setattr(allocator.os, "execve", lambda *a: pytest.fail("execve called"))
  monkeypatch.delenv(allocator.ENV, raising=False)
  monkeypatch.delenv("_STABLE_TRAINING_REEXEC", raising=False)
  assert allocator.reexec_with_tcmalloc("experiments.main") is False


def test_system_allocator_is_left_alone():
  loaded, preload = _probe(**{allocator.ENV: "system"})
  assert not loaded and "tcmalloc" not in preload


@pytest.mark.skipif(allocator.find_tcmalloc({}) is None, reason="tcmalloc not installed (apt: libtcmalloc-minimal4)")
@pytest.mark.skipif(allocator.uses_accelerator(os.environ), reason="JAX would run on a GPU/TPU here: no preload")
def test_reexec_preloads_tcmalloc_once():
  loaded, preload = _probe()
  assert loaded and preload.split()[0] == allocator.find_tcmalloc({})


@pytest.mark.parametrize("env,plugins,expect", [
    ({}, [], False),                                            # nothing set, no plugin: the CPU
    ({}, ["jax_cuda12_plugin"], True),                          # a CUDA plugin installed: JAX prefers it
    ({"JAX_PLATFORMS": "cpu"}, ["jax_cuda12_plugin"], False),   # the variable wins over the plugin
    ({"JAX_PLATFORMS": "cuda"}, [], True),
    ({"JAX_PLATFORMS": "tpu,cpu"}, [], True),                   # the first entry is the default backend
    ({"JAX_PLATFORMS": " CPU ,cuda"}, ["jax_cuda12_plugin"], False),
    ({"JAX_PLATFORMS": ""}, ["libtpu"], True),                  # empty = unset
    ({"JAX_PLATFORM_NAME": "gpu"}, [], True),                   # the older variable
    ({"JAX_PLATFORMS": "cpu", "JAX_PLATFORM_NAME": "gpu"}, [], False),
])
def test_uses_accelerator_reads_the_environment_then_the_plugins(env, plugins, expect):
  asked = []

  def probe():
    asked.append(1)
    return plugins
  assert allocator.uses_accelerator(env, probe) is expect
  assert asked == ([] if any(v.strip() for v in env.values()) else [1])  # the probe only when no variable decides


def test_uses_accelerator_refuses_a_non_mapping():
  with pytest.raises(ValueError, match=r"env='JAX_PLATFORMS=cpu': must be a mapping"):
    allocator.uses_accelerator("JAX_PLATFORMS=cpu")


def test_no_reexec_on_a_gpu_run(monkeypatch, tmp_path):
  """The program entry point with tcmalloc available but JAX_PLATFORMS=cuda keeps the system allocator;
  the same with JAX_PLATFORMS=cpu re-executes (execve intercepted), and a named library always does."""
  lib = tmp_path / "libtcmalloc_minimal.so.4"
  lib.write_bytes(b"")
  calls = []
  monkeypatch.setattr(allocator.os, "execve", lambda path, argv, env: calls.append(env["LD_PRELOAD"]))
  monkeypatch.setattr(allocator, "tcmalloc_loaded", lambda: False)
  monkeypatch.setattr(allocator, "TCMALLOC_PATHS", (str(lib),))
  monkeypatch.delenv(allocator.ENV, raising=False)
  monkeypatch.delenv("_STABLE_TRAINING_REEXEC", raising=False)
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  assert allocator.reexec_with_tcmalloc("__main__") is False and calls == []
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert allocator.reexec_with_tcmalloc("__main__") is True and calls == [str(lib)]
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  monkeypatch.setenv(allocator.ENV, str(lib))
  assert allocator.reexec_with_tcmalloc("__main__") is True and calls == [str(lib)] * 2


def test_installed_plugins_are_found_without_importing_them(tmp_path):
  """A plugin module under the ``jax_plugins`` namespace package is found, and neither it nor JAX is imported."""
  (tmp_path / "jax_plugins").mkdir()
  (tmp_path / "jax_plugins" / "fake_gpu.py").write_text("raise RuntimeError('imported')\n")
  code = ("import sys; from stable_training import allocator; p = allocator.installed_accelerator_plugins(); "
          "assert 'jax' not in sys.modules and 'jax_plugins.fake_gpu' not in sys.modules; print(p); "
          "print(allocator.uses_accelerator({}))")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), ROOT])
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  found, uses = p.stdout.splitlines()
  assert "'jax_plugins.fake_gpu'" in found and uses == "True"


FAULTS = r"""
import os, resource, sys
from stable_training import allocator
allocator.TCMALLOC_PATHS = ()   # decide as on a machine without tcmalloc
print(allocator.setup(sys.argv[1]))
os.environ["JAX_PLATFORMS"] = "cpu"   # decided above as the environment says; run here on the CPU
import jax
import jax.numpy as jnp

# A step whose 96 MiB temporary (the scan's stacked outputs, summed) is allocated and freed at every
# call, as a deep step's stacked carries are: more than the 64 MiB a worker thread's arena can hold.
@jax.jit
def step(x):
  return jnp.sum(jax.lax.scan(lambda c, _: (c + 1.0, c * 2.0), x, None, length=1536)[1])
x = jnp.ones((16384,))
faults = []
for _ in range(6):
  f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  step(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(min(faults[2:]))   # kept: a later call reuses the block (which one varies with the heap's layout)
print(jax.config.values["jax_cpu_enable_async_dispatch"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("caller,env,tuned", [
    ("__main__", {"JAX_PLATFORMS": "cpu"}, False),   # auto: tcmalloc or nothing (no tcmalloc here)
    ("__main__", {"JAX_PLATFORMS": "cpu", allocator.ENV: "system"}, False),
    ("__main__", {"JAX_PLATFORMS": "cpu", allocator.ENV: "glibc"}, True),
    ("__main__", {"JAX_PLATFORMS": "cuda", allocator.ENV: "glibc"}, False),   # device memory: glibc left alone
    ("experiments.main", {"JAX_PLATFORMS": "cpu", allocator.ENV: "glibc"}, False),   # a main called in-process
])
def test_setup_tunes_glibc_to_keep_a_freed_block(caller, env, tuned):
  """``STABLE_TRAINING_ALLOCATOR=glibc``: a program's `setup` has a jitted step's 96 MiB temporary kept for
  the next call, so a step after the first ones costs no page faults (untouched glibc with asynchronous
  dispatch: the step runs on a worker thread, whose arena mmaps the block afresh: one fault per 4 KiB page,
  ≈ 24.6 k); the default leaves glibc and JAX's dispatch alone where tcmalloc is missing."""
  e = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV, "JAX_PLATFORMS")}
  e.update(env)
  p = subprocess.run([sys.executable, "-c", FAULTS, caller], cwd=ROOT, env=e, capture_output=True, text=True,
                     timeout=600)
  assert p.returncode == 0, p.stderr[-2000:]
  kind, faults, asynchronous = p.stdout.split("\n")[:3]
  assert kind.startswith("glibc malloc (tuned") == tuned, kind
  assert asynchronous == str(not tuned)
  pages = (96 << 20) // 4096
  if tuned:
    assert int(faults) < pages // 20, faults
  else:
    assert kind == "system malloc", kind
    if not _thp_always():   # with transparent huge pages on for every mapping, glibc's re-mmap faults less
      assert int(faults) > pages // 2, faults


def _thp_always() -> bool:
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      return "[always]" in f.read()
  except OSError:
    return False


@pytest.mark.parametrize("caller,frozen", [("__main__", True), ("experiments.main", False)])
def test_only_a_program_skips_the_exit_collection(caller, frozen):
  """`setup` from the program's entry point freezes the heap at exit (the interpreter's last collections
  then skip it); called from an imported main it leaves the exit alone. A handler registered before
  `setup` runs after the freeze (atexit is LIFO) and sees it; the program's output is intact."""
  code = ("import atexit, gc, sys\n"
          "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))\n"
          "from stable_training import allocator\n"
          f"allocator.setup({caller!r})\n"
          "print('frozen now:', gc.get_freeze_count() > 0)\n")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                     env={**os.environ, allocator.ENV: "system"})
  assert p.returncode == 0, p.stderr[-2000:]
  assert p.stdout.splitlines() == ["frozen now: False", f"frozen at exit: {frozen}"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_after_the_backend_started_says_so_and_changes_nothing():
  """Called once JAX's CPU client exists, the dispatch setting cannot act: a one-line warning, False, and
  neither glibc nor the description changed; called first, it takes (True) without starting JAX's backend
  (a device count set after it still counts)."""
  code = ("import sys, warnings\n"
          "from stable_training import allocator\n"
          "allocator.TCMALLOC_PATHS = ()\n"
          "import jax, jax.numpy as jnp\n"
          "if sys.argv[1] == 'late':\n"
          "  jnp.ones(3).block_until_ready()\n"
          "else:\n"
          "  assert not allocator.jax_backend_started()\n"
          "with warnings.catch_warnings(record=True) as w:\n"
          "  warnings.simplefilter('always')\n"
          "  print(allocator.keep_freed_memory())\n"
          "if sys.argv[1] != 'late':\n"
          "  jax.config.update('jax_num_cpu_devices', 2)\n"
          "print(allocator.describe())\n"
          # Synchronous dispatch: a ≈ 10-20 ms call's result is ready when the call returns (async: ≈ 0.1 ms).
          "work = jax.jit(lambda a: jax.lax.fori_loop(0, 2000, lambda i, b: jnp.tanh(b @ b), a))\n"
          "x = jnp.eye(64) * 0.5\n"
          "work(x).block_until_ready()\n"
          "print(work(x).is_ready())\n"
          "print([str(m.message) for m in w])\n"
          "print(len(jax.devices()))\n")
  env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV)}
  env["JAX_PLATFORMS"] = "cpu"
  out = {}
  for when in ("late", "first"):
    p = subprocess.run([sys.executable, "-c", code, when], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out[when] = p.stdout.splitlines()[:5]
  applied, kind, synchronous, messages, devices = out["late"]
  assert (applied, kind, synchronous, devices) == ("False", "system malloc", "False", "1")
  assert "came after JAX started its backend" in messages and "call it before JAX makes its first array" in messages
  applied, kind, synchronous, messages, devices = out["first"]
  assert (applied, synchronous, messages, devices) == ("True", "True", "[]", "2")
  assert kind.startswith("glibc malloc (tuned")
