"""ROAF init study (Ceni 2022): where do the input–output Jacobian's singular values stay O(1) at depth ≤ 50k?

The network (Ceni 2022, "Random orthogonal additive filters", arXiv:2210.01245;
`stable_training.models.roaf`, config ``experiments/configs/roaf.py:mlp-D``):
h_0 = φ(W_in x + b_in), then D − 1 ROAF layers

    h_l = α O_l h_{l−1} + β φ(z_l),   z_l = W_lᵀ h_{l−1} + b_l   (flax kernel W_l [in, out]),

O_l a fixed random orthogonal filter ('haar': independent Haar O_l; 'fast': signed
row permutations of one Haar matrix), β = 1 − α. The layer Jacobian is

    J_l = ∂h_l/∂h_{l−1} = α O_l + β diag φ'(z_l) W_lᵀ,

and the hidden stack's input–output Jacobian is J = J_{D−1} ··· J_1 (width × width).
At 50k layers its singular values under/overflow float32, so they are measured
by the QR (discrete Lyapunov) method: with Q_0 = I, for l = 1 … D − 1,

    Q_l R_l = J_l Q_{l−1}    (QR, diag R_l > 0),   so   J = Q_{D−1} · R,  R = R_{D−1} ··· R_1.

J_l Q_{l−1} is a forward-mode product (`jax.linearize` of the layer map at h_{l−1},
vmapped over Q's columns); nothing but the logs ℓ_i = Σ_l log (R_l)_ii (= log R_ii,
the diagonal of a product of upper-triangular matrices being the product of
their diagonals) grows with depth. What is exact and what is estimated:

* Σ_i ℓ_i = log |det J| exactly, so the mean log σ = (1/n) Σ_i ℓ_i is exact.
* R is triangular, so its diagonal entries are its eigenvalues: σ_min(J) ≤ R_ii ≤
  σ_max(J). The QR diagonal's spread max ℓ − min ℓ is a LOWER bound on the true
  spread log σ_max/σ_min; in the long-product (Lyapunov) regime the sorted R_ii
  approach the singular values, but not for a near-isometric product.
* To close the gap the scan also carries the graded factor U = D⁻¹ R
  (D = diag R = e^ℓ, U unit upper triangular, updated as
  U ← diag(R_l)⁻¹ D⁻¹ R_l D U with the ratios e^{ℓ_j − ℓ_i} formed in log space).
  Then J = Q D U, and σ_i(D)σ_min(U) ≤ σ_i(J) ≤ σ_i(D)‖U‖ give two-sided bounds
  (spread ∈ [max ℓ − min ℓ, max ℓ − min ℓ + log κ(U)]); where D's range allows
  (≤ `EXACT_RANGE` decades incl. κ(U)) the float64 SVD of e^{ℓ − max ℓ}·U gives the
  singular values themselves ("exact" rows; float32 scan, float64 SVD).

Each model is built from the registry exactly as the trainer builds it
(`roaf.py:mlp-D` with overrides, `models.build_model`, ``model.init(PRNGKey(0))``),
and measured at a few training inputs (`stable_training.train.load_data`;
digits under --tiny): h_0 = the model's input layer at x, then the QR scan over
the hidden layers (`ROAFMLP.diagnostic_layer_maps`). Shallower depths are read
at checkpoints of the one deepest scan: a depth-d network is the first d − 1
hidden layers of the depth-D one because the init draws layer l's keys by
index (flax `nn.scan` splits the params key with JAX's partitionable threefry,
fold-like, so the split is prefix-stable; the filters are fold_in(seed, l)).
`run` checks this on each config before relying on it (`same_prefix`: the
shallowest network, initialized on its own, against the deepest one's first
layers) and otherwise initializes and scans each depth separately.

Costs measured on 2 CPU cores shared with other jobs (load ≈ 10), 4 examples, width 64:
the scan takes ≈ 0.4–0.65 ms per layer ('fast' and 'haar' alike; 20–32 s at 50k) plus ≈ 10–15 s
of compile and init per config; peak RSS ≈ 1.6 GB at 50k.

`run(settings) → payload`, `table(payload) → markdown`, `plot(payload, path)`; the entry point is
``scripts/roaf_init_study.py``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Callable, NamedTuple

import numpy as np

EXACT_RANGE = 12.0   # decades: float64 SVD of the graded e^{ℓ−max ℓ}·U is trusted below this range
O1_SPREAD = 1.0      # verdict: spread ≤ 1 decade …
O1_MEAN = 1.0        # … and |mean log10 σ| ≤ 1


class QRCarry(NamedTuple):
  """State of the QR scan at one example (see the module docstring)."""
  h: Any       # h_l, the point at which the next layer is linearized
  q: Any       # Q_l [n, n]
  log_r: Any   # ℓ [n] = Σ log (R_l)_ii (natural log), Kahan-compensated …
  comp: Any    # … with this compensation term
  u: Any       # U = D⁻¹ R [n, n], unit upper triangular


def init_carry(h0) -> QRCarry:
  """Q_0 = U_0 = I, ℓ = 0 at the point h0 (one example, [n])."""
  import jax.numpy as jnp
  n = h0.shape[-1]
  eye = jnp.eye(n, dtype=h0.dtype)
  zero = jnp.zeros((n,), h0.dtype)
  return QRCarry(h0, eye, zero, zero, eye)


def qr_step(layer_fn: Callable, carry: QRCarry, theta) -> QRCarry:
  """One layer: Q' R_l = QR(J_l Q), ℓ += log diag R_l, U ← diag(R_l)⁻¹ D⁻¹ R_l D U, h ← layer(h)."""
  import jax
  import jax.numpy as jnp
  h, q, ell, comp, u = carry
  h_next, jvp = jax.linearize(lambda v: layer_fn(theta, v), h)
  jq = jax.vmap(jvp, in_axes=1, out_axes=1)(q)
  q_new, r = jnp.linalg.qr(jq)
  s = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(r.dtype)
  q_new, r = q_new * s[None, :], r * s[:, None]          # diag R_l > 0 (same product Q R)
  rd = jnp.diagonal(r)
  # (D⁻¹ R_l D)_ij = (R_l)_ij e^{ℓ_j − ℓ_i}, only on the upper triangle (below it R_l is 0
  # and e^{ℓ_j − ℓ_i} may overflow); the exponent is capped below f32 overflow.
  n = rd.shape[0]
  upper = jnp.arange(n)[:, None] <= jnp.arange(n)[None, :]
  ratio = jnp.where(upper, jnp.exp(jnp.minimum(ell[None, :] - ell[:, None], 80.0)), 0.0)
  u_new = (r / rd[:, None] * ratio) @ u
  y = jnp.log(rd) - comp                                  # Kahan sum of the log diagonals
  t = ell + y
  return QRCarry(h_next, q_new, t, (t - ell) - y, u_new)


