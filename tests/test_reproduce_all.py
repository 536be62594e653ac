"""The reproduction ledger as data (`stable_training.studies.claims`, `.verdicts`) and scripts/reproduce_all.py: the
verdict rules on hand-made payloads and committed results, the tables against WORKSPACE.md's ledger (paper numbers,
datasets, decisive commands verbatim), output names, --list, one tiny smoke run, gpu_suite.sh on CPU."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

from stable_training.studies import claims as C
from stable_training.studies import verdicts as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("reproduce_all", os.path.join(ROOT, "scripts", "reproduce_all.py"))
ra = sys.modules["reproduce_all"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ra)
R, P, N = V.REPRODUCED, V.PARTLY, V.NOT_REPRODUCED
# The two cheapest studies at the tiny scale (≈ 10 and 20 s on 2 idle cores, mostly compiles), in run order.
SMOKE = ("roaf_memory", "lsc_spectrum")
CHEAPEST = "lsc_spectrum"
NAN = float("nan")


def judge(name: str, data: dict) -> V.Judged:
  """Claim `name` judged by its rule with the table's thresholds."""
  return C.CLAIMS_BY_NAME[name].judge(data)


def _verdict(name: str, data: dict) -> str:
  return judge(name, data).verdict


# ------------------------------------------------------------------ rules ---
@pytest.mark.parametrize("x, want", [(2.0, R), (1.99, P), (1.2, N), (1.21, P), (0.5, N), (None, N), (NAN, N),
                                     (math.inf, R)])
def test_grade_thresholds(x, want):
  assert V.grade(x, 2.0, 1.2) == want


def test_count_grade():
  assert V.count_grade([True, True]) == R
  assert V.count_grade([True, False]) == P
  assert V.count_grade([False]) == N
  with pytest.raises(V.Missing):
    V.count_grade([])


def test_rules_take_exactly_their_thresholds():
  data = _stability(**{"tanh-standard": 0.0, "roaf-tanh": 0.75})
  with pytest.raises(ValueError, match=r"rule gap: thresholds \['partly'\]; valid: exactly \['partly', 'reproduced'\]"):
    V.gap(data, {"partly": 0.02}, arm="roaf-tanh", base="tanh-standard")
  with pytest.raises(ValueError, match="reproducd"):
    V.gap(data, {"reproducd": 0.2, "partly": 0.02}, arm="roaf-tanh", base="tanh-standard")
  with pytest.raises(ValueError, match="claim x: thresholds"):   # the table cannot hold a claim with a typo either
    dataclasses.replace(C.CLAIMS_BY_NAME["roaf_stability"], name="x", thresholds={"reproduced": 0.2})


def test_thresholds_come_from_the_table():
  """The same payload and rule give another verdict when the claim's thresholds change."""
  data = _stability(**{"tanh-standard": 0.0, "roaf-tanh": 0.15})
  claim = C.CLAIMS_BY_NAME["roaf_stability"]
  assert claim.judge(data).verdict == P
  assert dataclasses.replace(claim, thresholds={"reproduced": 0.1, "partly": 0.02}).judge(data).verdict == R
  assert dataclasses.replace(claim, thresholds={"reproduced": 0.3, "partly": 0.2}).judge(data).verdict == N


def _stability(**acc):
  return {"rows": {arm: {"test_accuracy_mean": a, "test_accuracy_std": 0.01} for arm, a in acc.items()}}


@pytest.mark.parametrize("gap, want", [(0.2, R), (0.75, R), (0.1, P), (0.02, N), (-0.3, N)])
def test_stability_gap_rules(gap, want):
  data = _stability(**{"tanh-standard": 0.0, "tanh-normalized": gap, "roaf-tanh": gap, "tanh-standard-lsc": gap})
  for name in ("glorot_depth", "roaf_stability", "lsc_stability"):
    assert _verdict(name, data) == want, name
  ours = judge("roaf_stability", data).ours
  assert ours == f"tanh-standard 0.0000 ± 0.0100 vs roaf-tanh {gap:.4f} ± 0.0100 test acc (gap {gap:+.3f})"


def test_stability_missing_arm_is_not_run():
  with pytest.raises(V.Missing, match="roaf-tanh"):
    judge("roaf_stability", _stability(**{"tanh-standard": 0.1}))


@pytest.mark.parametrize("soft_std, want", [(0.81, R), (0.779, R), (0.60, P), (0.10, N)])
def test_softsign_rule(soft_std, want):
  # tanh's relative gap is (0.85 - 0.1) / 0.85 = 0.88; softsign's: (0.82 - soft_std) / 0.82 (≤ 0.05: ≥ 0.779).
  data = _stability(**{"tanh-standard": 0.1, "tanh-normalized": 0.85, "softsign-standard": soft_std,
                       "softsign-normalized": 0.82})
  assert _verdict("softsign", data) == want


@pytest.mark.parametrize("tgelu, want", [(0.82, R), (0.80, P), (0.2001, P), (0.19, N)])
def test_tgelu_mlp_rule(tgelu, want):   # 0.95 × 0.85 = 0.8075; chance + 0.1 = 0.2
  assert _verdict("tgelu_mlp", _stability(**{"tgelu-he-clip": tgelu, "tanh-normalized": 0.85})) == want


def _glorot(errors, sv=(0.48, 0.74)):
  best = [{"dataset": ds, "activation": a, "init": i, "test_error": e} for (ds, a, i), e in errors.items()]
  jac = [{"activation": "tanh", "init": "standard", "mean_sv": sv[0]},
         {"activation": "tanh", "init": "normalized", "mean_sv": sv[1]}]
  return {"best": best, "jacobian_at_init": jac}


def test_glorot_table1_rule():
  both = {("fm", "tanh", "standard"): 18.8, ("fm", "tanh", "normalized"): 17.3,
          ("fm", "sigmoid", "standard"): 90.0, ("fm", "sigmoid", "normalized"): 83.1}
  verdict = judge("glorot_table1", _glorot(both))
  assert verdict == ("test error %: fm sigmoid 90.00 → N 83.10; fm tanh 18.80 → N 17.30", R)
  assert _verdict("glorot_table1", _glorot({**both, ("fm", "sigmoid", "normalized"): 90.0})) == P  # a tie fails
  assert _verdict("glorot_table1", _glorot({k: -v for k, v in both.items()})) == N
  with pytest.raises(V.Missing):   # no activation with both inits
    judge("glorot_table1", _glorot({("fm", "tanh", "standard"): 18.8}))


@pytest.mark.parametrize("sv, want", [((0.48, 0.74), R), ((0.40, 0.90), R), ((0.39, 0.74), P), ((0.30, 0.74), P),
                                      ((0.60, 0.55), N), ((0.5, 0.5), N)])
def test_glorot_jacobian_rule(sv, want):   # within 0.1 of the paper's 0.5 / 0.8 and normalized > standard
  assert _verdict("glorot_jacobian", _glorot({}, sv)) == want


@pytest.mark.parametrize("after, want", [(1.04, R), (0.96, R), (0.90, P), (0.50, N)])
def test_lsc_radius_rule(after, want):
  row = lambda m: {"max_abs_eig": m, "median_abs_eig": 0.4, "rms_sv": 0.6}
  data = {"settings": {"rho": 1.0}, "before": row(0.6), "after": row(after)}
  assert _verdict("lsc_radius", data) == want


