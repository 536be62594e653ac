"""LSC on any Flax model (Herranz-Celotti & Rouat 2023/24): transitions found from the model itself.

Radii are checked against Jacobians computed here independently (`jax.jacfwd`
of the layer/cell maps written out by hand + `numpy.linalg.eigvals`), and the
pre-training against its target ρ.
"""
from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training import lsc

W = 16          # width / hidden size
T = 6           # sequence length
STANDARD = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")   # U[±1/√n]: ρ ≈ 0.6 with tanh
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "simple": nn.SimpleCell}


class TanhMLP(nn.Module):
  """`depth` × (nn.Dense + jnp.tanh), then a Dense read-out (square: its radius is exact, no subsampling)."""
  depth: int = 30
  out: int = W

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = jnp.tanh(nn.Dense(W, kernel_init=STANDARD)(x))
    return nn.Dense(self.out)(x)


class RNNStack(nn.Module):
  """Two stacked nn.RNN layers of a flax cell, read out by a Dense at the last step."""
  cell: str = "lstm"
  out: int = W

  @nn.compact
  def __call__(self, x):
    h = nn.RNN(CELLS[self.cell](W))(x)
    h = nn.RNN(CELLS[self.cell](W))(h)
    return nn.Dense(self.out)(h[:, -1])


def _rho(J):
  return np.abs(np.linalg.eigvals(np.asarray(J, np.float64))).max(-1)


def _mlp_reference(params, x, depth):
  """depth [L−1, B]: ρ(∂h_{l+1}/∂h_l), h_{l+1} = tanh(h_l W_l + b_l), l = 1..L−1; readout ρ(W_outᵀ)."""
  h, out = x, []
  for l in range(depth):
    d = params[f"Dense_{l}"]
    layer = lambda u, d=d: jnp.tanh(u @ d["kernel"] + d["bias"])
    if l >= 1:
      out.append(_rho(jax.vmap(jax.jacfwd(layer))(h)))
    h = layer(h)
  return np.stack(out), _rho(params[f"Dense_{depth}"]["kernel"].T)


def _rnn_reference(cell_name, params, x):
  """time [L, B, T] ρ(∂s^l_t/∂s^l_{t−1}) (s = the carry, (c, h) concatenated), depth [L−1, B, T] ρ(∂h^l_t/∂h^{l−1}_t)."""
  cell = CELLS[cell_name](W)
  split = lambda s: tuple(jnp.split(s, 2)) if cell_name == "lstm" else s        # flax LSTM carry: (c, h)
  flat = lambda c: jnp.concatenate(c, -1) if cell_name == "lstm" else c

  @jax.jit
  def layer(p, xs):   # xs [B, T, d] → (time Jacobians [T, B, S, S], depth Jacobians [T, B, H, d], ys [B, T, H])
    def one_step(s, u):
      return cell.apply({"params": p}, split(s), u)
    def scan_step(s, u):
      (s2, y) = jax.vmap(one_step)(s, u)
      jt = jax.vmap(jax.jacfwd(lambda s, u: flat(one_step(s, u)[0])))(s, u)
      jd = jax.vmap(jax.jacfwd(lambda u, s: one_step(s, u)[1]))(u, s)
      return flat(s2), (jt, jd, y)
    s0 = flat(cell.initialize_carry(jax.random.key(0), xs[:, 0].shape))
    _, (jt, jd, ys) = jax.lax.scan(scan_step, s0, jnp.swapaxes(xs, 0, 1))
    return jt, jd, jnp.swapaxes(ys, 0, 1)

  name = type(cell).__name__
  jt0, _, ys = layer(params[f"{name}_0"], x)
  jt1, jd1, _ = layer(params[f"{name}_1"], ys)
  bt = lambda J: np.moveaxis(_rho(J), 0, -1)    # [T, B] → [B, T]
  return np.stack([bt(jt0), bt(jt1)]), bt(jd1)[None]


@pytest.fixture(scope="module")
def mlp():
  m = TanhMLP()
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 10))
  return m, m.init(jax.random.PRNGKey(1), x)["params"], x


@pytest.fixture(scope="module")
def lstm():
  m = RNNStack("lstm")
  x = jax.random.normal(jax.random.PRNGKey(0), (4, T, 3))
  return m, m.init(jax.random.PRNGKey(1), x)["params"], x


