"""LSC pre-training for deep feed-forward nets (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

A DeepMLP (30 layers × 128 in the paper's setting) with activation ∈ {sin,
relu, cos}; arms: Glorot (normalized) init, He init, and Glorot init followed
by LSC pre-training to ρ(∂h_{l+1}/∂h_l) = 1 (and read-out radius 1). Adam over
a learning-rate grid, several seeds (vmapped by the engine); the table gives,
per arm, the best mean test accuracy over learning rates.

Each run is the config ``experiments/configs/lsc.py:ffn-ACT-INIT-ARM`` at the
preset's budget (flags override it), run by the engine (`study.run`), which
pre-trains with ``config.lsc.*`` and logs the per-layer radii before/after; the
pre-training of one (activation, seed) is computed once per process and reused
across learning rates. --tiny shrinks the configs with ``lsc.py:tiny-…``
(scikit-learn digits, seconds).

Writes ``<out>/ffn[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default:
results/lsc for the full grid, a temporary folder for --quick / --tiny). The
PNG (`study.plot_curve_panels`): one panel per activation, the learning curve of each arm
at its best learning rate (mean over seeds, min–max band) — test accuracy vs
step when the runs evaluate more than once, else the training loss; the JSON's
``curves`` holds the same data (steps, per-seed values), so
``study.plot_curve_panels(json.load(open(STEM + ".json"))["curves"], STEM + ".png")``
re-renders it. A rerun that finds a run finished (``--workdir_root`` of an
earlier run: the engine returns its summary at once) keeps that run's training
time from the JSON it overwrites.

  python scripts/reproduce_lsc_ffn.py --quick
  python scripts/reproduce_lsc_ffn.py            # full grid (hours on 2 cores)
  python scripts/reproduce_lsc_ffn.py --tiny     # smoke test on digits
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags
import numpy as np

from experiments.configs import lsc as lsc_configs
from stable_training import study

STUDY = "lsc"
ARMS = {"glorot": ("glorot", "none"), "he": ("he", "none"), "lsc": ("glorot", "lsc")}

PRESETS = {
    "tiny": dict(acts="sin", arms="glorot,lsc", depth=4, width=16, lrs="1e-3", seeds=1, num_steps=10,
                 num_train=256, num_test=128, lsc_steps=20, lsc_batch=4, batch_size=32),
    "quick": dict(acts="sin,relu,cos", arms="glorot,he,lsc", depth=10, width=64, lrs="1e-3", seeds=1,
                  num_steps=300, num_train=10000, num_test=2000, lsc_steps=100, lsc_batch=4, batch_size=64),
    "full": dict(acts="sin,relu,cos", arms="glorot,he,lsc", depth=30, width=128, lrs="1e-2,1e-3,1e-4,1e-5",
                 seeds=4, num_steps=3000, num_train=0, num_test=0, lsc_steps=500, lsc_batch=8, batch_size=128),
}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "digits": "digits"}

study.define_flags(STUDY)
study.define_preset_flags(PRESETS["full"])
FLAGS = flags.FLAGS


def settings() -> dict:
  """The preset of the setting with the flags that were given on top."""
  s = study.preset_values(PRESETS["full"], PRESETS)
  for arm in s["arms"].split(","):
    if arm not in ARMS:
      raise app.UsageError(f"--arms: unknown arm {arm!r}; valid: {', '.join(ARMS)}")
  return s


def make_config(act: str, arm: str, lr: float, s: dict):
  """The engine config of one (activation, arm, learning rate) at budget `s`."""
  init, lsc_arm = ARMS[arm]
  variant = f"ffn-{act}-{init}-{lsc_arm}"
  c = lsc_configs.get_config(("tiny-" if FLAGS.tiny else "") + variant)
  c.model.depth, c.model.width = s["depth"], s["width"]
  # --tiny logs 5 records (its learning curves get several points), the other settings every 100 steps.
  log_every = max(1, s["num_steps"] // 5) if FLAGS.tiny else max(1, min(100, s["num_steps"]))
  study.set_budget(c, s["num_steps"], log_every=log_every)
  c.batch_size = s["batch_size"]
  c.num_seeds = s["seeds"]
  c.dataset.num_train, c.dataset.num_test = s["num_train"], s["num_test"]
  c.eval_batch_size = min(1000, s["num_test"] or 1000)
  c.optimizer.learning_rate = lr
  c.lsc.steps = s["lsc_steps"]
  c.lsc.batch = s["lsc_batch"]
  c.progress = "none"
  return c


def run_row(act: str, arm: str, lr: float, summ: dict, seconds: float) -> dict:
  """One JSON row from a run's summary: final test accuracy (mean, std over seeds), mean LSC radii."""
  r = {"act": act, "arm": arm, "lr": lr, "test_accuracy": summ["final"]["test_accuracy"]["mean"],
       "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
       "train_loss": summ["final"]["train_loss"]["mean"], "seconds": seconds}
  if "lsc" in summ:
    for when in ("before", "after"):
      per_seed = summ["lsc"][f"lsc_{when}"]
      r[f"depth_{when}"] = float(np.mean([np.mean(x["depth"]) for x in per_seed]))
      r[f"readout_{when}"] = float(np.mean([np.mean(x["readout"]) for x in per_seed]))
  return r


