"""LSC pre-training for deep RNNs (Herranz-Celotti & Rouat 2023/24), a sweep through the engine.

Arms per (cell, depth): no pre-training, LSC ρ = 1, LSC ρ = 0.5, on
sequential Fashion-MNIST. LSTM, GRU and ReLU-RNN read one 28-pixel row per
step (T = 28); ALIF reads the spike-latency code of the image (28 steps × 784
inputs). Each run is the config ``experiments/configs/lsc.py:rnn-CELL-DEPTH-RHO``
at the preset's budget (flags override it), run by the engine (`study.run`),
which pre-trains with ``config.lsc.*`` and logs the per-layer mean radii
before/after. --tiny shrinks the configs with ``lsc.py:tiny-…`` (scikit-learn
digits, one 8-pixel row per step, seconds).

Writes ``<out>/rnn[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default:
results/lsc for the full grid, a temporary folder for --quick / --tiny): test
accuracy (mean ± std over seeds) and the mean time/depth/read-out radii
before → after pre-training; the PNG (`study.plot_curve_panels`): one panel per (cell,
depth), the learning curve of each arm (mean over seeds, min–max band) — test
accuracy vs step when the runs evaluate more than once, else the training
loss. The JSON's ``curves`` holds the same data (steps, per-seed values), so
``study.plot_curve_panels(json.load(open(STEM + ".json"))["curves"], STEM + ".png")``
re-renders it. A rerun that finds a run finished (``--workdir_root`` of an
earlier run: the engine returns its summary at once) keeps that run's training
time from the JSON it overwrites.

  python scripts/reproduce_lsc_rnn.py --quick     # lstm, alif; depth 2; ~minutes
  python scripts/reproduce_lsc_rnn.py             # the full grid (hours on 2 cores)
  python scripts/reproduce_lsc_rnn.py --tiny      # smoke test on digits
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
ARMS = {"none": "no pre-training", "1": "LSC ρ=1", "0.5": "LSC ρ=0.5"}

PRESETS = {
    "tiny": dict(cells="lstm", depths="2", arms="1", width=8, num_steps=10, num_train=256,
                 num_test=128, lsc_steps=30, seeds=1, batch_size=32, lr=1e-3),
    "quick": dict(cells="lstm,alif", depths="2", arms="none,1,0.5", width=32, num_steps=300,
                  num_train=10000, num_test=2000, lsc_steps=100, seeds=1, batch_size=64, lr=1e-3),
    "full": dict(cells="lstm,gru,relu_rnn,alif", depths="2,5", arms="none,1,0.5", width=64,
                 num_steps=3000, num_train=0, num_test=0, lsc_steps=500, seeds=2, batch_size=128, lr=1e-3),
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


def make_config(cell: str, depth: int, arm: str, s: dict):
  """The engine config of one (cell, depth, arm) at budget `s`."""
  c = lsc_configs.get_config(("tiny-" if FLAGS.tiny else "") + f"rnn-{cell}-{depth}-{arm}")
  c.model.depth = depth
  c.model.width = s["width"]
  # --tiny logs 5 records (its learning curves get several points), the other settings every 100 steps.
  log_every = max(1, s["num_steps"] // 5) if FLAGS.tiny else max(1, min(100, s["num_steps"]))
  study.set_budget(c, s["num_steps"], log_every=log_every)
  c.batch_size = s["batch_size"]
  c.num_seeds = s["seeds"]
  c.dataset.num_train = s["num_train"]
  c.dataset.num_test = s["num_test"]
  c.eval_batch_size = min(1000, s["num_test"] or 1000)
  c.optimizer.learning_rate = s["lr"]
  c.lsc.steps = s["lsc_steps"]
  c.progress = "none"
  return c


def _mean_radii(per_seed, key):
  vals = [np.mean(r[key]) for r in per_seed if np.size(r[key])]
  return float(np.mean(vals)) if vals else float("nan")


def run_row(cell: str, depth: int, arm: str, summ: dict, seconds: float) -> dict:
  """One JSON row from a run's summary: final test accuracy (mean, std over seeds), mean LSC radii."""
  row = {"cell": cell, "depth": depth, "arm": arm,
         "test_accuracy": summ["final"]["test_accuracy"]["mean"],
         "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
         "train_loss": summ["final"]["train_loss"]["mean"], "seconds": seconds}
  if "lsc" in summ:
    for when in ("before", "after"):
      per_seed = summ["lsc"][f"lsc_{when}"]
      for k in ("time", "depth", "readout"):
        row[f"{k}_{when}"] = _mean_radii(per_seed, k)
  return row


