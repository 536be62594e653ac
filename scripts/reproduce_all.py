r"""Runs every claim of the reproduction ledger (WORKSPACE.md) and writes one verdict table.

Each study — a `scripts/reproduce_*.py` sweep, `scripts/stability_study.py` or
`scripts/lsc_ffn_spectrum.py` — runs as a subprocess of ``sys.executable`` with
``--out=DIR/<study>``, ``--workdir_root`` in a temporary folder (removed at exit) and
the flags of the scale; its stdout/stderr go to ``DIR/<study>/log.txt``. A study with
several runs at a scale (``full``: one per decisive ledger row) runs each as its own
subprocess into ``DIR/<study>/<run>/``. Then every claim is judged from its runs' JSON
by an explicit rule, into ``DIR/summary.md`` and ``DIR/summary.json``: claim · paper's
number · ours · budget · dataset · verdict (reproduced / partly / not reproduced / not
run) · link to the study's table and figures. A claim reading several runs gets their
JSONs merged (`merge_runs`: lists such as ``rows`` / ``best`` concatenated). A run that
fails (non-zero exit, or killed at ``--time_budget_s``) gives the claims reading it
"not run" with the last line of its log; the others still run, and the exit status is 1.

  python scripts/reproduce_all.py --scale=tiny               # smoke: 8 min on 2 busy CPU cores, temporary --out
  python scripts/reproduce_all.py --scale=quick              # ≈ 1–2 h on 2 CPU cores, temporary --out
  python scripts/reproduce_all.py --scale=full --out=DIR     # the ledger's decisive commands: ≈ a day on 2 CPU cores
  scripts/gpu_suite.sh OUTDIR                                # --scale=gpu on one H200, ≤ 9 min
  python scripts/reproduce_all.py --list                     # the claims, by study
  python scripts/reproduce_all.py --scale=tiny --only=lsc_spectrum,roaf_memory

Scales (``STUDIES[...].args``):
  tiny   each study's ``--tiny`` budget (seconds per run, scikit-learn digits / generated
         data), with every arm a claim needs; checks the plumbing, the numbers mean nothing.
  quick  each study's ``--quick`` budget (minutes per study on 2 CPU cores).
  full   the commands of the study's decisive ledger rows in WORKSPACE.md (the largest
         budget each claim was decided at; the script's full defaults where the ledger has
         none); a study with several such rows has one run per row, named by its --tag.
         The studies glorot_shapeset, roaf_copy, roaf_psmnist_search, roaf_memory_search and lsc_ffn_grid run at
         this scale only,
         and claims marked "full only" are judged at it only. tests/test_reproduce_all.py
         checks these runs against the commands written in the ledger.
  gpu    budgets for one NVIDIA H200 so that every study, ``--jobs=4`` at a time, ends
         within ≈ 6 min (the ``gpu`` entries of STUDIES state each assumption); the
         studies run longest first.
``--out`` defaults to a temporary folder for tiny/quick (never results/) and to
``results/all_<scale>`` for full/gpu.

Papers: Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural
networks", AISTATS; Ceni (2022), "Random orthogonal additive filters: a solution to the
vanishing/exploding gradient of deep neural networks", arXiv:2210.01245 (ROAF); Ramaswamy, Bhatnagar &
Saxena (2023), "stable and consistent training" of deep feed-forward nets and DQN (tGELU, output-layer
clipping); Herranz-Celotti & Rouat (2023/24), "Stabilizing RNN Gradients through Pre-training" (LSC);
"Efficient Gradient-Based Algorithm for Training Deep Learning Models With Many Nonlinear Activations"
(ICLR 2025 submission; averaged gradient). The claim rows follow the ledger in WORKSPACE.md.

Verdict rules (one pure function per claim, `judge_*`; accuracies are test accuracies,
"chance" is 0.1 for the 10-class datasets):
  glorot_depth     Glorot & Bengio 2010 (AISTATS) §4: gap = acc(tanh-normalized) − acc(tanh-standard)
                   of the depth-20 stability MLP; ≥ 0.2 reproduced, > 0.02 partly.
  softsign         G&B 2010 Table 1: relative gap (acc_N − acc_std) / acc_N of softsign ≤ 0.05
                   reproduced, ≤ half of tanh's partly.
  glorot_table1    G&B 2010 Table 1: normalized test error < standard for every (dataset,
                   activation) run: all reproduced, some partly.
  glorot_jacobian  G&B 2010 §4.2.3: tanh mean singular value of ∂h_{l+1}/∂h_l at init,
                   normalized > standard and both within 0.1 of the paper's 0.5 / 0.8:
                   reproduced; normalized > standard: partly.
  roaf_stability   Ceni 2022 (ROAF): acc(roaf-tanh) − acc(tanh-standard) ≥ 0.2 reproduced, > 0.02 partly.
  lsc_stability    Herranz-Celotti & Rouat (LSC): acc(tanh-standard-lsc) − acc(tanh-standard),
                   same thresholds.
  lsc_radius       LSC: |max|λ(∂h_{l+1}/∂h_l)| after pre-training − ρ| ≤ 0.05 reproduced;
                   closer to ρ than before: partly.
  tgelu_mlp        Ramaswamy, Bhatnagar & Saxena 2023 (tGELU): acc(tgelu-he-clip) ≥ 0.95 ×
                   acc(tanh-normalized) reproduced; > chance + 0.1 partly.
  tgelu_variance   Ramaswamy et al. 2023: across-seed std of the last-epoch test accuracy,
                   gelu / tgelu-clip ≥ 2 reproduced, > 1.2 partly.
  dqn_no_target    Ramaswamy et al. 2023: final greedy return tgelu_none / tgelu_target ≥ 0.9
                   reproduced, ≥ 0.5 partly.
  dqn_memory       Ramaswamy et al. 2023: Q-learning state bytes no-target / target ≤ 0.55
                   reproduced, < 1 partly.
  avg_grad_deep    averaged-gradient RMSProp (ICLR 2025 submission): best iterations-to-target
                   speed-up over RMSProp of any averaged-gradient method, deep net: ≥ 2
                   reproduced, > 1.2 partly.
  avg_grad_deep_mnist5k  the avg_grad_deep rule on the MNIST 5k subset run (mnist5k; full only).
  avg_grad_shallow same paper, 1-hidden-layer control: every speed-up within [0.8, 1.25]
                   reproduced (no difference), else not.
  roaf_jacobian    Ceni 2022: at the deepest measured depth a ROAF net has every singular value
                   of its hidden-stack Jacobian within a decade of 1: reproduced; a ROAF net's
                   spread σ_max/σ_min smaller than the plain tanh net's (underflow = ∞): partly.
  roaf_init        Ceni 2022, at init (`scripts/roaf_init_study.py`): at the deepest depth some (α, W init,
                   filters) has its Jacobian's spread ≤ 1 decade (upper bound) and |mean log10 σ| ≤ 1:
                   reproduced; spread ≤ 1 decade with the mean off (an isometry up to scale): partly.
  roaf_deep_train  Ceni 2022: ROAF test acc at the trained depth ≥ 0.6 reproduced; > plain tanh
                   + 0.05 partly.
  roaf_psmnist     Ceni 2022: ROAF epoch-1 acc ≥ 0.94 reproduced; ≥ best other cell − 0.02 partly.
  roaf_psmnist_mnist5k  Ceni 2022 on the MNIST 5k subset (`reproduce_roaf_psmnist_search.py`): ROAF at
                   the validation-chosen (α, β, …) setting, epoch-1 test acc ≥ 0.94 reproduced; ≥ best
                   baseline − 0.02 partly.
  roaf_psmnist_mnist5k_ep10  same run after 10 paper epochs: ≥ 0.98 reproduced; ≥ 0.94 partly.
  roaf_memory_first  Ceni 2022, long-lag search with β free (`reproduce_roaf_memory_search.py`, runs merged),
                   first-symbol task: ROAF's largest T solved ≥ 10,000 reproduced; > 0 and ≥ every other
                   cell's partly.
  roaf_memory_adding same rule, adding problem.
  roaf_memory      Ceni 2022: largest lag T solved by ROAF (loss ≤ 0.1 × baseline, every seed)
                   ≥ 10,000 reproduced; > 0 and ≥ Elman's partly.
  lsc_rnn_radii    LSC: every pre-trained (cell, depth, ρ) has mean depth radius, and time radius
                   where defined, within 0.15 of ρ: all reproduced, some partly.
  lsc_rnn_accuracy LSC: acc(ρ = 0.5) ≥ max(acc(none), acc(ρ = 1)) per (cell, depth): all
                   reproduced, some partly.
  lsc_ffn          LSC: acc(lsc) ≥ max(acc(he), acc(glorot)) per activation: all reproduced, some partly.
Decisive rows (full only):
  glorot_shapeset  G&B 2010 Table 1 on Shapeset-3x2 at 200 k updates (tanh, softsign, sigmoid runs): the
                   glorot_table1 rule — normalized test error < standard (a tie fails) for every
                   activation: reproduced; for some: partly.
  roaf_copy        Ceni 2022, copy task (runs copy + copy_short): largest lag T solved per cell (every
                   seed at ratio ≤ 0.1, in either run); ROAF solves its longest lag: reproduced; ROAF
                   solves some lag and at least every other cell's largest: partly.
  lsc_ffn_grid_relu LSC, the issue's full grid (4 lrs × 4 seeds), relu: test accuracy of each arm at its
                   best lr (mean over seeds); lsc ≥ max(glorot, he): reproduced; lsc ≥ min(glorot, he):
                   partly.
  lsc_ffn_grid_sin same, sin.
  lsc_ffn_grid_cos same, cos.
  lsc_rnn_deep     LSC, deep RNNs (the grid of every cell at depths 2 and 5): at each cell's deepest
                   depth acc(ρ = 0.5) ≥ max(acc(none), acc(ρ = 1)) (ties count): all cells reproduced,
                   some partly.
At full, lsc_rnn_radii / lsc_rnn_accuracy read the same grid, avg_grad_deep the 5-epoch run
(epochs5), avg_grad_shallow the 600-step run with its shallow control, roaf_jacobian the
10,000-layer sweep (engine_d10k) and roaf_deep_train the 50,000-layer run.
A claim whose arms are not in its study's JSON (a subset run) is "not run" and says which.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"
CHANCE = 0.1
F32_UNDERFLOW = math.log10(1.1754944e-38) + 0.01   # log10 of float32's smallest normal (reproduce_roaf_depth)


class Missing(Exception):
  """The study's JSON lacks what a claim needs (an arm not run): the claim is "not run"."""