def test_dense_tanh_stack_radii_equal_jacfwd_eigvals(mlp):
  m, p, x = mlp
  r = lsc.radii(m, p, x)
  depth, readout = _mlp_reference(p, x, m.depth)
  assert r["depth"].shape == (29, 4) and set(r) == {"depth", "readout"}
  np.testing.assert_allclose(r["depth"], depth, rtol=1e-4)
  np.testing.assert_allclose(r["readout"], readout, rtol=1e-4)
  assert 0.5 < r["depth"].mean() < 0.7    # the standard init: far from 1 before LSC


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_rnn_stack_radii_equal_jacfwd_eigvals(cell, lstm):
  m, x = (lstm[0], lstm[2]) if cell == "lstm" else (RNNStack(cell), lstm[2])
  p = lstm[1] if cell == "lstm" else m.init(jax.random.PRNGKey(1), x)["params"]
  # time_samples = T: every step, in a random order (drawn from the key), so compare sorted over steps.
  r = lsc.radii(m, p, x, time_samples=T)
  time_r, depth_r = _rnn_reference(cell, p, x)
  assert r["time"].shape == (2, 4, T) and r["depth"].shape == (1, 4, T)
  np.testing.assert_allclose(np.sort(r["time"], -1), np.sort(time_r, -1), rtol=1e-4)
  np.testing.assert_allclose(np.sort(r["depth"], -1), np.sort(depth_r, -1), rtol=1e-4)
  np.testing.assert_allclose(r["readout"], _rho(p["Dense_0"]["kernel"].T), rtol=1e-4)


def _layer_means(r):
  return {k: v.reshape(v.shape[0], -1).mean(1) if k != "readout" else v.mean() for k, v in r.items()}


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_pretrain_dense_tanh_stack_reaches_rho(rho, mlp):
  m, p, x = mlp
  new, hist = lsc.pretrain(m, p, x, rho, lr=3e-2, tol=0.02, patience=3, max_steps=150)
  assert jax.tree.structure(new) == jax.tree.structure(p)
  assert hist["targets"] == {"depth": rho, "readout": 1.0}     # a number: read-out → 1
  after = _layer_means(lsc.radii(m, new, x))
  np.testing.assert_allclose(after["depth"], rho, atol=0.05)   # every layer's mean radius
  np.testing.assert_allclose(after["readout"], 1.0, atol=0.05)


def test_pretrain_lstm_stack_reaches_rho_1(lstm):
  m, p, x = lstm
  before = _layer_means(lsc.radii(m, p, x, time_samples=T))
  assert abs(before["depth"][0] - 1) > 0.3 and abs(before["time"].mean() - 1) > 0.1
  new, hist = lsc.pretrain(m, {"params": p}, x, 1.0, lr=2e-2, tol=0.02, patience=3, max_steps=200)
  assert list(new) == ["params"] and jax.tree.structure(new["params"]) == jax.tree.structure(p)
  after = _layer_means(lsc.radii(m, new, x, time_samples=T))
  for kind in ("time", "depth", "readout"):
    np.testing.assert_allclose(after[kind], 1.0, atol=0.05, err_msg=kind)


def test_targets_number_preset_and_mapping():
  kinds = {"time": 6, "depth": 2, "readout": 1}
  assert lsc.resolve_targets(0.5, kinds) == {"time": 0.5, "depth": 0.5, "readout": 1.0}
  assert lsc.resolve_targets("rho=1", kinds) == {"time": 1.0, "depth": 1.0, "readout": 1.0}
  # the paper's unbalanced split: ρ_time = T/(L+T), ρ_depth = L/(L+T)
  assert lsc.resolve_targets("unbalanced", kinds) == {"time": 6 / 8, "depth": 2 / 8, "readout": 1.0}
  assert lsc.resolve_targets("unbalanced", {"depth": 30, "readout": 1}) == {"depth": 1.0, "readout": 1.0}
  assert lsc.resolve_targets({"time": 0.9, "depth": 0.7, "readout": 1.2}, kinds) == \
      {"time": 0.9, "depth": 0.7, "readout": 1.2}
  # A preset string through pretrain on a found (Flax) model.
  m = TanhMLP(depth=3, out=3)
  x = jnp.ones((2, 5))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  _, hist = lsc.pretrain(m, p, x, "rho=0.5", max_steps=2)
  assert hist["targets"] == {"depth": 0.5, "readout": 1.0} and hist["steps"] == 2
  assert lsc.declared_kinds(m, p, x) == {"depth": 3, "readout": 1}


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "rho=2", [1.0], None,
                                 {"depth": -1.0}, {"deph": 1.0}, {"depth": "1"}])
