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
def test_reexec_preloads_tcmalloc_once():
  loaded, preload = _probe()
  assert loaded and preload.split()[0] == allocator.find_tcmalloc({})