@pytest.mark.parametrize("tgelu_std, gelu_std, want", [(0.01, 0.02, R), (0.01, 0.015, P), (0.01, 0.012, N),
                                                       (0.0, 0.01, R), (0.0, 0.0, N)])
def test_tgelu_variance_rule(tgelu_std, gelu_std, want):
  rows = {a: {"per_epoch": [{"mean": 0.5, "std": 0.5}, {"mean": 0.7, "std": s}]}
          for a, s in (("tgelu-clip", tgelu_std), ("gelu", gelu_std))}
  assert _verdict("tgelu_variance", {"rows": rows}) == want


def _dqn(none, target, mem=(69_640, 139_280)):
  return {"arms": {"tgelu_none": {"final_return_mean": none, "final_return_std": 1.0, "memory_bytes": mem[0]},
                   "tgelu_target": {"final_return_mean": target, "final_return_std": 1.0, "memory_bytes": mem[1]}}}


@pytest.mark.parametrize("none, want", [(228.6, R), (90.0, R), (89.0, P), (50.0, P), (49.0, N)])
def test_dqn_no_target_rule(none, want):
  assert _verdict("dqn_no_target", _dqn(none, 100.0)) == want


@pytest.mark.parametrize("mem, want", [((69_640, 139_280), R), ((110, 200), R), ((150, 200), P), ((200, 200), N)])
def test_dqn_memory_rule(mem, want):
  assert _verdict("dqn_memory", _dqn(1.0, 1.0, mem)) == want


def test_dqn_missing_arm():
  with pytest.raises(V.Missing, match="tgelu_target"):
    judge("dqn_no_target", {"arms": {"tgelu_none": {"final_return_mean": 1.0}}})


def _avg_grad(deep: dict, shallow: dict | None = None):
  an = lambda depth, sp: {"depth": depth, "methods": {"rmsprop": {"speedup_vs_rmsprop": 1.0},
                                                      **{m: {"speedup_vs_rmsprop": s} for m, s in sp.items()}}}
  return {"analysis": [an(30, deep)] + ([an(1, shallow)] if shallow is not None else [])}


@pytest.mark.parametrize("speedups, want", [({"secant": 2.0}, R), ({"secant": 0.9, "midpoint": 3.1}, R),
                                            ({"secant": 1.3}, P), ({"secant": 0.94}, N), ({"secant": None}, N)])
def test_avg_grad_deep_rule(speedups, want):
  assert _verdict("avg_grad_deep", _avg_grad(speedups)) == want
  assert _verdict("avg_grad_deep_mnist5k", _avg_grad(speedups)) == want   # the same rule and thresholds


@pytest.mark.parametrize("speedups, want", [({"secant": 1.0, "midpoint": 0.8}, R), ({"secant": 1.25}, R),
                                            ({"secant": 1.3}, N), ({"secant": None}, N)])
def test_avg_grad_shallow_rule(speedups, want):
  assert _verdict("avg_grad_shallow", _avg_grad({"secant": 1.0}, speedups)) == want
  with pytest.raises(V.Missing):   # --noshallow: no control in the JSON
    judge("avg_grad_shallow", _avg_grad({"secant": 1.0}))


def _sweep(model, depth, smax, smin):
  return {"model": model, "depth": depth, "log10_sigma_max": smax, "log10_sigma_min": smin,
          "log10_spread": smax - smin}


UNDER = -37.93   # float32 underflow, as reproduce_roaf_depth writes it


@pytest.mark.parametrize("roaf, want", [((-0.2, -0.9), R), ((-0.2, -1.0), R), ((-1.5, -12.0), P), ((UNDER, UNDER), N)])
def test_roaf_jacobian_rule(roaf, want):
  # At depth 10 every net is well-conditioned; only the deepest depth counts.
  rows = [_sweep(m, 10, 0.0, -0.1) for m in ("roaf", "tanh_mlp")]
  rows += [_sweep("roaf", 10000, *roaf), _sweep("tanh_mlp", 10000, UNDER, UNDER)]
  assert _verdict("roaf_jacobian", {"depth_sweep": rows}) == want
  rows[-1] = _sweep("tanh_mlp", 10000, -1.0, -8.0)          # a tanh spread of 7 decades beats ROAF's 10.5
  assert _verdict("roaf_jacobian", {"depth_sweep": rows}) == (R if want == R else N)


@pytest.mark.parametrize("roaf, tanh, want", [(0.85, 0.1, R), (0.6, 0.1, R), (0.2548, 0.1, P), (0.12, 0.1, N),
                                              (NAN, 0.1, N)])
def test_roaf_deep_train_rule(roaf, tanh, want):
  t = [{"model": "roaf", "depth": 10000, "steps": 100, "test_accuracy": roaf},
       {"model": "tanh_mlp", "depth": 10000, "steps": 100, "test_accuracy": tanh}]
  assert _verdict("roaf_deep_train", {"training": t}) == want


def test_roaf_deep_train_accepts_the_glorot_init_arm():
  t = [{"model": "roaf_glorot", "depth": 50000, "steps": 300, "test_accuracy": 0.7}]
  assert judge("roaf_deep_train", {"training": t}) == ("depth 50000, 300 steps: test acc ROAF 0.7000 vs plain tanh "
                                                       "0.1000", R)   # no tanh run: chance


def _init_row(depth, spread_lo, spread_hi, mean, alpha=0.9999):
  return {"depth": depth, "alpha": alpha, "roaf_init": "kernel_init", "filter_mode": "fast", "spread_lo": spread_lo,
          "spread_hi": spread_hi, "abs_mean_max": abs(mean), "mean_log10_sigma": mean,
          "layers_log10_alpha": mean}


@pytest.mark.parametrize("deep, want", [
    ((0.03, 0.03, -0.5), R),     # all within a decade of 1
    ((0.03, 1.0, -1.0), R),      # on both bounds
    ((0.03, 0.03, -2.17), P),    # an isometry scaled by α^(D−1): partly
    ((0.8, 1.3, -0.2), N),       # the spread's bounds straddle 1: not shown
    ((441.0, 448.0, -222.0), N)])
def test_roaf_init_rule(deep, want):
  # Only the deepest depth counts: the shallow row is O(1) in every case.
  rows = [_init_row(1000, 0.01, 0.01, -0.04), _init_row(50000, *deep)]
  assert _verdict("roaf_init", {"rows": rows}) == want
  with pytest.raises(V.Missing):
    judge("roaf_init", {"rows": []})


@pytest.mark.parametrize("roaf, want", [(0.95, R), (0.94, R), (0.7133, P), (0.7097, P), (0.70, N)])
def test_roaf_psmnist_rule(roaf, want):   # best other cell 0.7297: partly from 0.7097
  rows = [{"cell": c, "test_acc_epoch1": a} for c, a in (("roaf", roaf), ("elman", 0.7021), ("gru", 0.7297))]
  assert _verdict("roaf_psmnist", {"rows": rows}) == want


def _memory(solved: dict):
  """{(cell, lag): solved?} → rows with one seed."""
  return {"rows": [{"task": "adding", "cell": c, "lag": t, "seeds": 1, "solved_seeds": int(s)}
                   for (c, t), s in solved.items()]}


