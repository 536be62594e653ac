"""DQN without a target network (Ramaswamy, Bhatnagar & Saxena 2023): with tGELU + output clipping, is it stable?

Arms (``experiments/configs/dqn.py``): {GELU, tGELU(−1, 1)} × {Polyak target
(τ = 0.005, λ = 2), no target (λ = 1)} plus tGELU without target and without
output-layer clipping (ablation). SGD lr 3e-4, γ = 0.99, batch 256, one update
per env step, uniform replay, 5 episodes of greedy evaluation capped at 1,000
steps. Each arm is one run of the ``dqn`` trainer (`stable_training.rl.trainer`,
through `stable_training.train.trainers.run`): its seeds vmapped in one
compiled program, a checkpoint every few evaluations, non-finite values
recorded (``on_nonfinite = "continue"``: GELU without a target is expected to
diverge on some seeds). It is what
``python -m experiments.main --config=experiments/configs/dqn.py:ARM`` runs
with the setting's overrides.

Budgets (`SETTINGS`):

* ``full``: the paper trains 1e6 env steps with a 1e6 buffer. One update
  (batch 256, 128-128 MLP) costs ≈ 0.4 ms of this 2-core CPU per seed
  (8 seeds vmapped: ≈ 2,300 env steps/s, `scripts/bench_dqn.py`), i.e.
  ≈ 5 h for 5 arms × 8 seeds × 1e6 steps, so our "full" setting is
  8 seeds × 50,000 env steps (5,000 warm-up, ε 1 → 0.1 over the first 10,000 steps —
  as the paper decays it over its first 10 %; greedy eval every 2,500; buffer 1e5):
  ≈ 15 min of 2 idle cores.
* ``quick``: 2 seeds × 12,000 steps (< 3 min idle).
* ``tiny``: 2 seeds × a few hundred steps with a small batch, for the smoke test.

Reported (`table`, `plot`): mean ± std greedy return curves, the step at which
the across-seed mean evaluation return first reaches the threshold (475 for
CartPole-v1; 950 = 0.95 × the 1,000-step cap for the 3-action variant without
time limit), per-seed steps to threshold, final return (mean ± across-seed
std), memory (bytes of params + target + optimizer state per seed) and env
steps/s.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import tempfile
import time
from typing import Any

import numpy as np

# checkpoint_every: a multiple of eval_every (the end is always saved).
SETTINGS = {
    "full": dict(seeds=8, config=dict(
        total_steps=50_000, learning_starts=5_000, eval_every=2_500,
        eps_decay_steps=10_000, buffer_size=100_000, checkpoint_every=10_000)),
    "quick": dict(seeds=2, config=dict(
        total_steps=12_000, learning_starts=2_000, eval_every=2_000,
        eps_decay_steps=6_000, buffer_size=20_000, checkpoint_every=4_000)),
    "tiny": dict(seeds=2, config=dict(
        total_steps=300, learning_starts=100, eval_every=100,
        eps_decay_steps=200, buffer_size=512, batch_size=32,
        eval_max_steps=200, eval_episodes=2, checkpoint_every=300)),
}

THRESHOLDS = {"CartPole-v1": 475.0, "CartPole-3a": 950.0}


@dataclasses.dataclass(frozen=True)
class Settings:
  """Budget, environment, arms and seeds (defaults: the full budget, every arm, CartPole-v1).

  `setting`: a key of `SETTINGS`; `seeds` / `total_steps`: 0 = the setting's; `arms`: names of
  ``experiments/configs/dqn.py`` (() = all of its ``ARMS``, in that order); `seed`: the first seed.
  """
  setting: str = "full"
  env: str = "CartPole-v1"
  seeds: int = 0
  total_steps: int = 0
  arms: tuple = ()
  seed: int = 0

  def __post_init__(self):
    if self.setting not in SETTINGS:
      raise ValueError(f"setting {self.setting!r}; valid: {', '.join(sorted(SETTINGS))}")
    if self.env not in THRESHOLDS:
      raise ValueError(f"env {self.env!r}; valid: {', '.join(sorted(THRESHOLDS))}")
    if self.seeds < 0 or self.total_steps < 0:
      raise ValueError(f"seeds {self.seeds}, total_steps {self.total_steps}: need ≥ 0 (0 = the setting's)")


def quick(**kw) -> Settings:
  """Minutes: 2 seeds × 12,000 env steps."""
  return Settings(**{"setting": "quick", **kw})


def tiny(**kw) -> Settings:
  """Seconds: 2 seeds × 300 env steps, batch 32 (the suite's smoke test)."""
  return Settings(**{"setting": "tiny", **kw})


def arm_names(s: Settings) -> list[str]:
  """The arms of `s` (all of ``dqn.ARMS`` when empty); an unknown arm raises ValueError."""
  from experiments.configs.dqn import ARMS
  arms = list(s.arms) if s.arms else list(ARMS)
  bad = [a for a in arms if a not in ARMS]
  if bad:
    raise ValueError(f"unknown arms {bad}; valid: {list(ARMS)}")
  return arms


def stem(s: Settings) -> str:
  """Output stem and workdir folder: ``<setting>[_<env>]`` (no suffix for CartPole-v1)."""
  return s.setting + ("" if s.env == "CartPole-v1" else "_" + s.env)


def first_step_at_least(steps, values, threshold):
  """The first entry of `steps` whose value is ≥ threshold, else None."""
  hit = np.flatnonzero(np.asarray(values) >= threshold)
  return int(steps[hit[0]]) if hit.size else None


def summarize_returns(steps, ret, threshold, learning_starts) -> dict:
  """Curve statistics of greedy returns `ret` [seeds, evals] at `steps`.

  Steps-to-threshold and the across-seed spread only count evaluations after
  learning started (step > learning_starts): before it the greedy policy is the
  untrained network's, which occasionally balances the pole by chance.
  """
  steps, ret = np.asarray(steps), np.asarray(ret, dtype=float)
  learned = steps > learning_starts
  s_l, r_l = steps[learned], ret[:, learned]
  per_seed = [first_step_at_least(s_l, r, threshold) for r in r_l]
  reached = [x for x in per_seed if x is not None]
  final = ret[:, -1]
  return dict(
      eval_steps=steps.tolist(),
      eval_return_mean=ret.mean(0).tolist(),
      eval_return_std=ret.std(0).tolist(),
      eval_return_per_seed=ret.tolist(),
      threshold=threshold,
      untrained_return_mean=(float(ret[:, ~learned][:, -1].mean())
                             if (~learned).any() else None),
      steps_to_threshold_mean_curve=first_step_at_least(s_l, r_l.mean(0),
                                                        threshold),
      steps_to_threshold_per_seed=per_seed,
      seeds_reaching_threshold=len(reached),
      median_steps_to_threshold=(float(np.median(reached)) if reached
                                 else None),
      final_return_mean=float(final.mean()),
      final_return_std=float(final.std()),
      last3_return_mean=float(ret[:, -3:].mean()),
      mean_across_seed_std=float(r_l.std(0).mean()),
  )


def arm_config(arm: str, overrides: dict, seeds: int, seed: int):
  """The launcher config (`experiments/configs/dqn.py`) of one arm with the
  setting's `overrides`, resolved and validated."""
  from experiments.configs import dqn as dqn_configs
  from stable_training.rl import trainer
  c = dqn_configs.get_config(arm)
  c.update(dict(overrides, num_seeds=seeds, seed=seed, progress="none",
                on_nonfinite="continue"))
  return trainer.resolve(c)


def configs(s: Settings) -> dict[str, Any]:
  """{arm: resolved config} of every arm of `s` at its budget."""
  spec = SETTINGS[s.setting]
  base = dict(spec["config"], env_name=s.env)
  if s.total_steps:
    base["total_steps"] = s.total_steps
  return {name: arm_config(name, base, s.seeds or spec["seeds"], s.seed) for name in arm_names(s)}


def run_arm(config, workdir: str, compile_s: float = float("nan")) -> dict:
  """Runs (or resumes) one arm through the trainer in `workdir`; summarizes."""
  from stable_training.train import trainers
  summary = trainers.run(config, workdir)
  hist = summary["history"]
  steps = np.asarray([h["step"] for h in hist])

  def stat(key):  # [seeds, evals]; null (non-finite) → NaN
    return np.asarray([h[key]["per_seed"] for h in hist], dtype=float).T

  ret, loss = stat("eval_return"), stat("loss")
  updates = np.asarray([h["updates"] for h in hist])
  final = summary["final"]
  return dict(
      config=config.to_dict(),
      **summarize_returns(steps, ret, THRESHOLDS[config.env_name],
                          config.learning_starts),
      final_q_mean=float(np.mean(final["q_mean"]["per_seed"], dtype=float)),
      final_loss_mean=float(np.mean(final["loss"]["per_seed"], dtype=float)),
      # Chunks inside the warm-up have no updates (loss NaN by design).
      finite=bool(np.all(np.isfinite(ret))
                  and np.all(np.isfinite(loss[:, updates > 0]))),
      first_nonfinite_step=summary["first_nonfinite_step"],
      memory_bytes=summary["memory_bytes_per_seed"],
      compile_seconds=(compile_s if np.isfinite(compile_s)
                       else summary["compile_seconds"]),
      run_seconds=summary["run_seconds"],
      env_steps_per_sec=summary["env_steps_per_sec"],
      seeds=config.num_seeds,
      workdir=workdir)


def run(s: Settings, root: str | None = None, command: str = "", log=None) -> dict[str, Any]:
  """Trains every arm of `s` in ``root/<stem>/<arm>`` (resumable; `root` None: a temporary folder removed at
  the end, workdirs recorded as None) and returns the payload ``{"meta", "arms": {arm: statistics}}``.
  Every arm compiles first, two at a time (XLA compiles release the GIL), so the runs are timed undisturbed."""
  import jax
  from stable_training.rl import trainer
  say = log or (lambda line: print(line, flush=True))
  cfgs = configs(s)
  arms = list(cfgs)
  with contextlib.ExitStack() as stack:
    base = root or stack.enter_context(tempfile.TemporaryDirectory(prefix="reproduce_dqn_"))
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      compile_s = dict(zip(arms, pool.map(trainer.precompile, cfgs.values())))
    say(f"compiled {len(arms)} arms in {time.time() - t0:.0f} s")
    results = {}
    for name in arms:
      t0 = time.time()
      results[name] = r = run_arm(cfgs[name], os.path.join(base, stem(s), name), compile_s[name])
      say(f"{name}: final {r['final_return_mean']:.1f} ± {r['final_return_std']:.1f}, steps→thr "
          f"{r['steps_to_threshold_mean_curve']}, {r['env_steps_per_sec']:.0f} env steps/s "
          f"({time.time() - t0:.0f} s)")
      if not root:
        r["workdir"] = None  # removed with the temporary directory
  c = cfgs[arms[0]]
  meta = dict(setting=s.setting, env=s.env, seeds=s.seeds or SETTINGS[s.setting]["seeds"],
              total_steps=c.total_steps, threshold=THRESHOLDS[s.env], workdir_root=root or None,
              command=command, jax_version=jax.__version__, backend=jax.default_backend())
  return {"meta": meta, "arms": results}


def _fmt(x, digits=0):
  return "—" if x is None else f"{x:.{digits}f}"


def table(payload: dict, command: str = "") -> str:
  """The markdown report: per arm the untrained and final returns, steps to the threshold (mean curve, per
  seed), the across-seed spread, final Q, memory per seed, env steps/s and compile seconds; `command`
  (default: the payload's) is the one named."""
  meta, results = payload["meta"], payload["arms"]
  lines = [
      f"# DQN with/without target network — {meta['setting']} setting, {meta['env']}",
      "",
      f"{meta['seeds']} seeds, {meta['total_steps']} env steps per seed, "
      f"threshold {meta['threshold']:.0f}. Command: `{command or meta['command']}`",
      "",
      "Steps to threshold count evaluations after the warm-up only; "
      "'untrained' is the greedy return of the initial network.",
      "",
      "| arm | untrained return | steps to mean≥thr | seeds ≥thr | "
      "median steps (reached) | final return (mean ± std) | last-3 evals mean | "
      "mean across-seed std | final mean Q(s,a) | memory (B/seed) | "
      "env steps/s | compile s |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, r in results.items():
    lines.append(
        f"| {name} | {_fmt(r['untrained_return_mean'], 1)} | "
        f"{_fmt(r['steps_to_threshold_mean_curve'])} | "
        f"{r['seeds_reaching_threshold']}/{r['seeds']} | "
        f"{_fmt(r['median_steps_to_threshold'])} | "
        f"{r['final_return_mean']:.1f} ± {r['final_return_std']:.1f} | "
        f"{r['last3_return_mean']:.1f} | {r['mean_across_seed_std']:.1f} | "
        f"{r['final_q_mean']:.1f} | {r['memory_bytes']} | "
        f"{r['env_steps_per_sec']:.0f} | {r['compile_seconds']:.1f} |")
  return "\n".join(lines)


def plot(payload: dict, path: str) -> None:
  """Greedy return curves (mean ± std over seeds) of every arm into the PNG `path`, the threshold dotted and
  the warm-up shaded."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  meta, results = payload["meta"], payload["arms"]
  fig = Figure(figsize=(7, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for name, r in results.items():
    x = np.asarray(r["eval_steps"])
    m, s = np.asarray(r["eval_return_mean"]), np.asarray(r["eval_return_std"])
    ax.plot(x, m, label=name)
    ax.fill_between(x, m - s, m + s, alpha=0.15)
  ax.axhline(meta["threshold"], color="k", ls=":", lw=1)
  warm = next(iter(results.values()))["config"]["learning_starts"]
  ax.axvspan(0, warm, color="0.9", zorder=0, label="warm-up (untrained net, random actions)")
  ax.set_ylim(bottom=0)
  ax.set_xlabel("env steps")
  ax.set_ylabel("greedy eval return (mean ± std over seeds)")
  ax.set_title(f"DQN on {meta['env']} ({meta['setting']}, {meta['seeds']} seeds)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def write_outputs(payload: dict, out_dir: str, stem_: str) -> str:
  """Writes ``out_dir/stem_.{json,md,png}`` (JSON with indent 1); returns the markdown table."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, stem_ + ".json"), "w") as f:
    json.dump(dict(meta=payload["meta"], arms=payload["arms"]), f, indent=1)
  md = table(payload)
  with open(os.path.join(out_dir, stem_ + ".md"), "w") as f:
    f.write(md + "\n")
  plot(payload, os.path.join(out_dir, stem_ + ".png"))
  return md


def resummarize(path: str) -> str:
  """Recomputes the curve statistics of a results JSON in place (no training) and rewrites its .md/.png next
  to it; returns the markdown table."""
  with open(path) as f:
    data = json.load(f)
  for r in data["arms"].values():
    r.update(summarize_returns(r["eval_steps"], r["eval_return_per_seed"], r["threshold"],
                               r["config"]["learning_starts"]))
  out_dir, name = os.path.split(path)
  return write_outputs(data, out_dir, os.path.splitext(name)[0])
