"""The engine on a researcher's own Flax module: a config names it by import path (package.module:Class)."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from experiments.configs import default
from stable_training.config import ConfigError
from stable_training.models import registry

USER_MODULE = textwrap.dedent('''
    import flax.linen as nn
    import jax.numpy as jnp

    class MyNet(nn.Module):
      hidden: int = 16
      num_classes: int = 10

      @nn.compact
      def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for _ in range(2):
          x = jnp.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes, name="head")(x)

    NotAModule = 3
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
  (tmp_path / "st_user_nets.py").write_text(USER_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  yield "st_user_nets"
  sys.modules.pop("st_user_nets", None)


def test_import_path_builds_the_class_with_its_fields(user_module):
  c = default.get_config("tiny").model
  c.name = f"{user_module}:MyNet"
  m = registry.build_model(c, num_classes=3, input_shape=(8, 8, 1))
  assert type(m).__name__ == "MyNet" and m.num_classes == 3 and m.hidden == 16
  c.hidden = 5
  assert registry.build_model(c, num_classes=3, input_shape=(8, 8, 1)).hidden == 5


@pytest.mark.parametrize("name, message", [
    ("st_nope_module:X", r"cannot import 'st_nope_module' \(ModuleNotFoundError"),
    ("{m}:Missing", r"has no attribute 'Missing'"),
    ("{m}:NotAModule", r"NotAModule is not a flax.linen.Module subclass"),
])
def test_bad_import_paths_are_one_line(user_module, name, message):
  c = default.get_config("tiny").model
  c.name = name.format(m=user_module)
  with pytest.raises(ConfigError, match=message) as e:
    registry.resolve_model_config(c)
  assert "\n" not in str(e.value)


def test_unknown_key_of_an_import_path_model_is_a_typo(user_module):
  c = default.get_config("tiny").model
  c.name = f"{user_module}:MyNet"
  c.hiden = 3
  with pytest.raises(ConfigError, match=r"config.model.hiden: not a field of .*fields: hidden, num_classes"):
    registry.resolve_model_config(c)


def test_engine_trains_a_user_module_like_a_registered_one(user_module, tmp_path):
  """The same math as the registered deep_mlp of the same shape would be a different module; here: the run
  finishes, learns (loss falls) and its numbers are a function of (config, seed) — the rerun is identical."""
  from stable_training.train import train_and_evaluate
  c = default.get_config("tiny")
  c.model.name = f"{user_module}:MyNet"
  c.num_seeds = 2
  s1 = train_and_evaluate(c, str(tmp_path / "a"))
  s2 = train_and_evaluate(c, str(tmp_path / "b"))
  first, last = s1["history"][0]["train_loss"]["mean"], s1["final"]["train_loss"]["mean"]
  assert last < first
  assert s1["final"]["test_accuracy"]["per_seed"] == s2["final"]["test_accuracy"]["per_seed"]
  assert s1["final"]["test_accuracy"]["per_seed"][0] != s1["final"]["test_accuracy"]["per_seed"][1]
  assert np.isfinite(s1["final"]["test_loss"]["mean"])


def _digits_arrays():
  from sklearn.datasets import load_digits
  d = load_digits()
  x, y = (d.data / 16.0).astype(np.float32), d.target
  return x[:1400], y[:1400], x[1400:], y[1400:]


class _MLP:
  """A plain flax MLP with jnp.tanh (built lazily so importing the test module stays cheap)."""

  @staticmethod
  def make():
    import flax.linen as nn
    import jax.numpy as jnp

    class MLP(nn.Module):
      width: int = 16

      @nn.compact
      def __call__(self, x):
        for _ in range(2):
          x = jnp.tanh(nn.Dense(self.width)(x))
        return nn.Dense(10, name="head")(x)
    return MLP


def test_fit_trains_a_user_module_and_chain_through_the_engine(tmp_path):
  """st.train.fit: same numbers as the equivalent engine run reloaded (finished run read back), seeds differ,
  a rerun with other data is refused, and st.averaged_gradient(optax.rmsprop) works inside the engine."""
  import optax
  import stable_training as st
  from stable_training.train.checkpoint import WorkdirConfigMismatch
  MLP = _MLP.make()
  data = _digits_arrays()
  kw = dict(num_steps=40, batch_size=32, num_seeds=2, log_every=20, eval_every=40, progress="none")
  s = st.train.fit(MLP(), optax.adam(3e-3), data, str(tmp_path / "a"), **kw)
  assert s["history"][-1]["train_loss"]["mean"] < s["history"][0]["train_loss"]["mean"]
  per_seed = s["final"]["test_loss"]["per_seed"]
  assert len(per_seed) == 2 and per_seed[0] != per_seed[1]
  again = st.train.fit(MLP(), optax.adam(3e-3), data, str(tmp_path / "a"), **kw)   # finished: read back
  assert again["final"] == s["final"]
  other = (data[0][::-1].copy(), data[1][::-1].copy(), data[2], data[3])
  with pytest.raises(WorkdirConfigMismatch):
    st.train.fit(MLP(), optax.adam(3e-3), other, str(tmp_path / "a"), **kw)
  with pytest.raises(ValueError, match="x_test has 3 examples and y_test 2"):
    st.train.fit(MLP(), optax.adam(3e-3), (data[0], data[1], data[2][:3], data[3][:2]), str(tmp_path / "b"))
  assert not (tmp_path / "b").exists()
  # The wrapper (right order by construction) inside the engine: ḡ from the engine's loss (secant on jnp.tanh).
  avg = st.averaged_gradient(optax.rmsprop(1e-3), "secant")
  s2 = st.train.fit(MLP(), avg, data, str(tmp_path / "c"), tx_name="avg-secant-rmsprop", **kw)
  assert np.isfinite(s2["final"]["train_loss"]["mean"])
  assert s2["history"][-1]["train_loss"]["mean"] < s2["history"][0]["train_loss"]["mean"]
