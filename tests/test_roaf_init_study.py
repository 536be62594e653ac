"""Tests of scripts/roaf_init_study.py: the QR (Lyapunov) accumulation, a numeric property, a --tiny smoke run."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "roaf_init_study.py")


@pytest.fixture(scope="module")
def ris():
  """The script as a module (its absl flags are defined only when run as __main__)."""
  spec = importlib.util.spec_from_file_location("roaf_init_study", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _roaf_maps(alpha, depth, width=8, activation="tanh", init="critical", mode="fast"):
  """(layer_fn, θ) of roaf.py:mlp-depth built and initialized as the trainer does."""
  from experiments.configs import roaf
  from stable_training import models
  c = roaf.get_config(f"mlp-{depth}")
  c.model.width, c.model.alpha, c.model.activation = width, alpha, activation
  c.model.roaf_init, c.model.filter_mode = init, mode
  model = models.build_model(c.model, num_classes=10, input_shape=(8,))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)))["params"]
  return model.diagnostic_layer_maps(params)


def _exact_log10_sv(layer_fn, h0, xs):
  """log10 singular values of J_L ··· J_1, the per-layer Jacobians multiplied out in float64."""
  def step(h, th):
    return layer_fn(th, h), jax.jacfwd(lambda v: layer_fn(th, v))(h)
  _, jacs = jax.lax.scan(step, h0, xs)
  j = np.eye(h0.shape[0])
  for jl in np.asarray(jacs, np.float64):
    j = jl @ j
  return np.log10(np.linalg.svd(j, compute_uv=False))


# The scan runs in float32 over ≤ 30 layers; its logs agree with the float64 product to ~1e-5.
TOL = 1e-3   # decades


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.99])
def test_qr_accumulation_matches_exact_svd(ris, alpha):
  # A shallow product (30 layers, width 8; spread ≤ ~6 decades, far from float64's ~15)
  # whose singular values the float64 SVD of the multiplied-out Jacobian gives exactly.
  layer_fn, xs = _roaf_maps(alpha, depth=31)
  h0 = jnp.asarray(np.random.default_rng(1).normal(size=8), jnp.float32)
  carry = jax.jit(lambda h, xs: ris.qr_log_singular_values(layer_fn, h, xs))(h0, xs)
  res = ris.summarize(carry.log_r, carry.u)
  sv = _exact_log10_sv(layer_fn, h0, xs)
  # What holds exactly, for any product: J = Q·R with R = R_L···R_1 triangular, diag R = e^ℓ.
  # (1) Σ ℓ_i = log|det R| = log|det J| = Σ log σ_i, so the mean log σ is exact.
  assert res["mean_log10_sigma"] == pytest.approx(sv.mean(), abs=TOL)
  # (2) The R_ii are R's eigenvalues, so σ_min ≤ R_ii ≤ σ_max: the QR diagonal's extremes are
  #     one-sided estimates (its spread a lower bound), NOT the singular values in general …
  assert res["qr_log10_max"] <= sv[0] + TOL and res["qr_log10_min"] >= sv[-1] - TOL
  # (3) … and with U = D⁻¹R (J = Q D U): σ_max ≤ max R_ii·‖U‖, σ_min ≥ min R_ii·σ_min(U).
  assert sv[0] <= res["bound_log10_max"] + TOL and sv[-1] >= res["bound_log10_min"] - TOL
  assert res["qr_spread"] - TOL <= sv[0] - sv[-1] <= res["spread_upper"] + TOL
  # (4) In range, the SVD of e^ℓ·U (float64) is the singular values themselves.
  assert res["exact"]
  assert res["log10_sigma_max"] == pytest.approx(sv[0], abs=TOL)
  assert res["log10_sigma_min"] == pytest.approx(sv[-1], abs=TOL)
  assert res["spread"] == pytest.approx(sv[0] - sv[-1], abs=2 * TOL)
  if alpha == 0.99:
    # (5) For a product of near-orthogonal factors (α = 0.99: J_l = 0.99·O_l + O(0.01)) the QR
    #     diagonal itself is within 0.1 decade of the extremes (measured: 0.02 and 0.04) —
    #     not so at α = 0.5, where it misses σ_min by more than a decade.
    assert abs(res["qr_log10_max"] - sv[0]) < 0.1 and abs(res["qr_log10_min"] - sv[-1]) < 0.1


def test_qr_accumulation_random_product(ris):
  # A generic product of non-orthogonal factors (Gaussian A_l ≠ orthogonal-ish): the same
  # exact identities and bounds, through a plain layer_fn(A, h) = A h.
  rng = np.random.default_rng(0)
  n, depth = 8, 20
  mats = np.stack([np.linalg.qr(rng.normal(size=(n, n)))[0] + 0.5 * rng.normal(size=(n, n)) / np.sqrt(n)
                   for _ in range(depth)]).astype(np.float32)
  layer_fn = lambda a, h: a @ h
  carry = ris.qr_log_singular_values(layer_fn, jnp.zeros(n), jnp.asarray(mats))
  res = ris.summarize(carry.log_r, carry.u)
  j = np.eye(n)
  for a in mats.astype(np.float64):
    j = a @ j
  sv = np.log10(np.linalg.svd(j, compute_uv=False))
  assert res["mean_log10_sigma"] == pytest.approx(sv.mean(), abs=TOL)
  assert res["qr_spread"] - TOL <= sv[0] - sv[-1] <= res["spread_upper"] + TOL
  assert res["exact"] and res["spread"] == pytest.approx(sv[0] - sv[-1], abs=2 * TOL)


@pytest.mark.parametrize("init", ["critical", "kernel_init"])
def test_spread_shrinks_as_alpha_to_one(ris, init):
  # Linear φ, β = 1 − α: J_l = α O_l + β W_lᵀ, whose deviation from α·(orthogonal) is O(β)
  # (critical: β·1.1σ* = 1.1·√(1 − α²); kernel_init: β·O(1)), so the 50-layer spread
  # must fall as α → 1. Measured (width 16): critical 7.3, 1.4, 0.38; kernel_init 0.86, 0.07, 0.007.
  spreads = []
  for alpha in (0.9, 0.99, 0.999):
    layer_fn, xs = _roaf_maps(alpha, depth=51, width=16, activation="identity", init=init)
    carry = ris.qr_log_singular_values(layer_fn, jnp.ones(16), xs)
    res = ris.summarize(carry.log_r, carry.u)
    assert res["exact"]
    spreads.append(res["spread"])
  assert spreads[0] > spreads[1] > spreads[2] > 0, spreads
  assert spreads[2] < 0.5


def _git_status_results():
  return subprocess.run(["git", "status", "--porcelain", "results/"], cwd=ROOT, capture_output=True,
                        text=True, check=True).stdout


def test_tiny_smoke(tmp_path):
  before = _git_status_results()
  out = tmp_path / "tmp"
  proc = subprocess.run([sys.executable, SCRIPT, "--tiny", f"--out={out}"], capture_output=True, text=True,
                        timeout=900, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # a hang guard only
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "init_study_tiny.json").read_text())
  s = res["setting"]
  assert s["dataset"] == "digits" and s["width"] == 8 and s["tiny"]
  grid = {(a, i, m, d) for a in s["alphas"] for i in s["inits"] for m in s["filter_modes"]
          for d in s["depths"] if m != "haar" or d <= s["haar_max_depth"]}
  assert len(grid) == 1 * 2 * 2 * 2   # α × inits × filters × depths
  rows = {(r["alpha"], r["roaf_init"], r["filter_mode"], r["depth"]): r for r in res["rows"]}
  assert set(rows) == grid and len(res["rows"]) == len(grid)
  keys = ("log10_sigma_max", "log10_sigma_min", "spread", "spread_lo", "mean_log10_sigma", "log10_cond_u",
          "seconds")
  for r in rows.values():
    assert all(math.isfinite(r[k]) for k in keys), r
    assert r["spread"] >= 0 and r["examples"] == 2 and len(r["per_example"]) == 2
  assert all(v is True for v in s["prefix_stable"].values())   # checkpoints = the separate depths
  # The markdown table shows the JSON's numbers.
  md = (out / "init_study_tiny.md").read_text()
  assert "Regenerate: `python scripts/roaf_init_study.py --tiny`" in md
  table = {}
  for line in md.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 13 and cells[3].isdigit():
      table[(float(cells[0]), cells[1], cells[2], int(cells[3]))] = cells
  assert set(table) == grid
  for key, r in rows.items():
    cells = table[key]
    assert r["exact"]   # tiny nets: every row is in the SVD's range, no ≥/≤ bounds
    assert cells[4:9] == [f"{r['log10_sigma_max']:.2f}", f"{r['log10_sigma_min']:.2f}", f"{r['spread']:.2f}",
                          f"{r['spread_lo']:.2f}", f"{r['mean_log10_sigma']:.3f}"]
    assert cells[9] == f"{r['layers_log10_alpha']:.3f}" and cells[10] == f"{r['log10_cond_u']:.2f}"
    assert cells[11] in ("O(1)", "undetermined") or cells[11].startswith("not O(1) (")
  assert "Verdicts:" in md and (out / "init_study_tiny.png").exists()
  assert _git_status_results() == before   # nothing under results/ changed
