"""Every config file launches: ``experiments.main --config=experiments/configs/NAME.py:tiny`` exits 0
and writes summary.json (issue: one engine for every study)."""
from __future__ import annotations

import glob
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))
                 if not os.path.basename(p).startswith("_"))


def test_every_study_has_a_config():
  assert {"default", "dqn", "roaf", "avg_grad", "glorot", "lsc", "stability", "tgelu", "compose"} <= set(CONFIGS)


def _launch(spec: str, wd, monkeypatch) -> dict:
  """`experiments.main.main` in-process with the flags it would parse set (one JAX start-up per test
  worker instead of one per config); returns the run's summary.json."""
  import types
  from experiments import main as launcher
  from experiments.main import _load_config  # the launcher's own loader of FILE.py:variant
  cfg = _load_config([f"--config={ROOT}/experiments/configs/{spec}"])
  for flag, value in (("_CONFIG", cfg), ("_WORKDIR", str(wd)), ("_DISTRIBUTED", False), ("_HOST_DEVICES", 0)):
    monkeypatch.setattr(launcher, flag, types.SimpleNamespace(value=value))
  monkeypatch.chdir(ROOT)
  launcher.main([])  # returns normally on success; errors exit with status 2 or 3
  return json.loads((wd / "summary.json").read_text())


# default.py:tiny runs through the real command line in tests/test_compilation_cache.py (twice) and
# compose.py:tiny in test_compose_runs_every_method_at_once (both through the launcher too).
@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in ("default", "compose")])
def test_tiny_variant_launches(name, tmp_path, monkeypatch, capsys):
  """``experiments.main --config=experiments/configs/NAME.py:tiny --workdir=DIR`` exits 0 and writes summary.json."""
  wd = tmp_path / name
  summary = _launch(f"{name}.py:tiny", wd, monkeypatch)
  out = capsys.readouterr().out
  final = summary["final"]
  # The run trained and evaluated: a finite training (or TD) loss and a held-out metric.
  loss_key = "train_loss" if "train_loss" in final else "loss"
  assert all(math.isfinite(v) for v in final[loss_key]["per_seed"])
  assert any(k.startswith(("test_", "eval_")) for k in final)
  assert out.strip().splitlines()[-1].startswith("done: ")
  assert json.loads((wd / "config.json").read_text())  # the config that made it


def _variants():
  """Every variant of every config file (grids expanded from each file's own tables)."""
  from experiments.configs import avg_grad, dqn, glorot, lsc, roaf, stability, tgelu
  v = {"default": ["", "digits", "tiny"],
       "roaf": ["mlp", "mlp-10", "tanh-10", "tiny", "tiny-psmnist", "tiny-adding", "tiny-copy"]
               + [f"{k}-{c}" for k in ("psmnist", "adding", "copy") for c in roaf.CELLS] + ["copy-roaf-500"],
       "lsc": ["tiny", "tiny-rnn"] + [f"ffn-{a}-{i}-{m}" for a in lsc.FFN_ACTS for i in lsc.FFN_INITS
                                      for m in lsc.ARMS]
              + [f"rnn-{c}-{d}-{r}" for c in lsc.CELLS for d in (1, 2) for r in lsc.RHOS],
       "avg_grad": ["tiny"] + [m + s for m in avg_grad.METHODS for s in ("", "-shallow")],
       "glorot": ["tiny"] + [f"{a}-{i}-{d}" for a in glorot.ACTIVATIONS for i in glorot.INITS
                             for d in glorot.DATASETS],
       "stability": ["tiny", *stability.ARMS], "tgelu": ["tiny", *tgelu.ARMS],
       "dqn": ["tiny", *dqn.ARMS, "tgelu_none,3a"],
       "compose": ["roaf", "mlp", "tiny", "tiny-mlp"]}
  return [(name, var) for name, vs in v.items() for var in vs]


def _none_fields(c, prefix=""):
  """(key, declared type) of every None-valued leaf (ml_collections `placeholder`s carry a type)."""
  import ml_collections
  for k in c.keys():
    v = c[k]
    if isinstance(v, ml_collections.ConfigDict):
      yield from _none_fields(v, f"{prefix}{k}.")
    elif v is None:
      yield prefix + k, c.get_type(k)


@pytest.mark.parametrize("override,expect", [
    ({"step_loop": "while"}, "config.step_loop='while'"),
    ({"scan_unroll": 0}, "config.scan_unroll=0: must be in [1, inf)"),  # the former host-loop sentinel
])
def test_step_loop_is_explicit(override, expect):
  """``step_loop`` ('scan' | 'host') replaces the former ``scan_unroll = 0`` sentinel: one-line errors."""
  from experiments.configs import default
  from stable_training.config import ConfigError, validate
  c = default.tiny(default.get_config())
  validate(c)
  c.update(override)
  with pytest.raises(ConfigError) as e:
    validate(c)
  assert expect in str(e.value) and "\n" not in str(e.value)


_SHAPES = {"mnist_5k": (28, 28, 1), "fashion_mnist": (28, 28, 1), "digits": (8, 8, 1), "shapeset": (32, 32, 1),
           "mnist1d": (40,)}


_TRACED: set = set()