# ------------------------------------------------------------------ rules ---
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


def _pick(rows: dict, key: str):
  if key not in rows:
    raise Missing(f"{key} not in this run")
  return rows[key]


def _acc(data: dict, arm: str) -> float:
  return _pick(data["rows"], arm)["test_accuracy_mean"]


def _arm_str(data: dict, arm: str) -> str:
  r = data["rows"][arm]
  return f"{arm} {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f}"


def _gap_judge(arm: str, base: str = "tanh-standard") -> Callable[[dict], tuple[str, str]]:
  """Stability study: gap acc(arm) − acc(base) ≥ 0.2 reproduced, > 0.02 partly."""
  def judge(data):
    gap = _acc(data, arm) - _acc(data, base)
    return grade(gap, 0.2, 0.02), f"{_arm_str(data, base)} vs {_arm_str(data, arm)} test acc (gap {gap:+.3f})"
  return judge


def judge_softsign(data: dict) -> tuple[str, str]:
  """Relative init gap of softsign ≤ 0.05 reproduced; ≤ half of tanh's partly."""
  rel = {}
  for act in ("softsign", "tanh"):
    n = _acc(data, f"{act}-normalized")
    rel[act] = (n - _acc(data, f"{act}-standard")) / n if n > 0 else float("inf")
  v = REPRODUCED if rel["softsign"] <= 0.05 else PARTLY if rel["softsign"] <= rel["tanh"] / 2 else NOT_REPRODUCED
  return v, (f"{_arm_str(data, 'softsign-standard')} vs {_arm_str(data, 'softsign-normalized')}; relative gap "
             f"softsign {rel['softsign']:.2f}, tanh {rel['tanh']:.2f}")


def judge_tgelu_mlp(data: dict) -> tuple[str, str]:
  acc, ref = _acc(data, "tgelu-he-clip"), _acc(data, "tanh-normalized")
  v = REPRODUCED if acc >= 0.95 * ref else PARTLY if acc > CHANCE + 0.1 else NOT_REPRODUCED
  return v, f"{_arm_str(data, 'tgelu-he-clip')} vs {_arm_str(data, 'tanh-normalized')}"


def judge_glorot_table1(data: dict) -> tuple[str, str]:
  """Normalized < standard test error for every (dataset, activation) with both cells."""
  err = {(b["dataset"], b["activation"], b["init"]): b["test_error"] for b in data["best"]}
  ok, parts = [], []
  for ds, act, init in sorted(err):
    if init == "standard" and (ds, act, "normalized") in err:
      s, n = err[(ds, act, "standard")], err[(ds, act, "normalized")]
      ok.append(n < s)
      parts.append(f"{ds} {act} {s:.2f} → N {n:.2f}")
  return count_grade(ok), "test error %: " + "; ".join(parts)


def judge_glorot_jacobian(data: dict) -> tuple[str, str]:
  sv = {r["init"]: r["mean_sv"] for r in data["jacobian_at_init"] if r["activation"] == "tanh"}
  s, n = _pick(sv, "standard"), _pick(sv, "normalized")
  close = abs(s - 0.5) <= 0.1 and abs(n - 0.8) <= 0.1
  v = REPRODUCED if n > s and close else PARTLY if n > s else NOT_REPRODUCED
  return v, f"tanh mean singular value {s:.3f} standard, {n:.3f} normalized"


def judge_lsc_radius(data: dict) -> tuple[str, str]:
  rho, before, after = float(data["settings"]["rho"]), data["before"], data["after"]
  d0, d1 = abs(before["max_abs_eig"] - rho), abs(after["max_abs_eig"] - rho)
  v = REPRODUCED if d1 <= 0.05 else PARTLY if d1 < d0 else NOT_REPRODUCED
  return v, (f"max|λ| {before['max_abs_eig']:.3f} → {after['max_abs_eig']:.3f} (ρ = {rho:g}); median |λ| "
             f"{before['median_abs_eig']:.3f} → {after['median_abs_eig']:.3f}, r.m.s. σ {before['rms_sv']:.3f} → "
             f"{after['rms_sv']:.3f}")


def judge_tgelu_variance(data: dict) -> tuple[str, str]:
  t, g = (_pick(data["rows"], a)["per_epoch"][-1] for a in ("tgelu-clip", "gelu"))
  ratio = g["std"] / t["std"] if t["std"] > 0 else (float("inf") if g["std"] > 0 else 1.0)
  return grade(ratio, 2.0, 1.2), (f"last-epoch test acc tgelu-clip {t['mean']:.4f} ± {t['std']:.4f}, gelu "
                                  f"{g['mean']:.4f} ± {g['std']:.4f} (std ratio {ratio:.2f})")


def judge_dqn_no_target(data: dict) -> tuple[str, str]:
  arms = data["arms"]
  none, target = _pick(arms, "tgelu_none"), _pick(arms, "tgelu_target")
  ratio = none["final_return_mean"] / target["final_return_mean"] if target["final_return_mean"] > 0 else float("inf")
  ours = ", ".join(f"{a} {arms[a]['final_return_mean']:.1f} ± {arms[a]['final_return_std']:.1f}"
                   for a in ("tgelu_none", "tgelu_target", "gelu_none", "gelu_target") if a in arms)
  v = REPRODUCED if ratio >= 0.9 else PARTLY if ratio >= 0.5 else NOT_REPRODUCED
  return v, f"final greedy return {ours} (ratio {ratio:.2f})"


def judge_dqn_memory(data: dict) -> tuple[str, str]:
  none, target = (_pick(data["arms"], a)["memory_bytes"] for a in ("tgelu_none", "tgelu_target"))
  r = none / target
  v = REPRODUCED if r <= 0.55 else PARTLY if r < 1 else NOT_REPRODUCED
  return v, f"{none:,} B vs {target:,} B per seed (ratio {r:.2f})"


def _avg_grad_speedups(data: dict, deep: bool) -> tuple[int, dict]:
  analyses = sorted(data["analysis"], key=lambda a: a["depth"])
  if not deep and len(analyses) < 2:
    raise Missing("the shallow control was not run")
  a = analyses[-1] if deep else analyses[0]
  return a["depth"], {m: r["speedup_vs_rmsprop"] for m, r in a["methods"].items() if m != "rmsprop"}


def _fmt_speedups(sp: dict) -> str:
  return ", ".join(f"{m} {'—' if s is None else f'{s:.2f}×'}" for m, s in sp.items())


def judge_avg_grad_deep(data: dict) -> tuple[str, str]:
  depth, sp = _avg_grad_speedups(data, deep=True)
  if not sp:
    raise Missing("no averaged-gradient method in this run")
  best = max((s for s in sp.values() if s is not None), default=None)
  return grade(best, 2.0, 1.2), f"depth {depth}: iterations-to-target speed-up vs RMSProp {_fmt_speedups(sp)}"


def judge_avg_grad_shallow(data: dict) -> tuple[str, str]:
  depth, sp = _avg_grad_speedups(data, deep=False)
  if not sp:
    raise Missing("no averaged-gradient method in this run")
  same = all(s is not None and 0.8 <= s <= 1.25 for s in sp.values())
  return (REPRODUCED if same else NOT_REPRODUCED), f"depth {depth}: speed-up vs RMSProp {_fmt_speedups(sp)}"


def _log10_spread(r: dict) -> float:
  return float("inf") if r["log10_sigma_max"] <= F32_UNDERFLOW else r["log10_spread"]


