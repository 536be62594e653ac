"""Verdict rules of the reproduction ledger: pure functions (payload, thresholds, **params) → `Judged(ours, verdict)`.

A rule reads the JSON payload a study wrote (`merge_runs` of several runs' JSONs where a claim reads several)
and compares what it measured ("ours") with the paper's claim. Its thresholds are not written here: each rule
declares their names (`rule`), and the claims table (`stable_training.studies.claims.CLAIMS`) gives their
values. The first paragraph of a rule's docstring states the rule with ``{name}`` placeholders that
`describe_rule` fills with a claim's thresholds and params (``scripts/reproduce_all.py --list`` prints them).
Verdicts: reproduced / partly / not reproduced; a payload that lacks what the rule needs (an arm not run)
raises `Missing`, and the claim reads "not run". Accuracies are test accuracies.

Papers: see `claims.PAPERS`.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN)
# log10 of float32's smallest normal, as scripts/reproduce_roaf_depth.py writes an underflowed spectrum.
F32_UNDERFLOW = math.log10(1.1754944e-38) + 0.01


class Missing(Exception):
  """The study's JSON lacks what a claim needs (an arm not run): the claim is "not run"."""


class Judged(NamedTuple):
  """A rule's outcome: what we measured, in words and numbers, and the verdict."""
  ours: str
  verdict: str


def rule(*names: str) -> Callable:
  """Declares a verdict rule and the names of its thresholds (``fn.thresholds``).

  The wrapped rule raises ValueError when called with thresholds other than exactly `names`, so that a
  claim cannot silently judge with a default or a misspelt threshold.
  """
  def wrap(fn):
    @functools.wraps(fn)
    def judged(payload: dict, thresholds, **params) -> Judged:
      if set(thresholds) != set(names):
        raise ValueError(f"rule {fn.__name__}: thresholds {sorted(thresholds)}; valid: exactly {sorted(names)}")
      return fn(payload, thresholds, **params)
    judged.thresholds = tuple(names)
    return judged
  return wrap


def describe_rule(fn: Callable, thresholds, params=None) -> str:
  """The first paragraph of rule `fn`'s docstring, on one line, with a claim's thresholds and params filled in."""
  text = " ".join(fn.__doc__.strip().split("\n\n")[0].split())
  return text.format(**dict(thresholds), **dict(params or {}))


# ------------------------------------------------------------------ helpers ---
def grade(x, reproduced: float, partly: float) -> str:
  """'reproduced' if x ≥ `reproduced`, 'partly' if x > `partly`, else 'not reproduced' (None/NaN: not)."""
  if x is None or math.isnan(x):
    return NOT_REPRODUCED
  return REPRODUCED if x >= reproduced else PARTLY if x > partly else NOT_REPRODUCED


def count_grade(ok: list[bool]) -> str:
  """All true: reproduced; some: partly; none: not reproduced (empty: Missing)."""
  if not ok:
    raise Missing("nothing to compare in this run")
  return REPRODUCED if all(ok) else PARTLY if any(ok) else NOT_REPRODUCED


def merge_runs(datas: list[dict]) -> dict:
  """One JSON from the JSONs of several runs of a study: every key whose value is a list in all of them
  concatenated (in run order), every other key from the first."""
  if not datas:
    raise ValueError("merge_runs: no JSON to merge")
  out = dict(datas[0])
  for k, v in datas[0].items():
    if isinstance(v, list) and all(isinstance(d.get(k), list) for d in datas[1:]):
      out[k] = [x for d in datas for x in d[k]]
  return out


def _pick(rows: dict, key: str):
  if key not in rows:
    raise Missing(f"{key} not in this run")
  return rows[key]


def _acc(data: dict, arm: str) -> float:
  return _pick(data["rows"], arm)["test_accuracy_mean"]


def _arm_str(data: dict, arm: str) -> str:
  r = data["rows"][arm]
  return f"{arm} {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f}"


def largest_solved(rows: list[dict], cell: str) -> int:
  """Largest lag T at which every seed of `cell` solved its task (0: none)."""
  return max((r["lag"] for r in rows if r["cell"] == cell and r["solved_seeds"] == r["seeds"]), default=0)


# ------------------------------------------- the stability study (depth 20) ---
@rule("reproduced", "partly")
def gap(data: dict, t, arm: str, base: str) -> Judged:
  """gap = acc({arm}) − acc({base}) of the stability MLP: ≥ {reproduced} reproduced, > {partly} partly."""
  g = _acc(data, arm) - _acc(data, base)
  return Judged(f"{_arm_str(data, base)} vs {_arm_str(data, arm)} test acc (gap {g:+.3f})",
                grade(g, t["reproduced"], t["partly"]))


