"""The one sweep runner every study shares: named configs → workdirs → engine → summaries.

`Sweep(root)` runs each named config in ``root/name`` through the engine
(`stable_training.train.trainers.run`): a finished run's summary is read
back (the engine returns it without training), a killed one resumes from its
last checkpoint. The root is the caller's: nothing here deletes it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable


@dataclasses.dataclass
class Sweep:
  """Runs named configs in ``root/<name>``; `summaries` maps each name run so far to its summary.

  `log`: where progress lines go (default: print, flushed).
  """
  root: str
  log: Callable[[str], None] | None = None
  summaries: dict[str, dict] = dataclasses.field(default_factory=dict)
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  def workdir(self, name: str) -> str:
    """``root/name``."""
    return os.path.join(self.root, name)

  def run(self, name: str, config) -> dict:
    """The summary of `config` trained in ``root/name`` (read back when that run finished before)."""
    from stable_training.train import trainers
    wd = self.workdir(name)
    t0 = time.perf_counter()
    (self.log or (lambda s: print(s, flush=True)))(f"[sweep] {name}: workdir {wd}")
    summary = trainers.run(config, wd)
    self.summaries[name] = summary
    self.seconds[name] = time.perf_counter() - t0
    return summary


def final_mean(summary: dict, key: str, default: float = float("nan")) -> float:
  """``summary['final'][key]['mean']`` (the mean over seeds at the last evaluation), or `default`."""
  v = (summary.get("final") or {}).get(key)
  return float(v["mean"]) if isinstance(v, dict) and "mean" in v else default


def evals(summary: dict, key: str) -> list[tuple[int, float]]:
  """[(step, mean over seeds)] of held-out metric `key` at every evaluation in the history."""
  return [(h["step"], float(h[key]["mean"])) for h in summary.get("history", []) if key in h]


def write_payload(out_dir: str, name: str, table: str, payload: dict[str, Any]) -> tuple[str, str]:
  """Writes ``name.md`` and ``name.json`` into `out_dir` (atomically: a temp file then rename); returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for ext, text in (("md", table.rstrip() + "\n"), ("json", json.dumps(payload, indent=2))):
    path = os.path.join(out_dir, f"{name}.{ext}")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
    paths.append(path)
  return tuple(paths)