def judge_roaf_jacobian(data: dict) -> tuple[str, str]:
  rows = data["depth_sweep"]
  depth = max(r["depth"] for r in rows)
  at = {r["model"]: r for r in rows if r["depth"] == depth}
  roaf = [at[m] for m in ("roaf", "roaf_glorot") if m in at]
  if not roaf:
    raise Missing("no ROAF model in the depth sweep")
  near1 = any(r["log10_sigma_max"] > F32_UNDERFLOW and max(abs(r["log10_sigma_max"]), abs(r["log10_sigma_min"])) <= 1
              for r in roaf)
  tanh = _log10_spread(at["tanh_mlp"]) if "tanh_mlp" in at else float("inf")
  v = REPRODUCED if near1 else PARTLY if min(map(_log10_spread, roaf)) < tanh else NOT_REPRODUCED
  fmt = lambda r: ("underflow" if r["log10_sigma_max"] <= F32_UNDERFLOW else
                   f"spread 10^{r['log10_spread']:.2f}, σ_max 10^{r['log10_sigma_max']:.2f}")
  return v, f"depth {depth}: " + "; ".join(f"{m} {fmt(r)}" for m, r in at.items())


def judge_roaf_init(data: dict) -> tuple[str, str]:
  """Ceni 2022 at init (`scripts/roaf_init_study.py`): at the deepest depth, a grid row whose singular
  values are all within a decade of 1 (spread ≤ 1 decade and |mean log10 σ| ≤ 1): reproduced; a row
  that is an isometry up to scale (spread ≤ 1 decade, the mean off): partly."""
  rows = data["rows"]
  if not rows:
    raise Missing("no rows in the init study")
  depth = max(r["depth"] for r in rows)
  deep = [r for r in rows if r["depth"] == depth]
  best = min(deep, key=lambda r: (r["spread_lo"], r["abs_mean_max"]))
  o1 = [r for r in deep if r["spread_hi"] <= 1 and r["abs_mean_max"] <= 1]
  iso = [r for r in deep if r["spread_hi"] <= 1]
  v = REPRODUCED if o1 else PARTLY if iso else NOT_REPRODUCED
  r = (o1 or [best])[0]
  return v, (f"depth {depth}: best α {r['alpha']:g}, W {r['roaf_init']}, {r['filter_mode']} filters: spread "
             f"{r['spread_lo']:.2f} decades, mean log10 σ {r['mean_log10_sigma']:.2f} "
             f"((D−1)·log10 α = {r['layers_log10_alpha']:.2f}); {len(iso)}/{len(deep)} rows isometric up to scale")


def judge_roaf_deep_train(data: dict) -> tuple[str, str]:
  t = {r["model"]: r for r in data["training"]}
  found = [t[m] for m in ("roaf", "roaf_glorot") if m in t]   # either ROAF init the run trained
  roaf = max(found, key=lambda r: r["test_accuracy"]) if found else _pick(t, "roaf")
  tanh = t.get("tanh_mlp", {}).get("test_accuracy", CHANCE)
  acc = roaf["test_accuracy"]
  v = (REPRODUCED if acc >= 0.6 else PARTLY if math.isfinite(acc) and acc > tanh + 0.05 else NOT_REPRODUCED)
  return v, (f"depth {roaf['depth']}, {roaf['steps']} steps: test acc ROAF {acc:.4f} vs plain tanh "
             f"{tanh:.4f}")


def judge_roaf_psmnist(data: dict) -> tuple[str, str]:
  ep1 = {r["cell"]: r["test_acc_epoch1"] for r in data["rows"]}
  roaf = _pick(ep1, "roaf")
  others = [a for c, a in ep1.items() if c != "roaf"]
  v = REPRODUCED if roaf >= 0.94 else PARTLY if others and roaf >= max(others) - 0.02 else NOT_REPRODUCED
  return v, "epoch-1 test acc " + ", ".join(f"{c} {a:.4f}" for c, a in ep1.items())


def largest_solved(rows: list[dict], cell: str) -> int:
  """Largest lag T at which every seed of `cell` solved its task (0: none)."""
  return max((r["lag"] for r in rows if r["cell"] == cell and r["solved_seeds"] == r["seeds"]), default=0)


def _psmnist_final(data: dict) -> dict[str, list[float]]:
  """{cell: test accuracy per paper epoch} of the psMNIST search's final runs."""
  acc = {r["cell"]: r["test_acc_per_epoch"] for r in data.get("final", [])}
  if not acc.get("roaf"):
    raise Missing("the ROAF final run is not in this run")
  return acc


def judge_roaf_psmnist_mnist5k(data: dict) -> tuple[str, str]:
  """psMNIST search on the MNIST 5k subset, epoch 1 of the validation-chosen ROAF setting: ≥ 0.94 reproduced;
  ≥ best baseline − 0.02 partly."""
  acc = _psmnist_final(data)
  roaf = acc["roaf"][0]
  others = [a[0] for c, a in acc.items() if c != "roaf" and a]
  v = REPRODUCED if roaf >= 0.94 else PARTLY if others and roaf >= max(others) - 0.02 else NOT_REPRODUCED
  k = data["best"]["knobs"]
  setting = ", ".join(f"{n} {'1 − α' if x is None else x}" for n, x in k.items())
  return v, (f"epoch-1 test acc ROAF ({setting}) {roaf:.4f}; "
             + ", ".join(f"{c} {a[0]:.4f}" for c, a in acc.items() if c != "roaf" and a))


def judge_roaf_psmnist_mnist5k_ep10(data: dict) -> tuple[str, str]:
  """The same run after its last paper epoch (10 in the full setting): ≥ 0.98 reproduced; ≥ 0.94 partly."""
  acc = _psmnist_final(data)["roaf"]
  v = REPRODUCED if acc[-1] >= 0.98 else PARTLY if acc[-1] >= 0.94 else NOT_REPRODUCED
  return v, f"ROAF test acc after {len(acc)} paper epochs {acc[-1]:.4f} (best epoch {max(acc):.4f})"


def memory_search_judge(task: str) -> Callable[[dict], tuple[str, str]]:
  """Long-lag search (`studies.roaf_memory`), task `task`: ROAF's largest T solved (every seed, ratio ≤ 0.1;
  runs merged) ≥ 10,000 reproduced; > 0 and ≥ every other cell's partly."""
  def judge(data):
    rows = [r for r in data.get("runs", []) if r["task"] == task and not r.get("skipped")]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    if "roaf" not in cells:
      raise Missing(f"roaf on the {task} task not in this run")
    best = {c: max((r["lag"] for r in rows if r["cell"] == c and r["solved"]), default=0) for c in cells}
    others = max((t for c, t in best.items() if c != "roaf"), default=0)
    v = (REPRODUCED if best["roaf"] >= 10_000 else PARTLY if best["roaf"] > 0 and best["roaf"] >= others
         else NOT_REPRODUCED)
    lags = ", ".join(map(str, sorted({r["lag"] for r in rows})))
    return v, f"{task}, largest T solved (of {lags}): " + ", ".join(f"{c} {t or 'none'}" for c, t in best.items())
  return judge


def judge_roaf_memory(data: dict) -> tuple[str, str]:
  rows = data["rows"]
  cells = list(dict.fromkeys(r["cell"] for r in rows))
  if "roaf" not in cells:
    raise Missing("roaf not in this run")
  best = {c: largest_solved(rows, c) for c in cells}
  ok = best["roaf"] > 0 and best["roaf"] >= best.get("elman", 0)
  v = REPRODUCED if best["roaf"] >= 10_000 else PARTLY if ok else NOT_REPRODUCED
  lags = sorted({r["lag"] for r in rows})
  return v, (f"largest T solved (of {', '.join(map(str, lags))}): "
             + ", ".join(f"{c} {t or 'none'}" for c, t in best.items()))


def judge_lsc_rnn_radii(data: dict) -> tuple[str, str]:
  ok, parts = [], []
  for r in data["rows"]:
    if r["arm"] == "none":
      continue
    rho = float(r["arm"])
    radii = [x for x in (r.get("depth_after"), r.get("time_after")) if x is not None and math.isfinite(x)]
    ok.append(bool(radii) and all(abs(x - rho) <= 0.15 for x in radii))
    parts.append(f"{r['cell']} d{r['depth']} ρ={r['arm']}: " + ", ".join(
        f"{k} {r[k + '_before']:.2f} → {r[k + '_after']:.2f}" for k in ("depth", "time")
        if math.isfinite(r.get(k + "_after", float("nan")))))
  return count_grade(ok), "; ".join(parts)


def judge_lsc_rnn_accuracy(data: dict) -> tuple[str, str]:
  acc = {(r["cell"], r["depth"], r["arm"]): r["test_accuracy"] for r in data["rows"]}
  ok, parts = [], []
  for cell, depth in dict.fromkeys((c, d) for c, d, _ in acc):
    a = {arm: acc.get((cell, depth, arm)) for arm in ("none", "1", "0.5")}
    if None in a.values():
      continue
    ok.append(a["0.5"] >= max(a["none"], a["1"]))
    parts.append(f"{cell} d{depth}: none {a['none']:.3f} / ρ=1 {a['1']:.3f} / ρ=0.5 {a['0.5']:.3f}")
  if not ok:
    raise Missing("arms none, 1 and 0.5 not all in this run")
  return count_grade(ok), "; ".join(parts)