@rule("reproduced", "partly_of_tanh")
def softsign(data: dict, t) -> Judged:
  """Relative init gap (acc_N − acc_std) / acc_N of softsign ≤ {reproduced} reproduced, ≤ {partly_of_tanh} × tanh's
  partly (Glorot & Bengio 2010, Table 1)."""
  rel = {}
  for act in ("softsign", "tanh"):
    n = _acc(data, f"{act}-normalized")
    rel[act] = (n - _acc(data, f"{act}-standard")) / n if n > 0 else float("inf")
  v = (REPRODUCED if rel["softsign"] <= t["reproduced"] else
       PARTLY if rel["softsign"] <= rel["tanh"] * t["partly_of_tanh"] else NOT_REPRODUCED)
  return Judged(f"{_arm_str(data, 'softsign-standard')} vs {_arm_str(data, 'softsign-normalized')}; relative gap "
                f"softsign {rel['softsign']:.2f}, tanh {rel['tanh']:.2f}", v)


@rule("of_reference", "chance", "above_chance")
def tgelu_mlp(data: dict, t) -> Judged:
  """acc(tgelu-he-clip) ≥ {of_reference} × acc(tanh-normalized) reproduced; > {chance} + {above_chance} partly
  (Ramaswamy et al. 2023)."""
  acc, ref = _acc(data, "tgelu-he-clip"), _acc(data, "tanh-normalized")
  v = (REPRODUCED if acc >= t["of_reference"] * ref else
       PARTLY if acc > t["chance"] + t["above_chance"] else NOT_REPRODUCED)
  return Judged(f"{_arm_str(data, 'tgelu-he-clip')} vs {_arm_str(data, 'tanh-normalized')}", v)


# ------------------------------------------------------ Glorot & Bengio 2010 ---
@rule("margin")
def glorot_table1(data: dict, t) -> Judged:
  """Normalized test error < standard − {margin} (a tie fails) for every (dataset, activation) run with both inits: all
  reproduced, some partly (G&B 2010, Table 1)."""
  err = {(b["dataset"], b["activation"], b["init"]): b["test_error"] for b in data["best"]}
  ok, parts = [], []
  for ds, act, init in sorted(err):
    if init == "standard" and (ds, act, "normalized") in err:
      s, n = err[(ds, act, "standard")], err[(ds, act, "normalized")]
      ok.append(n < s - t["margin"])
      parts.append(f"{ds} {act} {s:.2f} → N {n:.2f}")
  return Judged("test error %: " + "; ".join(parts), count_grade(ok))


@rule("margin")
def glorot_shapeset(data: dict, t) -> Judged:
  """The glorot_table1 rule on the Shapeset rows only: normalized test error < standard − {margin} for every
  activation: reproduced; for some: partly."""
  best = [b for b in data["best"] if b["dataset"] == "shapeset"]
  if not best:
    raise Missing("no Shapeset run in this JSON")
  return glorot_table1({**data, "best": best}, t)


@rule("standard", "normalized", "tolerance")
def glorot_jacobian(data: dict, t) -> Judged:
  """tanh mean singular value of ∂h_(l+1)/∂h_l at init: normalized > standard and both within {tolerance} of the
  paper's {standard} / {normalized}: reproduced; normalized > standard: partly (G&B 2010 §4.2.3)."""
  sv = {r["init"]: r["mean_sv"] for r in data["jacobian_at_init"] if r["activation"] == "tanh"}
  s, n = _pick(sv, "standard"), _pick(sv, "normalized")
  close = abs(s - t["standard"]) <= t["tolerance"] and abs(n - t["normalized"]) <= t["tolerance"]
  v = REPRODUCED if n > s and close else PARTLY if n > s else NOT_REPRODUCED
  return Judged(f"tanh mean singular value {s:.3f} standard, {n:.3f} normalized", v)