def qr_advance(layer_fn: Callable, carry: QRCarry, xs, start, stop) -> QRCarry:
  """`qr_step` over layers start … stop − 1 of the stacked layer params `xs` (bounds may be traced)."""
  import jax
  body = lambda i, c: qr_step(layer_fn, c, jax.tree.map(lambda a: a[i], xs))
  return jax.lax.fori_loop(start, stop, body, carry)


def qr_log_singular_values(layer_fn: Callable, h0, xs) -> QRCarry:
  """The QR scan over all layers of `xs` at one example h0 (the tested entry point)."""
  import jax
  n_layers = jax.tree.leaves(xs)[0].shape[0]
  return qr_advance(layer_fn, init_carry(h0), xs, 0, n_layers)


def summarize(log_r, u) -> dict:
  """Log10 statistics of J = Q·e^ℓ·U from the scan's ℓ (natural log) and U, in float64.

  qr_*: the QR diagonal (max ℓ ≤ log σ_max, min ℓ ≥ log σ_min); bound_*: the
  graded bounds; log10_sigma_*/spread: the SVD of e^{ℓ − max ℓ}·U when `exact`,
  else the bounds' QR side (spread then a lower bound).
  """
  l10 = np.asarray(log_r, np.float64) / math.log(10.0)
  u = np.asarray(u, np.float64)
  ok = bool(np.all(np.isfinite(l10)) and np.all(np.isfinite(u)))
  su = np.linalg.svd(u, compute_uv=False) if ok else np.array([np.inf, 0.0])
  with np.errstate(divide="ignore"):
    lu_max, lu_min = float(np.log10(su[0])), float(np.log10(su[-1]))
  qr_max, qr_min = float(l10.max()), float(l10.min())
  res = {"mean_log10_sigma": float(l10.mean()), "qr_log10_max": qr_max, "qr_log10_min": qr_min,
         "qr_spread": qr_max - qr_min, "log10_cond_u": lu_max - lu_min,
         "bound_log10_max": qr_max + lu_max, "bound_log10_min": qr_min + lu_min,
         "spread_upper": qr_max - qr_min + lu_max - lu_min, "finite": ok}
  exact = ok and res["spread_upper"] <= EXACT_RANGE
  if exact:
    sv = np.linalg.svd((10.0 ** (l10 - qr_max))[:, None] * u, compute_uv=False)
    exact = bool(sv[-1] > 0)
  if exact:
    ls = np.log10(sv) + qr_max
    res.update(exact=True, log10_sigma_max=float(ls[0]), log10_sigma_min=float(ls[-1]),
               spread=float(ls[0] - ls[-1]))
  else:
    res.update(exact=False, log10_sigma_max=qr_max, log10_sigma_min=qr_min, spread=qr_max - qr_min)
  return res