def judge_lsc_ffn(data: dict) -> tuple[str, str]:
  best = {(r["act"], r["arm"]): r["test_accuracy"] for r in data["best"]}
  ok, parts = [], []
  for act in dict.fromkeys(a for a, _ in best):
    a = {arm: best.get((act, arm)) for arm in ("glorot", "he", "lsc")}
    if None in a.values():
      continue
    ok.append(a["lsc"] >= max(a["glorot"], a["he"]))
    parts.append(f"{act}: glorot {a['glorot']:.3f} / he {a['he']:.3f} / lsc {a['lsc']:.3f}")
  if not ok:
    raise Missing("arms glorot, he and lsc not all in this run")
  return count_grade(ok), "best test acc " + "; ".join(parts)


# Decisive rows (full only).
def judge_glorot_shapeset(data: dict) -> tuple[str, str]:
  """G&B Table 1 on Shapeset (the 200 k-update runs merged): the glorot_table1 rule on the Shapeset rows —
  normalized test error < standard for every activation with both inits: reproduced; for some: partly."""
  best = [b for b in data["best"] if b["dataset"] == "shapeset"]
  if not best:
    raise Missing("no Shapeset run in this JSON")
  return judge_glorot_table1({**data, "best": best})


def judge_roaf_copy(data: dict) -> tuple[str, str]:
  """Copy task (runs merged): ROAF solves (every seed, in any run) the longest lag it was run at: reproduced;
  solves some lag, at least as long as every other cell's largest solved lag: partly."""
  rows = [r for r in data["rows"] if r["task"] == "copy"]
  cells = list(dict.fromkeys(r["cell"] for r in rows))
  if "roaf" not in cells:
    raise Missing("roaf on the copy task not in this run")
  best = {c: largest_solved(rows, c) for c in cells}
  roaf_rows = [r for r in rows if r["cell"] == "roaf"]
  longest = max(r["lag"] for r in roaf_rows)
  others = max((t for c, t in best.items() if c != "roaf"), default=0)
  v = (REPRODUCED if best["roaf"] == longest else PARTLY if best["roaf"] > 0 and best["roaf"] >= others
       else NOT_REPRODUCED)
  low = min(roaf_rows, key=lambda r: r["ratio"])
  return v, (f"largest T solved (of {', '.join(map(str, sorted({r['lag'] for r in rows})))}): "
             + ", ".join(f"{c} {t or 'none'}" for c, t in best.items())
             + f"; ROAF's lowest loss / baseline {low['ratio']:.3f} (T = {low['lag']}, {low['steps']} steps)")


def lsc_ffn_grid_judge(act: str) -> Callable[[dict], tuple[str, str]]:
  """LSC FFN grid, activation `act`: each arm's test accuracy at its best lr (the JSON's ``best``, mean over
  seeds); lsc ≥ max(glorot, he): reproduced; lsc ≥ min(glorot, he): partly."""
  def judge(data):
    best = {r["arm"]: r for r in data["best"] if r["act"] == act}
    missing = [a for a in ("glorot", "he", "lsc") if a not in best]
    if missing:
      raise Missing(f"{act}: arm {', '.join(missing)} not in this run")
    g, h, lsc = (best[a]["test_accuracy"] for a in ("glorot", "he", "lsc"))
    v = REPRODUCED if lsc >= max(g, h) else PARTLY if lsc >= min(g, h) else NOT_REPRODUCED
    return v, f"{act}, best over lr: " + " / ".join(
        f"{a} {best[a]['test_accuracy']:.4f} ± {best[a]['test_accuracy_std']:.4f} (lr {best[a]['lr']:g})"
        for a in ("glorot", "he", "lsc"))
  return judge


def judge_lsc_rnn_deep(data: dict) -> tuple[str, str]:
  """LSC RNN grid (runs merged): at each cell's deepest depth acc(ρ = 0.5) ≥ max(acc(none), acc(ρ = 1)) (ties
  count): every cell reproduced, some partly."""
  rows = {(r["cell"], r["depth"], r["arm"]): r for r in data["rows"]}
  ok, parts = [], []
  for cell in dict.fromkeys(c for c, _, _ in rows):
    depth = max(d for c, d, _ in rows if c == cell)
    r = {arm: rows.get((cell, depth, arm)) for arm in ("none", "1", "0.5")}
    if None in r.values():
      continue
    a = {arm: x["test_accuracy"] for arm, x in r.items()}
    ok.append(a["0.5"] >= max(a["none"], a["1"]))
    parts.append(f"{cell} d{depth}: " + " / ".join(
        f"{lab} {r[arm]['test_accuracy']:.4f} ± {r[arm]['test_accuracy_std']:.4f}"
        for arm, lab in (("none", "none"), ("1", "ρ=1"), ("0.5", "ρ=0.5"))))
  if not ok:
    raise Missing("arms none, 1 and 0.5 not all in this run at a cell's deepest depth")
  return count_grade(ok), "test acc " + "; ".join(parts)


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


# ---------------------------------------------------------------- studies ---
def _names(ds) -> str:
  """Readable dataset name(s)."""
  names = {"fashion_mnist": "Fashion-MNIST", "digits": "scikit-learn digits", "shapeset": "Shapeset-3x2"}
  return ", ".join(names.get(d, d) for d in ([ds] if isinstance(ds, str) else ds)) if ds else "?"


# Budget and dataset descriptions, from each study's JSON.
def _budget_stability(d):
  r = next(iter(d["rows"].values()))
  return f"MLP depth {r['depth']}, SGD 0.01, {r['steps']} steps, {r['seeds']} seeds"


def _budget_glorot(d):
  b = d["budget"]
  return (f"{b['depth']} × {b['width']}, SGD, {b['num_steps']} steps × batch {b['batch_size']}, lr ∈ {b['lrs']}, "
          f"{b['num_train']} train examples, 1 seed")


def _budget_tgelu(d):
  r = next(iter(d["rows"].values()))
  return f"ConvNet, SGD 3e-3, {r['steps']} steps, {r['seeds']} seeds"


def _budget_avg_grad(d):
  s = d["settings"]
  control = f" (control 1 × {s['width']})" if len(d.get("analysis", [])) > 1 else ""   # --noshallow: none
  return (f"tanh MLP {s['depth']} × {s['width']}{control}, RMSProp, {s['num_steps']} steps, "
          f"{s['num_seeds']} seeds, lr ∈ {s['lrs']}")


def _budget_roaf_depth(d):
  s = d["setting"]
  return (f"width {s['width']}, α {s['alpha']}, spectra at depths {s['depths']}; training at depth "
          f"{s['train_depth']}, {s['train_steps']} steps × batch {s['train_batch']}")


def _budget_psmnist(d):
  r = d["rows"][0]
  return f"hidden {r['hidden']}, Adam {d['flags']['lr']}, {r['epochs']} epoch(s), {r['seeds']} seed(s)"


def _budget_psmnist_search(d):
  s = d["settings"]
  return (f"search: {len(d['search'])} ROAF settings × {s['sweep_epochs']:g} paper epoch, chosen on {s['num_val']} "
          f"validation images; final: {s['final_epochs']} paper epochs (baselines {s['baseline_epochs']}), "
          f"hidden {s['hidden']}, batch {s['batch']}, {s['seeds']} seed(s)")


def _budget_memory(d):
  r = d["rows"][0]
  return f"Adam 3e-3, {r['steps']} steps, {r['seeds']} seed(s)"


def _budget_lsc(d):
  s = d["settings"]
  net = (f"MLP {s['depth']} × {s['width']}, Adam lr ∈ {{{s['lrs']}}}" if "acts" in s else
         f"cells {s['cells']}, depth {s['depths']} × {s['width']}, Adam {s['lr']}")
  return f"{net}, {s['num_steps']} steps, LSC {s['lsc_steps']} steps, {s['seeds']} seed(s)"


def _budget_spectrum(d):
  s = d["settings"]
  return (f"MLP {s['depth']} × {s['width']} {s['activation']}, {s['kernel_init']}, LSC {d['pretrain_steps']} steps "
          f"on {s['batch']} examples")


SCALES = ("tiny", "quick", "full", "gpu")


@dataclasses.dataclass(frozen=True)
class Study:
  """A script, its extra flags per scale (tiny / quick also get --tiny / --quick), how to describe its JSON.

  ``args[scale]`` is a list of flags (one run, into DIR/<study>/) or ``{run: flags}`` (one subprocess per run,
  into DIR/<study>/<run>/); a scale without an entry does not run the study.
  """
  script: str
  args: dict                       # scale -> extra flags, or {run: extra flags}
  gpu_s: int                       # estimated seconds at the gpu scale (longest run first)
  budget: Callable[[dict], str]
  dataset: Callable[[dict], str]


STABILITY_ARMS = ("--arms=tanh-standard,tanh-normalized,softsign-standard,softsign-normalized,tgelu-he-clip,"
                  "roaf-tanh,tanh-standard-lsc")