def previous_seconds(path: str, s: dict) -> dict:
  """{run name: seconds} of the results JSON at `path` if it was written with the settings `s` (else {})."""
  prev = study.previous_payload(path, "settings", s)
  return {f"ffn-{r['act']}-{r['arm']}-{r['lr']:g}": r["seconds"] for r in prev.get("runs", [])}


def main(argv):
  del argv
  s = settings()
  study.setup_process([s["seeds"]])
  out = study.out_dir(STUDY)
  name = study.stem("ffn")
  prev_seconds = previous_seconds(os.path.join(out, f"{name}.json"), s)
  runs, dataset, workdirs = [], None, {}
  for act in s["acts"].split(","):
    for arm in s["arms"].split(","):
      for lr in map(float, s["lrs"].split(",")):
        run_name = f"ffn-{act}-{arm}-{lr:g}"
        workdirs[run_name] = study.workdir(STUDY, run_name)
        done = study.finished_before(workdirs[run_name], s["num_steps"])
        t0 = time.time()
        summ = study.run(make_config(act, arm, lr, s), STUDY, run_name)
        dataset = summ["dataset"]
        # A finished run is not retrained: keep the time it took when it was (the table this rerun overwrites).
        seconds = prev_seconds[run_name] if done and run_name in prev_seconds else time.time() - t0
        runs.append(run_row(act, arm, lr, summ, seconds))
        print(json.dumps(runs[-1]), flush=True)
  best = {}
  for r in runs:
    k = (r["act"], r["arm"])
    acc = r["test_accuracy"] if np.isfinite(r["test_accuracy"]) else -1.0
    if k not in best or acc > best[k]["test_accuracy"]:
      best[k] = r
  cmd = study.command("scripts/reproduce_lsc_ffn.py", ["quick", "tiny", "tag", "data_dir", *PRESETS["full"]])
  lines = [f"# LSC pre-training, {s['depth']}×{s['width']} MLP on {DATASET_NAMES.get(dataset, dataset)} "
           f"({study.setting()})", "",
           f"Regenerate: `{cmd}`", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "Best test accuracy over learning rates (mean ± std over seeds).", "",
           "| activation | arm | best test acc | best lr | mean ρ_depth before→after |", "|---|---|---|---|---|"]
  for (act, arm), r in sorted(best.items()):
    rad = f"{r['depth_before']:.3f} → {r['depth_after']:.3f}" if "depth_before" in r else "—"
    lines.append(f"| {act} | {arm} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | {r['lr']:g} | {rad} |")
  # Learning curves: per activation, each arm at its best learning rate.
  best_dirs = {k: workdirs[f"ffn-{k[0]}-{k[1]}-{r['lr']:g}"] for k, r in best.items()}
  metric = study.curve_metric(best_dirs.values(), "test_accuracy", "train_loss")
  short, ylabel, log_y = study.CURVE_LABELS[metric]
  panels = []
  for act in s["acts"].split(","):
    arms = [arm for arm in s["arms"].split(",") if (act, arm) in best]
    panels.append({"title": f"{act}: each arm at its best learning rate",
                   "curves": {f"{arm} (lr {best[act, arm]['lr']:g})": study.run_curve(best_dirs[act, arm], metric)
                              for arm in arms}})
  png = os.path.join(out, f"{name}.png")
  when = "" if metric == "test_accuracy" else " (test accuracy evaluated once, at the end)"
  curves = {"figure": png, "metric": metric, "ylabel": ylabel, "log_y": log_y, "panels": panels,
            "title": f"LSC pre-training, {s['depth']}×{s['width']} MLP on "
                     f"{DATASET_NAMES.get(dataset, dataset)}\n{short} vs step{when}"}
  study.plot_curve_panels(curves, png)
  lines += ["", f"Learning curves (each arm at its best lr; {short}, mean over seeds and min–max band): "
                f"`{name}.png`"]
  table = "\n".join(lines)
  study.write_results(out, table, {"preset": study.setting(), "settings": s, "dataset": dataset, "command": cmd,
                                   "runs": runs, "best": [best[k] for k in sorted(best)], "curves": curves},
                      name=name)
  print(table)
  print(f"wrote {os.path.join(out, name)}.md, {png}")


if __name__ == "__main__":
  study.app_run(main)
