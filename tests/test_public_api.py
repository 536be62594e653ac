"""The public surface: `import stable_training as st` gives every piece, documented, with one default per knob."""
from __future__ import annotations

import subprocess
import sys

import pytest

import stable_training as st


@pytest.mark.parametrize("name", st.__all__)
def test_every_export_resolves_and_is_documented(name):
  obj = getattr(st, name)
  assert (obj.__doc__ or "").strip(), f"st.{name} has no docstring"


def test_the_frictions_of_a_new_user_are_gone():
  from stable_training.models import ROAFMLP  # was: ImportError
  assert ROAFMLP is st.ROAFMLP
  # one default per knob: the class and the registry agree
  from stable_training.models import registry
  assert registry.model_keys("roaf_mlp")["filter_mode"].default == ROAFMLP.filter_mode == "fast"
  assert registry.model_keys("rnn_classifier")["filter_mode"].default == st.RecurrentClassifier.filter_mode
  assert callable(st.checkup) and callable(st.checkup.report_markdown)
  assert st.lsc.pretrain is st.lsc.pretrain and callable(st.averaged_gradient)
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    st.nope  # noqa: B018


def test_import_is_lazy_and_has_no_side_effects():
  """A fresh interpreter: importing the package imports no JAX, and resolving the API changes no global state."""
  code = """
import logging, os, sys
import matplotlib
backend = dict.__getitem__(matplotlib.rcParams, "backend")   # the raw setting, not resolved
env = dict(os.environ); hook = sys.unraisablehook; level = logging.getLogger().level
import stable_training as st
assert "jax" not in sys.modules and "flax" not in sys.modules, "import stable_training imported jax"
for n in st.__all__:
  getattr(st, n)
import stable_training.diagnostics.plot, stable_training.checkup
assert sys.unraisablehook is hook, "sys.unraisablehook replaced"
assert dict(os.environ) == env, "os.environ changed"
assert logging.getLogger().level == level, "root logging level changed"
assert dict.__getitem__(matplotlib.rcParams, "backend") == backend, "matplotlib backend switched"
print("ok")
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_one_default_per_key():
  """The default config's groups hold every declared key at its declared default: no second copy to drift."""
  from experiments.configs import default
  from stable_training import config as schema
  from stable_training.optim.schema import OPTIMIZER_KEYS
  c = default.get_config()
  groups = {"": schema.TOP_KEYS, "dataset": schema.DATASET_KEYS, "optimizer": OPTIMIZER_KEYS,
            "lsc": schema.LSC_KEYS, "diagnostics": schema.DIAGNOSTICS_KEYS}
  for g, keys in groups.items():
    node = c[g] if g else c
    for k, key in keys.items():
      if key.type is not dict:
        assert k in node and node[k] == key.default, (g, k, node.get(k), key.default)
  assert c.optimizer.learning_rate == 0.05 and c.lsc.batch_samples == 4