@pytest.mark.parametrize("name,variant", _variants())
def test_every_variant_validates_and_traces(name, variant):
  """Validation, then `jax.eval_shape` of the model's init on the variant's input shape (no FLOPs)."""
  import importlib
  import jax
  import numpy as np
  from stable_training import data, models
  from stable_training.data import sequence_tasks
  from stable_training.train import trainers
  mod = importlib.import_module(f"experiments.configs.{name}")
  c = mod.get_config(variant)
  for key, typ in _none_fields(c):  # a plain None cannot be overridden from the command line
    assert typ is not type(None), f"{name}.py:{variant} config.{key} is a bare None; use placeholder(type)"
  trainer = trainers.get_trainer(trainers.trainer_name(c))
  trainer.validate(c)
  if trainers.trainer_name(c) != "supervised":
    return
  # Variants of a grid often differ only in training settings: each distinct model on each input
  # is traced once per test process.
  traced_key = (repr(c.model.to_dict()), c.dataset.name, c.dataset.get("view"), c.dataset.get("lag"))
  if traced_key in _TRACED:
    return
  _TRACED.add(traced_key)
  if c.dataset.name in sequence_tasks.names():
    task = sequence_tasks.get_task(c.dataset.name)
    x, _ = jax.eval_shape(lambda k: task.sample(k, 2, c.dataset.lag), jax.random.PRNGKey(0))
    x, n_out = np.zeros(x.shape, np.float32), task.num_outputs
  else:
    x = data.apply_view(np.zeros((2, *_SHAPES[c.dataset.name]), np.float32), c.dataset.view)
    n_out = 10 if c.dataset.name != "shapeset" else 9
  model = models.build_model(c.model, num_classes=n_out, input_shape=x.shape[1:])
  out = jax.eval_shape(lambda k: model.apply(model.init(k, x), x), jax.random.PRNGKey(0))
  assert out.shape[0] == 2 and out.shape[-1] == n_out


@pytest.mark.parametrize("variant", ["tiny", "tiny-mlp"])
def test_compose_runs_every_method_at_once(variant, tmp_path, monkeypatch):
  """compose.py: tGELU + ROAF (or DeepMLP) + LSC + output clipping + averaged-gradient RMSProp
  + diagnostics + 4 seeds in one engine run, launched as ``experiments.main --config=compose.py:VARIANT``."""
  import numpy as np
  from experiments.configs import compose
  c = compose.get_config(variant)
  s = _launch(f"compose.py:{variant}", tmp_path, monkeypatch)
  assert c.model.activation == "tgelu" and c.optimizer.name == "avg_grad_rmsprop"
  assert c.optimizer.clip_output_norm == 1.0 and c.model.name == ("roaf_mlp" if variant == "tiny" else "deep_mlp")
  assert len(s["final"]["test_loss"]["per_seed"]) == 4 and np.all(np.isfinite(s["final"]["test_loss"]["per_seed"]))
  # LSC ran for every seed: the mean depth radius moved toward ρ = 1.
  before = np.asarray([np.mean(r["depth"]) for r in s["lsc"]["lsc_before"]])
  after = np.asarray([np.mean(r["depth"]) for r in s["lsc"]["lsc_after"]])
  assert np.all(np.abs(after - 1) <= np.abs(before - 1) + 1e-3)
  assert (tmp_path / "diagnostics.npz").exists()


def test_one_config_getter():
  """`config.lookup`: dotted keys through ConfigDicts, dicts and attribute objects; defaults for absent keys."""
  import types
  import ml_collections
  from stable_training.config import lookup
  c = ml_collections.ConfigDict({"optimizer": {"avg_grad": {"method": "midpoint"}, "eps": None}})
  assert lookup(c, "optimizer.avg_grad.method") == "midpoint"
  assert lookup({"a": types.SimpleNamespace(b=3)}, "a.b") == 3
  assert lookup(c, "optimizer.avg_grad.num_points", 2) == 2
  assert lookup(c, "optimizer.eps", 1e-8) is None                        # None kept: it may mean something
  assert lookup(c, "optimizer.eps", 1e-8, none_is_default=True) == 1e-8  # an unset placeholder
  with pytest.raises(KeyError, match="config.optimizer.lr is not set"):
    lookup(c, "optimizer.lr")


@pytest.mark.parametrize("avg_grad,expect", [
    ({"method": "secant", "num_points": 0}, "config.optimizer.avg_grad.num_points=0: must be in [1, inf)"),
    ({"method": "exact", "num_points": 2}, "config.optimizer.avg_grad.method='exact': valid choices are midpoint, "
                                           "gauss_legendre, secant"),
    ({"method": "secant", "num_point": 2}, "unknown key config.optimizer.avg_grad.num_point; valid keys of "
                                           "config.optimizer.avg_grad: method, num_points"),
])
def test_avg_grad_keys_use_the_schema(avg_grad, expect):
  """``optimizer.avg_grad`` is checked by its declared keys (optim.schema.AVG_GRAD_KEYS), one line each."""
  import ml_collections
  from experiments.configs import default
  from stable_training.config import ConfigError, validate
  c = default.tiny(default.get_config())
  c.optimizer.name = "avg_grad_rmsprop"
  validate(c)
  c.optimizer.avg_grad = ml_collections.ConfigDict(avg_grad)
  with pytest.raises(ConfigError) as e:
    validate(c)
  assert str(e.value) == expect
