"""The reproduction ledger as data: the studies `scripts/reproduce_all.py` runs and the claims it judges.

`STUDIES`: each study script, its flags per scale (a dict, turned into ``--flag=value`` by `flag_args`), the
name of the JSON it writes (`Study.output_stem`), its estimated time at the gpu scale, and how to describe
its JSON's budget and dataset. `CLAIMS`: each claim of WORKSPACE.md's ledger — the paper, the paper's number,
what we measure, the verdict rule (`verdicts`) and its thresholds, the dataset, the ledger rows it decides
and the study runs it reads at the full scale (the decisive commands, written verbatim in the ledger:
tests/test_reproduce_all.py checks the paper numbers, datasets and commands against WORKSPACE.md).

Scales: ``tiny`` (each study's ``--tiny`` budget, every arm a claim needs; plumbing only), ``quick``
(``--quick``), ``full`` (the ledger's decisive commands; the script's full defaults where the ledger has
none; several runs per study where the ledger has several, named by their ``--tag``) and ``gpu`` (budgets
for one NVIDIA H200, every study ``--jobs=4`` at a time within ≈ 6 min; the assumptions are stated next to
each ``gpu`` entry). No absl flag is read here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from stable_training.studies import verdicts as V

SCALES = ("tiny", "quick", "full", "gpu")

PAPERS = {
    "glorot2010": 'Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural '
                  'networks", AISTATS',
    "ceni2022": 'Ceni (2022), "Random orthogonal additive filters: a solution to the vanishing/exploding '
                'gradient of deep neural networks", arXiv:2210.01245 (ROAF)',
    "ramaswamy2023": 'Ramaswamy, Bhatnagar & Saxena (2023), "stable and consistent training" of deep '
                     'feed-forward nets and DQN (tGELU, output-layer clipping)',
    "lsc": 'Herranz-Celotti & Rouat (2023/24), "Stabilizing RNN Gradients through Pre-training" (LSC)',
    "avg_grad": '"Efficient Gradient-Based Algorithm for Training Deep Learning Models With Many Nonlinear '
                'Activations" (ICLR 2025 submission; averaged gradient)',
}


def flag_args(flags: Mapping[str, Any]) -> list[str]:
  """``{flag: value}`` → ``["--flag=value", …]`` in order: True → ``--flag``, False → ``--noflag`` (absl)."""
  out = []
  for k, v in flags.items():
    if isinstance(v, bool):
      out.append(f"--{k}" if v else f"--no{k}")
    elif isinstance(v, (str, int, float)):
      out.append(f"--{k}={v}")
    else:
      raise ValueError(f"flag --{k}: value {v!r} of type {type(v).__name__}; valid: str, int, float, bool")
  return out


def json_name(stem: str) -> str:
  """The JSON file of output stem `stem`: ``results.json`` for ``table`` (`study.write_results`), else STEM.json."""
  return "results.json" if stem == "table" else f"{stem}.json"


@dataclasses.dataclass(frozen=True)
class Study:
  """A study script, its flags per scale, and what it writes.

  ``settings[scale]``: the flags of its one run at `scale` (into DIR/<study>/); ``runs[scale]``: ``{run:
  flags}``, one subprocess per run (into DIR/<study>/<run>/). A scale in neither: the study does not run.
  ``stem``: the base name of the JSON it writes; the script appends ``_tiny`` / ``_quick`` and ``_TAG``
  (`study.stem`) unless ``suffixed`` is false (then ``{setting}`` in `stem` is the setting's name).
  ``run_stems``: a run's base name where its flags change it (``--dataset=mnist_5k``).
  """
  name: str
  script: str
  stem: str
  budget: Callable[[dict], str]
  dataset: Callable[[dict], str]
  settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  runs: Mapping[str, Mapping[str, Mapping[str, Any]]] = dataclasses.field(default_factory=dict)
  gpu_s: int = 0                       # estimated seconds at the gpu scale (longest study first)
  run_stems: Mapping[str, str] = dataclasses.field(default_factory=dict)
  suffixed: bool = True

  def __post_init__(self):
    bad = [s for s in (*self.settings, *self.runs) if s not in SCALES]
    if bad:
      raise ValueError(f"study {self.name}: scale {bad[0]!r}; valid: {', '.join(SCALES)}")
    both = set(self.settings) & set(self.runs)
    if both:
      raise ValueError(f"study {self.name}: scale {sorted(both)[0]} in both settings and runs; valid: one")
    named = {r for rs in self.runs.values() for r in rs}
    if "" in named or not set(self.run_stems) <= named:
      raise ValueError(f"study {self.name}: runs {sorted(named)}, run_stems {sorted(self.run_stems)}; valid: "
                       "non-empty run names, run_stems naming runs")

  @property
  def scales(self) -> tuple[str, ...]:
    """The scales the study runs at, in `SCALES` order."""
    return tuple(s for s in SCALES if s in self.settings or s in self.runs)

  def run_flags(self, scale: str) -> dict[str, list[str]]:
    """``{run: flags}`` at `scale`: ``{"": flags}`` for a single run, ``{}`` where the study does not run."""
    if scale in self.settings:
      return {"": flag_args(self.settings[scale])}
    return {r: flag_args(f) for r, f in self.runs.get(scale, {}).items()}

  def output_stem(self, scale: str, run: str = "") -> str:
    """The stem of the JSON / markdown run `run` writes at `scale` (gpu: the full setting, ``--tag=gpu``)."""
    if run not in self.run_flags(scale):
      raise ValueError(f"{self.name}: no run {run!r} at --scale={scale} (runs: "
                       f"{', '.join(map(repr, self.run_flags(scale))) or 'none'})")
    setting = scale if scale in ("tiny", "quick") else "full"
    if not self.suffixed:
      return self.stem.format(setting=setting)
    flags = self.settings[scale] if scale in self.settings else self.runs[scale][run]
    tag = "gpu" if scale == "gpu" else str(flags.get("tag", ""))
    return (self.run_stems.get(run, self.stem) + ("" if setting == "full" else f"_{setting}")
            + (f"_{tag}" if tag else ""))


@dataclasses.dataclass(frozen=True)
class Claim:
  """A claim of the ledger, judged by ``rule(payload, thresholds, **params)`` on its study's JSON.

  ``claim``, ``paper_number``: the summary's "claim" and "paper" columns; ``paper_number`` is the "paper" cell
  of the `ledger` rows (each named by a unique part of its "claim" cell), joined by "; ". ``dataset``: the
  decisive run's dataset as the ledger names it. ``metric``: what "ours" reports. ``runs``: where the
  study has several runs at a scale, the ones the claim reads (all when empty; their JSONs merged).
  ``full_only``: judged at the full scale only. ``decisive``: its full-scale runs are commands written
  verbatim in the ledger (false where the full scale runs the script's defaults instead).
  """
  name: str
  study: str
  paper: str
  claim: str
  paper_number: str
  metric: str
  rule: Callable[..., V.Judged]
  thresholds: Mapping[str, float]
  dataset: str
  ledger: tuple[str, ...]
  params: Mapping[str, str] = dataclasses.field(default_factory=dict)
  runs: tuple[str, ...] = ()
  full_only: bool = False
  decisive: bool = True

  def __post_init__(self):
    want = getattr(self.rule, "thresholds", None)
    if want is None or set(self.thresholds) != set(want) or not self.thresholds:
      raise ValueError(f"claim {self.name}: thresholds {sorted(self.thresholds)}; valid: exactly "
                       f"{sorted(want or ())} (the rule's, non-empty)")
    if self.paper not in PAPERS:
      raise ValueError(f"claim {self.name}: paper {self.paper!r}; valid: {', '.join(PAPERS)}")

  @property
  def scales(self) -> tuple[str, ...]:
    """The scales it is judged at."""
    return ("full",) if self.full_only else SCALES

  def judge(self, payload: dict) -> V.Judged:
    """(ours, verdict) of this claim from its study's JSON (raises `verdicts.Missing` for a subset run)."""
    return self.rule(payload, self.thresholds, **self.params)

  def rule_text(self) -> str:
    """The rule in words, with this claim's thresholds."""
    return V.describe_rule(self.rule, self.thresholds, self.params)


STABILITY_ARMS = ("tanh-standard,tanh-normalized,softsign-standard,softsign-normalized,tgelu-he-clip,roaf-tanh,"
                  "tanh-standard-lsc")
# gpu budgets. Assumptions: one H200 runs these small models latency-bound (≈ 5–20 µs per kernel, one
# while-loop iteration per layer or time step), so vmapped seeds are ≈ free while depth, sequence length and
# steps cost; each engine config compiles in ≈ 5–15 s; four studies share the GPU and the 16 cores
# (--jobs=4; LSC's host eigs use ≤ 8 workers). Sum of the estimates ≈ 22 min → ≈ 6 min on 4 lanes.
_STUDIES = (
    Study("stability", "scripts/stability_study.py", "table", V.budget_stability, V.dataset_top,
          {"tiny": {"arms": STABILITY_ARMS}, "quick": {}, "full": {},
           # the ledger's budget (20 × 128, 3000 steps, 3 seeds): ≈ 3 ms/step → ≈ 10 s + compile per arm; the LSC
           # arm's 3 × 200 pre-training steps of host eigs ≈ 60 s. 7 arms (all a claim needs) ≈ 3 min.
           "gpu": {"arms": STABILITY_ARMS}}, gpu_s=180),
    Study("glorot", "scripts/reproduce_glorot_table1.py", "table1", V.budget_glorot, V.dataset_best,
          {"tiny": {"activations": "tanh"}, "quick": {},
           "full": {"datasets": "fashion_mnist", "num_steps": 2000, "lrs": "0.03"},
           # the ledger's width-1000 budget (2000 steps × 10 examples, lr 0.03) on both datasets: 12 runs of
           # 2000 × ≈ 1 ms + compile + diagnostics ≈ 10 s, the Jacobians at init and ≈ 40 figures ≈ 2.5 min.
           "gpu": {"datasets": "shapeset,fashion_mnist", "num_steps": 2000, "lrs": "0.03"}}, gpu_s=150),
    Study("tgelu", "scripts/reproduce_tgelu_classification.py", "table", V.budget_tgelu, V.dataset_top,
          # full: the script's full budget (60k images × 5 epochs, 8 seeds), the two arms the claim compares.
          {"tiny": {"arms": "tgelu-clip,gelu"}, "quick": {}, "full": {"arms": "tgelu-clip,gelu", "tag": "full60k"},
           # gpu, the same budget: 1170 steps of 8 vmapped ConvNets at ≈ 10 ms ≈ 12 s + compile ≈ 30 s per arm;
           # gelu-clip equals gelu to 4 decimals (ledger), so 2 arms ≈ 1.5 min.
           "gpu": {"arms": "tgelu-clip,gelu"}}, gpu_s=90),
    Study("dqn", "scripts/reproduce_dqn.py", "{setting}", V.budget_dqn, V.dataset_dqn,
          {"tiny": {"arms": "tgelu_none,tgelu_target"}, "quick": {}, "full": {"setting": "full"},
           # the ledger's budget (8 seeds × 50k env steps), 4 arms (no ablation): one jitted step (env, act,
           # replay, SGD update of batch 256) ≈ 50 kernels ≈ 0.3 ms → 15 s per arm, + compiles ≈ 1.5 min.
           "gpu": {"setting": "full", "arms": "tgelu_none,tgelu_target,gelu_none,gelu_target"}},
          gpu_s=90, suffixed=False),   # writes <setting>.json whatever --tag
    Study("avg_grad", "scripts/reproduce_avg_grad.py", "table", V.budget_avg_grad, V.dataset_settings,
          {"tiny": {}, "quick": {},
           # the ledger's 600 steps with 8 seeds (vmapped), RMSProp and the cheapest averaged gradient (secant)
           # at the three rates around the ledger's best (3e-4): 12 arms × (≈ 8 s compile + 600 × 3 ms) ≈ 2 min.
           "gpu": {"num_steps": 600, "log_every": 25, "num_seeds": 8, "methods": "rmsprop,secant",
                   "lrs": "1e-4,3e-4,1e-3"}},
          # full: the 600-step run (with the shallow control), the decisive 5-epoch run, the MNIST 5k subset.
          {"full": {"steps600": {"num_steps": 600, "log_every": 25},
                    "epochs5": {"lrs": "1e-5,1e-4,3e-4,1e-3,3e-3,1e-2,1e-1", "num_seeds": 4, "num_steps": 2350,
                                "log_every": 50, "shallow": False, "tag": "epochs5"},
                    "mnist5k": {"dataset": "mnist_5k"}}},
          gpu_s=120, run_stems={"mnist5k": "table_mnist5k"}),
    Study("roaf_depth", "scripts/reproduce_roaf_depth.py", "depth", V.budget_roaf_depth, V.dataset_setting,
          {"tiny": {}, "quick": {},
           # spectra at init up to 10,000 layers (a forward-mode Jacobian each: seconds); training is latency-bound
           # (≈ 45 µs per layer, forward + remat + backward): 1,000 layers × 500 steps ≈ 25 s per model ≈ 1.5 min.
           "gpu": {"depths": "10,100,1000,10000", "train_depth": 1000, "train_steps": 500}},
          # full: the spectra to 10,000 layers (roaf_jacobian) and the decisive 50,000-layer training run.
          {"full": {"engine_d10k": {"depths": "10,100,1000,10000", "train_depth": 10000, "train_steps": 100,
                                    "tag": "engine_d10k"},
                    "d50k_alpha09999_adam": {"depths": 1000, "alpha": "0.9999", "train_models": "roaf_glorot",
                                             "train_depth": 50000, "train_steps": 300, "train_log_every": 10,
                                             "optimizer": "adam", "lr": "0.001", "tag": "d50k_alpha09999_adam"}}},
          gpu_s=90),
    Study("roaf_psmnist", "scripts/reproduce_roaf_psmnist.py", "psmnist", V.budget_psmnist, V.dataset_psmnist,
          {"tiny": {}, "quick": {}, "full": {"epochs": 1},
           # the ledger's one epoch of all 60k images: 469 steps × 784 recurrent steps (≈ 35 ms) ≈ 20 s + compile
           # per cell; LSTM (the slowest, not needed for ROAF vs the baselines) left out: ≈ 1.5 min.
           "gpu": {"epochs": 1, "cells": "roaf,elman,gru"}}, gpu_s=90),
    Study("roaf_memory", "scripts/reproduce_roaf_memory.py", "memory", V.budget_memory, V.dataset_memory,
          {"tiny": {"tasks": "adding", "cells": "roaf,elman"}, "quick": {},
           "full": {"tasks": "adding", "lags": "100,200,500,1000", "cells": "roaf,elman,lstm,gru", "steps": 3000},
           # latency-bound as on the CPU (≈ 30 µs per recurrent step; ledger: 311 steps/s at T = 100): T ∈ {100,
           # 200, 500} × 1500 steps ≈ 40 s per cell; ROAF, Elman and GRU (the gated reference) ≈ 2.5 min.
           "gpu": {"tasks": "adding", "lags": "100,200,500", "cells": "roaf,elman,gru", "steps": 1500}}, gpu_s=150),
    Study("lsc_rnn", "scripts/reproduce_lsc_rnn.py", "rnn", V.budget_lsc, V.dataset_lsc_rnn,
          {"tiny": {"arms": "none,1,0.5"}, "quick": {},
           # LSTM and GRU, depth 2 × 32 (the ledger's quick grid) on all 60k images, 600 steps (T = 28: ≈ 3 ms),
           # 2 seeds, 100 LSC steps of host eigs ≈ 20 s per pre-trained arm: 6 runs ≈ 2 min.
           "gpu": {"cells": "lstm,gru", "depths": 2, "width": 32, "num_steps": 600, "lsc_steps": 100, "seeds": 2,
                   "num_train": 0, "num_test": 0, "batch_size": 64}},
          # full: the ledger's grid (depths 2 and 5, full data, 2000 steps, 2 seeds), two cells per run.
          {"full": {f"d25_{tag}_2000": {"cells": cells, "depths": "2,5", "width": 64, "num_steps": 2000,
                                        "num_train": 0, "num_test": 0, "lsc_steps": 300, "seeds": 2,
                                        "batch_size": 128, "tag": f"d25_{tag}_2000"}
                    for cells, tag in (("gru,relu_rnn", "gru_relu"), ("lstm,alif", "lstm_alif"))}}, gpu_s=120),
    Study("lsc_ffn", "scripts/reproduce_lsc_ffn.py", "ffn", V.budget_lsc, V.dataset_lsc_ffn,
          {"tiny": {"arms": "glorot,he,lsc"}, "quick": {},
           "full": {"lrs": "1e-3,1e-4", "seeds": 2, "num_steps": 1500, "lsc_steps": 200},
           # the 30 × 128, lr 1e-4 only (ledger: Adam 1e-3 diverges for sin and cos), 2 seeds, 1500 steps
           # (≈ 4 ms) ≈ 15 s per run × 9 runs, plus 3 activations × 2 seeds × 100 LSC steps of 116 host eigs
           # (≈ 0.2 s on 8 workers) ≈ 1 min: ≈ 3 min.
           "gpu": {"lrs": "1e-4", "seeds": 2, "num_steps": 1500, "lsc_steps": 100}}, gpu_s=180),
    Study("roaf_init", "scripts/roaf_init_study.py", "init_study", V.budget_roaf_init, V.dataset_setting,
          # gpu: the full grid (12 configs to 50k layers, one QR scan each; ≈ 5 min on 2 CPU cores, the scan is
          # latency-bound on a GPU too: ≈ 2–3 min).
          {"tiny": {}, "quick": {}, "full": {}, "gpu": {}}, gpu_s=150),
    Study("lsc_spectrum", "scripts/lsc_ffn_spectrum.py", "spectrum", V.budget_spectrum, V.dataset_settings,
          # gpu = full = the ledger's 20 × 128, 200 LSC steps: 150 s on 2 cores, ≈ 45 s on 8 eig workers.
          {"tiny": {}, "quick": {}, "full": {}, "gpu": {}}, gpu_s=45),
    # Decisive ledger rows of their own claims: full only (gpu_s unused).
    Study("glorot_shapeset", "scripts/reproduce_glorot_table1.py", "table1", V.budget_glorot, V.dataset_best,
          runs={"full": {f"shapeset200k_{act}": {
              "datasets": "shapeset", "activations": act, "inits": "standard,normalized", "lrs": lrs, "width": 128,
              "num_steps": 200000, "num_train": 195000, "num_generated": 200000, "num_val": 5000, "num_test": 0,
              "tag": f"shapeset200k_{act}"}
              for act, lrs in (("tanh", "0.03,0.1"), ("softsign", "0.03"), ("sigmoid", "0.03,0.1"))}}),
    Study("glorot_mnist5k", "scripts/reproduce_glorot_table1.py", "table1", V.budget_glorot, V.dataset_best,
          runs={"full": {"mnist5k": {"dataset": "mnist_5k"}}}, run_stems={"mnist5k": "table1_mnist5k"}),
    Study("roaf_copy", "scripts/reproduce_roaf_memory.py", "memory", V.budget_memory, V.dataset_memory,
          runs={"full": {"copy": {"tasks": "copy", "lags": "100,200,500,1000", "steps": 3000, "tag": "copy"},
                         "copy_short": {"tasks": "copy", "lags": "10,20,50,100", "steps": 10000, "eval_every": 500,
                                        "tag": "copy_short"}}}),
    Study("roaf_psmnist_search", "scripts/reproduce_roaf_psmnist_search.py", "psmnist_search",
          V.budget_psmnist_search, V.dataset_psmnist_search, {"full": {"baselines": "elman,gru,lstm"}}),
    Study("roaf_memory_search", "scripts/reproduce_roaf_memory_search.py", "memory_search", V.budget_memory_search,
          V.dataset_memory_search,
          runs={"full": {"memory_search": {"tasks": "first,adding", "lags": "100,1000,10000"},
                         "copy": {"tasks": "copy", "lags": "100,1000", "tag": "copy"},
                         "T1000_alpha1": {"tasks": "first,adding", "lags": 1000, "cells": "roaf",
                                          "alphas_free": "1.0", "betas": "0.1,0.5", "alphas_tied": "",
                                          "tag": "T1000_alpha1"}}}),
    Study("lsc_ffn_grid", "scripts/reproduce_lsc_ffn.py", "ffn", V.budget_lsc, V.dataset_lsc_ffn,
          runs={"full": {f"grid1000_{act}": {"acts": act, "num_steps": 1000, "lsc_steps": 200,
                                             "tag": f"grid1000_{act}"} for act in ("relu", "sin", "cos")}}),
)
STUDIES: dict[str, Study] = {s.name: s for s in _STUDIES}

_GAP = {"reproduced": 0.2, "partly": 0.02}
_TIES_COUNT = {"margin": 0.0}
_ACC_GAP = "acc({arm}) − acc(tanh-standard) of the depth-20 stability MLP (mean ± std over seeds)"
_LSC_FFN = "LSC: feed-forward pre-training to ρ = 1 matches or beats He/Glorot"
CLAIMS: tuple[Claim, ...] = (
    Claim("glorot_depth", "stability", "glorot2010",
          "Glorot & Bengio 2010: normalized init rescues a deep tanh net; standard init stalls",
          "Shapeset, 5 layers: Tanh 27.15 % vs Tanh N 15.60 % test error", _ACC_GAP.format(arm="tanh-normalized"),
          V.gap, _GAP, "Fashion-MNIST", ("normalized init rescues a deep tanh net",),
          params={"arm": "tanh-normalized", "base": "tanh-standard"}),
    Claim("softsign", "stability", "glorot2010", "Glorot & Bengio 2010: softsign is less sensitive to init than tanh",
          "Softsign 16.27 vs Softsign N 16.06", "relative gap (acc_N − acc_std) / acc_N of softsign and of tanh",
          V.softsign, {"reproduced": 0.05, "partly_of_tanh": 0.5}, "Fashion-MNIST",
          ("softsign is less sensitive to init than tanh",)),
    Claim("glorot_table1", "glorot", "glorot2010",
          "Glorot & Bengio 2010 Table 1: normalized init lowers the test error (5 hidden layers, SGD minibatch 10)",
          "test error: Softsign 16.27 / Softsign N 16.06 / Tanh 27.15 / Tanh N 15.60 / Sigmoid 82.61 (Shapeset)",
          "test error % per (dataset, activation), standard → normalized init", V.glorot_table1, _TIES_COUNT,
          "Fashion-MNIST", ("G&B 2010 Table 1 (5 × 1000, SGD minibatch 10)",), decisive=False),
    Claim("glorot_jacobian", "glorot", "glorot2010",
          "Glorot & Bengio 2010 §4.2.3: mean singular value of the layer Jacobians at init, tanh",
          "≈ 0.5 standard, ≈ 0.8 normalized", "tanh mean singular value of ∂h_(l+1)/∂h_l at init",
          V.glorot_jacobian, {"standard": 0.5, "normalized": 0.8, "tolerance": 0.1}, "Shapeset",
          ("§4.2.3: mean singular value",), decisive=False),
    Claim("roaf_stability", "stability", "ceni2022",
          "Ceni 2022: ROAF trains where a plain deep tanh net with standard init stalls", "—",
          _ACC_GAP.format(arm="roaf-tanh"), V.gap, _GAP, "Fashion-MNIST", ("ROAF trains where a plain deep tanh",),
          params={"arm": "roaf-tanh", "base": "tanh-standard"}),
    Claim("lsc_stability", "stability", "lsc",
          "Herranz-Celotti & Rouat: LSC pre-training (ρ = 1) rescues the standard-init tanh net", "—",
          _ACC_GAP.format(arm="tanh-standard-lsc"), V.gap, _GAP, "Fashion-MNIST",
          ("rescues the standard-init tanh net",), params={"arm": "tanh-standard-lsc", "base": "tanh-standard"}),
    Claim("lsc_radius", "lsc_spectrum", "lsc",
          "Herranz-Celotti & Rouat: LSC pre-training drives ρ(∂h_{l+1}/∂h_l) of every layer to its target", "—",
          "max / median |λ| and r.m.s. σ of the layer Jacobians before → after LSC", V.lsc_radius,
          {"tolerance": 0.05}, "Fashion-MNIST", ("rescues the standard-init tanh net",)),
    Claim("tgelu_variance", "tgelu", "ramaswamy2023",
          "Ramaswamy et al. 2023: tGELU + output clipping trains consistently (low across-seed variance)",
          "lower across-seed variance, smaller update variance and smoother training than GELU",
          "last-epoch test acc mean ± std over seeds, tgelu-clip vs gelu", V.tgelu_variance,
          {"reproduced": 2.0, "partly": 1.2}, "Fashion-MNIST", ("the script's **full budget**",)),
    Claim("tgelu_mlp", "stability", "ramaswamy2023", "Ramaswamy et al. 2023: tGELU + clipping trains a deep MLP", "—",
          "test acc of tgelu-he-clip vs tanh-normalized, depth-20 stability MLP", V.tgelu_mlp,
          {"of_reference": 0.95, "chance": 0.1, "above_chance": 0.1}, "Fashion-MNIST",
          ("tGELU + clipping in a deep MLP",)),
    Claim("dqn_no_target", "dqn", "ramaswamy2023",
          "Ramaswamy et al. 2023: with tGELU + output clipping, DQN needs no target network (CartPole)",
          "no-target tGELU DQN learns as well as with a target, GELU without a target is unstable",
          "final greedy return mean ± std over seeds per arm", V.dqn_no_target, {"reproduced": 0.9, "partly": 0.5},
          "CartPole-v1", ("DQN needs no target network",), decisive=False),
    Claim("dqn_memory", "dqn", "ramaswamy2023",
          "Ramaswamy et al. 2023: dropping the target network halves the Q-learning memory", "—",
          "bytes of Q-learning state per seed (params + target + optimizer state)", V.dqn_memory,
          {"reproduced": 0.55, "partly": 1.0}, "CartPole-v1", ("halves the Q-learning memory",), decisive=False),
    Claim("avg_grad_deep", "avg_grad", "avg_grad",
          "Averaged gradient + RMSProp (ICLR 2025 submission): fewer iterations on a deep tanh net",
          "≈ 3× (median training loss); trains over a wider lr range",
          "iterations-to-target speed-up over RMSProp per averaged-gradient method, deepest net", V.avg_grad_deep,
          {"reproduced": 2.0, "partly": 1.2}, "Fashion-MNIST", ("wider trainable lr range (decisive budget)",),
          runs=("epochs5",)),
    Claim("avg_grad_deep_mnist5k", "avg_grad", "avg_grad",
          "Averaged gradient + RMSProp: fewer iterations on the 30-layer tanh net — MNIST digits (5k subset)",
          "≈ 3× (median training loss)",
          "iterations-to-target speed-up over RMSProp per averaged-gradient method, deepest net", V.avg_grad_deep,
          {"reproduced": 2.0, "partly": 1.2}, "MNIST 5k subset", ("deep tanh net — **real MNIST digits",),
          runs=("mnist5k",), full_only=True),
    Claim("avg_grad_shallow", "avg_grad", "avg_grad", "same, shallow control", "no difference",
          "iterations-to-target speed-up over RMSProp per averaged-gradient method, 1 × width control",
          V.avg_grad_shallow, {"low": 0.8, "high": 1.25}, "Fashion-MNIST", ("same, shallow control",),
          runs=("steps600",)),
    Claim("roaf_jacobian", "roaf_depth", "ceni2022",
          "Ceni 2022: ROAF keeps the input-output Jacobian well-conditioned with depth",
          "singular values near 1 at any depth", "log10 spread σ_max/σ_min and σ_max per model, deepest depth",
          V.roaf_jacobian, {"decades": 1}, "Fashion-MNIST", ("Jacobian well-conditioned with depth",),
          runs=("engine_d10k",)),
    Claim("roaf_init", "roaf_init", "ceni2022",
          "Ceni 2022: at init, ROAF keeps every singular value of the input-output Jacobian O(1) at 50,000 layers",
          "singular values near 1 at any depth", "spread (decades) and mean log10 σ of the best row, deepest depth",
          V.roaf_init, {"spread": 1, "mean": 1}, "Fashion-MNIST", ("O(1) at 50,000 layers — where, at init?",)),
    Claim("roaf_deep_train", "roaf_depth", "ceni2022", "Ceni 2022: a very deep ROAF MLP trains by backprop",
          "trains at 50,000 layers", "test acc of ROAF vs plain tanh at the trained depth", V.roaf_deep_train,
          {"reproduced": 0.6, "above_tanh": 0.05, "chance": 0.1}, "Fashion-MNIST",
          ("(decisive: the init from the init study)",), runs=("d50k_alpha09999_adam",)),
    Claim("roaf_psmnist", "roaf_psmnist", "ceni2022",
          "Ceni 2022: ROAF RNN on permuted sequential MNIST after 1 epoch", "> 94 % after epoch 1 (MNIST)",
          "epoch-1 test acc per cell", V.roaf_psmnist, {"reproduced": 0.94, "below_best": 0.02},
          "permuted sequential Fashion-MNIST", ("after 1 epoch (full training set)",), decisive=False),
    Claim("roaf_memory", "roaf_memory", "ceni2022",
          "Ceni 2022: ROAF RNN learns dependencies 10,000 steps back (adding problem)", "solved at T = 10,000",
          "largest lag T solved (every seed) per cell", V.roaf_memory, {"reproduced": 10_000, "margin": 0},
          "generated adding problem", ("learns dependencies 10,000 steps back",), decisive=False),
    Claim("lsc_rnn_radii", "lsc_rnn", "lsc",
          "Herranz-Celotti & Rouat: LSC drives every RNN transition radius to its target", "radii at ρ",
          "depth and time radii before → after LSC per (cell, depth, ρ)", V.lsc_rnn_radii, {"tolerance": 0.15},
          "sequential Fashion-MNIST", ("drives every transition radius to its target",)),
    Claim("lsc_rnn_accuracy", "lsc_rnn", "lsc",
          "Herranz-Celotti & Rouat: LSC pre-training improves deep RNN accuracy (ρ = 0.5 best)",
          "LSC helps; ρ = 0.5 best when deep", "test acc none / ρ = 1 / ρ = 0.5 per (cell, depth)",
          V.lsc_rnn_accuracy, _TIES_COUNT, "sequential Fashion-MNIST",
          ("(larger budget: full data, 2,000 steps, 2 seeds)",)),
    Claim("lsc_rnn_deep", "lsc_rnn", "lsc",
          "Herranz-Celotti & Rouat: ρ = 0.5 is the best LSC target for deep RNN stacks (depth 5)",
          "LSC helps; ρ = 0.5 best for deep stacks", "test acc none / ρ = 1 / ρ = 0.5 at each cell's deepest depth",
          V.lsc_rnn_deep, _TIES_COUNT, "sequential Fashion-MNIST", ("— **LSTM and ALIF**",), full_only=True),
    Claim("lsc_ffn", "lsc_ffn", "lsc",
          "Herranz-Celotti & Rouat: feed-forward LSC pre-training to ρ = 1 matches or beats He/Glorot",
          "LSC ≥ He, Glorot for sin/relu/cos", "best test acc over lr of glorot / he / lsc per activation",
          V.lsc_ffn, _TIES_COUNT, "Fashion-MNIST", (f"{_LSC_FFN} (issue's 30 × 128)",), decisive=False),
    # Decisive ledger rows (full only).
    Claim("glorot_shapeset", "glorot_shapeset", "glorot2010",
          "Glorot & Bengio 2010 Table 1 on Shapeset-3x2, 200 k updates: normalized init lowers the test error",
          "Tanh 27.15 / Tanh N 15.60; Softsign 16.27 / Softsign N 16.06 (Tanh 27.15 / Tanh N 15.60); Sigmoid 82.61 "
          "(the worst row of Table 1; chance 88.9)", "test error % per activation, standard → normalized init",
          V.glorot_shapeset, _TIES_COUNT, "Shapeset-3x2",
          ("Shapeset-3x2 (decisive budget: 200 k updates", "**Softsign** at the same 200 k-update budget",
           "**Sigmoid** at the same 200 k-update budget"), full_only=True),
    Claim("glorot_mnist5k", "glorot_mnist5k", "glorot2010",
          "Glorot & Bengio 2010 Table 1, MNIST column (5 × 1000, SGD minibatch 10): normalized init lowers the test "
          "error — MNIST digits (5k subset)",
          "MNIST: Softsign 1.64 / Softsign N 1.72 / Tanh 1.76 / Tanh N 1.64 / Sigmoid 2.21",
          "test error % per activation, standard → normalized init", V.glorot_table1, _TIES_COUNT, "MNIST 5k subset",
          ("Table 1, **MNIST column**",), full_only=True),
    Claim("roaf_psmnist_mnist5k", "roaf_psmnist_search", "ceni2022",
          "Ceni 2022: ROAF RNN on permuted sequential MNIST after 1 epoch — the setting searched on validation "
          "(MNIST 5k subset)", "> 94 % after epoch 1 (MNIST, 60,000 images)",
          "epoch-1 test acc of ROAF at the chosen setting and of the baselines", V.roaf_psmnist_search,
          {"reproduced": 0.94, "below_best": 0.02}, "MNIST 5k subset", ("the setting searched on validation",),
          full_only=True),
    Claim("roaf_psmnist_mnist5k_ep10", "roaf_psmnist_search", "ceni2022",
          "Ceni 2022: ROAF RNN on permuted sequential MNIST after 10 epochs (MNIST 5k subset)",
          "> 98 % after epoch 10 (MNIST)", "ROAF test acc after the last paper epoch", V.roaf_psmnist_last_epoch,
          {"reproduced": 0.98, "partly": 0.94}, "MNIST 5k subset", ("the chosen setting, MNIST 5k subset",),
          full_only=True),
    *(Claim(f"roaf_memory_{t}", "roaf_memory_search", "ceni2022",
            f"Ceni 2022: ROAF RNN learns dependencies far back, β free (the {t} task)", "solved at T = 10,000",
            f"largest lag T solved per cell, {t} task (runs merged)", V.roaf_memory_search,
            {"reproduced": 10_000, "margin": 0}, "generated tasks", ("remembers an input 10,000 steps back",),
            params={"task": t}, full_only=True) for t in ("first", "adding", "copy")),
    Claim("roaf_copy", "roaf_copy", "ceni2022",
          "Ceni 2022: ROAF RNN learns dependencies far back — the copy task at growing lag T",
          "copy task solved at long lags", "largest lag T solved per cell (runs merged), ROAF's lowest loss ratio",
          V.roaf_copy, {"margin": 0}, "generated copy task", ("the **copy task** at growing lag T",),
          full_only=True),
    *(Claim(f"lsc_ffn_grid_{act}", "lsc_ffn_grid", "lsc",
            f"Herranz-Celotti & Rouat: feed-forward LSC (ρ = 1) matches or beats He/Glorot — the issue's full grid, "
            f"{act}", "LSC ≥ He, Glorot", f"{act}: test acc of glorot / he / lsc at each arm's best lr",
            V.lsc_ffn_grid, _TIES_COUNT, "Fashion-MNIST", (f"full grid, **{act}**",), params={"act": act},
            runs=(f"grid1000_{act}",), full_only=True) for act in ("relu", "sin", "cos")),
)
CLAIMS_BY_NAME: dict[str, Claim] = {c.name: c for c in CLAIMS}


def claim_runs(claim: Claim, scale: str) -> list[str]:
  """The runs of its study whose JSONs `claim` reads at `scale`: [""] for a single run, else its `runs` (all of
  the study's when empty)."""
  rs = STUDIES[claim.study].run_flags(scale)
  if "" in rs:
    return [""]
  bad = [r for r in claim.runs if r not in rs]
  if bad:
    raise ValueError(f"claim {claim.name}: run {bad[0]!r} is not a {scale} run of {claim.study} ({', '.join(rs)})")
  return list(claim.runs or rs)


def full_commands(claim: Claim) -> list[str]:
  """``scripts/X.py --flag=value …`` of each full-scale run `claim` reads; for a decisive claim, commands written
  verbatim in WORKSPACE.md's ledger (tests/test_reproduce_all.py checks)."""
  s = STUDIES[claim.study]
  return [" ".join([s.script, *s.run_flags("full")[r]]) for r in claim_runs(claim, "full")]
