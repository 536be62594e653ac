"""The launcher's persistent compilation cache (`stable_training.compilation_cache`): a second launch of
a config loads XLA's executables instead of compiling them, with the same numbers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from stable_training import compilation_cache as cc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["-m", "experiments.main", "--config=experiments/configs/default.py:tiny"]   # default flags, as a user runs it


def test_resolve_auto_off_path_and_bad_values(tmp_path):
  assert cc.default_dir({"XDG_CACHE_HOME": "/x"}) == "/x/stable_training/xla"
  assert cc.default_dir({"HOME": "/h"}) == "/h/.cache/stable_training/xla"
  assert cc.default_dir({"HOME": "/h", "XDG_CACHE_HOME": "rel"}) == "/h/.cache/stable_training/xla"   # XDG: ignored
  assert cc.resolve({cc.ENV: "off", "XDG_CACHE_HOME": str(tmp_path)}) is None
  assert not os.listdir(tmp_path)   # off creates nothing
  assert cc.resolve({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "stable_training" / "xla")
  assert (tmp_path / "stable_training" / "xla").is_dir()
  assert cc.resolve({cc.ENV: str(tmp_path / "mine" / "c")}) == str(tmp_path / "mine" / "c")
  a_file = tmp_path / "f"
  a_file.write_text("keep me")
  with pytest.raises(ValueError, match=rf"^{cc.ENV}='{a_file}': not a usable folder \(.*\); valid: auto, off or "
                                       r"a writable folder path$"):
    cc.resolve({cc.ENV: str(a_file)})
  assert a_file.read_text() == "keep me"
  # The default folder that cannot be created (here: under a file) is no cache, not a failure.
  assert cc.resolve({"XDG_CACHE_HOME": str(a_file)}) is None
  # A main called in-process (a test, a notebook) leaves the process's JAX config alone.
  import jax
  before = jax.config.jax_compilation_cache_dir
  assert cc.setup("tests.test_compilation_cache", {"XDG_CACHE_HOME": str(tmp_path / "other")}) is None
  assert jax.config.jax_compilation_cache_dir == before and not (tmp_path / "other").exists()


def test_remove_entries_takes_only_that_programs_entries(tmp_path):
  key = "0123456789abcdef" * 4
  names = [f"jit_chunk-{key}-cache", f"jit_chunk-{key}-atime", f"jit_chunk_2-{key}-cache", f"jit_one-{key}-cache",
           "jit_chunk-notes.txt"]
  for n in names:
    (tmp_path / n).write_text("x")
  assert cc.remove_entries(str(tmp_path), "jit_chunk") == [f"jit_chunk-{key}-atime", f"jit_chunk-{key}-cache"]
  assert sorted(os.listdir(tmp_path)) == sorted(names[2:])
  assert cc.remove_entries(str(tmp_path / "missing"), "jit_one") == []
  # JAX's warning for a damaged entry: one line, that program's entries gone; a lock timeout is no damage.
  shown = []
  show = cc._reporting_damaged_entries(str(tmp_path), lambda *a: shown.append(str(a[0])))
  out = tmp_path / "stderr"
  with open(out, "w") as f:
    show(UserWarning("Error reading persistent compilation cache entry for 'jit_one': error: Error -3 while "
                     "decompressing data: invalid stored block lengths"), UserWarning, "compiler.py", 1, file=f)
    show(UserWarning("Error reading persistent compilation cache entry for 'jit_chunk_2': Timeout: The file lock "
                     "'x' could not be acquired."), UserWarning, "compiler.py", 1, file=f)
    show(UserWarning("something else"), UserWarning, "x.py", 1, file=f)
  assert out.read_text() == (f"warning: compilation cache entry of jit_one in {tmp_path} is damaged (error: Error -3 "
                             "while decompressing data: invalid stored block lengths); removed 1 entry of it, "
                             "compiling anew\n")
  assert len(shown) == 2 and "Timeout" in shown[0] and shown[1] == "something else"
  assert sorted(os.listdir(tmp_path)) == sorted([f"jit_chunk_2-{key}-cache", "jit_chunk-notes.txt", "stderr"])


def _launch(workdir, env, *extra):
  return subprocess.run([sys.executable, *TINY, f"--workdir={workdir}", *extra], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)   # hang guard only


def test_second_launch_loads_the_compiled_programs_and_gives_the_same_numbers(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", cc.ENV)}
  # Every program cached, however fast its compile (JAX's default keeps only those ≥ 1 s); hits logged.
  env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_LOG_COMPILES="1",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  cache = tmp_path / "xdg" / "stable_training" / "xla"
  first = _launch(tmp_path / "a", env)
  assert first.returncode == 0, first.stderr[-3000:]
  assert first.stdout.strip().splitlines()[-1].startswith("done: ")   # the launcher's own end line
  assert json.loads((tmp_path / "a" / "summary.json").read_text())["final"]["test_accuracy"]["mean"] > 0.1
  entries = sorted(os.listdir(cache))
  assert any(e.startswith("jit_chunk-") for e in entries), entries   # the train chunk, at least
  assert "Persistent compilation cache hit" not in first.stderr
  # The train chunk's entry cut short, as a launch killed (or a disk filled) while JAX wrote it leaves it.
  (chunk,) = [cache / e for e in entries if e.startswith("jit_chunk-") and e.endswith("-cache")]
  size = chunk.stat().st_size
  chunk.write_bytes(chunk.read_bytes()[:100])
  second = _launch(tmp_path / "b", env)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Persistent compilation cache hit for 'jit_one'" in second.stderr, second.stderr[-3000:]
  damaged = [l for l in second.stderr.splitlines() if "damaged" in l]
  assert len(damaged) == 1, second.stderr[-3000:]
  # (the reason is the decompressor's: zlib's "Error -5 while decompressing data: …", or zstandard's where installed)
  assert re.fullmatch(rf"warning: compilation cache entry of jit_chunk in {re.escape(str(cache))} is damaged "
                      r"\(.+\); removed 1 entry of it, compiling anew", damaged[0]), damaged[0]
  assert "UserWarning" not in second.stderr
  # Rewritten whole (a fresh compile: its bytes, which hold the compile time too, need not be the same).
  assert sorted(os.listdir(cache)) == entries and chunk.stat().st_size > size // 2
  summaries = [json.loads((tmp_path / w / "summary.json").read_text()) for w in ("a", "b")]
  assert summaries[0]["final"] == summaries[1]["final"]   # bitwise the same run
  # A bad choice: one line, exit status 2, before anything is written.
  bad = _launch(tmp_path / "c", {**env, cc.ENV: str(tmp_path / "a" / "summary.json")})
  assert bad.returncode == 2 and not (tmp_path / "c").exists()
  assert bad.stderr.strip() == (f"error: {cc.ENV}='{tmp_path / 'a' / 'summary.json'}': not a usable folder "
                                "(File exists); valid: auto, off or a writable folder path"), bad.stderr