def test_roaf_memory_rule():
  base = {("elman", 100): True, ("elman", 200): False, ("gru", 1000): True}
  assert V.largest_solved(_memory(base)["rows"], "elman") == 100
  assert _verdict("roaf_memory", _memory({**base, ("roaf", 100): True, ("roaf", 200): True})) == P
  assert _verdict("roaf_memory", _memory({**base, ("roaf", 100): False})) == N
  assert _verdict("roaf_memory", _memory({("roaf", 100): True})) == P    # no Elman to compare with
  assert _verdict("roaf_memory", _memory({("roaf", 10_000): True, ("elman", 100): True})) == R
  rows = _memory({("roaf", 100): True})["rows"]
  rows[0]["seeds"] = 2                       # one of two seeds solved: not solved
  assert _verdict("roaf_memory", {"rows": rows}) == N
  with pytest.raises(V.Missing):
    judge("roaf_memory", _memory({("gru", 100): True}))


def _rnn(cell, arm, acc, depth_after=NAN, time_after=NAN):
  return {"cell": cell, "depth": 2, "arm": arm, "test_accuracy": acc, "depth_before": 0.2,
          "depth_after": depth_after, "time_before": 0.9, "time_after": time_after}


def test_lsc_rnn_rules():
  rows = [_rnn("lstm", "none", 0.776), _rnn("lstm", "1", 0.763, 0.96, 0.98), _rnn("lstm", "0.5", 0.749, 0.49, 0.55),
          _rnn("alif", "none", 0.547), _rnn("alif", "1", 0.375, 0.88), _rnn("alif", "0.5", 0.394, 0.45, 0.99)]
  assert _verdict("lsc_rnn_radii", {"rows": rows}) == P          # ALIF's time radius stays ≈ 1 at ρ = 0.5
  assert _verdict("lsc_rnn_radii", {"rows": rows[:3]}) == R      # NaN time radius (ALIF ρ = 1) is skipped
  assert _verdict("lsc_rnn_radii", {"rows": [_rnn("x", "1", 0.5, NAN, NAN)]}) == N   # no radius at all
  assert _verdict("lsc_rnn_radii", {"rows": [_rnn("x", "0.5", 0.5, 0.64)]}) == R     # within 0.15 of ρ
  assert _verdict("lsc_rnn_radii", {"rows": [_rnn("x", "0.5", 0.5, 0.66)]}) == N
  assert _verdict("lsc_rnn_accuracy", {"rows": rows}) == N
  rows[2]["test_accuracy"] = 0.776   # ties count: ρ = 0.5 ≥ max(none, ρ = 1)
  assert _verdict("lsc_rnn_accuracy", {"rows": rows}) == P
  with pytest.raises(V.Missing):    # the tiny preset's arm "1" alone
    judge("lsc_rnn_accuracy", {"rows": [_rnn("lstm", "1", 0.5, 1.0)]})


def test_lsc_ffn_rule():
  best = lambda acc: {"best": [{"act": act, "arm": arm, "test_accuracy": a}
                               for act, accs in acc.items() for arm, a in zip(("glorot", "he", "lsc"), accs)]}
  assert _verdict("lsc_ffn", best({"sin": (0.85, 0.79, 0.85), "relu": (0.78, 0.83, 0.84)})) == R
  assert _verdict("lsc_ffn", best({"sin": (0.85, 0.79, 0.82), "cos": (0.47, 0.82, 0.83)})) == P
  assert _verdict("lsc_ffn", best({"sin": (0.85, 0.79, 0.82)})) == N
  with pytest.raises(V.Missing):    # the tiny preset's glorot,lsc without he
    judge("lsc_ffn", {"best": [{"act": "sin", "arm": "glorot", "test_accuracy": 0.5},
                               {"act": "sin", "arm": "lsc", "test_accuracy": 0.6}]})


def test_merge_runs():
  a = {"rows": [1], "best": [{"x": 1}], "settings": {"s": 1}, "preset": "full"}
  b = {"rows": [2, 3], "best": "not a list", "settings": {"s": 2}}
  m = V.merge_runs([a, b])
  assert m["rows"] == [1, 2, 3] and m["best"] == [{"x": 1}] and m["settings"] == {"s": 1} and m["preset"] == "full"
  assert a["rows"] == [1]   # inputs untouched
  assert V.merge_runs([a]) == a
  with pytest.raises(ValueError):
    V.merge_runs([])


def test_glorot_shapeset_rule():
  both = {("shapeset", "tanh", "standard"): 64.4, ("shapeset", "tanh", "normalized"): 62.2,
          ("shapeset", "softsign", "standard"): 60.3, ("shapeset", "softsign", "normalized"): 60.0,
          ("fashion_mnist", "tanh", "standard"): 10.0, ("fashion_mnist", "tanh", "normalized"): 20.0}   # ignored
  assert _verdict("glorot_shapeset", _glorot(both)) == R
  tie = {**both, ("shapeset", "sigmoid", "standard"): 88.9, ("shapeset", "sigmoid", "normalized"): 88.9}
  ours, verdict = judge("glorot_shapeset", _glorot(tie))
  assert verdict == P and "sigmoid 88.90 → N 88.90" in ours and "fashion_mnist" not in ours
  assert _verdict("glorot_shapeset", _glorot({k: -v for k, v in both.items()})) == N
  with pytest.raises(V.Missing, match="no Shapeset run"):
    judge("glorot_shapeset", _glorot({("fashion_mnist", "tanh", "standard"): 18.8,
                                      ("fashion_mnist", "tanh", "normalized"): 17.3}))


def _copy(solved: dict, ratio=0.5):
  """{(cell, lag): solved?} → copy-task rows, one seed."""
  return {"rows": [{"task": "copy", "cell": c, "lag": t, "steps": 3000, "seeds": 1, "solved_seeds": int(s),
                    "ratio": 0.05 if s else ratio} for (c, t), s in solved.items()]}


def test_roaf_copy_rule():
  base = {("elman", 10): True, ("elman", 20): False, ("gru", 10): False}
  assert _verdict("roaf_copy", _copy({**base, ("roaf", 10): True, ("roaf", 20): True})) == R   # its longest
  ours, verdict = judge("roaf_copy", _copy({**base, ("roaf", 10): True, ("roaf", 50): False}))
  assert verdict == P and "(of 10, 20, 50): elman 10, gru none, roaf 10;" in ours
  assert _verdict("roaf_copy", _copy({("roaf", 10): True, ("roaf", 50): False, ("lstm", 20): True})) == N
  ours, verdict = judge("roaf_copy", _copy({**base, ("roaf", 10): False}, ratio=0.84))
  assert verdict == N and "ROAF's lowest loss / baseline 0.840 (T = 10, 3000 steps)" in ours
  rows = _copy({("roaf", 10): True})["rows"] + [{**_copy({("roaf", 1000): True})["rows"][0], "task": "adding"}]
  assert _verdict("roaf_copy", {"rows": rows}) == R   # adding rows are not the copy task
  with pytest.raises(V.Missing):
    judge("roaf_copy", _copy({("gru", 10): True}))


