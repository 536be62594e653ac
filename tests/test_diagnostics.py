"""Diagnostics monitor: statistics against numpy / manual chain rule, writer, plot CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training import diagnostics as D
from stable_training.models import DeepMLP

B, N_IN, W, C = 12, 5, 6, 3


def ce(logits, y):
  """Mean softmax cross-entropy (the engine's loss)."""
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def _params(rng, scale=1.0):
  k0, b0 = rng.normal(size=(N_IN, W)), rng.normal(size=W)
  k1, b1 = rng.normal(size=(W, W)) / np.sqrt(W), rng.normal(size=W)
  ko, bo = rng.normal(size=(W, C)), rng.normal(size=C)
  f = lambda a: jnp.asarray(scale * a, jnp.float32)
  return {"input": {"dense": {"kernel": f(k0), "bias": f(b0)}},
          "hidden": {"layer": {"dense": {"kernel": f(k1)[None], "bias": f(b1)[None]}}},
          "output": {"kernel": f(ko), "bias": f(bo)}}


@pytest.fixture(scope="module")
def linear_case():
  """Depth-2 DeepMLP with identity activation and known weights, and its diagnostics."""
  rng = np.random.default_rng(0)
  model = DeepMLP(width=W, depth=2, num_classes=C, activation="identity")
  params = _params(rng)
  x = jnp.asarray(rng.normal(size=(B, N_IN)), jnp.float32)
  y = jnp.asarray(rng.integers(0, C, B))
  d = D.compute_diagnostics(model, params, x, y, ce, activation_name="identity", num_bins=7,
                            num_jacobian_examples=3)
  return model, params, x, y, jax.device_get(d)


def _manual(params, x, y):
  """Forward + backward by hand (float64): a_l, ∂L/∂z_l, ∂L/∂W_l."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64)
  k0, b0 = p["input"]["dense"]["kernel"], p["input"]["dense"]["bias"]
  k1, b1 = p["hidden"]["layer"]["dense"]["kernel"][0], p["hidden"]["layer"]["dense"]["bias"][0]
  ko, bo = p["output"]["kernel"], p["output"]["bias"]
  a0 = x @ k0 + b0
  a1 = a0 @ k1 + b1
  logits = a1 @ ko + bo
  sm = np.exp(logits - logits.max(1, keepdims=True))
  sm /= sm.sum(1, keepdims=True)
  g_logits = (sm - np.eye(C)[np.asarray(y)]) / len(x)   # ∂(mean CE)/∂logits
  g1 = g_logits @ ko.T                                   # identity φ: ∂L/∂z1 = ∂L/∂a1
  g0 = g1 @ k1.T
  wgrads = [x.T @ g0, a0.T @ g1, a1.T @ g_logits]
  loss = -np.mean(np.log(sm[np.arange(len(x)), np.asarray(y)]))
  return dict(a=[a0, a1], g=[g0, g1], wgrads=wgrads, loss=loss, k=(k0, k1, ko))


def test_activation_statistics_match_numpy(linear_case):
  _, params, x, y, d = linear_case
  ref = _manual(params, x, y)
  for l, a in enumerate(ref["a"]):
    np.testing.assert_allclose(d["act_mean"][l], a.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d["act_std"][l], a.std(), rtol=1e-4)
    for name, q in zip(("act_p02", "act_p50", "act_p98"), D.PERCENTILES):
      np.testing.assert_allclose(d[name][l], np.percentile(a, q), rtol=1e-4, atol=1e-5)
  assert np.all(np.isnan(d["act_saturation"]))   # identity is unbounded
  np.testing.assert_allclose(d["loss"], ref["loss"], rtol=1e-5)


def test_backprop_gradients_match_manual_chain_rule(linear_case):
  _, params, x, y, d = linear_case
  ref = _manual(params, x, y)
  gmax = max(np.abs(g).max() for g in ref["g"])
  np.testing.assert_allclose(d["grad_hist_range"], [-gmax, gmax], rtol=1e-5)
  for l, g in enumerate(ref["g"]):
    np.testing.assert_allclose(d["grad_std"][l], g.std(), rtol=1e-4)
    want, _ = np.histogram(g, bins=7, range=(-gmax, gmax))
    # bins agree except possibly a value sitting on an edge (float32 vs float64)
    assert np.abs(d["grad_hist"][l] - want).sum() <= 2
  np.testing.assert_allclose(d["weight_grad_var"], [w.var() for w in ref["wgrads"]], rtol=1e-4)


def test_histograms_sum_to_sample_count_and_match_numpy(linear_case):
  _, params, x, y, d = linear_case
  ref = _manual(params, x, y)
  assert d["act_hist"].shape == (2, 7) and d["grad_hist"].shape == (2, 7)
  np.testing.assert_array_equal(d["act_hist"].sum(1), [B * W, B * W])
  np.testing.assert_array_equal(d["grad_hist"].sum(1), [B * W, B * W])
  lo, hi = min(a.min() for a in ref["a"]), max(a.max() for a in ref["a"])
  np.testing.assert_allclose(d["act_hist_range"], [lo, hi], rtol=1e-5)
  for l, a in enumerate(ref["a"]):
    want, _ = np.histogram(a, bins=7, range=(lo, hi))
    assert np.abs(d["act_hist"][l] - want).sum() <= 2


def test_histogram_ignores_nonfinite_and_clips_to_range():
  a = jnp.asarray([-5.0, 0.05, 0.5, 0.95, 1.0, 7.0, jnp.nan, jnp.inf])
  np.testing.assert_array_equal(D.histogram(a, 0.0, 1.0, 2), [2, 4])


def test_jacobians_of_linear_net_are_weight_spectra(linear_case):
  _, params, x, y, d = linear_case
  k0, k1, ko = _manual(params, x, y)["k"]
  # identity φ: ∂a1/∂a0 = K1ᵀ, ∂logits/∂x = (K0 K1 Ko)ᵀ, the same at every example
  np.testing.assert_allclose(d["layer_jac_sv"][0], np.linalg.svd(k1, compute_uv=False),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(d["layer_jac_sv_mean"][0], np.linalg.svd(k1, compute_uv=False).mean(),
                             rtol=1e-4)
  e2e = np.linalg.svd(k0 @ k1 @ ko, compute_uv=False)
  np.testing.assert_allclose(d["e2e_jac_sv"], e2e, rtol=1e-4)
  np.testing.assert_allclose([d["e2e_jac_sv_max"], d["e2e_jac_sv_min"]], [e2e[0], e2e[-1]], rtol=1e-4)


def test_saturation_fraction_on_constructed_input():
  a = jnp.asarray([-1.0, -0.95, -0.85, 0.0, 0.5, 0.89, 0.91, 1.0])
  np.testing.assert_allclose(D.saturation_fraction(a, (-1.0, 1.0)), 4 / 8)   # |a| ≥ 0.9
  s = jnp.asarray([0.0, 0.04, 0.06, 0.5, 0.94, 0.96])
  np.testing.assert_allclose(D.saturation_fraction(s, (0.0, 1.0)), 3 / 6)    # ≤ .05 or ≥ .95


def test_tanh_net_saturation_and_layer_jacobian_formula():
  rng = np.random.default_rng(1)
  model = DeepMLP(width=W, depth=2, num_classes=C, activation="tanh")
  params = _params(rng, scale=2.0)  # large weights: part of the units saturate
  x = jnp.asarray(rng.normal(size=(B, N_IN)), jnp.float32)
  y = jnp.asarray(rng.integers(0, C, B))
  d = D.compute_diagnostics(model, params, x, y, ce, activation_name="tanh", num_jacobian_examples=2)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  a0 = np.tanh(np.asarray(x) @ p["input"]["dense"]["kernel"] + p["input"]["dense"]["bias"])
  k1, b1 = p["hidden"]["layer"]["dense"]["kernel"][0], p["hidden"]["layer"]["dense"]["bias"][0]
  a1 = np.tanh(a0 @ k1 + b1)
  for l, a in enumerate((a0, a1)):
    np.testing.assert_allclose(d["act_saturation"][l], np.mean(np.abs(a) >= 0.9), atol=1e-6)
  assert 0.0 < d["act_saturation"][0] < 1.0
  np.testing.assert_allclose(d["act_hist_range"], [-1, 1])
  # J = diag(1 − a1²) K1ᵀ at each example; spectra averaged over 2 examples
  svs = [np.linalg.svd((1 - a1[e] ** 2)[:, None] * k1.T, compute_uv=False) for e in range(2)]
  np.testing.assert_allclose(d["layer_jac_sv"][0], np.mean(svs, 0), rtol=2e-4, atol=1e-6)


def test_vmap_over_seeds_equals_per_seed():
  model = DeepMLP(width=8, depth=2, num_classes=C, activation="softsign",
                  kernel_init="glorot_standard")
  x = jax.random.normal(jax.random.PRNGKey(1), (10, N_IN))
  y = jnp.arange(10) % C
  ps = jax.vmap(lambda k: model.init(k, x)["params"])(jax.random.split(jax.random.PRNGKey(0), 2))
  f = lambda p: D.compute_diagnostics(model, p, x, y, ce, activation_name="softsign", num_bins=5,
                                      num_jacobian_examples=2)
  dv = jax.vmap(f)(ps)
  d1 = f(jax.tree.map(lambda a: a[1], ps))
  for k in ("act_p98", "grad_std", "layer_jac_sv_mean", "e2e_jac_sv", "act_hist"):
    np.testing.assert_allclose(dv[k][1], d1[k], rtol=1e-4, atol=1e-7)
  assert dv["layer_jac_sv"].shape == (2, 1, 8)


def test_bad_activation_name():
  model = DeepMLP(width=4, depth=1, num_classes=C)
  x = jnp.ones((2, N_IN))
  p = model.init(jax.random.PRNGKey(0), x)["params"]
  with pytest.raises(ValueError, match="unknown activation_name 'tahn'"):
    D.compute_diagnostics(model, p, x, jnp.zeros(2, jnp.int32), ce, activation_name="tahn")


def _synthetic(step, layers=3, bins=10, scale=1.0):
  rng = np.random.default_rng(step)
  med = scale * rng.normal(size=layers) * 0.1
  return {"loss": np.float32(1.0 / (1 + step)), "act_mean": med, "act_std": np.ones(layers),
          "act_p02": med - 0.8, "act_p50": med, "act_p98": med + 0.8,
          "act_saturation": np.linspace(0, 0.3, layers).astype(np.float32),
          "act_hist": rng.integers(0, 50, (layers, bins)).astype(np.int32),
          "act_hist_range": np.asarray([-1.0, 1.0], np.float32),
          "grad_std": np.ones(layers, np.float32),
          "grad_hist": rng.integers(0, 50, (layers, bins)).astype(np.int32),
          "grad_hist_range": np.asarray([-1e-3, 1e-3], np.float32),
          "weight_grad_var": np.full(layers + 1, 1e-6, np.float32),
          "layer_jac_sv": np.sort(rng.uniform(0, 1.2, (layers - 1, 8)))[:, ::-1].astype(np.float32),
          "layer_jac_sv_mean": np.full(layers - 1, 0.5, np.float32),
          "layer_jac_sv_max": np.ones(layers - 1, np.float32),
          "layer_jac_sv_min": np.zeros(layers - 1, np.float32),
          "e2e_jac_sv": np.asarray([2.0, 1.0], np.float32), "e2e_jac_sv_max": np.float32(2.0),
          "e2e_jac_sv_min": np.float32(1.0), "e2e_jac_sv_mean": np.float32(1.5)}


def test_writer_appends_and_is_resume_safe(tmp_path):
  w = D.DiagnosticsWriter(str(tmp_path))
  for step in (0, 10, 20):
    for seed in (0, 1):
      w.write(step, _synthetic(step), seed=seed)
  # resume from step 10 for seed 0: its records at steps ≥ 10 are replaced
  w2 = D.DiagnosticsWriter(str(tmp_path))
  w2.write(10, _synthetic(10, scale=5.0), seed=0)
  d = D.load_diagnostics(str(tmp_path))
  pairs = sorted(zip(d["step"].tolist(), d["seed"].tolist()))
  assert pairs == [(0, 0), (0, 1), (10, 0), (10, 1), (20, 1)]
  i = [k for k, p in enumerate(zip(d["step"], d["seed"])) if tuple(p) == (10, 0)][0]
  np.testing.assert_allclose(d["act_p50"][i], _synthetic(10, scale=5.0)["act_p50"], rtol=1e-6)
  assert d["act_hist"].dtype == np.int32 and d["layer_jac_sv"].dtype == np.float16
  assert d["act_hist"].shape == (5, 3, 10)
  lines = [json.loads(s) for s in open(tmp_path / "diagnostics.jsonl")]
  assert sorted((r["step"], r["seed"]) for r in lines) == pairs
  assert lines[-1]["loss"] == pytest.approx(1 / 11) and len(lines[-1]["act_p50"]) == 3
  assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_plot_cli_writes_pngs(tmp_path):
  w = D.DiagnosticsWriter(str(tmp_path))
  for step in (0, 50, 100):
    w.write(step, _synthetic(step), seed=0)
  out = subprocess.run([sys.executable, "-m", "stable_training.diagnostics.plot", str(tmp_path),
                        "--step", "50"], capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr
  for name in ("diag_activation_percentiles.png", "diag_activation_hist_step50.png",
               "diag_gradient_hist_step50.png", "diag_jacobian_sv_step50.png",
               "diag_saturation_wgrad.png"):
    path = tmp_path / name
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
  bad = subprocess.run([sys.executable, "-m", "stable_training.diagnostics.plot", str(tmp_path),
                        "--step", "7"], capture_output=True, text=True, timeout=900)
  assert bad.returncode != 0 and "not recorded" in bad.stderr


def test_non_mlp_model_reads_taps_in_layer_order():
  """A ConvNet (taps dense0, dense1 of different widths): per-layer stats, no layer Jacobians."""
  from stable_training.models import ConvNet
  model = ConvNet(num_classes=C, activation="tanh", image_shape=(8, 8, 1), features=(2,),
                  dense=(12, 6))
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 64))
  p = model.init(jax.random.PRNGKey(0), x)["params"]
  d = D.compute_diagnostics(model, p, x, jnp.arange(4) % C, ce, activation_name="tanh",
                            num_jacobian_examples=0)
  np.testing.assert_array_equal(d["act_hist"].sum(1), [4 * 12, 4 * 6])
  assert d["weight_grad_var"].shape == (4,)        # conv0, dense0, dense1, output
  assert "layer_jac_sv" not in d and "e2e_jac_sv" not in d   # Jacobians skipped