# gpu budgets. Assumptions: one H200 runs these small models latency-bound (≈ 5–20 µs per kernel, one
# while-loop iteration per layer or time step), so vmapped seeds are ≈ free while depth, sequence length and
# steps cost; each engine config compiles in ≈ 5–15 s; four studies share the GPU and the 16 cores
# (--jobs=4; LSC's host eigs use ≤ 8 workers). Sum of the estimates ≈ 22 min → ≈ 6 min on 4 lanes.
STUDIES: dict[str, Study] = {
    "stability": Study(
        "scripts/stability_study.py",
        {"tiny": [STABILITY_ARMS], "quick": [], "full": [],
         # the ledger's budget (20 × 128, 3000 steps, 3 seeds): ≈ 3 ms/step → ≈ 10 s + compile per arm; the LSC
         # arm's 3 × 200 pre-training steps of host eigs ≈ 60 s. 7 arms (all a claim needs) ≈ 3 min.
         "gpu": [STABILITY_ARMS]},
        180, _budget_stability, lambda d: _names(d["dataset"])),
    "glorot": Study(
        "scripts/reproduce_glorot_table1.py",
        {"tiny": ["--activations=tanh"], "quick": [], "full": ["--datasets=fashion_mnist", "--num_steps=2000",
                                                                 "--lrs=0.03"],
         # the ledger's width-1000 budget (2000 steps × 10 examples, lr 0.03) on both datasets: 12 runs of
         # 2000 × ≈ 1 ms + compile + diagnostics ≈ 10 s, the Jacobians at init and ≈ 40 figures ≈ 2.5 min.
         "gpu": ["--datasets=shapeset,fashion_mnist", "--num_steps=2000", "--lrs=0.03"]},
        150, _budget_glorot, lambda d: _names(sorted({b["dataset"] for b in d["best"]}))),
    "tgelu": Study(
        "scripts/reproduce_tgelu_classification.py",
        # full: the script's full budget (60k images × 5 epochs, 8 seeds), the two arms the claim compares.
        {"tiny": ["--arms=tgelu-clip,gelu"], "quick": [], "full": ["--arms=tgelu-clip,gelu", "--tag=full60k"],
         # gpu, the same budget: 1170 steps of 8 vmapped ConvNets at ≈ 10 ms ≈ 12 s + compile ≈ 30 s per arm;
         # gelu-clip equals gelu to 4 decimals (ledger), so 2 arms ≈ 1.5 min.
         "gpu": ["--arms=tgelu-clip,gelu"]},
        90, _budget_tgelu, lambda d: _names(d["dataset"])),
    "dqn": Study(
        "scripts/reproduce_dqn.py",
        {"tiny": ["--arms=tgelu_none,tgelu_target"], "quick": [], "full": ["--setting=full"],
         # the ledger's budget (8 seeds × 50k env steps), 4 arms (no ablation): one jitted step (env, act,
         # replay, SGD update of batch 256) ≈ 50 kernels ≈ 0.3 ms → 15 s per arm, + compiles ≈ 1.5 min.
         "gpu": ["--setting=full", "--arms=tgelu_none,tgelu_target,gelu_none,gelu_target"]},
        90, lambda d: f"{d['meta']['seeds']} seeds × {d['meta']['total_steps']:,} env steps, SGD 3e-4",
        lambda d: d["meta"]["env"] + " (pure-JAX port)"),
    "avg_grad": Study(
        "scripts/reproduce_avg_grad.py",
        # full: the 600-step run (with the shallow control) and the decisive 5-epoch run (--noshallow).
        {"tiny": [], "quick": [],
         "full": {"steps600": ["--num_steps=600", "--log_every=25"],
                  "epochs5": ["--lrs=1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,1e-1", "--num_seeds=4", "--num_steps=2350",
                              "--log_every=50", "--noshallow", "--tag=epochs5"],
                  "mnist5k": ["--dataset=mnist_5k"]},
         # the ledger's 600 steps with 8 seeds (vmapped), RMSProp and the cheapest averaged gradient (secant)
         # at the three rates around the ledger's best (3e-4): 12 arms × (≈ 8 s compile + 600 × 3 ms) ≈ 2 min.
         "gpu": ["--num_steps=600", "--log_every=25", "--num_seeds=8", "--methods=rmsprop,secant",
                 "--lrs=1e-4,3e-4,1e-3"]},
        120, _budget_avg_grad, lambda d: _names(d["settings"]["dataset"])),
    "roaf_depth": Study(
        "scripts/reproduce_roaf_depth.py",
        # full: the spectra to 10,000 layers (roaf_jacobian) and the decisive 50,000-layer training run.
        {"tiny": [], "quick": [],
         "full": {"engine_d10k": ["--depths=10,100,1000,10000", "--train_depth=10000", "--train_steps=100",
                                  "--tag=engine_d10k"],
                  "d50k_alpha09999_adam": ["--depths=1000", "--alpha=0.9999", "--train_models=roaf_glorot",
                                           "--train_depth=50000", "--train_steps=300", "--train_log_every=10",
                                           "--optimizer=adam", "--lr=0.001", "--tag=d50k_alpha09999_adam"]},
         # spectra at init up to 10,000 layers (a forward-mode Jacobian each: seconds); training is latency-bound
         # (≈ 45 µs per layer, forward + remat + backward): 1,000 layers × 500 steps ≈ 25 s per model ≈ 1.5 min.
         "gpu": ["--depths=10,100,1000,10000", "--train_depth=1000", "--train_steps=500"]},
        90, _budget_roaf_depth, lambda d: _names(d["setting"]["dataset"])),
    "roaf_psmnist": Study(
        "scripts/reproduce_roaf_psmnist.py",
        {"tiny": [], "quick": [], "full": ["--epochs=1"],
         # the ledger's one epoch of all 60k images: 469 steps × 784 recurrent steps (≈ 35 ms) ≈ 20 s + compile
         # per cell; LSTM (the slowest, not needed for ROAF vs the baselines) left out: ≈ 1.5 min.
         "gpu": ["--epochs=1", "--cells=roaf,elman,gru"]},
        90, _budget_psmnist,
        lambda d: "permuted sequential " + _names("digits" if d["setting"] == "tiny" else "fashion_mnist")),
    "roaf_memory": Study(
        "scripts/reproduce_roaf_memory.py",
        {"tiny": ["--tasks=adding", "--cells=roaf,elman"], "quick": [],
         "full": ["--tasks=adding", "--lags=100,200,500,1000", "--cells=roaf,elman,lstm,gru", "--steps=3000"],
         # latency-bound as on the CPU (≈ 30 µs per recurrent step; ledger: 311 steps/s at T = 100): T ∈ {100,
         # 200, 500} × 1500 steps ≈ 40 s per cell; ROAF, Elman and GRU (the gated reference) ≈ 2.5 min.
         "gpu": ["--tasks=adding", "--lags=100,200,500", "--cells=roaf,elman,gru", "--steps=1500"]},
        150, _budget_memory, lambda d: "generated " + "/".join(sorted({r["task"] for r in d["rows"]})) + " task"),
    "lsc_rnn": Study(
        "scripts/reproduce_lsc_rnn.py",
        # full: the ledger's grid (depths 2 and 5, full data, 2000 steps, 2 seeds), two cells per run.
        {"tiny": ["--arms=none,1,0.5"], "quick": [],
         "full": {f"d25_{tag}_2000": [f"--cells={cells}", "--depths=2,5", "--width=64", "--num_steps=2000",
                                      "--num_train=0", "--num_test=0", "--lsc_steps=300", "--seeds=2",
                                      "--batch_size=128", f"--tag=d25_{tag}_2000"]
                  for cells, tag in (("gru,relu_rnn", "gru_relu"), ("lstm,alif", "lstm_alif"))},
         # LSTM and GRU, depth 2 × 32 (the ledger's quick grid) on all 60k images, 600 steps (T = 28: ≈ 3 ms),
         # 2 seeds, 100 LSC steps of host eigs ≈ 20 s per pre-trained arm: 6 runs ≈ 2 min.
         "gpu": ["--cells=lstm,gru", "--depths=2", "--width=32", "--num_steps=600", "--lsc_steps=100", "--seeds=2",
                 "--num_train=0", "--num_test=0", "--batch_size=64"]},
        120, _budget_lsc, lambda d: "sequential " + _names(d.get("dataset"))),
    "lsc_ffn": Study(
        "scripts/reproduce_lsc_ffn.py",
        {"tiny": ["--arms=glorot,he,lsc"], "quick": [],
         "full": ["--lrs=1e-3,1e-4", "--seeds=2", "--num_steps=1500", "--lsc_steps=200"],
         # the issue's 30 × 128, lr 1e-4 only (ledger: Adam 1e-3 diverges for sin and cos), 2 seeds, 1500 steps
         # (≈ 4 ms) ≈ 15 s per run × 9 runs, plus 3 activations × 2 seeds × 100 LSC steps of 116 host eigs
         # (≈ 0.2 s on 8 workers) ≈ 1 min: ≈ 3 min.
         "gpu": ["--lrs=1e-4", "--seeds=2", "--num_steps=1500", "--lsc_steps=100"]},
        180, _budget_lsc, lambda d: _names(d.get("dataset"))),
    "roaf_init": Study(
        "scripts/roaf_init_study.py",
        # gpu: the full grid (12 configs to 50k layers, one QR scan each; ≈ 5 min on 2 CPU cores, the scan is
        # latency-bound on a GPU too: ≈ 2–3 min).
        {"tiny": [], "quick": [], "full": [], "gpu": []},
        150, lambda d: (f"width {d['setting']['width']}, {d['setting']['activation']}, depths {d['setting']['depths']}, "
                        f"α {d['setting']['alphas']}, {d['setting']['examples']} inputs"),
        lambda d: _names(d["setting"]["dataset"])),
    "lsc_spectrum": Study(
        "scripts/lsc_ffn_spectrum.py",
        # gpu = full = the ledger's 20 × 128, 200 LSC steps: 150 s on 2 cores, ≈ 45 s on 8 eig workers.
        {"tiny": [], "quick": [], "full": [], "gpu": []},
        45, _budget_spectrum, lambda d: _names(d["settings"]["dataset"])),
    # Decisive ledger rows of their own claims: full only (gpu_s unused).
    "glorot_shapeset": Study(
        "scripts/reproduce_glorot_table1.py",
        {"full": {f"shapeset200k_{act}": ["--datasets=shapeset", f"--activations={act}", "--inits=standard,normalized",
                                          f"--lrs={lrs}", "--width=128", "--num_steps=200000", "--num_train=195000",
                                          "--num_generated=200000", "--num_val=5000", "--num_test=0",
                                          f"--tag=shapeset200k_{act}"]
                  for act, lrs in (("tanh", "0.03,0.1"), ("softsign", "0.03"), ("sigmoid", "0.03,0.1"))}},
        0, _budget_glorot, lambda d: _names(sorted({b["dataset"] for b in d["best"]}))),
    "roaf_copy": Study(
        "scripts/reproduce_roaf_memory.py",
        {"full": {"copy": ["--tasks=copy", "--lags=100,200,500,1000", "--steps=3000", "--tag=copy"],
                  "copy_short": ["--tasks=copy", "--lags=10,20,50,100", "--steps=10000", "--eval_every=500",
                                 "--tag=copy_short"]}},
        0, _budget_memory, lambda d: "generated " + "/".join(sorted({r["task"] for r in d["rows"]})) + " task"),
    "roaf_psmnist_search": Study(
        "scripts/reproduce_roaf_psmnist_search.py", {"full": []},
        0, _budget_psmnist_search, lambda d: "permuted sequential MNIST (5k subset)"),
    "roaf_memory_search": Study(
        "scripts/reproduce_roaf_memory_search.py",
        {"full": {"memory_search": ["--tasks=first,adding", "--lags=100,1000"],
                  "T1000_alpha1": ["--tasks=first,adding", "--lags=1000", "--cells=roaf", "--alphas_free=1.0",
                                   "--betas=0.1,0.5", "--alphas_tied=", "--tag=T1000_alpha1"]}},
        0, lambda d: f"hidden {d['settings']['hidden']}, Adam {d['settings']['lr']}, {d['settings']['steps']} steps",
        lambda d: "generated " + "/".join(d["settings"]["tasks"]) + " tasks"),
    "lsc_ffn_grid": Study(
        "scripts/reproduce_lsc_ffn.py",
        {"full": {f"grid1000_{act}": [f"--acts={act}", "--num_steps=1000", "--lsc_steps=200", f"--tag=grid1000_{act}"]
                  for act in ("relu", "sin", "cos")}},
        0, _budget_lsc, lambda d: _names(d.get("dataset"))),
}