def _ffn_best(act, accs, std=0.01, lr=1e-4):
  return {"best": [{"act": act, "arm": arm, "lr": lr, "test_accuracy": a, "test_accuracy_std": std}
                   for arm, a in zip(("glorot", "he", "lsc"), accs)]}


@pytest.mark.parametrize("accs, want", [((0.75, 0.83, 0.83), R), ((0.75, 0.83, 0.84), R), ((0.75, 0.83, 0.77), P),
                                        ((0.85, 0.77, 0.77), P), ((0.75, 0.83, 0.74), N)])
def test_lsc_ffn_grid_rule(accs, want):
  assert _verdict("lsc_ffn_grid_relu", _ffn_best("relu", accs)) == want
  with pytest.raises(V.Missing, match="relu: arm"):   # another activation's run
    judge("lsc_ffn_grid_relu", _ffn_best("sin", accs))


def test_lsc_ffn_grid_claims_read_their_activation():
  grid = [c for c in C.CLAIMS if c.study == "lsc_ffn_grid"]
  assert [(c.name, c.runs) for c in grid] == [(f"lsc_ffn_grid_{a}", (f"grid1000_{a}",)) for a in ("relu", "sin", "cos")]
  data = V.merge_runs([_ffn_best("sin", (0.85, 0.77, 0.81)), _ffn_best("relu", (0.75, 0.83, 0.74))])
  assert [c.judge(data).verdict for c in grid[:2]] == [N, P]
  assert grid[1].judge(data).ours == ("sin, best over lr: glorot 0.8500 ± 0.0100 (lr 0.0001) / he 0.7700 ± 0.0100 "
                                      "(lr 0.0001) / lsc 0.8100 ± 0.0100 (lr 0.0001)")
  with pytest.raises(V.Missing, match="cos"):
    grid[2].judge(data)


def _rnn_grid(accs: dict):
  """{(cell, depth): (none, ρ=1, ρ=0.5)} → rows."""
  return {"rows": [{"cell": c, "depth": d, "arm": arm, "test_accuracy": a, "test_accuracy_std": 0.001}
                   for (c, d), trio in accs.items() for arm, a in zip(("none", "1", "0.5"), trio)]}


def test_lsc_rnn_deep_rule():
  grid = {("gru", 2): (0.876, 0.878, 0.877), ("gru", 5): (0.878, 0.879, 0.882),
          ("relu_rnn", 2): (0.841, 0.833, 0.827), ("relu_rnn", 5): (0.847, 0.840, 0.847)}   # a tie counts
  ours, verdict = judge("lsc_rnn_deep", _rnn_grid(grid))
  assert verdict == R and "gru d5: none 0.8780 ± 0.0010 / ρ=1 0.8790 ± 0.0010 / ρ=0.5 0.8820 ± 0.0010" in ours
  assert "d2" not in ours   # only the deepest depth counts
  assert _verdict("lsc_rnn_deep", _rnn_grid({**grid, ("lstm", 5): (0.9, 0.8, 0.85)})) == P
  assert _verdict("lsc_rnn_deep", _rnn_grid({("lstm", 5): (0.9, 0.8, 0.85)})) == N
  with pytest.raises(V.Missing):   # the deepest depth lacks ρ = 0.5
    judge("lsc_rnn_deep", {"rows": [r for r in _rnn_grid(grid)["rows"] if (r["depth"], r["arm"]) != (5, "0.5")]})


def _psmnist_search(roaf, others, knobs=None):
  return {"best": {"knobs": knobs or {"alpha": 1.0, "beta": 0.1}},
          "final": [{"cell": "roaf", "test_acc_per_epoch": roaf}]
          + [{"cell": c, "test_acc_per_epoch": a} for c, a in others.items()]}


def test_roaf_psmnist_mnist5k_rules():
  others = {"elman": [0.5], "gru": [0.9]}
  assert _verdict("roaf_psmnist_mnist5k", _psmnist_search([0.95], others)) == R
  ours, verdict = judge("roaf_psmnist_mnist5k", _psmnist_search([0.885, 0.9], others))
  assert verdict == P and ours == "epoch-1 test acc ROAF (alpha 1.0, beta 0.1) 0.8850; elman 0.5000, gru 0.9000"
  assert _verdict("roaf_psmnist_mnist5k", _psmnist_search([0.87], others)) == N
  assert _verdict("roaf_psmnist_mnist5k_ep10", _psmnist_search([0.9] * 9 + [0.981], others)) == R
  ours, verdict = judge("roaf_psmnist_mnist5k_ep10", _psmnist_search([0.9, 0.95, 0.945], others))
  assert verdict == P and ours == "ROAF test acc after 3 paper epochs 0.9450 (best epoch 0.9500)"
  assert _verdict("roaf_psmnist_mnist5k_ep10", _psmnist_search([0.95, 0.93], others)) == N
  with pytest.raises(V.Missing):
    judge("roaf_psmnist_mnist5k", {"final": [{"cell": "gru", "test_acc_per_epoch": [0.9]}]})


def test_memory_search_rule():
  run = lambda task, cell, lag, solved: {"task": task, "cell": cell, "lag": lag, "solved": solved}
  rows = [run("first", "roaf", 100, True), run("first", "roaf", 1000, False), run("first", "gru", 100, False),
          run("adding", "gru", 1000, True), run("adding", "roaf", 100, True),
          {**run("first", "lstm", 1000, False), "skipped": True}]
  ours, verdict = judge("roaf_memory_first", {"runs": rows})
  assert verdict == P and ours == "first, largest T solved (of 100, 1000): roaf 100, gru none"
  assert _verdict("roaf_memory_adding", {"runs": rows}) == N
  assert _verdict("roaf_memory_first", {"runs": [run("first", "roaf", 10_000, True)]}) == R
  with pytest.raises(V.Missing):
    judge("roaf_memory_adding", {"runs": [run("adding", "gru", 100, True)]})


# ------------------------------------------- the tables and their queries ---
def test_every_claim_has_a_rule_with_explicit_thresholds():
  assert len({c.name for c in C.CLAIMS}) == len(C.CLAIMS) == 34
  assert {c.study for c in C.CLAIMS} == set(C.STUDIES)   # every study has a claim, every claim a study
  for c in C.CLAIMS:
    assert c.thresholds and set(c.thresholds) == set(c.rule.thresholds), c.name
    doc = " ".join(c.rule.__doc__.split("\n\n")[0].split())
    for name in (*c.rule.thresholds, *c.params):
      assert "{" + name + "}" in doc, f"rule {c.rule.__name__}'s docstring does not state {name}"
    text = c.rule_text()
    assert "{" not in text and all(str(v) in text for v in c.thresholds.values()), (c.name, text)
    assert c.paper in C.PAPERS and c.claim and c.paper_number and c.metric and c.dataset and c.ledger, c.name
  assert C.CLAIMS_BY_NAME["tgelu_variance"].rule_text() == \
      "Across-seed std of the last-epoch test acc, gelu / tgelu-clip ≥ 2.0 reproduced, > 1.2 partly."


