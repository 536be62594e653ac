"""Tests for stable_training.optim: output-layer clipping and the optimizer factory."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stable_training import optim


def _grads(scale_out=10.0, scale_hidden=5.0, seed=0):
  """A DeepMLP-shaped gradient tree: input, hidden (stacked) and output."""
  ks = jax.random.split(jax.random.key(seed), 6)
  return {
      "input": {"dense": {"kernel": scale_hidden * jax.random.normal(ks[0], (5, 4)),
                          "bias": scale_hidden * jax.random.normal(ks[1], (4,))}},
      "hidden": {"layer": {"dense": {
          "kernel": scale_hidden * jax.random.normal(ks[2], (2, 4, 4)),
          "bias": scale_hidden * jax.random.normal(ks[3], (2, 4))}}},
      "output": {"kernel": scale_out * jax.random.normal(ks[4], (4, 3)),
                 "bias": scale_out * jax.random.normal(ks[5], (3,))},
  }


def _out_norm(g):
  return float(np.sqrt(sum(np.sum(np.square(np.asarray(x)))
                           for x in jax.tree.leaves(g["output"]))))


def test_clip_only_output_layer_changes_and_matches_hand_computation():
  g = _grads()
  tx = optim.clip_output_layer(1.0)
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  # Other layers bit-identical.
  for k in ("input", "hidden"):
    for a, b in zip(jax.tree.leaves(g[k]), jax.tree.leaves(out[k])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Output: g / max(1, n / max_norm) with the joint norm over kernel and bias.
  n = _out_norm(g)
  assert n > 1.0
  for key in ("kernel", "bias"):
    np.testing.assert_allclose(out["output"][key], np.asarray(g["output"][key]) / max(1.0, n / 1.0),
                               rtol=1e-6)
  np.testing.assert_allclose(_out_norm(out), 1.0, rtol=1e-6)


def test_clip_uses_joint_norm_not_per_leaf():
  # kernel norm 0.6, bias norm 0.8: each below 1 but jointly exactly 1.0 → with
  # max_norm 0.5 both scale by 0.5 (per-leaf clipping would give 0.5/0.6, 0.5/0.8).
  g = {"hidden": {"w": jnp.ones((2,))},
       "output": {"kernel": jnp.array([[0.6, 0.0]]), "bias": jnp.array([0.0, 0.8])}}
  tx = optim.clip_output_layer(0.5)
  out, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(out["output"]["kernel"], [[0.3, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(out["output"]["bias"], [0.0, 0.4], rtol=1e-6)


def test_clip_below_threshold_untouched():
  g = _grads(scale_out=1e-3)
  tx = optim.clip_output_layer(1.0)
  out, _ = tx.update(g, tx.init(g))
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(out)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_clip_under_vmap_has_per_seed_norms():
  # Seed 0 above the threshold (scaled down), seed 1 below it (untouched).
  g = jax.tree.map(lambda a, b: jnp.stack([a, b]), _grads(10.0), _grads(1e-3, seed=1))
  tx = optim.clip_output_layer(2.0)
  out, _ = jax.jit(jax.vmap(tx.update))(g, jax.vmap(tx.init)(g))
  g0 = jax.tree.map(lambda x: x[0], g)
  n0 = _out_norm(g0)
  np.testing.assert_allclose(out["output"]["kernel"][0], g0["output"]["kernel"] / (n0 / 2.0),
                             rtol=1e-6)
  np.testing.assert_array_equal(out["output"]["kernel"][1], g["output"]["kernel"][1])
  np.testing.assert_array_equal(out["input"]["dense"]["kernel"], g["input"]["dense"]["kernel"])


def test_clip_accepts_variables_dict():
  g = {"params": _grads()}
  tx = optim.clip_output_layer(1.0)
  out, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(_out_norm(out["params"]), 1.0, rtol=1e-6)


def test_clip_errors():
  tx = optim.clip_output_layer(1.0)
  g = {"dense0": {"kernel": jnp.ones(3)}, "head": {"kernel": jnp.ones(2)}}
  with pytest.raises(ValueError, match="dense0, head"):
    tx.init(g)
  for bad in (0.0, -1.0):
    with pytest.raises(ValueError, match="max_norm"):
      optim.clip_output_layer(bad)


def _cfg(name, **kw):
  c = ml_collections.ConfigDict(dict(
      name=name, learning_rate=0.1, momentum=0.9, decay=0.9, eps=1e-8,
      clip_output_norm=0.0,
      avg_grad=ml_collections.ConfigDict(dict(method="secant", num_points=2))))
  c.update(kw)
  return c


@pytest.mark.parametrize("name,ref", [
    ("sgd", lambda: optax.sgd(0.1)),
    ("momentum", lambda: optax.sgd(0.1, momentum=0.9)),
    ("rmsprop", lambda: optax.rmsprop(0.1, decay=0.9, eps=1e-8)),
    ("adam", lambda: optax.adam(0.1, eps=1e-8)),
    ("adabelief", lambda: optax.adabelief(0.1, eps=1e-8)),
    ("avg_grad_rmsprop", lambda: optax.rmsprop(0.1, decay=0.9, eps=1e-8)),
])
def test_make_optimizer_matches_optax(name, ref):
  # params held fixed ⇒ Δw = 0 and the averaged gradient is ∇L(w) = g (midpoint
  # rule: grad_fn(w + Δw/2)), so avg_grad_rmsprop is RMSProp here.
  params = {"output": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([0.5, 0.0])}}
  grads = [jax.tree.map(lambda p, s=s: (s + 1.0) * p + s, params) for s in range(3)]
  tx = optim.make_optimizer(_cfg(name, avg_grad=ml_collections.ConfigDict(
      dict(method="midpoint", num_points=2))))
  tr = ref()
  s, sr = tx.init(params), tr.init(params)
  for g in grads:
    u, s = tx.update(g, s, params, grad_fn=lambda p, g=g: g)
    ur, sr = tr.update(g, sr, params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ur)):
      np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)


def test_make_optimizer_chains_clip_first():
  g = _grads()
  tx = optim.make_optimizer(_cfg("sgd", learning_rate=1.0, clip_output_norm=1.0))
  u, _ = tx.update(g, tx.init(g), g)
  np.testing.assert_allclose(_out_norm(u), 1.0, rtol=1e-6)       # −η·clipped
  np.testing.assert_array_equal(u["input"]["dense"]["kernel"], -g["input"]["dense"]["kernel"])


def test_make_optimizer_unknown_name():
  with pytest.raises(ValueError, match="adabelief, adam, avg_grad_rmsprop"):
    optim.make_optimizer(_cfg("lamb"))
  assert optim.names() == sorted(
      ["sgd", "momentum", "rmsprop", "adam", "adabelief", "avg_grad_rmsprop"])


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adabelief"])
def test_plain_optimizers_ignore_the_grad_fn_extra_arg(name):
  # The engine passes grad_fn to every optimizer; optax.chain drops it for
  # plain transforms, so it is never called (no extra gradient evaluations),
  # with or without clipping / weight decay in front.
  def boom(*_):
    raise AssertionError("grad_fn called by a plain optimizer")
  g = _grads()
  for extra in ({}, {"clip_output_norm": 1.0, "clip_global_norm": 5.0, "weight_decay": 1e-4}):
    tx = optim.make_optimizer(_cfg(name, **extra))
    u, _ = tx.update(g, tx.init(g), g, grad_fn=boom)
    u_ref, _ = tx.update(g, tx.init(g), g)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
      np.testing.assert_array_equal(a, b)


def test_avg_grad_rmsprop_puts_the_estimator_first():
  # clipping / weight decay act on ḡ, not on the discarded ∇L(w): the
  # estimator is the chain's first transform.
  tx = optim.make_optimizer(_cfg("avg_grad_rmsprop", clip_output_norm=1.0, weight_decay=1e-4))
  g = _grads()
  state = tx.init(g)
  assert isinstance(state[0], optim.AvgGradState)
  with pytest.raises(ValueError, match="grad_fn"):
    tx.update(g, state, g)


def test_factory_reads_the_schema_defaults_and_checks_with_it():
  """One source of truth: names, schedules and methods from optim.schema; absent keys at their
  declared defaults; bad values get the schema's one-line message naming key, value and what is valid."""
  import types
  from stable_training.optim import avg_grad as ag
  from stable_training.optim import schema
  assert optim.names() == sorted(schema.NAMES) and optim.SCHEDULES is schema.SCHEDULES
  assert ag.METHODS is schema.METHODS and optim.METHODS is schema.METHODS
  p, g = {"w": jnp.ones(3)}, {"w": jnp.asarray([1.0, -2.0, 3.0])}
  # momentum absent -> the declared 0.9; a plain object with attributes reads like a ConfigDict.
  for cfg in (ml_collections.ConfigDict({"name": "momentum", "learning_rate": 0.1}),
              types.SimpleNamespace(name="momentum", learning_rate=0.1, momentum=None)):
    tx = optim.make_optimizer(cfg)
    s = tx.init(p)
    _, s = tx.update(g, s, p)
    u, _ = tx.update(g, s, p)
    np.testing.assert_allclose(u["w"], -0.1 * 1.9 * np.asarray(g["w"]), rtol=1e-6)  # m = g + 0.9 g
  # avg_grad absent -> AVG_GRAD_KEYS' defaults (secant, 2 points): the same updates as the explicit group.
  loss = lambda q: jnp.sum(jnp.tanh(q["w"]) ** 2)

  def gf(q):
    return jax.grad(loss)(q)
  gf.loss_fn = loss  # secant reads the loss (any model)
  for q in (p, {"w": jnp.asarray([2.0, 0.0, 1.0])}):
    ups = []
    for cfg in (ml_collections.ConfigDict({"name": "avg_grad_rmsprop", "learning_rate": 0.1}),
                _cfg("avg_grad_rmsprop", avg_grad=ml_collections.ConfigDict({"method": "secant", "num_points": 2}))):
      tx = optim.make_optimizer(cfg)
      ups.append(tx.update(gf(q), tx.init(p), q, grad_fn=gf)[0]["w"])
    np.testing.assert_array_equal(ups[0], ups[1])
  for kw, msg in (({"clip_global_norm": -1.0}, "config.optimizer.clip_global_norm=-1.0: must be in [0, inf)"),
                  ({"schedule": "linear"}, "config.optimizer.schedule='linear': valid choices are constant, "
                                           "warmup_cosine, step"),
                  ({"momentum": 1.0}, "config.optimizer.momentum=1.0: must be in [0, 1)"),
                  ({"avg_grad": ml_collections.ConfigDict({"method": "exact"})},
                   "config.optimizer.avg_grad.method='exact': valid choices are midpoint, gauss_legendre, secant")):
    name = "avg_grad_rmsprop" if "avg_grad" in kw else "momentum"
    with pytest.raises(ValueError) as e:
      optim.make_optimizer(_cfg(name, **kw))
    assert str(e.value) == msg
  with pytest.raises(ValueError, match="optimizer.learning_rate is required"):
    optim.make_optimizer(ml_collections.ConfigDict({"name": "sgd"}))