# ---------------------------------------------------------------------- LSC ---
@rule("tolerance")
def lsc_radius(data: dict, t) -> Judged:
  """|max|λ(∂h_(l+1)/∂h_l)| after LSC pre-training − ρ| ≤ {tolerance} reproduced; closer to ρ than before: partly."""
  rho, before, after = float(data["settings"]["rho"]), data["before"], data["after"]
  d0, d1 = abs(before["max_abs_eig"] - rho), abs(after["max_abs_eig"] - rho)
  v = REPRODUCED if d1 <= t["tolerance"] else PARTLY if d1 < d0 else NOT_REPRODUCED
  return Judged(f"max|λ| {before['max_abs_eig']:.3f} → {after['max_abs_eig']:.3f} (ρ = {rho:g}); median |λ| "
                f"{before['median_abs_eig']:.3f} → {after['median_abs_eig']:.3f}, r.m.s. σ {before['rms_sv']:.3f} → "
                f"{after['rms_sv']:.3f}", v)


@rule("tolerance")
def lsc_rnn_radii(data: dict, t) -> Judged:
  """Every pre-trained (cell, depth, ρ) has its depth radius, and time radius where defined, within {tolerance} of ρ:
  all reproduced, some partly."""
  ok, parts = [], []
  for r in data["rows"]:
    if r["arm"] == "none":
      continue
    rho = float(r["arm"])
    radii = [x for x in (r.get("depth_after"), r.get("time_after")) if x is not None and math.isfinite(x)]
    ok.append(bool(radii) and all(abs(x - rho) <= t["tolerance"] for x in radii))
    parts.append(f"{r['cell']} d{r['depth']} ρ={r['arm']}: " + ", ".join(
        f"{k} {r[k + '_before']:.2f} → {r[k + '_after']:.2f}" for k in ("depth", "time")
        if math.isfinite(r.get(k + "_after", float("nan")))))
  return Judged("; ".join(parts), count_grade(ok))


@rule("margin")
def lsc_rnn_accuracy(data: dict, t) -> Judged:
  """acc(ρ = 0.5) ≥ max(acc(none), acc(ρ = 1)) + {margin} per (cell, depth): all reproduced, some partly."""
  acc = {(r["cell"], r["depth"], r["arm"]): r["test_accuracy"] for r in data["rows"]}
  ok, parts = [], []
  for cell, depth in dict.fromkeys((c, d) for c, d, _ in acc):
    a = {arm: acc.get((cell, depth, arm)) for arm in ("none", "1", "0.5")}
    if None in a.values():
      continue
    ok.append(a["0.5"] >= max(a["none"], a["1"]) + t["margin"])
    parts.append(f"{cell} d{depth}: none {a['none']:.3f} / ρ=1 {a['1']:.3f} / ρ=0.5 {a['0.5']:.3f}")
  if not ok:
    raise Missing("arms none, 1 and 0.5 not all in this run")
  return Judged("; ".join(parts), count_grade(ok))


@rule("margin")
def lsc_rnn_deep(data: dict, t) -> Judged:
  """At each cell's deepest depth acc(ρ = 0.5) ≥ max(acc(none), acc(ρ = 1)) + {margin} (runs merged): every cell
  reproduced, some partly."""
  rows = {(r["cell"], r["depth"], r["arm"]): r for r in data["rows"]}
  ok, parts = [], []
  for cell in dict.fromkeys(c for c, _, _ in rows):
    depth = max(d for c, d, _ in rows if c == cell)
    r = {arm: rows.get((cell, depth, arm)) for arm in ("none", "1", "0.5")}
    if None in r.values():
      continue
    a = {arm: x["test_accuracy"] for arm, x in r.items()}
    ok.append(a["0.5"] >= max(a["none"], a["1"]) + t["margin"])
    parts.append(f"{cell} d{depth}: " + " / ".join(
        f"{lab} {r[arm]['test_accuracy']:.4f} ± {r[arm]['test_accuracy_std']:.4f}"
        for arm, lab in (("none", "none"), ("1", "ρ=1"), ("0.5", "ρ=0.5"))))
  if not ok:
    raise Missing("arms none, 1 and 0.5 not all in this run at a cell's deepest depth")
  return Judged("test acc " + "; ".join(parts), count_grade(ok))


@rule("margin")
def lsc_ffn(data: dict, t) -> Judged:
  """Best test acc over lr: acc(lsc) ≥ max(acc(he), acc(glorot)) + {margin} per activation: all reproduced, some
  partly."""
  best = {(r["act"], r["arm"]): r["test_accuracy"] for r in data["best"]}
  ok, parts = [], []
  for act in dict.fromkeys(a for a, _ in best):
    a = {arm: best.get((act, arm)) for arm in ("glorot", "he", "lsc")}
    if None in a.values():
      continue
    ok.append(a["lsc"] >= max(a["glorot"], a["he"]) + t["margin"])
    parts.append(f"{act}: glorot {a['glorot']:.3f} / he {a['he']:.3f} / lsc {a['lsc']:.3f}")
  if not ok:
    raise Missing("arms glorot, he and lsc not all in this run")
  return Judged("best test acc " + "; ".join(parts), count_grade(ok))