def test_study_table_is_consistent():
  for name, s in C.STUDIES.items():
    assert s.scales in (C.SCALES, ("full",)), name   # every scale, or the decisive rows' full only
    assert os.path.exists(os.path.join(ROOT, s.script)), s.script
    for scale in s.scales:
      for run, fl in s.run_flags(scale).items():
        tag = next((f.split("=", 1)[1] for f in fl if f.startswith("--tag=")), None)
        assert not run or tag in (None, run), f"{name}/{run}: --tag={tag} is not the run's name"
  for c in C.CLAIMS:
    assert not c.runs or any(set(c.runs) <= set(C.STUDIES[c.study].run_flags(sc)) for sc in C.SCALES), c.name
    for scale in c.scales:
      if C.STUDIES[c.study].run_flags(scale):
        assert C.claim_runs(c, scale), (c.name, scale)   # its runs exist there (else ValueError)
  with pytest.raises(ValueError, match="claim avg_grad_deep: run 'nope' is not a full run of avg_grad"):
    C.claim_runs(dataclasses.replace(C.CLAIMS_BY_NAME["avg_grad_deep"], runs=("nope",)), "full")


def test_flag_args_and_study_validation():
  assert C.flag_args({"lrs": "1e-5,1e-4", "num_steps": 2350, "alpha": 0.9999, "shallow": False, "merge": True,
                      "alphas_tied": ""}) == ["--lrs=1e-5,1e-4", "--num_steps=2350", "--alpha=0.9999",
                                              "--noshallow", "--merge", "--alphas_tied="]
  with pytest.raises(ValueError, match=r"flag --lrs: value \[0.1\] of type list"):
    C.flag_args({"lrs": [0.1]})
  mk = lambda **kw: C.Study("s", "scripts/x.py", "x", str, str, **kw)
  with pytest.raises(ValueError, match="scale 'huge'; valid: tiny, quick, full, gpu"):
    mk(settings={"huge": {}})
  with pytest.raises(ValueError, match="scale full in both settings and runs"):
    mk(settings={"full": {}}, runs={"full": {"a": {}}})
  with pytest.raises(ValueError, match="run_stems naming runs"):
    mk(runs={"full": {"a": {}}}, run_stems={"b": "y"})


@pytest.mark.parametrize("study, scale, run, want", [
    ("stability", "tiny", "", "table_tiny.json"), ("stability", "quick", "", "table_quick.json"),
    ("stability", "full", "", "results.json"), ("stability", "gpu", "", "table_gpu.json"),
    ("dqn", "tiny", "", "tiny.json"), ("dqn", "gpu", "", "full.json"), ("dqn", "full", "", "full.json"),
    ("avg_grad", "full", "steps600", "results.json"), ("avg_grad", "full", "epochs5", "table_epochs5.json"),
    ("avg_grad", "full", "mnist5k", "table_mnist5k.json"), ("glorot", "full", "", "table1.json"),
    ("roaf_copy", "full", "copy_short", "memory_copy_short.json"), ("lsc_spectrum", "tiny", "", "spectrum_tiny.json"),
    ("roaf_memory_search", "full", "memory_search", "memory_search.json")])
def test_output_names(study, scale, run, want):
  assert C.json_name(C.STUDIES[study].output_stem(scale, run)) == want
  with pytest.raises(ValueError, match="no run 'nope'"):
    C.STUDIES[study].output_stem(scale, "nope")


def test_find_outputs_by_name(tmp_path):
  """The run's JSON is <stem>.json: another study's or setting's JSON in the folder is not taken for it."""
  (tmp_path / "results.json").write_text("{}")          # the full setting's name, not the tiny run's
  (tmp_path / "table_tiny.md").write_text("table")
  assert ra.find_outputs(str(tmp_path), "stability", "tiny") == (None, str(tmp_path / "table_tiny.md"), [])
  (tmp_path / "table_tiny.json").write_text("{}")
  (tmp_path / "curves.png").write_text("")
  os.makedirs(tmp_path / "figures")
  assert ra.find_outputs(str(tmp_path), "stability", "tiny") == (
      str(tmp_path / "table_tiny.json"), str(tmp_path / "table_tiny.md"),
      [str(tmp_path / "curves.png"), str(tmp_path / "figures")])
  assert ra.find_outputs(str(tmp_path), "stability", "full")[0] == str(tmp_path / "results.json")


def test_selection_and_commands():
  assert ra.selected([]) == list(C.STUDIES)
  assert ra.selected(["lsc_radius", "dqn", "dqn_memory"]) == ["dqn", "lsc_spectrum"]   # claims select their study
  tiny = ra.command("dqn", "tiny", "/o", "/w")
  assert tiny[1:] == [os.path.join(ROOT, "scripts/reproduce_dqn.py"), "--tiny", "--arms=tgelu_none,tgelu_target",
                      "--out=/o", "--workdir_root=/w"]
  gpu = ra.command("dqn", "gpu", "/o", "/w", data_dir="/d")
  assert gpu[2:] == ["--setting=full", "--arms=tgelu_none,tgelu_target,gelu_none,gelu_target", "--out=/o",
                     "--workdir_root=/w", "--tag=gpu", "--data_dir=/d"]
  full = ra.command("avg_grad", "full", "/o", "/w", run="epochs5")   # one of a study's several runs
  assert full[2:] == ["--lrs=1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,1e-1", "--num_seeds=4", "--num_steps=2350",
                      "--log_every=50", "--noshallow", "--tag=epochs5", "--out=/o", "--workdir_root=/w"]
  with pytest.raises(ValueError, match="'nope'"):
    ra.command("roaf_copy", "full", "/o", "/w", run="nope")
  with pytest.raises(ValueError, match="no run '' at --scale=tiny"):   # full only
    ra.command("roaf_copy", "tiny", "/o", "/w")


def test_scales_select_studies_runs_and_claims():
  full_only = {n for n, s in C.STUDIES.items() if s.scales == ("full",)}
  assert full_only == {"glorot_shapeset", "glorot_mnist5k", "roaf_copy", "lsc_ffn_grid", "roaf_psmnist_search", "roaf_memory_search"}
  for scale in ("tiny", "quick", "gpu"):   # as before the decisive rows: one run per study
    assert ra.selected([], scale) == [n for n in C.STUDIES if n not in full_only]
    assert [r for _, r in ra.jobs_of(ra.selected([], scale), scale)] == [""] * len(ra.selected([], scale))
  assert ra.selected([], "full") == list(C.STUDIES)
  assert ra.selected(["lsc_ffn_grid_sin"], "full") == ["lsc_ffn_grid"]
  with pytest.raises(ra.app.UsageError, match="roaf_copy does not run at --scale=tiny"):
    ra.selected(["roaf_copy"], "tiny")
  deep = C.CLAIMS_BY_NAME["avg_grad_deep"]
  assert ra.claim_jobs(deep, "tiny") == ["avg_grad"] and ra.claim_jobs(deep, "full") == ["avg_grad/epochs5"]
  rnn = C.CLAIMS_BY_NAME["lsc_rnn_accuracy"]
  assert ra.claim_jobs(rnn, "full") == ["lsc_rnn/d25_gru_relu_2000", "lsc_rnn/d25_lstm_alif_2000"]
  assert C.STUDIES["roaf_copy"].run_flags("tiny") == {} and "" in C.STUDIES["dqn"].run_flags("full")