# ------------------------------------------------------------------ the study ---
INITS = ("critical", "kernel_init")
BETAS = ("one_minus_alpha", "sqrt")
# The payload's setting record: these fields, in this order (the JSON format of the script's results).
SETTING_FIELDS = ("depths", "alphas", "inits", "filter_modes", "haar_max_depth", "width", "activation",
                  "examples", "seed", "beta")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The grid (depths × α × W init × filters) and the measurement (defaults: the full study).

  `quick` / `tiny` / `tag`: the budget preset and output-name suffix these settings came from, recorded
  in the payload; `tiny` also switches the data to digits (`experiments.configs.default.tiny`).
  `data_dir`: the dataset folder ("" = the loader's default).
  """
  depths: tuple = (1000, 5000, 10000, 50000)   # D (D − 1 ROAF layers); shallower ones read off the deepest scan
  alphas: tuple = (0.99, 0.999, 0.9999)        # ROAF α
  inits: tuple = INITS                         # model.roaf_init values
  filter_modes: tuple = ("fast", "haar")       # model.filter_mode values
  haar_max_depth: int = 50000                  # 'haar' filters only at depths ≤ this
  width: int = 64
  activation: str = "tanh"
  examples: int = 4                            # training inputs at which J is measured (the first N)
  seed: int = 0                                # PRNGKey of model.init
  beta: str = "one_minus_alpha"                # β = 1 − α, or "sqrt": β = √(1 − α²) (α² + β² = 1)
  data_dir: str = ""
  quick: bool = False
  tiny: bool = False
  tag: str = ""

  def __post_init__(self):
    from stable_training.models.roaf import FILTER_MODES
    for k, valid in (("inits", INITS), ("filter_modes", FILTER_MODES)):
      bad = [v for v in getattr(self, k) if v not in valid]
      if bad:
        raise ValueError(f"{k}: unknown {bad}; valid: {', '.join(valid)}")
    if not self.depths or min(self.depths) < 2:
      raise ValueError(f"depths: {tuple(self.depths)}; every depth must be ≥ 2 (one ROAF layer)")
    if not self.alphas:
      raise ValueError("alphas: empty; give at least one ROAF α")
    if self.beta not in BETAS:
      raise ValueError(f"beta: {self.beta!r}; valid: {', '.join(BETAS)}")


# Budgets of quick / tiny (the script's presets: a flag given on the command line wins).
PRESETS = {
    "quick": dict(depths=(100, 1000), alphas=(0.99, 0.999), filter_modes=("fast",)),
    "tiny": dict(depths=(10, 20), alphas=(0.99,), width=8, examples=2),
}


def quick(**kw) -> Settings:
  """About a minute: depths 100, 1000; α 0.99, 0.999; 'fast' filters."""
  return Settings(**{**PRESETS["quick"], "quick": True, **kw})


def tiny(**kw) -> Settings:
  """Seconds (compile-bound): depths 10, 20, width 8, 2 digits inputs (the suite's smoke test)."""
  return Settings(**{**PRESETS["tiny"], "tiny": True, **kw})


def make_config(s: Settings, alpha: float, init: str, mode: str, depth: int):
  """``roaf.py:mlp-depth`` with this study's overrides (digits when `s.tiny`)."""
  from experiments.configs import default, roaf
  c = roaf.get_config(f"mlp-{depth}")
  if s.tiny:
    default.tiny(c)
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.model.width, c.model.alpha, c.model.roaf_init = s.width, alpha, init
  c.model.filter_mode, c.model.activation = mode, s.activation
  if s.beta == "sqrt":   # α² + β² = 1: the nonlinear path makes up α's shrinkage
    c.model.beta = math.sqrt(1.0 - alpha * alpha)
  return c


def _init(s: Settings, alpha, init, mode, depth, x):
  """(model, params) of roaf.py:mlp-depth as the trainer builds and initializes it."""
  import jax
  from stable_training import models
  model = models.build_model(make_config(s, alpha, init, mode, depth).model, num_classes=10,
                             input_shape=x.shape[1:])
  return model, jax.jit(model.init)(jax.random.PRNGKey(s.seed), x[:1])["params"]


def same_prefix(small, deep) -> bool:
  """Whether the layer params/filters of `small` (diagnostic_layer_maps' θ) are the first ones of `deep`'s."""
  import jax
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b)[:a.shape[0]])), small, deep)
  return all(jax.tree.leaves(same))


