"""The README's "With your own model" example runs verbatim, as a new user runs it (a fresh interpreter)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(heading: str = "## With your own model") -> str:
  text = open(os.path.join(ROOT, "README.md")).read()
  section = text.split(heading, 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_own_model_example_runs(tmp_path):
  path = tmp_path / "example.py"
  path.write_text(_example())
  out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  assert lines[0] in ("healthy", "vanishing", "exploding")
  assert "# Stability check-up: MLP" in out.stdout
  loss = float(lines[-1].split()[-1])
  assert loss < 1.0   # ln 10 ≈ 2.30 at chance: the loop with clipping + averaged gradient learns


def test_readme_study_from_python_runs(tmp_path):
  """The "Reproducing the papers" example: a study run from Python in a fresh interpreter, its table printed."""
  path = tmp_path / "study.py"
  path.write_text(_example("## Reproducing the papers"))
  out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-3000:]
  assert "# Long-lag memory: ROAF RNN" in out.stdout and "| first | 8 | roaf |" in out.stdout
  assert out.stdout.splitlines()[-1].startswith("{'first': {")   # largest T solved per cell, from the payload
  assert sorted(os.listdir(tmp_path / "runs" / "memory"))      # the workdirs under the caller's root
