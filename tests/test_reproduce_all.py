"""scripts/reproduce_all.py: the verdict rules on hand-made numbers, --list, one tiny smoke run, gpu_suite.sh on CPU."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("reproduce_all", os.path.join(ROOT, "scripts", "reproduce_all.py"))
ra = sys.modules["reproduce_all"] = importlib.util.module_from_spec(_spec)   # dataclasses look the module up
_spec.loader.exec_module(ra)
R, P, N = ra.REPRODUCED, ra.PARTLY, ra.NOT_REPRODUCED
# The two cheapest studies at the tiny scale (≈ 10 and 20 s on 2 idle cores, mostly compiles), in run order.
SMOKE = ("roaf_memory", "lsc_spectrum")
CHEAPEST = "lsc_spectrum"
NAN = float("nan")


def _verdict(judge, data):
  return judge(data)[0]


# ------------------------------------------------------------------ rules ---
@pytest.mark.parametrize("x, want", [(2.0, R), (1.99, P), (1.2, N), (1.21, P), (0.5, N), (None, N), (NAN, N),
                                     (math.inf, R)])
def test_grade_thresholds(x, want):
  assert ra.grade(x, 2.0, 1.2) == want


def test_count_grade():
  assert ra.count_grade([True, True]) == R
  assert ra.count_grade([True, False]) == P
  assert ra.count_grade([False]) == N
  with pytest.raises(ra.Missing):
    ra.count_grade([])


def _stability(**acc):
  return {"rows": {arm: {"test_accuracy_mean": a, "test_accuracy_std": 0.01} for arm, a in acc.items()}}


@pytest.mark.parametrize("gap, want", [(0.2, R), (0.75, R), (0.1, P), (0.02, N), (-0.3, N)])
def test_stability_gap_rules(gap, want):
  data = _stability(**{"tanh-standard": 0.0, "tanh-normalized": gap, "roaf-tanh": gap, "tanh-standard-lsc": gap})
  for name in ("glorot_depth", "roaf_stability", "lsc_stability"):
    claim = next(c for c in ra.CLAIMS if c.name == name)
    assert _verdict(claim.judge, data) == want, name


def test_stability_missing_arm_is_not_run():
  with pytest.raises(ra.Missing, match="roaf-tanh"):
    next(c for c in ra.CLAIMS if c.name == "roaf_stability").judge(_stability(**{"tanh-standard": 0.1}))


@pytest.mark.parametrize("soft_std, want", [(0.81, R), (0.60, P), (0.10, N)])
def test_softsign_rule(soft_std, want):
  # tanh's relative gap is (0.85 - 0.1) / 0.85 = 0.88; softsign's: (0.82 - soft_std) / 0.82.
  data = _stability(**{"tanh-standard": 0.1, "tanh-normalized": 0.85, "softsign-standard": soft_std,
                       "softsign-normalized": 0.82})
  assert _verdict(ra.judge_softsign, data) == want


@pytest.mark.parametrize("tgelu, want", [(0.82, R), (0.80, P), (0.19, N)])
def test_tgelu_mlp_rule(tgelu, want):   # 0.95 × 0.85 = 0.8075; chance + 0.1 = 0.2
  assert _verdict(ra.judge_tgelu_mlp, _stability(**{"tgelu-he-clip": tgelu, "tanh-normalized": 0.85})) == want


def _glorot(errors, sv=(0.48, 0.74)):
  best = [{"dataset": ds, "activation": a, "init": i, "test_error": e} for (ds, a, i), e in errors.items()]
  jac = [{"activation": "tanh", "init": "standard", "mean_sv": sv[0]},
         {"activation": "tanh", "init": "normalized", "mean_sv": sv[1]}]
  return {"best": best, "jacobian_at_init": jac}


def test_glorot_table1_rule():
  both = {("fm", "tanh", "standard"): 18.8, ("fm", "tanh", "normalized"): 17.3,
          ("fm", "sigmoid", "standard"): 90.0, ("fm", "sigmoid", "normalized"): 83.1}
  assert _verdict(ra.judge_glorot_table1, _glorot(both)) == R
  assert _verdict(ra.judge_glorot_table1, _glorot({**both, ("fm", "sigmoid", "normalized"): 90.0})) == P  # a tie fails
  assert _verdict(ra.judge_glorot_table1, _glorot({k: -v for k, v in both.items()})) == N
  with pytest.raises(ra.Missing):   # no activation with both inits
    ra.judge_glorot_table1(_glorot({("fm", "tanh", "standard"): 18.8}))


@pytest.mark.parametrize("sv, want", [((0.48, 0.74), R), ((0.30, 0.74), P), ((0.60, 0.55), N)])
def test_glorot_jacobian_rule(sv, want):
  assert _verdict(ra.judge_glorot_jacobian, _glorot({}, sv)) == want


@pytest.mark.parametrize("after, want", [(1.04, R), (0.96, R), (0.90, P), (0.50, N)])
def test_lsc_radius_rule(after, want):
  row = lambda m: {"max_abs_eig": m, "median_abs_eig": 0.4, "rms_sv": 0.6}
  data = {"settings": {"rho": 1.0}, "before": row(0.6), "after": row(after)}
  assert _verdict(ra.judge_lsc_radius, data) == want


@pytest.mark.parametrize("tgelu_std, gelu_std, want", [(0.01, 0.02, R), (0.01, 0.015, P), (0.01, 0.012, N),
                                                       (0.0, 0.01, R), (0.0, 0.0, N)])
def test_tgelu_variance_rule(tgelu_std, gelu_std, want):
  rows = {a: {"per_epoch": [{"mean": 0.5, "std": 0.5}, {"mean": 0.7, "std": s}]}
          for a, s in (("tgelu-clip", tgelu_std), ("gelu", gelu_std))}
  assert _verdict(ra.judge_tgelu_variance, {"rows": rows}) == want


def _dqn(none, target, mem=(69_640, 139_280)):
  return {"arms": {"tgelu_none": {"final_return_mean": none, "final_return_std": 1.0, "memory_bytes": mem[0]},
                   "tgelu_target": {"final_return_mean": target, "final_return_std": 1.0, "memory_bytes": mem[1]}}}


@pytest.mark.parametrize("none, want", [(228.6, R), (90.0, R), (89.0, P), (50.0, P), (49.0, N)])
def test_dqn_no_target_rule(none, want):
  assert _verdict(ra.judge_dqn_no_target, _dqn(none, 100.0)) == want


@pytest.mark.parametrize("mem, want", [((69_640, 139_280), R), ((110, 200), R), ((150, 200), P), ((200, 200), N)])
def test_dqn_memory_rule(mem, want):
  assert _verdict(ra.judge_dqn_memory, _dqn(1.0, 1.0, mem)) == want


def test_dqn_missing_arm():
  with pytest.raises(ra.Missing, match="tgelu_target"):
    ra.judge_dqn_no_target({"arms": {"tgelu_none": {"final_return_mean": 1.0}}})


def _avg_grad(deep: dict, shallow: dict | None = None):
  an = lambda depth, sp: {"depth": depth, "methods": {"rmsprop": {"speedup_vs_rmsprop": 1.0},
                                                      **{m: {"speedup_vs_rmsprop": s} for m, s in sp.items()}}}
  return {"analysis": [an(30, deep)] + ([an(1, shallow)] if shallow is not None else [])}


@pytest.mark.parametrize("speedups, want", [({"secant": 2.0}, R), ({"secant": 0.9, "midpoint": 3.1}, R),
                                            ({"secant": 1.3}, P), ({"secant": 0.94}, N), ({"secant": None}, N)])
def test_avg_grad_deep_rule(speedups, want):
  assert _verdict(ra.judge_avg_grad_deep, _avg_grad(speedups)) == want


@pytest.mark.parametrize("speedups, want", [({"secant": 1.0, "midpoint": 0.8}, R), ({"secant": 1.25}, R),
                                            ({"secant": 1.3}, N), ({"secant": None}, N)])
def test_avg_grad_shallow_rule(speedups, want):
  assert _verdict(ra.judge_avg_grad_shallow, _avg_grad({"secant": 1.0}, speedups)) == want
  with pytest.raises(ra.Missing):   # --noshallow: no control in the JSON
    ra.judge_avg_grad_shallow(_avg_grad({"secant": 1.0}))


def _sweep(model, depth, smax, smin):
  return {"model": model, "depth": depth, "log10_sigma_max": smax, "log10_sigma_min": smin,
          "log10_spread": smax - smin}


UNDER = -37.93   # float32 underflow, as reproduce_roaf_depth writes it


@pytest.mark.parametrize("roaf, want", [((-0.2, -0.9), R), ((-1.5, -12.0), P), ((UNDER, UNDER), N)])
def test_roaf_jacobian_rule(roaf, want):
  # At depth 10 every net is well-conditioned; only the deepest depth counts.
  rows = [_sweep(m, 10, 0.0, -0.1) for m in ("roaf", "tanh_mlp")]
  rows += [_sweep("roaf", 10000, *roaf), _sweep("tanh_mlp", 10000, UNDER, UNDER)]
  assert _verdict(ra.judge_roaf_jacobian, {"depth_sweep": rows}) == want
  rows[-1] = _sweep("tanh_mlp", 10000, -1.0, -8.0)          # a tanh spread of 7 decades beats ROAF's 10.5
  assert _verdict(ra.judge_roaf_jacobian, {"depth_sweep": rows}) == (R if want == R else N)


@pytest.mark.parametrize("roaf, tanh, want", [(0.85, 0.1, R), (0.2548, 0.1, P), (0.12, 0.1, N), (NAN, 0.1, N)])
def test_roaf_deep_train_rule(roaf, tanh, want):
  t = [{"model": "roaf", "depth": 10000, "steps": 100, "test_accuracy": roaf},
       {"model": "tanh_mlp", "depth": 10000, "steps": 100, "test_accuracy": tanh}]
  assert _verdict(ra.judge_roaf_deep_train, {"training": t}) == want


def test_roaf_deep_train_accepts_the_glorot_init_arm():
  t = [{"model": "roaf_glorot", "depth": 50000, "steps": 300, "test_accuracy": 0.7}]
  assert _verdict(ra.judge_roaf_deep_train, {"training": t}) == R


def _init_row(depth, spread_lo, spread_hi, mean, alpha=0.9999):
  return {"depth": depth, "alpha": alpha, "roaf_init": "kernel_init", "filter_mode": "fast", "spread_lo": spread_lo,
          "spread_hi": spread_hi, "abs_mean_max": abs(mean), "mean_log10_sigma": mean,
          "layers_log10_alpha": mean}


@pytest.mark.parametrize("deep, want", [
    ((0.03, 0.03, -0.5), R),     # all within a decade of 1
    ((0.03, 0.03, -2.17), P),    # an isometry scaled by α^(D−1): partly
    ((0.8, 1.3, -0.2), N),       # the spread's bounds straddle 1: not shown
    ((441.0, 448.0, -222.0), N)])
def test_roaf_init_rule(deep, want):
  # Only the deepest depth counts: the shallow row is O(1) in every case.
  rows = [_init_row(1000, 0.01, 0.01, -0.04), _init_row(50000, *deep)]
  assert _verdict(ra.judge_roaf_init, {"rows": rows}) == want
  with pytest.raises(ra.Missing):
    ra.judge_roaf_init({"rows": []})


@pytest.mark.parametrize("roaf, want", [(0.95, R), (0.7133, P), (0.70, N)])
def test_roaf_psmnist_rule(roaf, want):   # best other cell 0.7297: partly from 0.7097
  rows = [{"cell": c, "test_acc_epoch1": a} for c, a in (("roaf", roaf), ("elman", 0.7021), ("gru", 0.7297))]
  assert _verdict(ra.judge_roaf_psmnist, {"rows": rows}) == want


def _memory(solved: dict):
  """{(cell, lag): solved?} → rows with one seed."""
  return {"rows": [{"task": "adding", "cell": c, "lag": t, "seeds": 1, "solved_seeds": int(s)}
                   for (c, t), s in solved.items()]}


def test_roaf_memory_rule():
  base = {("elman", 100): True, ("elman", 200): False, ("gru", 1000): True}
  assert ra.largest_solved(_memory(base)["rows"], "elman") == 100
  assert _verdict(ra.judge_roaf_memory, _memory({**base, ("roaf", 100): True, ("roaf", 200): True})) == P
  assert _verdict(ra.judge_roaf_memory, _memory({**base, ("roaf", 100): False})) == N
  assert _verdict(ra.judge_roaf_memory, _memory({("roaf", 100): True})) == P    # no Elman to compare with
  assert _verdict(ra.judge_roaf_memory, _memory({("roaf", 10_000): True, ("elman", 100): True})) == R
  rows = _memory({("roaf", 100): True})["rows"]
  rows[0]["seeds"] = 2                       # one of two seeds solved: not solved
  assert _verdict(ra.judge_roaf_memory, {"rows": rows}) == N
  with pytest.raises(ra.Missing):
    ra.judge_roaf_memory(_memory({("gru", 100): True}))


def _rnn(cell, arm, acc, depth_after=NAN, time_after=NAN):
  return {"cell": cell, "depth": 2, "arm": arm, "test_accuracy": acc, "depth_before": 0.2,
          "depth_after": depth_after, "time_before": 0.9, "time_after": time_after}


def test_lsc_rnn_rules():
  rows = [_rnn("lstm", "none", 0.776), _rnn("lstm", "1", 0.763, 0.96, 0.98), _rnn("lstm", "0.5", 0.749, 0.49, 0.55),
          _rnn("alif", "none", 0.547), _rnn("alif", "1", 0.375, 0.88), _rnn("alif", "0.5", 0.394, 0.45, 0.99)]
  assert _verdict(ra.judge_lsc_rnn_radii, {"rows": rows}) == P          # ALIF's time radius stays ≈ 1 at ρ = 0.5
  assert _verdict(ra.judge_lsc_rnn_radii, {"rows": rows[:3]}) == R      # NaN time radius (ALIF ρ = 1) is skipped
  assert _verdict(ra.judge_lsc_rnn_radii, {"rows": [_rnn("x", "1", 0.5, NAN, NAN)]}) == N   # no radius at all
  assert _verdict(ra.judge_lsc_rnn_accuracy, {"rows": rows}) == N
  rows[2]["test_accuracy"] = 0.776   # ties count: ρ = 0.5 ≥ max(none, ρ = 1)
  assert _verdict(ra.judge_lsc_rnn_accuracy, {"rows": rows}) == P
  with pytest.raises(ra.Missing):    # the tiny preset's arm "1" alone
    ra.judge_lsc_rnn_accuracy({"rows": [_rnn("lstm", "1", 0.5, 1.0)]})


def test_lsc_ffn_rule():
  best = lambda acc: {"best": [{"act": act, "arm": arm, "test_accuracy": a}
                               for act, accs in acc.items() for arm, a in zip(("glorot", "he", "lsc"), accs)]}
  assert _verdict(ra.judge_lsc_ffn, best({"sin": (0.85, 0.79, 0.85), "relu": (0.78, 0.83, 0.84)})) == R
  assert _verdict(ra.judge_lsc_ffn, best({"sin": (0.85, 0.79, 0.82), "cos": (0.47, 0.82, 0.83)})) == P
  assert _verdict(ra.judge_lsc_ffn, best({"sin": (0.85, 0.79, 0.82)})) == N
  with pytest.raises(ra.Missing):    # the tiny preset's glorot,lsc without he
    ra.judge_lsc_ffn({"best": [{"act": "sin", "arm": "glorot", "test_accuracy": 0.5},
                               {"act": "sin", "arm": "lsc", "test_accuracy": 0.6}]})


def test_registry_is_consistent():
  assert {c.study for c in ra.CLAIMS} == set(ra.STUDIES)   # every study has a claim, every claim a study
  assert len({c.name for c in ra.CLAIMS}) == len(ra.CLAIMS)
  for name, s in ra.STUDIES.items():
    assert set(s.args) == {"tiny", "quick", "full", "gpu"}, name
    assert os.path.exists(os.path.join(ROOT, s.script)), s.script
  for c in ra.CLAIMS:
    assert f"  {c.name} " in ra.__doc__, f"{c.name}: its rule is not in the module docstring"


def test_selection_and_commands():
  assert ra.selected([]) == list(ra.STUDIES)
  assert ra.selected(["lsc_radius", "dqn", "dqn_memory"]) == ["dqn", "lsc_spectrum"]   # claims select their study
  tiny = ra.command("dqn", "tiny", "/o", "/w")
  assert tiny[1].endswith("scripts/reproduce_dqn.py") and tiny[2] == "--tiny" and "--out=/o" in tiny
  gpu = ra.command("dqn", "gpu", "/o", "/w", data_dir="/d")
  assert "--tiny" not in gpu and "--quick" not in gpu and "--setting=full" in gpu
  assert gpu[-2:] == ["--tag=gpu", "--data_dir=/d"]


# ------------------------------------------------------------ subprocesses ---
def _run(args, env=None, **kw):
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,   # hang guard only
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}, **kw)


def test_list_prints_every_claim_by_study():
  p = _run([sys.executable, "scripts/reproduce_all.py", "--list"])
  assert p.returncode == 0, p.stderr[-2000:]
  for name, s in ra.STUDIES.items():
    assert f"{name}  ({s.script})" in p.stdout
  for c in ra.CLAIMS:
    assert f"  {c.name} " in p.stdout and c.claim in p.stdout
  bad = _run([sys.executable, "scripts/reproduce_all.py", "--only=nope"])
  assert bad.returncode != 0 and "--only: unknown nope" in bad.stderr


def test_failed_and_timed_out_studies_are_not_run(tmp_path):
  """A study that exits non-zero, or is stopped at --time_budget_s, gives "not run"; the exit status is 1."""
  (tmp_path / "a_file").touch()   # a workdir root that is a file: the study fails when it makes a workdir
  p = _run([sys.executable, "scripts/reproduce_all.py", "--scale=tiny", "--only=roaf_memory",
            f"--out={tmp_path / 'failed'}", f"--workdir_root={tmp_path / 'a_file'}"])
  assert p.returncode == 1, p.stderr[-2000:]
  row, = json.load(open(tmp_path / "failed" / "summary.json"))["claims"]
  assert row["verdict"] == ra.NOT_RUN and "Not a directory" in row["ours"]   # the log's last line
  p = _run([sys.executable, "scripts/reproduce_all.py", "--scale=tiny", f"--only={','.join(SMOKE)}",
            f"--out={tmp_path / 'budget'}", "--time_budget_s=1"])
  assert p.returncode == 1, p.stderr[-2000:]
  summary = json.load(open(tmp_path / "budget" / "summary.json"))
  assert [s["status"] for s in summary["studies"].values()] == ["timed out", "skipped"]
  assert {r["verdict"] for r in summary["claims"]} == {ra.NOT_RUN}
  assert summary["counts"][ra.NOT_RUN] == 2


def _git_status_results():
  return subprocess.run(["git", "status", "--porcelain", "results/"], cwd=ROOT, capture_output=True,
                        text=True).stdout


def _check_summary(out, studies):
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert set(summary["studies"]) == set(studies)
  want = [c for c in ra.CLAIMS if c.study in studies]
  assert [r["name"] for r in summary["claims"]] == [c.name for c in want]
  for row, claim in zip(summary["claims"], want):
    st = summary["studies"][claim.study]
    assert st["status"] == "ok", st
    data = json.load(open(os.path.join(out, st["json"])))
    verdict, ours = claim.judge(data)   # the verdict is the rule applied to the study's own JSON
    assert (row["verdict"], row["ours"]) == (verdict, ours)
    assert row["budget"] and row["dataset"] and "?" not in row["dataset"]
    assert row["links"] and all(os.path.exists(os.path.join(out, p)) for p in row["links"])
  md = open(os.path.join(out, "summary.md")).read()
  for row in summary["claims"]:
    assert row["claim"] in md and f"**{row['verdict']}**" in md
  return summary


@pytest.mark.slow
@pytest.mark.slow
def test_gpu_suite_tiny_on_cpu(tmp_path):
  """`gpu_suite.sh --scale=tiny` on the CPU: the install-free path of the GPU script, and through it
  `reproduce_all.py` end to end on two studies (one run of both, to keep the suite short)."""
  before = _git_status_results()
  out = tmp_path / "out"
  p = _run(["bash", "scripts/gpu_suite.sh", str(out), "--scale=tiny", f"--only={','.join(SMOKE)}"],
           env={"GPU_SUITE_SKIP_INSTALL": "1", "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  for line in ("==> ", "install skipped", "imports ok", "JAX backend", "cpu", "--scale=tiny", "done in"):
    assert line in p.stdout, line
  assert "MISSING: " not in p.stdout.replace("MISSING: Fashion-MNIST", "")
  log = (out / "gpu_suite.log").read_text() if (out / "gpu_suite.log").exists() else ""
  for name in SMOKE:  # reproduce_all's progress lines
    assert f"[reproduce_all] {name}: ok in " in p.stdout + log, name
  assert sorted(os.listdir(out)) == ["gpu_suite.log", "studies.tar.gz", "summary.json", "summary.md"]
  subprocess.run(["tar", "-xzf", "studies.tar.gz"], cwd=out, check=True)   # the links resolve after untarring
  _check_summary(str(out), SMOKE)
  assert (out / CHEAPEST / "log.txt").exists()
  assert not [d for d in os.listdir(tmp_path) if d.startswith("reproduce_all_runs_")]   # workdirs removed
  assert _git_status_results() == before