@rule("margin")
def lsc_ffn_grid(data: dict, t, act: str) -> Judged:
  """{act}: each arm's test acc at its best lr (mean over seeds); lsc ≥ max(glorot, he) + {margin}: reproduced; lsc ≥
  min(glorot, he) + {margin}: partly."""
  best = {r["arm"]: r for r in data["best"] if r["act"] == act}
  missing = [a for a in ("glorot", "he", "lsc") if a not in best]
  if missing:
    raise Missing(f"{act}: arm {', '.join(missing)} not in this run")
  g, h, lsc = (best[a]["test_accuracy"] for a in ("glorot", "he", "lsc"))
  v = (REPRODUCED if lsc >= max(g, h) + t["margin"] else PARTLY if lsc >= min(g, h) + t["margin"]
       else NOT_REPRODUCED)
  return Judged(f"{act}, best over lr: " + " / ".join(
      f"{a} {best[a]['test_accuracy']:.4f} ± {best[a]['test_accuracy_std']:.4f} (lr {best[a]['lr']:g})"
      for a in ("glorot", "he", "lsc")), v)


# ------------------------------------------------ Ramaswamy et al. 2023 ---
@rule("reproduced", "partly")
def tgelu_variance(data: dict, t) -> Judged:
  """Across-seed std of the last-epoch test acc, gelu / tgelu-clip ≥ {reproduced} reproduced, > {partly} partly."""
  tg, g = (_pick(data["rows"], a)["per_epoch"][-1] for a in ("tgelu-clip", "gelu"))
  ratio = g["std"] / tg["std"] if tg["std"] > 0 else (float("inf") if g["std"] > 0 else 1.0)
  return Judged(f"last-epoch test acc tgelu-clip {tg['mean']:.4f} ± {tg['std']:.4f}, gelu "
                f"{g['mean']:.4f} ± {g['std']:.4f} (std ratio {ratio:.2f})",
                grade(ratio, t["reproduced"], t["partly"]))


@rule("reproduced", "partly")
def dqn_no_target(data: dict, t) -> Judged:
  """Final greedy return tgelu_none / tgelu_target ≥ {reproduced} reproduced, ≥ {partly} partly."""
  arms = data["arms"]
  none, target = _pick(arms, "tgelu_none"), _pick(arms, "tgelu_target")
  ratio = none["final_return_mean"] / target["final_return_mean"] if target["final_return_mean"] > 0 else float("inf")
  ours = ", ".join(f"{a} {arms[a]['final_return_mean']:.1f} ± {arms[a]['final_return_std']:.1f}"
                   for a in ("tgelu_none", "tgelu_target", "gelu_none", "gelu_target") if a in arms)
  v = REPRODUCED if ratio >= t["reproduced"] else PARTLY if ratio >= t["partly"] else NOT_REPRODUCED
  return Judged(f"final greedy return {ours} (ratio {ratio:.2f})", v)


@rule("reproduced", "partly")
def dqn_memory(data: dict, t) -> Judged:
  """Q-learning state bytes, no-target / target ≤ {reproduced} reproduced, < {partly} partly."""
  none, target = (_pick(data["arms"], a)["memory_bytes"] for a in ("tgelu_none", "tgelu_target"))
  r = none / target
  v = REPRODUCED if r <= t["reproduced"] else PARTLY if r < t["partly"] else NOT_REPRODUCED
  return Judged(f"{none:,} B vs {target:,} B per seed (ratio {r:.2f})", v)


# ------------------------------------------------------ averaged gradient ---
def _avg_grad_speedups(data: dict, deep: bool) -> tuple[int, dict]:
  analyses = sorted(data["analysis"], key=lambda a: a["depth"])
  if not deep and len(analyses) < 2:
    raise Missing("the shallow control was not run")
  a = analyses[-1] if deep else analyses[0]
  sp = {m: r["speedup_vs_rmsprop"] for m, r in a["methods"].items() if m != "rmsprop"}
  if not sp:
    raise Missing("no averaged-gradient method in this run")
  return a["depth"], sp


def _fmt_speedups(sp: dict) -> str:
  return ", ".join(f"{m} {'—' if s is None else f'{s:.2f}×'}" for m, s in sp.items())


