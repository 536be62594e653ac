"""Engine features studies rely on: optax chain from the config, schedules, losses,
generated sequence tasks, num_epochs, validation split, trainer registry."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import default, roaf
from stable_training import optim, train
from stable_training.config import ConfigError, validate
from stable_training.data import sequence_tasks
from stable_training.train import losses, trainers


def _opt(**kw):
  c = default.get_config().optimizer
  c.update(kw)
  return c


def _params():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return {"hidden": {"kernel": jax.random.normal(k1, (4, 3))},
          "output": {"kernel": jax.random.normal(k2, (3, 2)), "bias": jnp.ones(2)}}


def _run(tx, params, grads_seq):
  s = tx.init(params)
  out = []
  for g in grads_seq:
    u, s = tx.update(g, s, params)
    params = optax.apply_updates(params, u)
    out.append(params)
  return out


def test_config_chain_equals_hand_built_optax_chain():
  p = _params()
  gs = [jax.tree.map(lambda a, i=i: (i + 1.0) * 3.0 * jnp.cos(a + i), p) for i in range(4)]
  cfg = _opt(name="momentum", learning_rate=0.1, momentum=0.9, clip_global_norm=1.0, clip_output_norm=0.5,
             weight_decay=1e-2, schedule="warmup_cosine", warmup_steps=2, end_lr_factor=0.1)
  got = _run(optim.make_optimizer(cfg, num_steps=10), p, gs)
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10, 0.01)
  want = _run(optax.chain(optax.clip_by_global_norm(1.0), optim.clip_output_layer(0.5),
                          optax.add_decayed_weights(1e-2), optax.sgd(sched, momentum=0.9)), p, gs)
  chex.assert_trees_all_close(got, want, rtol=1e-6)
  # Clipping really binds: without it the trajectory differs.
  free = _run(optim.make_optimizer(_opt(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-2,
                                        schedule="warmup_cosine", warmup_steps=2, end_lr_factor=0.1),
                                   num_steps=10), p, gs)
  assert not np.allclose(free[-1]["hidden"]["kernel"], got[-1]["hidden"]["kernel"])


def test_adam_weight_decay_is_adamw():
  p = _params()
  gs = [jax.tree.map(jnp.sin, p)] * 3
  got = _run(optim.make_optimizer(_opt(name="adam", learning_rate=0.01, weight_decay=0.1)), p, gs)
  want = _run(optax.adamw(0.01, eps=1e-8, weight_decay=0.1), p, gs)
  chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_schedules_match_their_formulas():
  lr, w, T, f = 0.2, 5, 25, 0.1
  s = optim.make_schedule(_opt(learning_rate=lr, schedule="warmup_cosine", warmup_steps=w, end_lr_factor=f), T)
  for t in (0, 3, 5, 12, 25):
    want = lr * t / w if t < w else lr * f + 0.5 * (lr - lr * f) * (1 + math.cos(math.pi * (t - w) / (T - w)))
    assert float(s(t)) == pytest.approx(want, rel=1e-5, abs=1e-7)
  st = optim.make_schedule(_opt(learning_rate=lr, schedule="step", step_boundaries=(4, 8), step_factor=0.5))
  assert [float(st(t)) for t in (0, 3, 4, 7, 8, 100)] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
  with pytest.raises(ValueError, match="valid choices"):
    optim.make_schedule(_opt(schedule="linear"))


def test_losses_against_numpy():
  rng = np.random.default_rng(0)
  z, y = rng.normal(size=(5, 3, 4)).astype(np.float32), rng.integers(0, 4, (5, 3))
  ce = losses.get_loss("cross_entropy")
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  want = -np.take_along_axis(logp, y[..., None], -1)[..., 0].mean(1)
  np.testing.assert_allclose(ce.per_example(z, y), want, rtol=1e-5)
  np.testing.assert_allclose(ce.metrics(z, y)["accuracy"], (z.argmax(-1) == y).mean(1))
  o, t = rng.normal(size=(6, 1)).astype(np.float32), rng.normal(size=6).astype(np.float32)
  np.testing.assert_allclose(losses.get_loss("mse").per_example(o, t), (o[:, 0] - t) ** 2, rtol=1e-6)
  with pytest.raises(ValueError, match="valid choices are cross_entropy, mse"):
    losses.get_loss("hinge")


def test_adding_problem_targets_and_baseline():
  x, y = sequence_tasks.adding_problem(jax.random.PRNGKey(1), 4000, 50)
  x, y = np.asarray(x), np.asarray(y)
  marks = x[..., 1]
  assert np.all(marks[:, :25].sum(1) == 1) and np.all(marks[:, 25:].sum(1) == 1)
  np.testing.assert_allclose(y, (x[..., 0] * marks).sum(1), rtol=1e-6)
  # Constant prediction 1 has MSE Var(u_i + u_j) = 1/6 (the task's baseline).
  assert np.mean((y - 1.0) ** 2) == pytest.approx(sequence_tasks.get_task("adding").baseline(50), rel=0.05)


def test_copy_task_layout_and_memoryless_baseline():
  T = 30
  x, y = sequence_tasks.copy_task(jax.random.PRNGKey(2), 64, T)
  x, y = np.asarray(x), np.asarray(y)
  inp = x.argmax(-1)
  assert x.shape == (64, T + 20, 10) and y.shape == (64, T + 20)
  np.testing.assert_array_equal(y[:, -10:], inp[:, :10])       # the symbols come back at the end
  assert np.all(y[:, :T + 10] == 0) and np.all(inp[:, T + 9] == 9) and np.all(inp[:, 10:T + 9] == 0)
  # Blanks with certainty, then uniform over the 8 symbols: CE = 10 log 8 / (T + 20).
  logits = np.full((64, T + 20, 9), -1e9, np.float32)
  logits[:, :T + 10, 0] = 0.0
  logits[:, T + 10:, 1:] = 0.0
  ce = float(losses.mean_loss("cross_entropy")(logits, y))
  assert ce == pytest.approx(sequence_tasks.get_task("copy").baseline(T), rel=1e-5)


def test_generated_task_resume_is_exact_and_learns(tmp_path):
  c = roaf.get_config("tiny-adding")
  c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 60, 30, 30, 30
  full = train.train_and_evaluate(c, str(tmp_path / "full"))
  c.num_steps = 30
  train.train_and_evaluate(c, str(tmp_path / "split"))
  c.num_steps = 60
  split = train.train_and_evaluate(c, str(tmp_path / "split"))
  assert split["final"]["test_loss"]["per_seed"] == full["final"]["test_loss"]["per_seed"]
  assert full["info"]["baseline_loss"] == pytest.approx(1 / 6)
  # Learning: a zero output has MSE E[y²] = 1 + 1/6; 60 steps learn at least the mean.
  assert full["final"]["test_loss"]["mean"] < 0.3


def test_num_epochs_and_validation_split(tmp_path):
  c = default.get_config("tiny")
  c.num_epochs, c.dataset.num_val, c.batch_size = 2, 300, 64
  c.log_every, c.eval_every, c.checkpoint_every = 10, 1000, 1000
  d = train.load_data(c)
  assert d["x_train"].shape[0] == 1437 - 300 and d["x_val"].shape[0] == 300
  s = train.train_and_evaluate(c, str(tmp_path))
  spe = (1437 - 300) // 64
  evals = [h["step"] for h in s["history"] if "val_loss" in h]
  assert evals == [spe, 2 * spe]                       # evaluated at each epoch end
  best = max((h for h in s["history"] if "val_accuracy" in h), key=lambda h: h["val_accuracy"]["mean"])
  assert s["best"]["step"] == best["step"] and s["best"]["by"] == "val_accuracy"
  assert s["best"]["test_accuracy"] == best["test_accuracy"]


@pytest.mark.parametrize("key,value,match", [
    ("optimizer.learning_rate", float("nan"), "finite"),
    ("optimizer.schedule", "linear", "valid choices"),
    ("optimizer.clip_global_norm", -1.0, "must be in \\[0, inf\\)"),
    ("loss", "hinge", "valid choices"),
    ("num_epochs", -1, "config.num_epochs=-1: must be in \\[0, inf\\)"),
])
def test_bad_engine_values_are_one_line(key, value, match):
  c = default.get_config("tiny")
  *path, leaf = key.split(".")
  node = c
  for p in path:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match=match) as e:
    validate(c)
  assert "\n" not in str(e.value) and key in str(e.value)


def test_task_needs_its_loss():
  c = roaf.get_config("tiny-adding")
  c.loss = "cross_entropy"
  with pytest.raises(ConfigError, match="needs 'mse'"):
    validate(c)


def test_trainer_registry():
  assert {"supervised", "dqn"} <= set(trainers.names())
  assert trainers.get_trainer("supervised").run is train.train_and_evaluate
  with pytest.raises(ValueError, match="valid choices are"):
    trainers.get_trainer("ppo")


def test_tfds_names_are_validated_against_the_tfds_registry(monkeypatch):
  import sys
  import types
  c = default.get_config("tiny")
  c.dataset.name = "mnist"
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)   # the [tfds] extra absent
  with pytest.raises(ConfigError, match=r"config.dataset.name='mnist': not built in .*pip install -e .\[tfds\]"):
    validate(c)
  fake = types.SimpleNamespace(list_builders=lambda: ["mnist", "cifar10"])
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  validate(c)                                                       # a TFDS name: accepted
  c.dataset.name = "mnistt"
  with pytest.raises(ConfigError, match="neither built in .* nor a TFDS dataset"):
    validate(c)