# ------------------------------------------------------- the ledger (WORKSPACE.md) ---
WORKSPACE = os.path.join(ROOT, "WORKSPACE.md")
# The decisive rows `--scale=full` runs (by run name; steps600: the untagged 600-step avg_grad row).
DECISIVE = {"shapeset200k_tanh", "shapeset200k_softsign", "shapeset200k_sigmoid", "copy", "copy_short",
            "grid1000_relu", "grid1000_sin", "grid1000_cos", "d25_gru_relu_2000", "d25_lstm_alif_2000", "epochs5",
            "steps600", "mnist5k", "d50k_alpha09999_adam", "engine_d10k", "memory_search", "T1000_alpha1"}
# Claims whose ledger row names its dataset through another row ("as the stability rows", "as the relu row", or
# "same" where the row above is another run); their dataset is not checked against the ledger.
DATASET_BY_REFERENCE = {"roaf_stability", "lsc_stability", "lsc_radius", "tgelu_mlp", "avg_grad_shallow",
                        "lsc_ffn_grid_sin"}


def _ledger_rows(text: str) -> list[dict]:
  """The rows of the "Reproduction ledger" table of WORKSPACE.md's `text`: {claim, command, paper, ours, dataset,
  line}."""
  table = text.split("## Reproduction ledger", 1)[1].split("\n## ", 1)[0]
  rows = []
  for line in table.splitlines():
    if line.startswith("| ") and not line.startswith("| claim (paper)"):
      cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
      rows.append({**dict(zip(("claim", "command", "paper", "ours", "dataset"), cells)), "line": line})
  return rows


def _ledger_commands(text: str) -> set[str]:
  """Every backticked command of the ledger's rows as ``scripts/X.py --flags…`` (``python`` and the output
  folders ``--out=`` / ``--workdir_root=`` dropped); a backticked ``--flags …`` runs the script named before it in
  the row."""
  cmds = set()
  for row in _ledger_rows(text):
    script = None
    for seg in re.findall(r"`([^`]+)`", row["line"]):
      toks = seg.split()
      toks = toks[1:] if toks[:1] == ["python"] else toks
      if toks and toks[0].startswith("scripts/") and toks[0].endswith(".py"):
        script, toks = toks[0], toks[1:]
      elif not (toks and toks[0].startswith("--") and script):
        continue   # a path or a name, not a command
      cmds.add(" ".join([script, *(t for t in toks if not t.startswith(("--out=", "--workdir_root=")))]))
  return cmds


def _rows_of(claim: C.Claim, rows: list[dict]) -> list[int]:
  """Indexes of the ledger rows `claim` names (each must name exactly one)."""
  out = []
  for key in claim.ledger:
    hits = [i for i, r in enumerate(rows) if key in r["claim"]]
    assert len(hits) == 1, f"{claim.name}: {key!r} names {len(hits)} ledger rows, not 1"
    out += hits
  return out


def test_ledger_parser():
  text = ("# W\n## Reproduction ledger\n\n| claim (paper) | command | paper | ours | dataset / budget |\n"
          "|---|---|---|---|---|\n"
          "| c | `scripts/run.sh` (`scripts/a.py`) | 1 % | x \\| y | D |\n"
          "| d | `python scripts/b.py --x=1 --tag=t --out=results/b` (`results/b/t.md`) and `--x=2 --tag=u` | — | z "
          "| E |\n"
          "\n## Benchmarks\n| e | `scripts/c.py --y=1` |\n")
  rows = _ledger_rows(text)
  assert [(r["claim"], r["paper"], r["ours"], r["dataset"]) for r in rows] == [("c", "1 %", "x \\| y", "D"),
                                                                              ("d", "—", "z", "E")]
  assert _ledger_commands(text) == {"scripts/a.py", "scripts/b.py --x=1 --tag=t", "scripts/b.py --x=2 --tag=u"}


def test_paper_numbers_and_datasets_are_the_ledgers():
  """Each claim's paper number is the "paper" cell of its ledger rows, and its dataset is in the row's dataset cell
  (or in the row above, where the row says "same" / "as the row above")."""
  rows, by_reference = _ledger_rows(open(WORKSPACE).read()), set()
  for c in C.CLAIMS:
    idx = _rows_of(c, rows)
    assert c.paper_number == "; ".join(dict.fromkeys(rows[i]["paper"] for i in idx)), c.name
    i = idx[0]
    text = rows[i]["dataset"]
    while (rows[i]["dataset"].startswith(("same", "as the row above")) or rows[i]["command"] == "same") and i > 0:
      i -= 1
      text += " " + rows[i]["dataset"]
    if c.dataset not in text:
      refers = re.search(r"\bsame\b|\bas the\b", rows[idx[0]]["dataset"] + " " + rows[idx[0]]["command"])
      assert c.name in DATASET_BY_REFERENCE and refers, \
          f"{c.name}: {c.dataset!r} is not the dataset of its ledger row ({text[:80]!r})"
      by_reference.add(c.name)
  assert by_reference == DATASET_BY_REFERENCE   # none listed that the ledger now names


def test_full_scale_decisive_commands_are_in_the_ledger_verbatim():
  """Every full-scale run a decisive claim reads is, flag for flag and in order, a command written in the ledger."""
  ledger = _ledger_commands(open(WORKSPACE).read())
  decisive_runs = set()
  for c in C.CLAIMS:
    if not c.decisive:
      continue
    for run, cmd in zip(C.claim_runs(c, "full"), C.full_commands(c)):
      assert cmd in ledger, f"{c.name}: `{cmd}` is not a command in WORKSPACE.md's ledger"
      decisive_runs.add(run)
  assert DECISIVE <= decisive_runs, f"no decisive claim reads {sorted(DECISIVE - decisive_runs)}"
  not_decisive = {c.name for c in C.CLAIMS if not c.decisive}
  assert not_decisive == {"glorot_table1", "glorot_jacobian", "dqn_no_target", "dqn_memory", "roaf_psmnist",
                          "roaf_memory", "lsc_ffn"}


RESULTS_DIR = {"stability": "stability", "glorot": "glorot", "glorot_shapeset": "glorot", "glorot_mnist5k": "glorot",
               "tgelu": "tgelu_classification", "dqn": "dqn", "avg_grad": "avg_grad", "roaf_depth": "roaf",
               "roaf_init": "roaf", "roaf_copy": "roaf", "roaf_psmnist_search": "roaf", "roaf_memory_search": "roaf",
               "lsc_rnn": "lsc", "lsc_ffn_grid": "lsc", "lsc_spectrum": "lsc"}


@pytest.mark.parametrize("name", [c.name for c in C.CLAIMS if c.decisive])
def test_decisive_claims_on_the_committed_runs(name):
  """A decisive claim judged on the committed JSONs of its full-scale runs (found by their output names)."""
  c = C.CLAIMS_BY_NAME[name]
  s = C.STUDIES[c.study]
  paths = [os.path.join(ROOT, "results", RESULTS_DIR[c.study], C.json_name(s.output_stem("full", r)))
           for r in C.claim_runs(c, "full")]
  assert all(os.path.exists(p) for p in paths), paths
  ours, verdict = c.judge(V.merge_runs([json.load(open(p)) for p in paths]))
  assert verdict in (R, P, N) and ours


