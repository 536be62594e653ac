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
from stable_training.diagnostics import plot as P
from stable_training.diagnostics.monitor import PERCENTILE_KEYS
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
    for name, q in zip(PERCENTILE_KEYS, D.PERCENTILES, strict=True):
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
  # default: the per-step figures at the first record (the initialization) and the last
  paths = P.render(str(tmp_path), out_dir=str(tmp_path / "default"))
  assert [os.path.basename(p) for p in paths] == [
      "diag_activation_percentiles.png",
      "diag_activation_hist_step0.png", "diag_gradient_hist_step0.png", "diag_jacobian_sv_step0.png",
      "diag_activation_hist_step100.png", "diag_gradient_hist_step100.png",
      "diag_jacobian_sv_step100.png", "diag_saturation_wgrad.png"]
  assert all(os.path.getsize(p) > 5000 for p in paths)


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


def test_writer_keeps_keys_added_later_and_truncates_past_resume_point(tmp_path):
  """A key new to an old workdir (act_p16) is NaN for the old records; truncate drops steps > N."""
  w = D.DiagnosticsWriter(str(tmp_path))
  old = {k: v for k, v in _synthetic(0).items()}
  w.write(0, old, seed=0)
  new = dict(_synthetic(10), act_p16=np.full(3, -0.3, np.float32))
  w.write(10, new, seed=0)
  w.write(20, new, seed=0)
  d = D.load_diagnostics(str(tmp_path))
  assert d["step"].tolist() == [0, 10, 20] and d["act_p16"].shape == (3, 3)
  assert np.all(np.isnan(d["act_p16"][0])) and np.all(d["act_p16"][1:] == np.float32(-0.3))
  w.truncate(10)
  d = D.load_diagnostics(str(tmp_path))
  assert d["step"].tolist() == [0, 10]
  assert [json.loads(s)["step"] for s in open(tmp_path / "diagnostics.jsonl")] == [0, 10]
  np.testing.assert_array_equal(d["act_p50"][1], _synthetic(10)["act_p50"].astype(np.float32))


# ----------------------------------------------------------------------------- figures

def _percentile_record(n_steps, n_layers, seed=0):
  rng = np.random.default_rng(seed)
  med = np.tanh(rng.normal(size=(n_steps, n_layers)).cumsum(0) * 0.1).astype(np.float32)
  spread = rng.uniform(0.1, 0.5, (n_steps, n_layers)).astype(np.float32)
  return {"step": np.arange(n_steps) * 100, "act_p50": med, "act_mean": med + 0.01,
          "act_p02": med - 3 * spread, "act_p16": med - spread,
          "act_p84": med + spread, "act_p98": med + 3 * spread}


def test_percentile_figure_is_one_panel_per_layer_with_the_input_percentiles(tmp_path):
  L = 20
  d = _percentile_record(7, L)
  fig = P.plot_percentiles(d, str(tmp_path / "p.png"), "t")
  assert (tmp_path / "p.png").stat().st_size > 5000
  panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
  assert len(panels) == L
  assert [ax.get_title() for ax in panels] == [f"layer {l + 1}" for l in range(L)]
  for l, ax in enumerate(panels):
    assert ax.get_shared_y_axes().joined(panels[0], ax)   # one y scale for all layers
    med = [ln for ln in ax.lines if ln.get_gid() == "median"]
    assert len(med) == 1
    np.testing.assert_array_equal(med[0].get_xdata(), d["step"])
    np.testing.assert_array_equal(med[0].get_ydata(), d["act_p50"][:, l])
    mean = [ln for ln in ax.lines if ln.get_gid() == "mean"][0]
    np.testing.assert_array_equal(mean.get_ydata(), d["act_mean"][:, l])
    # two bands: light 2–98, dark 16–84; their y extents are the input percentiles
    assert len(ax.collections) == 2
    (lo2, hi2), (lo16, hi16) = [(c.get_paths()[0].vertices[:, 1].min(),
                                 c.get_paths()[0].vertices[:, 1].max()) for c in ax.collections]
    assert (lo2, hi2) == pytest.approx((d["act_p02"][:, l].min(), d["act_p98"][:, l].max()))
    assert (lo16, hi16) == pytest.approx((d["act_p16"][:, l].min(), d["act_p84"][:, l].max()))
  # named layers, and records from before the 16/84 percentiles existed: one band
  old = {k: v[:, :3] if v.ndim == 2 else v for k, v in d.items() if k not in ("act_p16", "act_p84")}
  fig = P.plot_percentiles(old, None, layer_names=["input", "hidden/0", "hidden/1"])
  panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
  assert [ax.get_title() for ax in panels] == ["input", "hidden/0", "hidden/1"]
  assert all(len(ax.collections) == 1 for ax in panels)