@rule("reproduced", "partly")
def avg_grad_deep(data: dict, t) -> Judged:
  """Deepest net: best iterations-to-target speed-up over RMSProp of any averaged-gradient method ≥ {reproduced}
  reproduced, > {partly} partly."""
  depth, sp = _avg_grad_speedups(data, deep=True)
  best = max((s for s in sp.values() if s is not None), default=None)
  return Judged(f"depth {depth}: iterations-to-target speed-up vs RMSProp {_fmt_speedups(sp)}",
                grade(best, t["reproduced"], t["partly"]))


@rule("low", "high")
def avg_grad_shallow(data: dict, t) -> Judged:
  """1-hidden-layer control: every speed-up over RMSProp within [{low}, {high}] reproduced (no difference), else not."""
  depth, sp = _avg_grad_speedups(data, deep=False)
  same = all(s is not None and t["low"] <= s <= t["high"] for s in sp.values())
  return Judged(f"depth {depth}: speed-up vs RMSProp {_fmt_speedups(sp)}", REPRODUCED if same else NOT_REPRODUCED)


# ------------------------------------------------------------ Ceni 2022 ---
def _log10_spread(r: dict) -> float:
  return float("inf") if r["log10_sigma_max"] <= F32_UNDERFLOW else r["log10_spread"]


@rule("decades")
def roaf_jacobian(data: dict, t) -> Judged:
  """Deepest depth of the sweep: a ROAF net with every singular value of its Jacobian within {decades} decade(s) of 1:
  reproduced; a ROAF spread σ_max/σ_min below plain tanh's (underflow = ∞): partly."""
  rows = data["depth_sweep"]
  depth = max(r["depth"] for r in rows)
  at = {r["model"]: r for r in rows if r["depth"] == depth}
  roaf = [at[m] for m in ("roaf", "roaf_glorot") if m in at]
  if not roaf:
    raise Missing("no ROAF model in the depth sweep")
  near1 = any(r["log10_sigma_max"] > F32_UNDERFLOW
              and max(abs(r["log10_sigma_max"]), abs(r["log10_sigma_min"])) <= t["decades"] for r in roaf)
  tanh = _log10_spread(at["tanh_mlp"]) if "tanh_mlp" in at else float("inf")
  v = REPRODUCED if near1 else PARTLY if min(map(_log10_spread, roaf)) < tanh else NOT_REPRODUCED
  fmt = lambda r: ("underflow" if r["log10_sigma_max"] <= F32_UNDERFLOW else
                   f"spread 10^{r['log10_spread']:.2f}, σ_max 10^{r['log10_sigma_max']:.2f}")
  return Judged(f"depth {depth}: " + "; ".join(f"{m} {fmt(r)}" for m, r in at.items()), v)


@rule("spread", "mean")
def roaf_init(data: dict, t) -> Judged:
  """Deepest depth of the init study: some (α, W init, filters) with spread ≤ {spread} decade(s) (upper bound) and
  |mean log10 σ| ≤ {mean}: reproduced; spread ≤ {spread} with the mean off (an isometry up to scale): partly."""
  rows = data["rows"]
  if not rows:
    raise Missing("no rows in the init study")
  depth = max(r["depth"] for r in rows)
  deep = [r for r in rows if r["depth"] == depth]
  best = min(deep, key=lambda r: (r["spread_lo"], r["abs_mean_max"]))
  o1 = [r for r in deep if r["spread_hi"] <= t["spread"] and r["abs_mean_max"] <= t["mean"]]
  iso = [r for r in deep if r["spread_hi"] <= t["spread"]]
  v = REPRODUCED if o1 else PARTLY if iso else NOT_REPRODUCED
  r = (o1 or [best])[0]
  return Judged(f"depth {depth}: best α {r['alpha']:g}, W {r['roaf_init']}, {r['filter_mode']} filters: spread "
                f"{r['spread_lo']:.2f} decades, mean log10 σ {r['mean_log10_sigma']:.2f} "
                f"((D−1)·log10 α = {r['layers_log10_alpha']:.2f}); {len(iso)}/{len(deep)} rows isometric up to "
                f"scale", v)