def measure(s: Settings, alpha, init, mode, depths, x, log=None) -> tuple[list[dict], bool | None]:
  """QR scan of the deepest depth, read at every depth in `depths`: (one row per depth, prefix check).

  With several depths it first checks that the shallowest network, initialized on its own,
  is the prefix of the deepest one (`same_prefix`); if not it returns ([], False) and the
  caller runs each depth separately. The check is None for a single depth.
  """
  import jax
  from stable_training.models.mlp import DenseLayer
  log = log or _print
  t0 = time.time()
  model, params = _init(s, alpha, init, mode, max(depths), x)
  layer_fn, xs = model.diagnostic_layer_maps(params)
  stable = None
  if len(depths) > 1:
    small_model, small_params = _init(s, alpha, init, mode, min(depths), x)
    stable = same_prefix(small_model.diagnostic_layer_maps(small_params)[1], xs) and same_prefix(
        small_params["input"], params["input"])
    del small_params
    if not stable:
      return [], False
  h0 = DenseLayer(model.width, model.activation, "glorot_normalized").apply({"params": params["input"]}, x)
  carry = jax.block_until_ready(jax.vmap(init_carry)(h0))
  init_s = time.time() - t0
  advance = jax.jit(jax.vmap(lambda c, xs, a, b: qr_advance(layer_fn, c, xs, a, b),
                             in_axes=(0, None, None, None)))
  rows, done, t_scan = [], 0, 0.0
  for depth in depths:
    t1 = time.time()
    carry = jax.block_until_ready(advance(carry, xs, done, depth - 1))
    t_scan += time.time() - t1
    done = depth - 1
    per = [summarize(l, u) for l, u in zip(np.asarray(carry.log_r), np.asarray(carry.u))]
    rows.append(_row(s, alpha, init, mode, depth, per, init_s, t_scan))
    log(json.dumps({k: v for k, v in rows[-1].items() if k != "per_example"}))
  return rows, stable