def previous_seconds(path: str, s: dict) -> dict:
  """{run name: seconds} of the results JSON at `path` if it was written with the settings `s` (else {})."""
  prev = study.previous_payload(path, "settings", s)
  return {f"rnn-{r['cell']}-{r['depth']}-{r['arm']}": r["seconds"] for r in prev.get("rows", [])}


def main(argv):
  del argv
  s = settings()
  study.setup_process([s["seeds"]])
  out = study.out_dir(STUDY)
  name = study.stem("rnn")
  prev_seconds = previous_seconds(os.path.join(out, f"{name}.json"), s)
  rows, dataset, workdirs = [], None, {}
  for cell in s["cells"].split(","):
    for depth in map(int, s["depths"].split(",")):
      for arm in s["arms"].split(","):
        run_name = f"rnn-{cell}-{depth}-{arm}"
        workdirs[cell, depth, arm] = study.workdir(STUDY, run_name)
        done = study.finished_before(workdirs[cell, depth, arm], s["num_steps"])
        t0 = time.time()
        summ = study.run(make_config(cell, depth, arm, s), STUDY, run_name)
        dataset = summ["dataset"]
        # A finished run is not retrained: keep the time it took when it was (the table this rerun overwrites).
        seconds = prev_seconds[run_name] if done and run_name in prev_seconds else time.time() - t0
        rows.append(run_row(cell, depth, arm, summ, seconds))
        print(json.dumps(rows[-1]), flush=True)
  cmd = study.command("scripts/reproduce_lsc_rnn.py", ["quick", "tiny", "tag", "data_dir", *PRESETS["full"]])
  lines = [f"# LSC pre-training, deep RNNs on sequential {DATASET_NAMES.get(dataset, dataset)} ({study.setting()})", "",
           f"Regenerate: `{cmd}`", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "| cell | depth | arm | test acc | ρ_time before→after | ρ_depth before→after | ρ_readout before→after | s |",
           "|---|---|---|---|---|---|---|---|"]
  fmt = lambda r, k: (f"{r[k + '_before']:.3f} → {r[k + '_after']:.3f}" if f"{k}_before" in r else "—")
  for r in rows:
    lines.append(f"| {r['cell']} | {r['depth']} | {ARMS[r['arm']]} | {r['test_accuracy']:.4f} ± "
                 f"{r['test_accuracy_std']:.4f} | {fmt(r, 'time')} | {fmt(r, 'depth')} | {fmt(r, 'readout')} | "
                 f"{r['seconds']:.0f} |")
  # Learning curves: one panel per (cell, depth), one curve per arm.
  metric = study.curve_metric(workdirs.values(), "test_accuracy", "train_loss")
  short, ylabel, log_y = study.CURVE_LABELS[metric]
  depths = [int(d) for d in s["depths"].split(",")]
  panels = [{"title": f"{cell}, depth {depth}",
             "curves": {ARMS[arm]: study.run_curve(workdirs[cell, depth, arm], metric) for arm in s["arms"].split(",")}}
            for cell in s["cells"].split(",") for depth in depths]
  png = os.path.join(out, f"{name}.png")
  when = "" if metric == "test_accuracy" else " (test accuracy evaluated once, at the end)"
  curves = {"figure": png, "metric": metric, "ylabel": ylabel, "log_y": log_y, "panels": panels,
            "ncols": len(depths),
            "title": f"LSC pre-training, deep RNNs (width {s['width']}) on sequential "
                     f"{DATASET_NAMES.get(dataset, dataset)}\n{short} vs step{when}"}
  study.plot_curve_panels(curves, png)
  lines += ["", f"Learning curves (per cell and depth, each arm; {short}, mean over seeds and min–max band): "
                f"`{name}.png`"]
  table = "\n".join(lines)
  study.write_results(out, table, {"preset": study.setting(), "settings": s, "dataset": dataset, "command": cmd,
                                   "rows": rows, "curves": curves}, name=name)
  print(table)
  print(f"wrote {os.path.join(out, name)}.md, {png}")


if __name__ == "__main__":
  study.app_run(main)
