"""`fit(model, tx, data, workdir)`: a researcher's own Flax module and optax chain through the one engine.

The same host loop and compiled step as every study (`train_and_evaluate`):
seeds vmapped (seed s ↦ PRNGKey(s) for init and batch order), split over a
device mesh, resumable from orbax checkpoints, metrics.jsonl / TensorBoard /
summary.json, the non-finite guard — with the caller's objects instead of
registry names. What the engine reads from a config (steps, batch size, eval
and checkpoint intervals, seeds, loss, LSC, diagnostics) is set by keyword.

The workdir's record (config.json, checked on resume) holds the model's repr
(its class and fields), `tx_name` and a fingerprint of the data (shapes and a
hash of the arrays), so a rerun with another model or other data is refused;
an optax chain has no readable identity, so changing `tx` but not `tx_name`
is not detected.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import ml_collections
import numpy as np

from stable_training import config as config_lib


def _fingerprint(arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    if a is not None:
      a = np.ascontiguousarray(a)
      h.update(f"{a.shape}{a.dtype}".encode())
      h.update(a.tobytes())
  return h.hexdigest()[:16]


def as_data(data, loss: str = "cross_entropy", num_classes: int | None = None) -> dict[str, Any]:
  """The engine's data dict from ``(x_train, y_train, x_test, y_test)`` or a mapping with those keys
  (optionally ``x_val``/``y_val``); labels int32 for cross-entropy (num_classes = max label + 1 unless given),
  float targets [N, K] for mse.

  Raises:
    ValueError: missing arrays, mismatched counts or shapes, an empty split (one line).
  """
  if not isinstance(data, Mapping):
    try:
      xtr, ytr, xte, yte = data
    except (TypeError, ValueError):
      raise ValueError("fit data: give (x_train, y_train, x_test, y_test) or a dict with those keys") from None
    data = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}
  missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if data.get(k) is None]
  if missing:
    raise ValueError(f"fit data: missing {', '.join(missing)}")
  d = {k: (None if data.get(k) is None else np.asarray(data[k])) for k in
       ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
  for split in ("train", "val", "test"):
    x, y = d[f"x_{split}"], d[f"y_{split}"]
    if x is None:
      continue
    if len(x) == 0 or len(x) != len(y):
      raise ValueError(f"fit data: x_{split} has {len(x)} examples and y_{split} {len(y)}; need equal, > 0")
    if x.shape[1:] != d["x_train"].shape[1:]:
      raise ValueError(f"fit data: x_{split} examples are {x.shape[1:]}, x_train's {d['x_train'].shape[1:]}")
    d[f"x_{split}"] = x.astype(np.float32)
    d[f"y_{split}"] = y.astype(np.int32) if loss == "cross_entropy" else y.astype(np.float32)
  if loss == "cross_entropy":
    n = num_classes or int(max(d["y_train"].max(), d["y_test"].max())) + 1
  else:
    n = num_classes or int(np.prod(d["y_train"].shape[1:]) or 1)
  d.update(num_classes=n, name="arrays", task=None, info={})
  return d


def fit(model, tx, data, workdir: str, *, num_steps: int = 1000, batch_size: int = 128, num_seeds: int = 1,
        seed: int = 0, loss: str = "cross_entropy", tx_name: str = "custom", num_classes: int | None = None,
        **config) -> dict:
  """Trains `model` (any flax.linen Module) with `tx` (any optax GradientTransformation) on `data`.

  The engine minimizes the mean `loss` (``cross_entropy`` | ``mse``) over
  minibatches drawn by (seed, step), for each of `num_seeds` seeds (vmapped),
  and writes the workdir as every engine run does. `config`: any other engine
  key, dotted for groups, e.g. ``log_every=50, eval_every=200,
  on_nonfinite="skip", **{"diagnostics.enabled": True}``.

  Returns:
    the summary dict of `train_and_evaluate` (final/held-out metrics per seed, history, speed).

  Raises:
    ConfigError / ValueError: bad settings or data (one line, nothing written).
  """
  from stable_training.train import loop
  d = as_data(data, loss, num_classes)
  c = config_lib.schema_config()
  c.model = ml_collections.ConfigDict({"name": "given", "module": repr(model)})
  c.optimizer.name = "given"
  c.optimizer.tx_name = tx_name
  c.dataset.name = "arrays"
  c.dataset.fingerprint = _fingerprint([d[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")])
  c.num_steps, c.batch_size, c.num_seeds, c.seed, c.loss = num_steps, batch_size, num_seeds, seed, loss
  c.log_every = min(c.log_every, num_steps)
  c.eval_every = c.checkpoint_every = num_steps
  c.eval_batch_size = min(c.eval_batch_size, len(d["x_test"]))
  config_lib.apply_overrides(c, config)
  return loop.train_and_evaluate(c, workdir, model=model, tx=tx, data=d)