def _print(line: str) -> None:
  print(line, flush=True)


def _row(s: Settings, alpha, init, mode, depth, per, init_s, scan_s) -> dict:
  agg = lambda k, f=np.mean: float(f([p[k] for p in per]))
  return {"alpha": alpha, "roaf_init": init, "filter_mode": mode, "depth": depth, "layers": depth - 1,
          "width": s.width, "examples": len(per),
          "log10_sigma_max": agg("log10_sigma_max"), "log10_sigma_min": agg("log10_sigma_min"),
          "spread": agg("spread"), "spread_upper": agg("spread_upper"),
          "mean_log10_sigma": agg("mean_log10_sigma"), "layers_log10_alpha": (depth - 1) * math.log10(alpha),
          "log10_cond_u": agg("log10_cond_u", np.max), "exact": all(p["exact"] for p in per),
          "spread_lo": max(p["spread"] if p["exact"] else p["qr_spread"] for p in per),
          "spread_hi": max(p["spread"] if p["exact"] else p["spread_upper"] for p in per),
          "abs_mean_max": max(abs(p["mean_log10_sigma"]) for p in per),
          "init_seconds": init_s, "seconds": scan_s, "per_example": per}


def status(r) -> str:
  """'O(1)', 'not O(1) (why)' or 'undetermined' for one row (worst example; see RULE)."""
  if not all(p["finite"] for p in r["per_example"]):
    return "not O(1) (non-finite)"
  why = [w for w, bad in (("spread", r["spread_lo"] > O1_SPREAD), ("mean", r["abs_mean_max"] > O1_MEAN)) if bad]
  if why:
    return f"not O(1) ({', '.join(why)})"
  return "O(1)" if r["spread_hi"] <= O1_SPREAD else "undetermined"


RULE = (f"Status per row (worst of the examples): O(1) if spread ≤ {O1_SPREAD:g} decade and "
        f"|mean log10 σ| ≤ {O1_MEAN:g}; not O(1) (spread) if spread > {O1_SPREAD:g} (its lower bound where "
        f"the SVD was out of range), not O(1) (mean) if |mean log10 σ| > {O1_MEAN:g}; undetermined if the "
        "spread's bounds straddle 1. The verdict per α/init/filters gives the deepest O(1) depth and the "
        "first depth that is not.")


def verdict(rows) -> str:
  """One line per (α, init, filters): the deepest depth that is O(1) and the status at the deepest."""
  rows = sorted(rows, key=lambda r: r["depth"])
  st = [(r["depth"], status(r)) for r in rows]
  ok = [d for d, v in st if v == "O(1)"]
  deepest, last = st[-1]
  if last == "O(1)":
    return f"O(1) through depth {deepest}" + ("" if len(ok) == len(st) else " (not at every shallower depth)")
  first_bad = next(d for d, v in st if v != "O(1)")
  head = f"O(1) through depth {max(d for d in ok if d < first_bad)}; " if ok and min(ok) < first_bad else ""
  tail = "" if first_bad == deepest else f" ({last} at {deepest})"
  return head + f"{dict(st)[first_bad]} from depth {first_bad}" + tail


def setting_record(s: Settings) -> dict:
  """The settings as the payload records them: `SETTING_FIELDS` (depths sorted, lists as lists), then quick,
  tiny, tag."""
  rec = {k: getattr(s, k) for k in SETTING_FIELDS}
  rec.update(depths=sorted(int(d) for d in s.depths), alphas=[float(a) for a in s.alphas], inits=list(s.inits),
             filter_modes=list(s.filter_modes))
  return {**rec, "quick": s.quick, "tiny": s.tiny, "tag": s.tag}


