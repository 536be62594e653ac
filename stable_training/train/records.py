"""What a run writes to its workdir, shared by every trainer.

- ``metrics.jsonl``: one JSON record per line (`append_record`); on resume the
  records past the restored checkpoint are dropped (`truncate_records`), so the
  file holds each step once; a cut or damaged line ends the file (it and the
  lines after it are dropped, with one line saying so).
- ``summary.json``: written atomically (`write_json`); non-finite floats are
  written as ``null`` so the file is always valid JSON.
- `Progress`: a tqdm bar on a terminal, absl log lines otherwise.
- `stats`: per-seed values with their mean and std across seeds.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Sequence

import jax
import numpy as np


def quiet_logging(argv: Sequence[str] = ()) -> None:
  """Library INFO logging (orbax through absl, JAX's backend probe) off unless `argv` asks for it.

  `argv`: the program's command-line arguments, passed by its entry point
  (e.g. ``sys.argv[1:]``); a ``--verbosity``/``-v`` among them keeps every
  level as it is. Otherwise absl's verbosity and the ``absl`` and ``jax``
  loggers (the parent of JAX's module loggers) are set to WARNING.
  """
  if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
    raise ValueError(f"argv={argv!r}: must be a sequence of command-line arguments (str), e.g. sys.argv[1:]")
  if any(a.startswith(("--verbosity", "-v")) for a in argv):
    return
  from absl import logging
  import logging as py_logging
  logging.set_verbosity(logging.WARNING)
  for name in ("jax", "absl"):
    py_logging.getLogger(name).setLevel(py_logging.WARNING)


def stats(values) -> dict:
  """``{'per_seed', 'mean', 'std'}`` of per-seed values (a leading seed axis).

  For values with trailing axes the mean is over every entry.
  """
  v = np.asarray(values, dtype=np.float64)
  return {"per_seed": v.tolist(), "mean": float(v.mean(axis=0).mean()) if v.ndim > 1 else float(v.mean()),
          "std": float(v.std())}


def _finite_json(obj: Any) -> Any:
  """`obj` with NaN / ±inf floats replaced by None (strict JSON)."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: _finite_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite_json(v) for v in obj]
  return obj


finite_json = _finite_json


def write_json(path: str, payload: Any) -> None:
  """Writes `payload` to `path` atomically (temporary file + rename), strict JSON."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(_finite_json(payload), f, indent=2, allow_nan=False)
  os.replace(tmp, path)


def read_records(path: str, upto_step: int | None = None, *, report: bool = False) -> list[dict]:
  """Records of a metrics.jsonl (those with step <= upto_step when given).

  The file is append-only, so a line that does not parse (cut by a kill
  mid-write, or damaged) ends it: that line and any after it are not
  returned. With `report`, one stderr line says what was dropped.
  """
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    lines = f.read().splitlines()
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
      step = rec["step"]
    except (ValueError, KeyError, TypeError):
      if report:
        rest = len(lines) - i - 1
        print(f"{path}: line {i + 1} is cut or damaged: dropped it" + (f" and the {rest} after it" if rest else "")
              + (f" (records end at step {out[-1]['step']})" if out else ""), file=sys.stderr, flush=True)
      break
    if upto_step is None or step <= upto_step:
      out.append(rec)
  return out


def truncate_records(path: str, upto_step: int) -> list[dict]:
  """Keeps only the intact records with step <= `upto_step` (atomic rewrite); returns them."""
  records = read_records(path, upto_step)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for r in records:
      f.write(json.dumps(_finite_json(r)) + "\n")
  os.replace(tmp, path)
  return records


def append_record(path: str, rec: dict) -> None:
  """Appends one record as a JSON line (NaN written as null)."""
  with open(path, "a") as f:
    f.write(json.dumps(_finite_json(rec)) + "\n")


class Progress:
  """A tqdm bar named after the run on a terminal; one stderr line per update otherwise.

  With ``enabled=False`` nothing is shown (``config.progress = 'none'``).
  """

  def __init__(self, total: int, initial: int, enabled: bool, desc: str | None = None,
               unit: str = "step"):
    self.bar = None
    self.desc = desc
    self.total = total
    self.enabled = enabled
    if enabled and sys.stderr.isatty():
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc=desc)

  def update(self, step: int, n: int, text: str) -> None:
    if self.bar is not None:
      self.bar.update(n)
      self.bar.set_postfix_str(text)
    elif self.enabled:  # one concise line per record (CI logs, pipes)
      print(f"{f'[{self.desc}] ' if self.desc else ''}step {step}/{self.total} {text}", file=sys.stderr, flush=True)

  def write(self, text: str) -> None:
    """A line above the bar (or an INFO log line)."""
    if self.bar is not None:
      self.bar.write(text)
    elif self.enabled:
      print(f"{f'[{self.desc}] ' if self.desc else ''}{text}", file=sys.stderr, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def read_json(path: str) -> Any:
  """The JSON document at `path`."""
  with open(path) as f:
    return json.load(f)


def read_json_or_none(path: str) -> Any:
  """The JSON document at `path`, or None when it is missing or does not parse."""
  try:
    return read_json(path)
  except (OSError, ValueError):
    return None


def _summary_writer_class():
  """tensorboardX's `SummaryWriter`, imported without importing torch.

  tensorboardX's writer module imports torch where it is installed, only to
  accept torch tensors (we log Python floats and NumPy arrays): 1.5 s of every
  launch in an environment that has torch (measured, torch 2.13 CPU). torch is
  hidden for that one import and is importable as before afterwards.
  """
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class TensorBoard:
  """TensorBoard event files in the workdir (tensorboardX: no TensorFlow needed).

  `write(rec)` logs every ``{'mean': …}`` statistic of a metrics record as a
  scalar, grouped by split (``train/loss``, ``test/accuracy``, ``val/loss``,
  ``grad_norm``…) at ``rec['step']``, and per-layer gradient norms as
  ``layer_grad_norm/<layer>``; `histograms(step, tree)` logs a histogram per
  top-level module of a parameter tree. ``tensorboard --logdir WORKDIR``.
  """

  def __init__(self, workdir: str, layer_names: list[str] | None = None):
    self.writer = _summary_writer_class()(logdir=workdir, flush_secs=30)
    self.layer_names = layer_names or []

  @staticmethod
  def tag(key: str) -> str:
    """``train_loss`` → ``train/loss``; ``grad_norm`` stays."""
    for split in ("train", "test", "val", "eval"):
      if key.startswith(split + "_"):
        return f"{split}/{key[len(split) + 1:]}"
    return key

  def write(self, rec: dict) -> None:
    step = int(rec["step"])
    for key, v in rec.items():
      if isinstance(v, dict) and isinstance(v.get("mean"), (int, float)) and math.isfinite(v["mean"]):
        self.writer.add_scalar(self.tag(key), v["mean"], step)
    lg = rec.get("layer_grad_norms")
    if isinstance(lg, dict) and self.layer_names:
      for name, val in zip(self.layer_names, lg["mean"]):
        if val is not None and math.isfinite(val):
          self.writer.add_scalar(f"layer_grad_norm/{name}", val, step)

  def histograms(self, step: int, tree: Any) -> None:
    for name in tree:
      leaves = [np.asarray(x).ravel() for x in jax.tree.leaves(tree[name])]
      if leaves:
        self.writer.add_histogram(f"params/{name}", np.concatenate(leaves), step)

  def flush(self) -> None:
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()

