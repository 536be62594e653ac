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