def run(s: Settings, command: str = "", log=None) -> dict[str, Any]:
  """Measures every (filters, W init, α) config at every depth ('haar' only up to `haar_max_depth`) at the first
  `examples` training inputs; returns the payload ``{"setting", "rows"}`` (`command`: its Regenerate line).
  No workdirs: nothing is trained."""
  import jax
  from stable_training.train import load_data
  rec = setting_record(s)
  d = load_data(make_config(s, rec["alphas"][0], s.inits[0], s.filter_modes[0], rec["depths"][0]))
  x = np.asarray(d["x_train"][:s.examples], np.float32)
  t_all = time.time()
  rows, checks = [], {}
  for mode in s.filter_modes:
    depths = [dd for dd in rec["depths"] if mode != "haar" or dd <= s.haar_max_depth]
    if not depths:
      continue
    for init in s.inits:
      for alpha in rec["alphas"]:
        got, stable = measure(s, alpha, init, mode, depths, x, log)
        checks[f"{mode}/{init}/{alpha:g}"] = stable
        if stable is False:   # prefixes differ: one init + scan per depth
          for dd in depths:
            got += measure(s, alpha, init, mode, [dd], x, log)[0]
        rows += got
  setting = {**rec, "dataset": d["name"], "jax": jax.__version__, "backend": jax.default_backend(),
             "prefix_stable": checks, "wall_seconds": time.time() - t_all, "command": command}
  return {"setting": setting, "rows": rows}


# ----------------------------------------------------------------- rendering ---
def fmt(v: float, nd: int = 2) -> str:
  """The table's number format (the test re-formats the JSON with it)."""
  return f"{v:.{nd}f}" if math.isfinite(v) else str(v)


def table_cells(r) -> list[str]:
  """A row's cells: α, init, filters, depth, σ_max, σ_min, spread, max spread, mean, (D−1)·log10 α, κ(U),
  status, s.

  Rows with `exact` False show the QR diagonal's values as bounds (≥ σ_max, ≤ σ_min, spread
  ≥ its QR value and ≤ the graded bound `spread_upper`, both means over the examples).
  """
  ex = r["exact"]
  return [f"{r['alpha']:g}", r["roaf_init"], r["filter_mode"], str(r["depth"]),
          ("" if ex else "≥ ") + fmt(r["log10_sigma_max"]), ("" if ex else "≤ ") + fmt(r["log10_sigma_min"]),
          fmt(r["spread"]) if ex else f"≥ {fmt(r['spread'])} (≤ {fmt(r['spread_upper'])})",
          fmt(r["spread_lo"]) if ex else f"≥ {fmt(r['spread_lo'])}", fmt(r["mean_log10_sigma"], 3),
          fmt(r.get("layers_log10_alpha", (r["depth"] - 1) * math.log10(r["alpha"])), 3),
          fmt(r["log10_cond_u"]), status(r), f"{r['seconds']:.0f}"]