@dataclasses.dataclass(frozen=True)
class Claim:
  """A claim, the study whose JSON judges it, and the rule (`judge`).

  Where the study has several runs at a scale, the claim reads `runs` (all of them when empty; their JSONs
  merged, `merge_runs`); at a scale with one run, that run. It is judged at `scales` only.
  """
  name: str
  study: str
  claim: str
  paper: str
  judge: Callable[[dict], tuple[str, str]]
  runs: tuple[str, ...] = ()
  scales: tuple[str, ...] = SCALES


CLAIMS = [
    Claim("glorot_depth", "stability", "Glorot & Bengio 2010: normalized init rescues a deep tanh net; standard "
          "init stalls", "Shapeset, 5 layers: Tanh 27.15 % vs Tanh N 15.60 % test error", _gap_judge("tanh-normalized")),
    Claim("softsign", "stability", "Glorot & Bengio 2010: softsign is less sensitive to init than tanh",
          "Softsign 16.27 vs Softsign N 16.06 % test error", judge_softsign),
    Claim("glorot_table1", "glorot", "Glorot & Bengio 2010 Table 1: normalized init lowers the test error "
          "(5 hidden layers, SGD minibatch 10)", "Softsign 16.27 / N 16.06, Tanh 27.15 / N 15.60, Sigmoid 82.61 "
          "(Shapeset)", judge_glorot_table1),
    Claim("glorot_jacobian", "glorot", "Glorot & Bengio 2010 §4.2.3: mean singular value of the layer "
          "Jacobians at init, tanh", "≈ 0.5 standard, ≈ 0.8 normalized", judge_glorot_jacobian),
    Claim("roaf_stability", "stability", "Ceni 2022: ROAF trains where a plain deep tanh net with standard "
          "init stalls", "— (trains)", _gap_judge("roaf-tanh")),
    Claim("lsc_stability", "stability", "Herranz-Celotti & Rouat: LSC pre-training (ρ = 1) rescues the "
          "standard-init tanh net", "— (rescues)", _gap_judge("tanh-standard-lsc")),
    Claim("lsc_radius", "lsc_spectrum", "Herranz-Celotti & Rouat: LSC pre-training drives ρ(∂h_{l+1}/∂h_l) "
          "of every layer to its target", "ρ = 1 after pre-training", judge_lsc_radius),
    Claim("tgelu_variance", "tgelu", "Ramaswamy et al. 2023: tGELU + output clipping trains consistently "
          "(low across-seed variance)", "lower across-seed variance than GELU", judge_tgelu_variance),
    Claim("tgelu_mlp", "stability", "Ramaswamy et al. 2023: tGELU + clipping trains a deep MLP", "— (trains)",
          judge_tgelu_mlp),
    Claim("dqn_no_target", "dqn", "Ramaswamy et al. 2023: with tGELU + output clipping, DQN needs no target "
          "network (CartPole)", "no-target tGELU learns as well as with a target", judge_dqn_no_target),
    Claim("dqn_memory", "dqn", "Ramaswamy et al. 2023: dropping the target network halves the Q-learning "
          "memory", "half (no target copy)", judge_dqn_memory),
    Claim("avg_grad_deep", "avg_grad", "Averaged gradient + RMSProp (ICLR 2025 submission): fewer iterations "
          "on a deep tanh net", "≈ 3× fewer iterations (median training loss)", judge_avg_grad_deep,
          runs=("epochs5",)),
    Claim("avg_grad_deep_mnist5k", "avg_grad", "Averaged gradient + RMSProp: fewer iterations on the 30-layer tanh "
          "net — MNIST digits (5k subset)", "≈ 3× fewer iterations (median training loss)", judge_avg_grad_deep,
          runs=("mnist5k",), scales=("full",)),
    Claim("avg_grad_shallow", "avg_grad", "same, shallow control", "no difference", judge_avg_grad_shallow,
          runs=("steps600",)),
    Claim("roaf_jacobian", "roaf_depth", "Ceni 2022: ROAF keeps the input-output Jacobian well-conditioned "
          "with depth", "singular values near 1 at any depth", judge_roaf_jacobian, runs=("engine_d10k",)),
    Claim("roaf_init", "roaf_init", "Ceni 2022: at init, ROAF keeps every singular value of the input-output "
          "Jacobian O(1) at 50,000 layers", "singular values near 1 at any depth", judge_roaf_init),
    Claim("roaf_deep_train", "roaf_depth", "Ceni 2022: a very deep ROAF MLP trains by backprop",
          "trains at 50,000 layers", judge_roaf_deep_train, runs=("d50k_alpha09999_adam",)),
    Claim("roaf_psmnist", "roaf_psmnist", "Ceni 2022: ROAF RNN on permuted sequential MNIST after 1 epoch",
          "> 94 % (MNIST)", judge_roaf_psmnist),
    Claim("roaf_memory", "roaf_memory", "Ceni 2022: ROAF RNN learns dependencies 10,000 steps back "
          "(adding problem)", "solved at T = 10,000", judge_roaf_memory),
    Claim("lsc_rnn_radii", "lsc_rnn", "Herranz-Celotti & Rouat: LSC drives every RNN transition radius "
          "to its target", "radii at ρ", judge_lsc_rnn_radii),
    Claim("lsc_rnn_accuracy", "lsc_rnn", "Herranz-Celotti & Rouat: LSC pre-training improves deep RNN "
          "accuracy (ρ = 0.5 best)", "ρ = 0.5 better than ρ = 1 and than none", judge_lsc_rnn_accuracy),
    Claim("lsc_rnn_deep", "lsc_rnn", "Herranz-Celotti & Rouat: ρ = 0.5 is the best LSC target for deep RNN "
          "stacks (depth 5)", "ρ = 0.5 better than ρ = 1 and than none when deep", judge_lsc_rnn_deep,
          scales=("full",)),
    Claim("lsc_ffn", "lsc_ffn", "Herranz-Celotti & Rouat: feed-forward LSC pre-training to ρ = 1 matches "
          "or beats He/Glorot", "LSC ≥ He, Glorot for sin/relu/cos", judge_lsc_ffn),
    # Decisive ledger rows (full only).
    Claim("glorot_shapeset", "glorot_shapeset", "Glorot & Bengio 2010 Table 1 on Shapeset-3x2, 200 k updates: "
          "normalized init lowers the test error", "Softsign 16.27 / N 16.06, Tanh 27.15 / N 15.60, Sigmoid 82.61",
          judge_glorot_shapeset),
    Claim("roaf_psmnist_mnist5k", "roaf_psmnist_search", "Ceni 2022: ROAF RNN on permuted sequential MNIST "
          "after 1 epoch — the setting searched on validation (MNIST 5k subset)", "> 94 % (MNIST)",
          judge_roaf_psmnist_mnist5k, scales=("full",)),
    Claim("roaf_psmnist_mnist5k_ep10", "roaf_psmnist_search", "Ceni 2022: ROAF RNN on permuted sequential MNIST "
          "after 10 epochs (MNIST 5k subset)", "> 98 % (MNIST)", judge_roaf_psmnist_mnist5k_ep10, scales=("full",)),
    *(Claim(f"roaf_memory_{t}", "roaf_memory_search", f"Ceni 2022: ROAF RNN learns dependencies far back, β free "
            f"(the {t} task)", "solved at T = 10,000", memory_search_judge(t), scales=("full",))
      for t in ("first", "adding")),
    Claim("roaf_copy", "roaf_copy", "Ceni 2022: ROAF RNN learns dependencies far back — the copy task at "
          "growing lag T", "copy task solved at long lags", judge_roaf_copy),
    *(Claim(f"lsc_ffn_grid_{act}", "lsc_ffn_grid", f"Herranz-Celotti & Rouat: feed-forward LSC (ρ = 1) matches "
            f"or beats He/Glorot — the issue's full grid, {act}", "LSC ≥ He, Glorot", lsc_ffn_grid_judge(act),
            runs=(f"grid1000_{act}",)) for act in ("relu", "sin", "cos")),
]