def _overlaps(a, b, tol=0.5):
  return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def _tick_boxes(fig, axis):
  """Window extents of the tick labels `axis` draws (non-empty, inside the view)."""
  lo, hi = sorted(axis.get_view_interval())
  boxes = []
  for locs, labels in ((axis.get_majorticklocs(), axis.get_majorticklabels()),
                       (axis.get_minorticklocs(), axis.get_minorticklabels())):
    for loc, t in zip(locs, labels):
      if t.get_visible() and t.get_text() and lo - 1e-9 <= loc <= hi + 1e-9:
        boxes.append(t.get_window_extent(fig.canvas.get_renderer()))
  return boxes


@pytest.mark.parametrize("case", ["log_spectrum", "linear_spectrum", "power_iteration", "deep_60"])
def test_jacobian_figure_tick_labels_do_not_overlap_and_labels_are_mathtext(case):
  rng = np.random.default_rng(0)
  n_maps = 60 if case == "deep_60" else 19   # 20 hidden layers: 19 layer Jacobians
  if case == "log_spectrum" or case == "deep_60":
    sv = np.exp(rng.normal(size=(n_maps, 16)) * 2)
  elif case == "linear_spectrum":
    sv = rng.uniform(0.3, 1.2, (n_maps, 16))
  else:
    sv = rng.uniform(0.3, 1.2, (n_maps, 2))
  sv = np.sort(sv)[:, ::-1].astype(np.float32)
  d_step = {"layer_jac_sv": sv, "layer_jac_sv_mean": sv.mean(1), "e2e_jac_sv_max": np.float32(40.0),
            "e2e_jac_sv_min": np.float32(1e-3)}
  fig = P.plot_jacobian(d_step, None, 0, "title")
  fig.canvas.draw()
  ax = fig.axes[0]
  assert ax.get_yscale() == ("log" if case in ("log_spectrum", "deep_60") else "linear")
  for axis in (ax.xaxis, ax.yaxis):
    boxes = _tick_boxes(fig, axis)
    assert len(boxes) >= 3
    clashes = [(i, j) for i in range(len(boxes)) for j in range(i) if _overlaps(boxes[i], boxes[j])]
    assert not clashes, [axis.get_majorticklabels()[i].get_text() for pair in clashes for i in pair]
  assert ax.get_ylabel() == r"$\sigma_i(\partial h_{l+1}/\partial h_l)$"
  assert r"$\partial h_{l+1}/\partial h_l$" in ax.get_xlabel()
  mean = [ln for ln in ax.lines if ln.get_gid() == "mean"][0]
  np.testing.assert_array_equal(mean.get_xdata(), np.arange(1, n_maps + 1))
  np.testing.assert_allclose(mean.get_ydata(), sv.mean(1))


def test_learning_curves_draw_the_mean_across_seeds_with_a_band():
  steps = np.asarray([0, 10, 20, 30])
  a = np.asarray([[1.0, 0.8, 0.5, 0.4], [1.2, 0.6, 0.7, 0.2], [0.9, 0.7, 0.6, 0.3]])
  curves = {"arrays": (steps, a),
            "pairs": [(0, 2.0), (10, 1.5), (20, 1.0), (30, 0.5)],
            "per_seed_pairs": [[(0, 1.0), (10, 3.0), (20, 9.0)], [(0, 3.0), (10, 5.0), (20, 7.0), (30, 1.0)]],
            "dict": {"step": steps, "values": a * 2}}
  fig = P.plot_learning_curves(curves, "loss", None, log_y=True)
  ax = fig.axes[0]
  lines = {ln.get_label(): ln for ln in ax.lines if ln.get_gid() == "mean"}
  assert set(lines) == {"arrays (3 seeds)", "pairs", "per_seed_pairs (2 seeds)", "dict (3 seeds)"}
  np.testing.assert_allclose(lines["arrays (3 seeds)"].get_ydata(), a.mean(0))
  np.testing.assert_array_equal(lines["arrays (3 seeds)"].get_xdata(), steps)
  np.testing.assert_allclose(lines["pairs"].get_ydata(), [2.0, 1.5, 1.0, 0.5])
  np.testing.assert_array_equal(lines["per_seed_pairs (2 seeds)"].get_xdata(), [0, 10, 20])  # common steps
  np.testing.assert_allclose(lines["per_seed_pairs (2 seeds)"].get_ydata(), [2.0, 4.0, 8.0])
  np.testing.assert_allclose(lines["dict (3 seeds)"].get_ydata(), 2 * a.mean(0))
  assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"
  # one min–max band per multi-seed arm, spanning the seeds' extremes
  assert len(ax.collections) == 3
  ys = ax.collections[0].get_paths()[0].vertices[:, 1]
  assert ys.min() == pytest.approx(a.min()) and ys.max() == pytest.approx(a.max())
  # ± std band; a diverged seed (NaN/inf) is left out of the mean
  bad = a.copy()
  bad[2, 3] = np.inf
  fig = P.plot_learning_curves({"x": (steps, bad)}, "loss", None, band="std")
  ln = fig.axes[0].lines[0]
  np.testing.assert_allclose(ln.get_ydata(), [*a.mean(0)[:3], a[:2, 3].mean()])
  ys = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
  assert ys.max() == pytest.approx(np.max(a.mean(0)[:3] + a[:, :3].std(0)))
  with pytest.raises(ValueError, match="band="):
    P.plot_learning_curves(curves, "loss", None, band="iqr")