def test_committed_verdicts_of_the_decisive_rows():
  """The verdicts the ledger states for its decisive rows follow from the committed JSONs."""
  committed = lambda *ps: V.merge_runs([json.load(open(os.path.join(ROOT, "results", p))) for p in ps])
  assert judge("lsc_rnn_deep", committed("lsc/rnn_d25_gru_relu_2000.json", "lsc/rnn_d25_lstm_alif_2000.json")
               ).verdict == P   # "reproduce_all.py's rule …: partly, 3 of 4"
  for act in ("relu", "sin", "cos"):   # "Partly reproduced" for each activation
    assert judge(f"lsc_ffn_grid_{act}", committed(f"lsc/ffn_grid1000_{act}.json")).verdict == P
  assert judge("roaf_psmnist_mnist5k", committed("roaf/psmnist_search.json")).verdict == P
  assert judge("roaf_psmnist_mnist5k_ep10", committed("roaf/psmnist_search.json")).verdict == N
  assert judge("roaf_memory_first", committed("roaf/memory_search.json", "roaf/memory_search_T1000_alpha1.json")
               ).verdict == P
  assert judge("roaf_memory_copy", committed("roaf/memory_search_copy.json")).verdict == P   # ROAF alone, T = 100
  assert judge("glorot_mnist5k", committed("glorot/table1_mnist5k.json")).verdict == P       # tanh, softsign; not sigmoid
  data = committed("roaf/memory_copy.json", "roaf/memory_copy_short.json")
  ours, verdict = judge("roaf_copy", data)
  low = min((r for r in data["rows"] if r["cell"] == "roaf"), key=lambda r: r["ratio"])
  assert verdict == N and f"{low['ratio']:.3f} (T = {low['lag']}, {low['steps']} steps)" in ours


# ------------------------------------------------------------------ judging ---
def test_judge_all_reads_each_claims_runs(tmp_path):
  """At full, a claim reads its runs (merged), a failed run makes only its readers "not run", budgets join."""
  src = {"avg_grad/epochs5": "avg_grad/table_epochs5.json", "avg_grad/steps600": "avg_grad/results.json",
         "lsc_ffn_grid/grid1000_relu": "lsc/ffn_grid1000_relu.json",
         "lsc_ffn_grid/grid1000_sin": "lsc/ffn_grid1000_sin.json",
         "roaf_copy/copy": "roaf/memory_copy.json", "roaf_copy/copy_short": "roaf/memory_copy_short.json",
         "avg_grad/mnist5k": "avg_grad/table_mnist5k.json"}
  status = {}
  for job, path in src.items():
    os.makedirs(tmp_path / job)
    js = str(tmp_path / job / os.path.basename(path))
    with open(js, "w") as f:
      json.dump(json.load(open(os.path.join(ROOT, "results", path))), f)
    status[job] = {"status": "ok", "json": js, "table": None, "figures": []}
  status["lsc_ffn_grid/grid1000_cos"] = {"status": "failed", "error": "boom"}
  rows = {r["name"]: r for r in ra.judge_all(["avg_grad", "lsc_ffn_grid", "roaf_copy"], status, str(tmp_path), "full")}
  assert list(rows) == ["avg_grad_deep", "avg_grad_deep_mnist5k", "avg_grad_shallow", "roaf_copy",
                        "lsc_ffn_grid_relu", "lsc_ffn_grid_sin", "lsc_ffn_grid_cos"]
  for name, row in rows.items():
    assert list(row)[:10] == ["claim", "name", "study", "runs", "paper", "ours", "budget", "dataset", "verdict",
                              "links"]   # summary.json's row format
    claim = C.CLAIMS_BY_NAME[name]
    assert (row["claim"], row["paper"]) == (claim.claim, claim.paper_number)
    if name == "lsc_ffn_grid_cos":
      assert row["verdict"] == V.NOT_RUN and row["ours"] == "lsc_ffn_grid/grid1000_cos failed: boom"
      continue
    data = V.merge_runs([json.load(open(status[j]["json"])) for j in row["runs"]])
    assert (row["ours"], row["verdict"]) == claim.judge(data)
  assert rows["avg_grad_deep"]["runs"] == ["avg_grad/epochs5"] and "2350 steps" in rows["avg_grad_deep"]["budget"]
  assert rows["avg_grad_shallow"]["runs"] == ["avg_grad/steps600"] and "600 steps" in rows["avg_grad_shallow"]["budget"]
  assert rows["avg_grad_deep_mnist5k"]["runs"] == ["avg_grad/mnist5k"]
  assert rows["roaf_copy"]["runs"] == ["roaf_copy/copy", "roaf_copy/copy_short"]
  assert rows["roaf_copy"]["budget"] == "Adam 3e-3, 3000 steps, 1 seed(s); Adam 3e-3, 10000 steps, 1 seed(s)"
  tiny = ra.judge_all(["lsc_rnn"], {"lsc_rnn": {"status": "failed", "error": "x"}}, str(tmp_path), "tiny")
  assert [r["name"] for r in tiny] == ["lsc_rnn_radii", "lsc_rnn_accuracy"]   # lsc_rnn_deep: full only


@V.rule("x")
def _joined(data: dict, t) -> V.Judged:
  """The runs' tags joined (threshold {x} unused)."""
  return V.Judged("+".join(data["rows"]), R)


def test_several_runs_of_a_study_run_and_are_judged(tmp_path, monkeypatch):
  """A study with several runs at a scale: one subprocess each into DIR/<study>/<run>/, a status per run, its JSON
  found by its output name, and a claim judged from its runs' merged JSON (a stand-in script: a fraction of a s)."""
  script = tmp_path / "fake_study.py"
  script.write_text("import argparse, json, os\n"
                    "p = argparse.ArgumentParser(); p.add_argument('--out'); p.add_argument('--tag', default='')\n"
                    "p.add_argument('--workdir_root'); p.add_argument('--fail', action='store_true')\n"
                    "p.add_argument('--name', default='fake')\n"
                    "a = p.parse_args()\n"
                    "if a.fail: raise SystemExit('failing on purpose')\n"
                    "json.dump({'rows': [a.tag]}, open(os.path.join(a.out, f'{a.name}_{a.tag}.json'), 'w'))\n"
                    "open(os.path.join(a.out, f'{a.name}_{a.tag}.md'), 'w').write('table')\n")
  runs = {"a": {"tag": "a"}, "b": {"tag": "b"}, "c": {"tag": "c", "fail": True}, "d": {"tag": "d", "name": "other"}}
  monkeypatch.setitem(C.STUDIES, "fake", C.Study("fake", str(script), "fake", lambda d: f"budget {d['rows'][0]}",
                                                 lambda d: "data", runs={"full": runs}))
  claim = lambda name, runs: C.Claim(name, "fake", "lsc", "claim", "paper", "metric", _joined, {"x": 1}, "data",
                                     ("row",), runs=runs)
  monkeypatch.setattr(C, "CLAIMS", (claim("both", ("a", "b")), claim("with_c", ()), claim("with_d", ("a", "d"))))
  out = tmp_path / "out"
  status = ra.run_studies(["fake"], "full", str(out), str(tmp_path / "w"), 2, 0, "")
  assert {j: st["status"] for j, st in status.items()} == {"fake/a": "ok", "fake/b": "ok", "fake/c": "failed",
                                                           "fake/d": "failed"}
  assert status["fake/c"]["error"] == "failing on purpose" and (out / "fake" / "c" / "log.txt").exists()
  assert status["fake/d"]["error"] == "no JSON written (fake_d.json)"   # other_d.json is not its output
  assert status["fake/a"]["json"] == str(out / "fake" / "a" / "fake_a.json")
  both, with_c, with_d = ra.judge_all(["fake"], status, str(out), "full")
  assert (both["verdict"], both["ours"], both["budget"]) == (R, "a+b", "budget a; budget b")
  assert both["links"] == ["fake/a/fake_a.md", "fake/b/fake_b.md"]
  assert with_c["verdict"] == V.NOT_RUN and with_c["ours"] == ("fake/c failed: failing on purpose; "
                                                               "fake/d failed: no JSON written (fake_d.json)")
  assert with_d["verdict"] == V.NOT_RUN
  md = ra.write_summary(str(out), "full", [both, with_c], status, 1.0)
  assert "| fake/c | failed: failing on purpose |" in md
  assert "| claim | paper | ours | budget | dataset | verdict | table |" in md
  assert "| claim | paper | a+b | budget a; budget b | data | **reproduced** | [fake_a.md](fake/a/fake_a.md)" in md
  summary = json.load(open(out / "summary.json"))
  assert set(summary) == {"scale", "seconds", "counts", "claims", "studies"}
  assert summary["counts"] == {R: 1, P: 0, N: 0, V.NOT_RUN: 1}
  assert summary["studies"]["fake/a"]["json"] == "fake/a/fake_a.json"   # relative to DIR