@rule("reproduced", "above_tanh", "chance")
def roaf_deep_train(data: dict, t) -> Judged:
  """ROAF (either W init) test acc at the trained depth ≥ {reproduced} reproduced; > plain tanh's (else chance
  {chance}) + {above_tanh} partly."""
  tr = {r["model"]: r for r in data["training"]}
  found = [tr[m] for m in ("roaf", "roaf_glorot") if m in tr]   # either ROAF init the run trained
  roaf = max(found, key=lambda r: r["test_accuracy"]) if found else _pick(tr, "roaf")
  tanh = tr.get("tanh_mlp", {}).get("test_accuracy", t["chance"])
  acc = roaf["test_accuracy"]
  v = (REPRODUCED if acc >= t["reproduced"] else PARTLY if math.isfinite(acc) and acc > tanh + t["above_tanh"]
       else NOT_REPRODUCED)
  return Judged(f"depth {roaf['depth']}, {roaf['steps']} steps: test acc ROAF {acc:.4f} vs plain tanh {tanh:.4f}", v)


@rule("reproduced", "below_best")
def roaf_psmnist(data: dict, t) -> Judged:
  """ROAF epoch-1 test acc ≥ {reproduced} reproduced; ≥ best other cell − {below_best} partly."""
  ep1 = {r["cell"]: r["test_acc_epoch1"] for r in data["rows"]}
  roaf = _pick(ep1, "roaf")
  others = [a for c, a in ep1.items() if c != "roaf"]
  v = (REPRODUCED if roaf >= t["reproduced"] else PARTLY if others and roaf >= max(others) - t["below_best"]
       else NOT_REPRODUCED)
  return Judged("epoch-1 test acc " + ", ".join(f"{c} {a:.4f}" for c, a in ep1.items()), v)


def _psmnist_final(data: dict) -> dict[str, list[float]]:
  """{cell: test accuracy per paper epoch} of the psMNIST search's final runs."""
  acc = {r["cell"]: r["test_acc_per_epoch"] for r in data.get("final", [])}
  if not acc.get("roaf"):
    raise Missing("the ROAF final run is not in this run")
  return acc


@rule("reproduced", "below_best")
def roaf_psmnist_search(data: dict, t) -> Judged:
  """ROAF at the validation-chosen setting, epoch-1 test acc ≥ {reproduced} reproduced; ≥ best baseline − {below_best}
  partly."""
  acc = _psmnist_final(data)
  roaf = acc["roaf"][0]
  others = [a[0] for c, a in acc.items() if c != "roaf" and a]
  v = (REPRODUCED if roaf >= t["reproduced"] else PARTLY if others and roaf >= max(others) - t["below_best"]
       else NOT_REPRODUCED)
  k = data["best"]["knobs"]
  setting = ", ".join(f"{n} {'1 − α' if x is None else x}" for n, x in k.items())
  return Judged(f"epoch-1 test acc ROAF ({setting}) {roaf:.4f}; "
                + ", ".join(f"{c} {a[0]:.4f}" for c, a in acc.items() if c != "roaf" and a), v)


@rule("reproduced", "partly")
def roaf_psmnist_last_epoch(data: dict, t) -> Judged:
  """The same run after its last paper epoch: ROAF test acc ≥ {reproduced} reproduced; ≥ {partly} partly."""
  acc = _psmnist_final(data)["roaf"]
  v = REPRODUCED if acc[-1] >= t["reproduced"] else PARTLY if acc[-1] >= t["partly"] else NOT_REPRODUCED
  return Judged(f"ROAF test acc after {len(acc)} paper epochs {acc[-1]:.4f} (best epoch {max(acc):.4f})", v)


@rule("reproduced", "margin")
def roaf_memory(data: dict, t) -> Judged:
  """Largest lag T solved by ROAF (loss ≤ 0.1 × baseline, every seed) ≥ {reproduced} reproduced; > 0 and ≥ Elman's +
  {margin} partly."""
  rows = data["rows"]
  cells = list(dict.fromkeys(r["cell"] for r in rows))
  if "roaf" not in cells:
    raise Missing("roaf not in this run")
  best = {c: largest_solved(rows, c) for c in cells}
  ok = best["roaf"] > 0 and best["roaf"] >= best.get("elman", 0) + t["margin"]
  v = REPRODUCED if best["roaf"] >= t["reproduced"] else PARTLY if ok else NOT_REPRODUCED
  lags = sorted({r["lag"] for r in rows})
  return Judged(f"largest T solved (of {', '.join(map(str, lags))}): "
                + ", ".join(f"{c} {x or 'none'}" for c, x in best.items()), v)


