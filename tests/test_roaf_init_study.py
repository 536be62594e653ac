"""The ROAF init study (`stable_training.studies.roaf_init`): the QR (Lyapunov) accumulation, a numeric property,
the verdicts and table, and its thin script scripts/roaf_init_study.py (--tiny)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stable_training.studies import roaf_init

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "roaf_init_study.py")


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


@pytest.mark.parametrize("alpha,mode", [(0.5, "fast"), (0.9, "fast"), (0.99, "fast"), (0.9, "perm")])
def test_qr_accumulation_matches_exact_svd(alpha, mode):
  # A shallow product (30 layers, width 8; spread ≤ ~6 decades, far from float64's ~15)
  # whose singular values the float64 SVD of the multiplied-out Jacobian gives exactly.
  # 'perm' filters: forward mode through `signed_permute`'s custom JVP (a custom VJP crashed here).
  layer_fn, xs = _roaf_maps(alpha, depth=31, mode=mode)
  h0 = jnp.asarray(np.random.default_rng(1).normal(size=8), jnp.float32)
  carry = jax.jit(lambda h, xs: roaf_init.qr_log_singular_values(layer_fn, h, xs))(h0, xs)
  res = roaf_init.summarize(carry.log_r, carry.u)
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


def test_qr_accumulation_random_product():
  # A generic product of non-orthogonal factors (Gaussian A_l ≠ orthogonal-ish): the same
  # exact identities and bounds, through a plain layer_fn(A, h) = A h.
  rng = np.random.default_rng(0)
  n, depth = 8, 20
  mats = np.stack([np.linalg.qr(rng.normal(size=(n, n)))[0] + 0.5 * rng.normal(size=(n, n)) / np.sqrt(n)
                   for _ in range(depth)]).astype(np.float32)
  layer_fn = lambda a, h: a @ h
  carry = roaf_init.qr_log_singular_values(layer_fn, jnp.zeros(n), jnp.asarray(mats))
  res = roaf_init.summarize(carry.log_r, carry.u)
  j = np.eye(n)
  for a in mats.astype(np.float64):
    j = a @ j
  sv = np.log10(np.linalg.svd(j, compute_uv=False))
  assert res["mean_log10_sigma"] == pytest.approx(sv.mean(), abs=TOL)
  assert res["qr_spread"] - TOL <= sv[0] - sv[-1] <= res["spread_upper"] + TOL
  assert res["exact"] and res["spread"] == pytest.approx(sv[0] - sv[-1], abs=2 * TOL)


@pytest.mark.parametrize("init", ["critical", "kernel_init"])
def test_spread_shrinks_as_alpha_to_one(init):
  # Linear φ, β = 1 − α: J_l = α O_l + β W_lᵀ, whose deviation from α·(orthogonal) is O(β)
  # (critical: β·1.1σ* = 1.1·√(1 − α²); kernel_init: β·O(1)), so the 50-layer spread
  # must fall as α → 1. Measured (width 16): critical 7.3, 1.4, 0.38; kernel_init 0.86, 0.07, 0.007.
  spreads = []
  for alpha in (0.9, 0.99, 0.999):
    layer_fn, xs = _roaf_maps(alpha, depth=51, width=16, activation="identity", init=init)
    carry = roaf_init.qr_log_singular_values(layer_fn, jnp.ones(16), xs)
    res = roaf_init.summarize(carry.log_r, carry.u)
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
  # --examples=3 over the tiny preset's 2: a flag given on the command line wins, the preset fills the rest.
  proc = subprocess.run([sys.executable, SCRIPT, "--tiny", f"--out={out}", "--examples=3"], capture_output=True,
                        text=True, timeout=900, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # hang guard
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "init_study_tiny.json").read_text())
  s = res["setting"]
  assert s["dataset"] == "digits" and s["width"] == 8 and s["tiny"] and s["examples"] == 3
  assert list(s)[:len(roaf_init.SETTING_FIELDS)] == list(roaf_init.SETTING_FIELDS)
  grid = {(a, i, m, d) for a in s["alphas"] for i in s["inits"] for m in s["filter_modes"]
          for d in s["depths"] if m != "haar" or d <= s["haar_max_depth"]}
  assert len(grid) == 1 * 2 * 2 * 2   # α × inits × filters × depths
  rows = {(r["alpha"], r["roaf_init"], r["filter_mode"], r["depth"]): r for r in res["rows"]}
  assert set(rows) == grid and len(res["rows"]) == len(grid)
  keys = ("log10_sigma_max", "log10_sigma_min", "spread", "spread_lo", "mean_log10_sigma", "log10_cond_u",
          "seconds")
  for r in rows.values():
    assert all(math.isfinite(r[k]) for k in keys), r
    assert r["spread"] >= 0 and r["examples"] == 3 and len(r["per_example"]) == 3
  assert all(v is True for v in s["prefix_stable"].values())   # checkpoints = the separate depths
  # The markdown table shows the JSON's numbers.
  md = (out / "init_study_tiny.md").read_text()
  assert "Regenerate: `python scripts/roaf_init_study.py --tiny --examples=3`" in md
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
    assert cells[11] == roaf_init.status(r)
  for (alpha, init, mode), rr in roaf_init._groups(res["rows"]).items():
    assert f"- α = {alpha:g}, {init}, {mode}: {roaf_init.verdict(rr)}" in md
  assert (out / "init_study_tiny.png").stat().st_size > 0
  assert _git_status_results() == before   # nothing under results/ changed
  # The thin script ran the library's study at the library's tiny preset (its flag on top): the settings it
  # recorded are `roaf_init.tiny(examples=3)`'s. (Rerunning the study in-process cost 5.5 s of the suite;
  # the numbers are checked against exact SVDs above.)
  want = roaf_init.setting_record(roaf_init.tiny(examples=3))
  assert {k: s[k] for k in want} == want


def test_settings_and_configs():
  s = roaf_init.tiny()
  assert s.tiny and (s.depths, s.alphas, s.width, s.examples) == ((10, 20), (0.99,), 8, 2)
  assert roaf_init.quick().filter_modes == ("fast",) and roaf_init.quick(width=4).width == 4
  c = roaf_init.make_config(roaf_init.Settings(beta="sqrt", activation="identity"), 0.6, "kernel_init", "haar", 30)
  assert c.model.beta == pytest.approx(0.8) and c.model.roaf_init == "kernel_init" and c.model.depth == 30
  assert (c.model.filter_mode, c.model.activation, c.model.alpha) == ("haar", "identity", 0.6)
  assert roaf_init.make_config(s, 0.99, "critical", "fast", 10).dataset.name == "digits"
  rec = roaf_init.setting_record(roaf_init.Settings(depths=(50, 10), alphas=(1,)))
  assert rec["depths"] == [10, 50] and rec["alphas"] == [1.0] and list(rec)[-3:] == ["quick", "tiny", "tag"]
  with pytest.raises(ValueError, match=r"inits: unknown \['glorot'\]; valid: critical, kernel_init"):
    roaf_init.Settings(inits=("glorot",))
  with pytest.raises(ValueError, match="filter_modes: unknown"):
    roaf_init.Settings(filter_modes=("fast", "qr"))
  with pytest.raises(ValueError, match="every depth must be ≥ 2"):
    roaf_init.Settings(depths=(1, 10))
  with pytest.raises(ValueError, match="beta: 'half'"):
    roaf_init.Settings(beta="half")


def _row(depth, spread, mean=0.0, exact=True, upper=None, finite=True):
  """A synthetic table row: `spread` decades (the QR lower bound when not `exact`), mean log10 σ `mean`."""
  per = {"finite": finite, "exact": exact, "spread": spread, "qr_spread": spread,
         "spread_upper": spread if upper is None else upper, "mean_log10_sigma": mean}
  return {"alpha": 0.99, "roaf_init": "critical", "filter_mode": "fast", "depth": depth, "exact": exact,
          "log10_sigma_max": spread / 2, "log10_sigma_min": -spread / 2, "spread": spread,
          "spread_upper": per["spread_upper"], "spread_lo": spread, "spread_hi": per["spread_upper"],
          "abs_mean_max": abs(mean), "mean_log10_sigma": mean, "log10_cond_u": 0.5, "seconds": 3.0,
          "per_example": [per]}


def test_status_and_verdict():
  assert roaf_init.status(_row(10, 0.5)) == "O(1)"
  assert roaf_init.status(_row(10, 0.5, mean=-2.0)) == "not O(1) (mean)"
  assert roaf_init.status(_row(10, 3.0, mean=2.0)) == "not O(1) (spread, mean)"
  assert roaf_init.status(_row(10, 0.5, exact=False, upper=2.0)) == "undetermined"   # bounds straddle 1
  assert roaf_init.status(_row(10, 0.5, finite=False)) == "not O(1) (non-finite)"
  assert roaf_init.verdict([_row(100, 0.5), _row(10, 0.2)]) == "O(1) through depth 100"
  assert roaf_init.verdict([_row(10, 0.2), _row(100, 5.0)]) == "O(1) through depth 10; not O(1) (spread) from depth 100"
  assert roaf_init.verdict([_row(10, 0.2), _row(100, 0.5, exact=False, upper=2.0), _row(1000, 9.0)]) == \
      "O(1) through depth 10; undetermined from depth 100 (not O(1) (spread) at 1000)"


def test_table_bounds_and_notes():
  rows = [_row(10, 0.2), _row(50_000, 40.0, mean=-3.0, exact=False, upper=45.0)]
  setting = dict(dataset="fashion_mnist", width=64, activation="tanh", seed=0, examples=4, filter_modes=["fast"],
                 haar_max_depth=50_000, beta="sqrt", prefix_stable={"fast/critical/0.99": False},
                 backend="cpu", wall_seconds=12.4)
  md = roaf_init.table({"setting": setting, "rows": rows}, command="python x")
  assert "Regenerate: `python x`" in md and "β = √(1 − α²)" in md and "'fast' filters only" in md
  assert "init not prefix-stable for fast/critical/0.99" in md and "Total wall time 12 s." in md
  cells = roaf_init.table_cells(rows[1])
  assert cells[3:8] == ["50000", "≥ 20.00", "≤ -20.00", "≥ 40.00 (≤ 45.00)", "≥ 40.00"]
  assert "| " + " | ".join(cells) + " |" in md and cells[11] == "not O(1) (spread, mean)"
  assert "- α = 0.99, critical, fast: O(1) through depth 10; not O(1) (spread, mean) from depth 50000" in md