# ------------------------------------------------------------ subprocesses ---
def _run(args, env=None, **kw):
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,   # hang guard only
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}, **kw)


def test_list_prints_studies_claims_and_rules():
  p = _run([sys.executable, "scripts/reproduce_all.py", "--list"])
  assert p.returncode == 0, p.stderr[-2000:]
  for name, s in C.STUDIES.items():
    assert f"{name}  ({s.script})" in p.stdout
  for c in C.CLAIMS:
    assert f"  {c.name} " in p.stdout and c.claim in p.stdout and c.paper_number in p.stdout
    assert f"rule {c.rule.__name__}: {c.rule_text()}" in p.stdout, c.name
  assert "    full: --lrs=1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,1e-1 --num_seeds=4 --num_steps=2350 --log_every=50 " \
         "--noshallow --tag=epochs5  [epochs5] → table_epochs5.json" in p.stdout
  assert "[thresholds: reproduced=0.2, partly=0.02]" in p.stdout
  assert "full scale: scripts/reproduce_lsc_ffn.py --acts=sin --num_steps=1000 --lsc_steps=200 --tag=grid1000_sin " \
         "(the ledger's)" in p.stdout
  bad = _run([sys.executable, "scripts/reproduce_all.py", "--only=nope"])
  assert bad.returncode != 0 and "--only: unknown nope" in bad.stderr


def test_failed_and_timed_out_studies_are_not_run(tmp_path):
  """A study that exits non-zero, or is stopped at --time_budget_s, gives "not run"; the exit status is 1."""
  (tmp_path / "a_file").touch()   # a workdir root that is a file: the study fails when it makes a workdir
  p = _run([sys.executable, "scripts/reproduce_all.py", "--scale=tiny", "--only=roaf_memory",
            f"--out={tmp_path / 'failed'}", f"--workdir_root={tmp_path / 'a_file'}"])
  assert p.returncode == 1, p.stderr[-2000:]
  row, = json.load(open(tmp_path / "failed" / "summary.json"))["claims"]
  assert row["verdict"] == V.NOT_RUN and "Not a directory" in row["ours"]   # the log's last line
  p = _run([sys.executable, "scripts/reproduce_all.py", "--scale=tiny", f"--only={','.join(SMOKE)}",
            f"--out={tmp_path / 'budget'}", "--time_budget_s=1"])
  assert p.returncode == 1, p.stderr[-2000:]
  summary = json.load(open(tmp_path / "budget" / "summary.json"))
  assert [s["status"] for s in summary["studies"].values()] == ["timed out", "skipped"]
  assert {r["verdict"] for r in summary["claims"]} == {V.NOT_RUN}
  assert summary["counts"][V.NOT_RUN] == 2


def _git_status_results():
  return subprocess.run(["git", "status", "--porcelain", "results/"], cwd=ROOT, capture_output=True,
                        text=True).stdout


def _check_summary(out, studies):
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert set(summary["studies"]) == set(studies)
  want = [c for c in C.CLAIMS if c.study in studies and summary["scale"] in c.scales]
  assert [r["name"] for r in summary["claims"]] == [c.name for c in want]
  for row, claim in zip(summary["claims"], want):
    st = summary["studies"][claim.study]
    assert st["status"] == "ok", st
    assert st["json"] == os.path.join(claim.study, C.json_name(C.STUDIES[claim.study].output_stem("tiny")))
    data = json.load(open(os.path.join(out, st["json"])))
    assert (row["ours"], row["verdict"]) == claim.judge(data)   # the rule applied to the study's own JSON
    assert row["paper"] == claim.paper_number
    assert row["budget"] and row["dataset"] and "?" not in row["dataset"]
    assert row["links"] and all(os.path.exists(os.path.join(out, p)) for p in row["links"])
  md = open(os.path.join(out, "summary.md")).read()
  for row in summary["claims"]:
    assert row["claim"] in md and f"**{row['verdict']}**" in md
  return summary


@pytest.mark.slow
def test_gpu_suite_tiny_on_cpu(tmp_path):
  """`gpu_suite.sh --scale=tiny` on the CPU: the install-free path of the GPU script, and through it
  `reproduce_all.py` end to end on its cheapest study (several studies and runs in one reproduce_all:
  test_several_runs_of_a_study_run_and_are_judged, test_failed_and_timed_out_studies_are_not_run)."""
  before = _git_status_results()
  out = tmp_path / "out"
  p = _run(["bash", "scripts/gpu_suite.sh", str(out), "--scale=tiny", f"--only={CHEAPEST}"],
           env={"GPU_SUITE_SKIP_INSTALL": "1", "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  for line in ("==> ", "install skipped", "imports ok", "JAX backend", "cpu", "--scale=tiny", "done in"):
    assert line in p.stdout, line
  assert "MISSING: " not in p.stdout.replace("MISSING: Fashion-MNIST", "")
  log = (out / "gpu_suite.log").read_text() if (out / "gpu_suite.log").exists() else ""
  assert f"[reproduce_all] {CHEAPEST}: ok in " in p.stdout + log   # reproduce_all's progress line
  assert sorted(os.listdir(out)) == ["gpu_suite.log", "studies.tar.gz", "summary.json", "summary.md"]
  subprocess.run(["tar", "-xzf", "studies.tar.gz"], cwd=out, check=True)   # the links resolve after untarring
  _check_summary(str(out), (CHEAPEST,))
  assert (out / CHEAPEST / "log.txt").exists()
  assert not [d for d in os.listdir(tmp_path) if d.startswith("reproduce_all_runs_")]   # workdirs removed
  assert _git_status_results() == before