def test_bad_targets_raise_one_line(bad):
  m = TanhMLP(depth=2)
  with pytest.raises(ValueError, match=r"^LSC targets=.*valid targets: a number rho > 0 .*'rho=1', 'rho=0.5', "
                                       r"'unbalanced'.*mapping") as e:
    lsc.pretrain(m, {}, jnp.ones((1, 3)), bad)
  assert "\n" not in str(e.value)


def test_missing_kind_in_a_mapping_is_named():
  m = TanhMLP(depth=3)
  x = jnp.ones((2, 5))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  with pytest.raises(ValueError, match="no target for readout"):
    lsc.pretrain(m, p, x, {"depth": 1.0})


class Residual(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(W)(x)
    for _ in range(3):
      h = h + jnp.tanh(nn.Dense(W)(h))
    return nn.Dense(2)(h)


class Normed(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(W)(x))
    h = nn.LayerNorm()(h)
    return nn.Dense(2)(jnp.tanh(nn.Dense(W)(h)))


class ScanLayer(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return jnp.tanh(nn.Dense(W)(h)), None


class Scanned(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(W)(x)
    h, _ = nn.scan(ScanLayer, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)()(h, None)
    return nn.Dense(2)(h)


class Mixer(nn.Module):
  """No parameters between the Dense layers, but a softmax (not elementwise) mixes the features."""
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(W)(x))
    h = jax.nn.softmax(nn.Dense(W)(h))
    return nn.Dense(2)(h)


@pytest.mark.parametrize("model,found", [
    (Residual(), "not elementwise"),
    (Normed(), "LayerNorm_0 (LayerNorm) with parameters outside"),
    (Scanned(), "inside a lifted transform"),
    (Mixer(), "output of Dense_1 to the input of Dense_2 is not elementwise"),
])
def test_unsupported_flax_models_raise_one_line(model, found):
  x = jnp.ones((2, 5))
  p = model.init(jax.random.PRNGKey(0), x)["params"]
  with pytest.raises(ValueError, match=f"LSC cannot find the transitions of {type(model).__name__}: .*{re.escape(found)}") as e:
    lsc.radii(model, p, x)
  assert "\n" not in str(e.value) and "transitions=fn(params, x, key, time_samples)" in str(e.value)


def test_conv_net_is_refused_in_one_line():
  from stable_training.models.mlp import ConvNet
  conv = ConvNet(num_classes=2, features=(2,), dense=(8,), image_shape=(4, 4, 1))
  x = jnp.ones((1, 16))
  p = conv.init(jax.random.PRNGKey(0), x)["params"]
  with pytest.raises(ValueError, match=r"^LSC cannot find the transitions of ConvNet: found conv0 \(Conv\) with "
                                       r"parameters outside its Dense/RNN layers \(dense0/dense \(Dense\), output") as e:
    lsc.pretrain(conv, p, x, 1.0)
  assert "\n" not in str(e.value)


def test_user_step_function_escape_hatch():
  """transitions=fn: a residual stack's maps h ↦ h + tanh(W h + b), given by the user."""
  m = Residual()
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  p = m.init(jax.random.PRNGKey(1), x)["params"]
  layer = lambda d, h: h + jnp.tanh(h @ d["kernel"] + d["bias"])

  def transitions(params, x, key, time_samples):
    h = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]    # the first residual block's inputs
    return {"depth": (lambda th, u: layer(th["Dense_1"], u), h)}
  r = lsc.radii(m, p, x, transitions=transitions)
  h = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  np.testing.assert_allclose(r["depth"], _rho(jax.vmap(jax.jacfwd(lambda u: layer(p["Dense_1"], u)))(h)), rtol=1e-4)
  new, hist = lsc.pretrain(m, p, x, {"depth": 1.0}, transitions=transitions, max_steps=3)
  assert hist["steps"] == 3 and jax.tree.structure(new) == jax.tree.structure(p)


def test_declared_models_keep_their_fast_path():
  from stable_training.models.mlp import DeepMLP
  m = DeepMLP(width=4, depth=3, num_classes=2)
  x = jnp.ones((2, 5))
  p = m.init(jax.random.PRNGKey(0), x)["params"]
  assert lsc.find_transitions(m, p, x) is m
  found = lsc.find_transitions(TanhMLP(depth=2), TanhMLP(depth=2).init(jax.random.PRNGKey(0), x)["params"], x)
  assert isinstance(found, lsc.FoundTransitions) and lsc.supports(found)