def table(payload: dict, command: str | None = None) -> str:
  """The markdown report: one row per (α, init, filters, depth) (`table_cells`), the verdicts, the wall time.
  `command`: the Regenerate line (default: the one the payload records)."""
  a, rows = payload["setting"], payload["rows"]
  command = a.get("command") if command is None else command
  haar_note = ("'haar' filters only at depths ≤ " f"{a['haar_max_depth']} (--haar_max_depth)"
               if "haar" in a["filter_modes"] else "'fast' filters only")
  lines = [f"# ROAF init study (Ceni 2022): input–output Jacobian of the hidden stack at init — "
           f"{a['dataset']}, width {a['width']}, {a['activation']}", ""]
  if command:
    lines += [f"Regenerate: `{command}`", ""]
  lines += [
      f"Model roaf.py:mlp-D (D − 1 ROAF layers h_l = α O_l h_(l−1) + β φ(W_l h_(l−1) + b_l), "
      f"{'β = √(1 − α²)' if a.get('beta') == 'sqrt' else 'β = 1 − α'}), "
      f"init PRNGKey({a['seed']}); critical = W orthogonal at 1.1·√(1−α²)/β, kernel_init = glorot_normalized. "
      f"J = ∂h_(D−1)/∂h_0 at {a['examples']} training inputs; {haar_note}. Singular values by the QR "
      # the md names the script's docstring (kept byte-identical); the method is in this module's docstring
      "(Lyapunov) scan with the graded factor U (scripts/roaf_init_study.py docstring): mean log10 σ = "
      "log10|det J|/n is exact; σ_max, σ_min, spread = log10 σ_max/σ_min are float64 SVDs of e^ℓ·U where "
      f"the range is ≤ {EXACT_RANGE:g} decades, else the QR diagonal's values (marked ≥/≤: the spread is "
      "then a lower bound). Columns are means over the examples, except max spread and log10 κ(U) (max). "
      "(D−1)·log10 α is the mean log10 σ of α^(D−1)·(orthogonal), for comparison. "
      "Shallower depths are checkpoints of the deepest scan"
      + _prefix_note(a["prefix_stable"]),
      "", RULE, "", "s = seconds of the scan up to that depth (all examples, one process on the CPUs "
      f"available: {a['backend']}).", "",
      "| α | init | filters | depth | log10 σ_max | log10 σ_min | spread (decades) | max spread "
      "| mean log10 σ | (D−1)·log10 α | log10 κ(U) | status | s |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append("| " + " | ".join(table_cells(r)) + " |")
  lines += ["", "Verdicts:", ""]
  for key, rr in _groups(rows).items():
    alpha, init, mode = key
    lines.append(f"- α = {alpha:g}, {init}, {mode}: {verdict(rr)}")
  lines += ["", f"Total wall time {a['wall_seconds']:.0f} s."]
  return "\n".join(lines)


def plot(payload: dict, path: str) -> str:
  """PNG at `path`: the spread log10 σ_max/σ_min vs depth, one panel per α, one line per (init, filters); hollow
  markers where the spread is the QR lower bound. Returns `path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  rows = payload["rows"]
  alphas = sorted({r["alpha"] for r in rows})
  fig = Figure(figsize=(4 * len(alphas), 3.5))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(alphas), squeeze=False)
  for ax, alpha in zip(axes[0], alphas):
    for (al, init, mode), rr in _groups(rows).items():
      if al != alpha:
        continue
      rr = sorted(rr, key=lambda r: r["depth"])
      line, = ax.plot([r["depth"] for r in rr], [max(r["spread"], 1e-3) for r in rr], "o-", label=f"{init}, {mode}")
      lb = [r for r in rr if not r["exact"]]   # QR lower bounds: hollow markers
      ax.plot([r["depth"] for r in lb], [r["spread"] for r in lb], "o", mfc="white", color=line.get_color())
    ax.axhline(O1_SPREAD, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth D")
    ax.set_ylabel("log10 σ_max/σ_min (decades)")
    ax.set_title(f"α = {alpha:g} (hollow: lower bound)", fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def _prefix_note(checks: dict) -> str:
  vals = [v for v in checks.values() if v is not None]
  if not vals:
    return "."
  if all(vals):
    return (" (checked per config: the shallowest network, initialized on its own, equals the deepest one's "
            "first layers).")
  bad = ", ".join(k for k, v in checks.items() if v is False)
  return f"; init not prefix-stable for {bad}: those were initialized and scanned per depth."


def _groups(rows) -> dict:
  g: dict = {}
  for r in rows:
    g.setdefault((r["alpha"], r["roaf_init"], r["filter_mode"]), []).append(r)
  return g