@rule("reproduced", "margin")
def roaf_memory_search(data: dict, t, task: str) -> Judged:
  """Long-lag search, {task} task (runs merged): ROAF's largest T solved ≥ {reproduced} reproduced; > 0 and ≥ every
  other cell's + {margin} partly."""
  rows = [r for r in data.get("runs", []) if r["task"] == task and not r.get("skipped")]
  cells = list(dict.fromkeys(r["cell"] for r in rows))
  if "roaf" not in cells:
    raise Missing(f"roaf on the {task} task not in this run")
  best = {c: max((r["lag"] for r in rows if r["cell"] == c and r["solved"]), default=0) for c in cells}
  others = max((x for c, x in best.items() if c != "roaf"), default=0)
  v = (REPRODUCED if best["roaf"] >= t["reproduced"] else
       PARTLY if best["roaf"] > 0 and best["roaf"] >= others + t["margin"] else NOT_REPRODUCED)
  lags = ", ".join(map(str, sorted({r["lag"] for r in rows})))
  return Judged(f"{task}, largest T solved (of {lags}): " + ", ".join(f"{c} {x or 'none'}" for c, x in best.items()), v)


@rule("margin")
def roaf_copy(data: dict, t) -> Judged:
  """Copy task (runs merged): ROAF solves (every seed, in any run) the longest lag it ran at: reproduced; solves some
  lag ≥ every other cell's largest + {margin}: partly."""
  rows = [r for r in data["rows"] if r["task"] == "copy"]
  cells = list(dict.fromkeys(r["cell"] for r in rows))
  if "roaf" not in cells:
    raise Missing("roaf on the copy task not in this run")
  best = {c: largest_solved(rows, c) for c in cells}
  roaf_rows = [r for r in rows if r["cell"] == "roaf"]
  longest = max(r["lag"] for r in roaf_rows)
  others = max((x for c, x in best.items() if c != "roaf"), default=0)
  v = (REPRODUCED if best["roaf"] == longest else
       PARTLY if best["roaf"] > 0 and best["roaf"] >= others + t["margin"] else NOT_REPRODUCED)
  low = min(roaf_rows, key=lambda r: r["ratio"])
  return Judged(f"largest T solved (of {', '.join(map(str, sorted({r['lag'] for r in rows})))}): "
                + ", ".join(f"{c} {x or 'none'}" for c, x in best.items())
                + f"; ROAF's lowest loss / baseline {low['ratio']:.3f} (T = {low['lag']}, {low['steps']} steps)", v)


# ------------------------------------------------ budget and dataset of a JSON ---
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "digits": "scikit-learn digits", "shapeset": "Shapeset-3x2"}


def dataset_names(ds) -> str:
  """Readable dataset name(s) of a name or a list of names ("?" when none)."""
  return ", ".join(DATASET_NAMES.get(d, d) for d in ([ds] if isinstance(ds, str) else ds)) if ds else "?"


def budget_stability(d: dict) -> str:
  """The stability study's budget, from its first arm."""
  r = next(iter(d["rows"].values()))
  return f"MLP depth {r['depth']}, SGD 0.01, {r['steps']} steps, {r['seeds']} seeds"


def budget_glorot(d: dict) -> str:
  """reproduce_glorot_table1's budget."""
  b = d["budget"]
  return (f"{b['depth']} × {b['width']}, SGD, {b['num_steps']} steps × batch {b['batch_size']}, lr ∈ {b['lrs']}, "
          f"{b['num_train']} train examples, 1 seed")


def budget_tgelu(d: dict) -> str:
  """reproduce_tgelu_classification's budget, from its first arm."""
  r = next(iter(d["rows"].values()))
  return f"ConvNet, SGD 3e-3, {r['steps']} steps, {r['seeds']} seeds"


def budget_dqn(d: dict) -> str:
  """reproduce_dqn's budget."""
  return f"{d['meta']['seeds']} seeds × {d['meta']['total_steps']:,} env steps, SGD 3e-4"


def budget_avg_grad(d: dict) -> str:
  """reproduce_avg_grad's budget (with the shallow control where the run has one)."""
  s = d["settings"]
  control = f" (control 1 × {s['width']})" if len(d.get("analysis", [])) > 1 else ""   # --noshallow: none
  return (f"tanh MLP {s['depth']} × {s['width']}{control}, RMSProp, {s['num_steps']} steps, "
          f"{s['num_seeds']} seeds, lr ∈ {s['lrs']}")


def budget_roaf_depth(d: dict) -> str:
  """reproduce_roaf_depth's budget."""
  s = d["setting"]
  return (f"width {s['width']}, α {s['alpha']}, spectra at depths {s['depths']}; training at depth "
          f"{s['train_depth']}, {s['train_steps']} steps × batch {s['train_batch']}")