# -------------------------------------------------------------------- run ---
flags.DEFINE_enum("scale", "quick", list(SCALES), "Budget of every study (see the module doc).")
flags.DEFINE_string("out", None, "Output folder (default: temporary for tiny/quick, results/all_<scale> otherwise).")
flags.DEFINE_list("only", [], "Studies (or claims: their study) to run; default all (--list names them).")
flags.DEFINE_bool("list", False, "Print the claims by study and exit.")
flags.DEFINE_integer("jobs", 1, "Studies (runs of a study) run at once (gpu_suite.sh: 4).")
flags.DEFINE_float("time_budget_s", 0, "Kill studies still running after this many seconds and start no new "
                   "ones (their claims: not run); 0 = no limit.")
flags.DEFINE_string("data_dir", "", "Passed to every study as --data_dir (Fashion-MNIST's IDX folder).")
flags.DEFINE_string("workdir_root", None, "Keep the runs' workdirs here (default: a temporary folder, removed).")
FLAGS = flags.FLAGS


def study_runs(name: str, scale: str) -> dict[str, list[str]]:
  """{run: flags} of study `name` at `scale`: {"": flags} for a single run, {} where it does not run."""
  a = STUDIES[name].args.get(scale)
  return {} if a is None else {r: list(f) for r, f in a.items()} if isinstance(a, dict) else {"": list(a)}


def job_name(study: str, run: str) -> str:
  """A run's name in the status and its folder under DIR: the study, or study/run for one of several runs."""
  return f"{study}/{run}" if run else study


def jobs_of(names: list[str], scale: str) -> list[tuple[str, str]]:
  """(study, run) of every run of the studies `names` at `scale`, in order."""
  return [(n, r) for n in names for r in study_runs(n, scale)]


def claim_jobs(c: "Claim", scale: str) -> list[str]:
  """Job names whose JSONs claim `c` reads at `scale`: the study's single run, else the claim's `runs` (all
  when empty)."""
  rs = study_runs(c.study, scale)
  if "" in rs:
    return [c.study]
  bad = [r for r in c.runs if r not in rs]
  if bad:
    raise ValueError(f"claim {c.name}: run {bad[0]!r} is not a {scale} run of {c.study} ({', '.join(rs)})")
  return [job_name(c.study, r) for r in (c.runs or rs)]


def command(name: str, scale: str, out: str, workdir_root: str, data_dir: str = "", run: str = "") -> list[str]:
  """The subprocess command of study `name`'s run `run` ("": its single run) at `scale`."""
  s, rs = STUDIES[name], study_runs(name, scale)
  if run not in rs:
    raise ValueError(f"{name}: no run {run!r} at --scale={scale} (runs: {', '.join(map(repr, rs)) or 'none'})")
  cmd = [sys.executable, os.path.join(ROOT, s.script), *(["--" + scale] if scale in ("tiny", "quick") else []),
         *rs[run], f"--out={out}", f"--workdir_root={workdir_root}"]
  if scale == "gpu":
    cmd.append("--tag=gpu")
  if data_dir:
    cmd.append(f"--data_dir={data_dir}")
  return cmd


def selected(only: list[str], scale: str | None = None) -> list[str]:
  """Study names from --only (study or claim names), in STUDIES order; all when empty. With `scale`, only the
  studies that run at it; naming one that does not is an error."""
  by_claim = {c.name: c.study for c in CLAIMS}
  bad = [n for n in only if n not in STUDIES and n not in by_claim]
  if bad:
    raise app.UsageError(f"--only: unknown {', '.join(bad)}; studies: {', '.join(STUDIES)}; claims: "
                         f"{', '.join(by_claim)}")
  want = {by_claim.get(n, n) for n in only}
  names = [n for n in STUDIES if not only or n in want]
  if scale is None:
    return names
  absent = [n for n in names if not study_runs(n, scale)]
  if only and absent:
    raise app.UsageError(f"--only: {', '.join(absent)} does not run at --scale={scale} (scales: "
                         f"{', '.join(STUDIES[absent[0]].args)})")
  return [n for n in names if n not in absent]


def list_claims() -> str:
  """The claims by study; a study's runs where it has several at a scale; scales other than all four marked."""
  lines = []
  for name, s in STUDIES.items():
    only = "" if set(s.args) == set(SCALES) else f" — {', '.join(s.args)} only"
    lines.append(f"{name}  ({s.script}){only}")
    named = [sc for sc in SCALES if study_runs(name, sc) and "" not in study_runs(name, sc)]
    lines += [f"    {sc} runs: {', '.join(study_runs(name, sc))}" for sc in named]
    lines += [f"  {c.name:18s} {c.claim}" + ("" if c.scales == SCALES else f" [{', '.join(c.scales)} only]")
              + (f" ({'/'.join(named)}: reads {', '.join(c.runs)})" if c.runs else "")
              for c in CLAIMS if c.study == name]
  return "\n".join(lines)


def last_line(path: str) -> str:
  """The last non-empty line of a log (the error's message)."""
  try:
    with open(path, errors="replace") as f:
      lines = [l.strip() for l in f if l.strip()]
  except OSError:
    return ""
  return lines[-1][:300] if lines else ""


def find_outputs(out: str, since: float) -> tuple[str | None, str | None, list[str]]:
  """(JSON, table, figures) the study wrote into `out` after `since`: the newest JSON, its markdown, PNGs."""
  jsons = [p for p in glob.glob(os.path.join(out, "*.json")) if os.path.getmtime(p) >= since - 1]
  if not jsons:
    return None, None, []
  js = max(jsons, key=os.path.getmtime)
  md = os.path.join(out, "table.md") if os.path.basename(js) == "results.json" else js[:-5] + ".md"
  figs = sorted(glob.glob(os.path.join(out, "*.png")))
  if os.path.isdir(os.path.join(out, "figures")):
    figs.append(os.path.join(out, "figures"))
  return js, (md if os.path.exists(md) else None), figs


def _start(study: str, run: str, scale: str, out: str, wroot: str, data_dir: str):
  """Starts run `run` of `study` in its own process group, output to OUT/<job>/log.txt (job: `job_name`);
  returns (proc, t0, log, cmd)."""
  job = job_name(study, run)
  sdir = os.path.join(out, job)
  os.makedirs(sdir, exist_ok=True)
  cmd = command(study, scale, sdir, os.path.join(wroot, job), data_dir, run)
  log = open(os.path.join(sdir, "log.txt"), "w")
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  return proc, time.time(), log, cmd