# ------------------------------------------------------------------ engine: step-0 record

def _tiny_config(num_steps):
  from experiments.configs import default
  c = default.get_config("digits")
  c.model.width, c.model.depth = 16, 3
  c.model.activation = "tanh"
  c.batch_size, c.eval_batch_size = 32, 360
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = num_steps, 10, num_steps, 10
  c.optimizer.name, c.optimizer.learning_rate = "sgd", 0.1
  c.num_seeds, c.progress = 2, "none"
  c.diagnostics.enabled, c.diagnostics.every = True, 10
  return c


def test_engine_records_the_initialization_at_step_0_once_across_resume(tmp_path):
  from stable_training import train
  wd = str(tmp_path)
  c = _tiny_config(20)
  train.train_and_evaluate(c, wd)
  d = D.load_diagnostics(wd)
  assert sorted(zip(d["step"].tolist(), d["seed"].tolist())) == [(s, k) for s in (0, 10, 20) for k in (0, 1)]

  # Reference: the initial params of each seed, the monitoring batch (first
  # min(256, 2·batch) training examples), activations straight from the model.
  data = train.load_data(c)
  setup = train.build(c, data)
  state = train.init_state(setup.model, setup.tx, setup.seeds, jnp.asarray(data["x_test"][:1]))
  x = jnp.asarray(data["x_train"][:64])
  for i, seed in enumerate(setup.seeds):
    p0 = jax.tree.map(lambda a: a[i], state.params)
    _, inter = setup.model.apply({"params": p0}, x, mutable=["intermediates"])
    acts = [np.asarray(a, np.float64) for b in D.layer_blocks(inter["intermediates"], "act") for a in b]
    assert len(acts) == 3
    r = np.nonzero((d["step"] == 0) & (d["seed"] == seed))[0]
    assert len(r) == 1
    for l, a in enumerate(acts):
      np.testing.assert_allclose(d["act_mean"][r[0], l], a.mean(), rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(d["act_std"][r[0], l], a.std(), rtol=1e-4)
      for key, q in zip(PERCENTILE_KEYS, D.PERCENTILES, strict=True):
        np.testing.assert_allclose(d[key][r[0], l], np.percentile(a, q), rtol=1e-4, atol=1e-5)
    later = np.nonzero((d["step"] == 10) & (d["seed"] == seed))[0][0]
    assert not np.allclose(d["act_mean"][later], d["act_mean"][r[0]])   # step 0 is before any update

  # A killed run (configured longer) wrote diagnostics at steps 30 and 50 but
  # died before checkpointing past 20. Resuming from the step-20 checkpoint to
  # 40 re-measures 30, drops 50 (past the checkpoint, never re-measured), keeps
  # 0..20 as they were, and writes no second step-0 record.
  before = D.load_diagnostics(wd)
  stale_rec = {k: v[-1] for k, v in before.items() if k not in ("step", "seed")}
  for step in (30, 50):
    D.DiagnosticsWriter(wd).write(step, stale_rec, seed=0)
  train.train_and_evaluate(_tiny_config(40), wd)
  d = D.load_diagnostics(wd)
  for seed in (0, 1):
    m = d["seed"] == seed
    assert d["step"][m].tolist() == [0, 10, 20, 30, 40]   # strictly increasing, each once
    b = before["seed"] == seed
    np.testing.assert_array_equal(d["act_mean"][m][:3], before["act_mean"][b])
  stale = (d["step"] == 30) & (d["seed"] == 0)
  assert not np.array_equal(d["act_mean"][stale][0], before["act_mean"][-1])   # re-measured
  lines = [json.loads(s) for s in open(tmp_path / "diagnostics.jsonl")]
  assert sorted((r["step"], r["seed"]) for r in lines) == [(s, k) for s in (0, 10, 20, 30, 40) for k in (0, 1)]


def test_learning_curves_draw_into_a_callers_panel():
  """``ax=``: the curves go into the caller's panel (the studies' multi-panel figures), nothing is saved."""
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2)
  got = P.plot_learning_curves({"one seed": [(0, 2.0), (10, 1.0)]}, "loss", ax=axes[1], title="training")
  assert got is fig and not axes[0].lines
  (line,) = [ln for ln in axes[1].lines if ln.get_gid() == "mean"]
  np.testing.assert_array_equal(line.get_xydata(), [[0, 2.0], [10, 1.0]])
  assert axes[1].get_title() == "training"   # one seed: no across-seed wording
  with pytest.raises(ValueError, match="either ax"):
    P.plot_learning_curves({"a": [(0, 1.0)]}, "loss", path="x.png", ax=axes[0])
  plt.close(fig)