def budget_roaf_init(d: dict) -> str:
  """roaf_init_study's grid."""
  s = d["setting"]
  return f"width {s['width']}, {s['activation']}, depths {s['depths']}, α {s['alphas']}, {s['examples']} inputs"


def budget_psmnist(d: dict) -> str:
  """reproduce_roaf_psmnist's budget."""
  r = d["rows"][0]
  return f"hidden {r['hidden']}, Adam {d['flags']['lr']}, {r['epochs']} epoch(s), {r['seeds']} seed(s)"


def budget_psmnist_search(d: dict) -> str:
  """reproduce_roaf_psmnist_search's budget: the search, then the final runs."""
  s = d["settings"]
  return (f"search: {len(d['search'])} ROAF settings × {s['sweep_epochs']:g} paper epoch, chosen on {s['num_val']} "
          f"validation images; final: {s['final_epochs']} paper epochs (baselines {s['baseline_epochs']}), "
          f"hidden {s['hidden']}, batch {s['batch']}, {s['seeds']} seed(s)")


def budget_memory(d: dict) -> str:
  """reproduce_roaf_memory's budget."""
  r = d["rows"][0]
  return f"Adam 3e-3, {r['steps']} steps, {r['seeds']} seed(s)"


def budget_memory_search(d: dict) -> str:
  """reproduce_roaf_memory_search's budget."""
  s = d["settings"]
  return f"hidden {s['hidden']}, Adam {s['lr']}, {s['steps']} steps"


def budget_lsc(d: dict) -> str:
  """reproduce_lsc_ffn's or reproduce_lsc_rnn's budget."""
  s = d["settings"]
  net = (f"MLP {s['depth']} × {s['width']}, Adam lr ∈ {{{s['lrs']}}}" if "acts" in s else
         f"cells {s['cells']}, depth {s['depths']} × {s['width']}, Adam {s['lr']}")
  return f"{net}, {s['num_steps']} steps, LSC {s['lsc_steps']} steps, {s['seeds']} seed(s)"


def budget_spectrum(d: dict) -> str:
  """lsc_ffn_spectrum's budget."""
  s = d["settings"]
  return (f"MLP {s['depth']} × {s['width']} {s['activation']}, {s['kernel_init']}, LSC {d['pretrain_steps']} steps "
          f"on {s['batch']} examples")


def dataset_top(d: dict) -> str:
  """The JSON's top-level ``dataset``."""
  return dataset_names(d["dataset"])


def dataset_lsc_ffn(d: dict) -> str:
  """reproduce_lsc_ffn's dataset ("?" where the JSON names none)."""
  return dataset_names(d.get("dataset"))


def dataset_settings(d: dict) -> str:
  """``settings.dataset`` of the JSON."""
  return dataset_names(d["settings"]["dataset"])


def dataset_setting(d: dict) -> str:
  """``setting.dataset`` of the JSON (reproduce_roaf_depth, roaf_init_study)."""
  return dataset_names(d["setting"]["dataset"])


def dataset_best(d: dict) -> str:
  """The datasets of the JSON's ``best`` rows (reproduce_glorot_table1)."""
  return dataset_names(sorted({b["dataset"] for b in d["best"]}))


def dataset_dqn(d: dict) -> str:
  """reproduce_dqn's environment."""
  return d["meta"]["env"] + " (pure-JAX port)"


def dataset_psmnist(d: dict) -> str:
  """reproduce_roaf_psmnist's dataset (digits at the tiny setting)."""
  return "permuted sequential " + dataset_names("digits" if d["setting"] == "tiny" else "fashion_mnist")


def dataset_psmnist_search(d: dict) -> str:
  """reproduce_roaf_psmnist_search's dataset."""
  return "permuted sequential MNIST (5k subset)"


def dataset_memory(d: dict) -> str:
  """reproduce_roaf_memory's generated task(s)."""
  return "generated " + "/".join(sorted({r["task"] for r in d["rows"]})) + " task"


def dataset_memory_search(d: dict) -> str:
  """reproduce_roaf_memory_search's generated tasks."""
  return "generated " + "/".join(d["settings"]["tasks"]) + " tasks"


def dataset_lsc_rnn(d: dict) -> str:
  """reproduce_lsc_rnn's sequential dataset."""
  return "sequential " + dataset_names(d.get("dataset"))