def _finish(name: str, rc: int, t0: float, cmd: list[str], out: str, killed: bool, budget_s: float) -> dict:
  """The status of a study that ended with exit status `rc`."""
  st = {"rc": rc, "seconds": round(time.time() - t0, 1), "log": os.path.join(name, "log.txt"),
        "command": " ".join(["python", os.path.relpath(cmd[1], ROOT),
                             *(a for a in cmd[2:] if not a.startswith("--workdir_root="))])}
  if killed:
    return {**st, "status": "timed out", "error": f"stopped at the time budget ({budget_s:.0f} s)"}
  if rc != 0:
    return {**st, "status": "failed", "error": last_line(os.path.join(out, name, "log.txt")) or f"exit status {rc}"}
  js, md, figs = find_outputs(os.path.join(out, name), t0)
  return {**st, "status": "ok" if js else "failed", "json": js, "table": md, "figures": figs,
          "error": None if js else "no JSON written"}


def run_studies(names: list[str], scale: str, out: str, wroot: str, jobs: int, budget_s: float,
                data_dir: str) -> dict:
  """Runs every run of the studies, `jobs` at a time (longest study first at the gpu scale); returns
  {job: status} (job: `job_name`).

  With `budget_s` > 0, runs still going after `budget_s` seconds are stopped (SIGTERM, then SIGKILL
  to their process group) and those not started are skipped.
  """
  t_start = last_beat = time.time()
  todo = jobs_of(names, scale)
  todo = sorted(todo, key=lambda j: -STUDIES[j[0]].gpu_s) if scale == "gpu" else todo
  runs = {job_name(*j): j for j in todo}
  pending, running, status, total = list(runs), {}, {}, len(todo)
  try:
    while pending or running:
      over = 0 < budget_s < time.time() - t_start
      while pending and len(running) < jobs and not over:
        name = pending.pop(0)
        running[name] = _start(*runs[name], scale, out, wroot, data_dir)
        print(f"[reproduce_all] [{total - len(pending)}/{total}] {name}: {' '.join(running[name][3][1:])}",
              flush=True)
      for name in pending if over else []:
        status[name] = {"status": "skipped", "error": f"time budget ({budget_s:.0f} s) spent before it started"}
        print(f"[reproduce_all] {name}: skipped (time budget spent)", flush=True)
      pending = [] if over else pending
      time.sleep(0.5)
      for name, (proc, t0, log, cmd) in list(running.items()):
        killed = proc.poll() is None and over
        if killed:
          _kill(proc, signal.SIGTERM)
          try:
            proc.wait(timeout=20)
          except subprocess.TimeoutExpired:
            _kill(proc, signal.SIGKILL)
            proc.wait()
        if proc.poll() is None:
          continue
        log.close()
        del running[name]
        st = status[name] = _finish(name, proc.wait(), t0, cmd, out, killed, budget_s)
        print(f"[reproduce_all] {name}: {st['status']} in {st['seconds']:.0f} s"
              + (f" — {st['error']}" if st["status"] != "ok" else ""), flush=True)
      if running and time.time() - last_beat >= 60:
        last_beat = time.time()
        print("[reproduce_all] running: " + ", ".join(f"{n} ({time.time() - r[1]:.0f} s)"
                                                       for n, r in running.items())
              + f"; {time.time() - t_start:.0f} s in all", flush=True)
  finally:  # interrupted (Ctrl-C, SIGTERM): stop the studies still running
    for proc, *_ in running.values():
      if proc.poll() is None:
        _kill(proc, signal.SIGKILL)
  return status


def _kill(proc, sig) -> None:
  """Sends `sig` to the process group of a study we started (the script and any workers it spawned)."""
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass


def judge_all(names: list[str], status: dict, out: str, scale: str) -> list[dict]:
  """One row per claim of the studies `names` judged at `scale` (see the module doc), from the JSON of the runs
  it reads (merged when several; budget and dataset: each run's, repeats dropped)."""
  rows = []
  for c in CLAIMS:
    if c.study not in names or scale not in c.scales:
      continue
    s, jobs = STUDIES[c.study], claim_jobs(c, scale)
    row = {"claim": c.claim, "name": c.name, "study": c.study, "runs": jobs, "paper": c.paper, "ours": "",
           "budget": "", "dataset": "", "verdict": NOT_RUN, "links": []}
    failed = [j for j in jobs if status.get(j, {}).get("status") != "ok"]
    if failed:
      row["ours"] = "; ".join(f"{j} {status.get(j, {}).get('status', 'not started')}: "
                              f"{status.get(j, {}).get('error') or ''}".strip() for j in failed)
      rows.append(row)
      continue
    datas = []
    for j in jobs:
      with open(status[j]["json"]) as f:
        datas.append(json.load(f))
      row["links"] += [os.path.relpath(p, out) for p in [status[j]["table"], *status[j]["figures"]] if p]
    try:
      row["verdict"], row["ours"] = c.judge(merge_runs(datas))
    except Missing as e:
      row["ours"] = str(e)
    except Exception as e:  # a JSON the rule does not understand: say so, count as a failure
      row["ours"], row["error"] = f"rule failed: {type(e).__name__}: {e}", True
    for key, fn in (("budget", s.budget), ("dataset", s.dataset)):
      parts = []
      for d in datas:
        try:
          parts.append(fn(d))
        except Exception as e:
          parts.append(f"? ({type(e).__name__})")
      row[key] = "; ".join(dict.fromkeys(parts))
    rows.append(row)
  return rows


def _cell(x) -> str:
  return str(x).replace("|", "\\|").replace("\n", " ")


def write_summary(out: str, scale: str, rows: list[dict], status: dict, seconds: float) -> str:
  """Writes DIR/summary.md and DIR/summary.json; returns the markdown."""
  counts = {v: sum(r["verdict"] == v for r in rows) for v in (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN)}
  lines = [f"# Reproduction summary — scale {scale}", "",
           f"`{' '.join(['python scripts/reproduce_all.py', *sys.argv[1:]])}` · {seconds / 60:.1f} min · "
           + ", ".join(f"{n} {v}" for v, n in counts.items()), "",
           "Verdicts come from the rules in `scripts/reproduce_all.py` (module docstring).", "",
           "| claim | paper | ours | budget | dataset | verdict | table |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    links = " ".join(f"[{os.path.basename(p)}]({p})" for p in r["links"])
    lines.append("| " + " | ".join(_cell(x) for x in (r["claim"], r["paper"], r["ours"], r["budget"], r["dataset"],
                                                      f"**{r['verdict']}**", links)) + " |")
  lines += ["", "| study | status | s | command |", "|---|---|---|---|"]
  for name, st in status.items():
    lines.append(f"| {name} | {st['status']}{': ' + _cell(st['error']) if st.get('error') else ''} | "
                 f"{st.get('seconds', '')} | {'`' + st['command'] + '`' if 'command' in st else ''} |")
  md = "\n".join(lines) + "\n"
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(md)
  rel = lambda p: os.path.relpath(p, out) if isinstance(p, str) and os.path.isabs(p) else p
  studies = {n: {k: ([rel(x) for x in v] if isinstance(v, list) else rel(v)) for k, v in st.items()}
             for n, st in status.items()}
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"scale": scale, "seconds": seconds, "counts": counts, "claims": rows, "studies": studies}, f,
              indent=1)
  return md


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if FLAGS.list:
    print(list_claims())
    return 0
  scale = FLAGS.scale
  names = selected(FLAGS.only, scale)
  out = FLAGS.out or (tempfile.mkdtemp(prefix=f"reproduce_all_{scale}_") if scale in ("tiny", "quick")
                      else os.path.join(ROOT, "results", f"all_{scale}"))
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  wroot = FLAGS.workdir_root or tempfile.mkdtemp(prefix="reproduce_all_runs_")
  n_runs = len(jobs_of(names, scale))
  print(f"[reproduce_all] scale {scale}: {len(names)} studies ({', '.join(names)})"
        + (f", {n_runs} runs" if n_runs != len(names) else "") + f" → {out}; workdirs in {wroot}"
        + ("" if FLAGS.workdir_root else " (removed at exit)"), flush=True)
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so that the cleanup below runs
  t0 = time.time()
  try:
    status = run_studies(names, scale, out, wroot, max(1, FLAGS.jobs), FLAGS.time_budget_s, FLAGS.data_dir)
  finally:
    if not FLAGS.workdir_root:
      shutil.rmtree(wroot, ignore_errors=True)
  status = {job_name(*j): status[job_name(*j)] for j in jobs_of(names, scale)}
  rows = judge_all(names, status, out, scale)
  print(write_summary(out, scale, rows, status, time.time() - t0))
  print(f"[reproduce_all] wrote {os.path.join(out, 'summary.md')} and summary.json ({time.time() - t0:.0f} s)")
  failed = [n for n, st in status.items() if st["status"] != "ok"] + [r["name"] for r in rows if r.get("error")]
  if failed:
    print(f"[reproduce_all] failed: {', '.join(failed)}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
