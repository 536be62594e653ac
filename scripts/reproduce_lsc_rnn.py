"""LSC pre-training for deep RNNs (Herranz-Celotti & Rouat 2023/24), on sequential Fashion-MNIST.

Arms per (cell, depth): no pre-training, LSC ρ = 1, LSC ρ = 0.5. LSTM, GRU and
ReLU-RNN read one 28-pixel row per step (T = 28); ALIF reads the
spike-latency code of the image (28 steps × 784 inputs). Every run goes
through the train engine (`train_and_evaluate` with ``config.lsc.*``), which
logs the per-layer mean radii before/after pre-training.

Writes results/lsc/rnn[_quick|_tiny].{md,json}: test accuracy (mean ± std over
seeds) and the mean time/depth radii before → after pre-training.

  python scripts/reproduce_lsc_rnn.py --quick     # lstm, alif; depth 2; ~minutes
  python scripts/reproduce_lsc_rnn.py             # the full grid (hours on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from experiments.configs import lsc as lsc_configs  # noqa: E402

ARMS = {"none": "no pre-training", "1": "LSC ρ=1", "0.5": "LSC ρ=0.5"}

PRESETS = {
    # name: cells, depths, arms, width, steps, num_train, num_test, lsc_steps, seeds, batch
    "tiny": dict(cells="lstm", depths="2", arms="1", width=8, num_steps=10, num_train=256,
                 num_test=128, lsc_steps=5, seeds=1, batch_size=32, lr=1e-3),
    "quick": dict(cells="lstm,alif", depths="2", arms="none,1,0.5", width=32, num_steps=300,
                  num_train=10000, num_test=2000, lsc_steps=100, seeds=1, batch_size=64, lr=1e-3),
    "full": dict(cells="lstm,gru,relu_rnn,alif", depths="2,5", arms="none,1,0.5", width=64,
                 num_steps=3000, num_train=0, num_test=0, lsc_steps=500, seeds=2, batch_size=128, lr=1e-3),
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="small grid, < 3 min on an idle 2-core machine")
  p.add_argument("--tiny", action="store_true", help="smoke-test budget")
  for k, v in PRESETS["full"].items():
    p.add_argument(f"--{k}", type=type(v), default=None, help=f"override (full: {v})")
  p.add_argument("--out_dir", default="results/lsc")
  p.add_argument("--tag", default="", help="suffix of the output file names")
  p.add_argument("--workdir", default="", help="run directories (default: a temp dir)")
  a = p.parse_args(argv)
  preset = "tiny" if a.tiny else "quick" if a.quick else "full"
  s = dict(PRESETS[preset])
  for k in s:
    if getattr(a, k) is not None:
      s[k] = getattr(a, k)
  for arm in s["arms"].split(","):
    if arm not in ARMS:
      raise SystemExit(f"--arms: unknown arm {arm!r}; valid: {', '.join(ARMS)}")
  return a, preset, s


def make_config(cell, depth, arm, s):
  c = lsc_configs.get_config(f"rnn-{cell}-{depth}-{arm}")
  c.model.width = s["width"]
  c.num_steps = s["num_steps"]
  c.log_every = max(1, min(100, s["num_steps"]))
  c.eval_every = c.checkpoint_every = s["num_steps"]
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


def main(argv=None):
  a, preset, s = parse_args(argv)
  from stable_training.train import train_and_evaluate
  rows = []
  root = a.workdir or tempfile.mkdtemp(prefix="lsc_rnn_")
  for cell in s["cells"].split(","):
    for depth in map(int, s["depths"].split(",")):
      for arm in s["arms"].split(","):
        cfg = make_config(cell, depth, arm, s)
        wd = os.path.join(root, f"{cell}-{depth}-{arm}")
        t0 = time.time()
        summ = train_and_evaluate(cfg, wd)
        row = {"cell": cell, "depth": depth, "arm": arm,
               "test_accuracy": summ["final"]["test_accuracy"]["mean"],
               "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
               "train_loss": summ["final"]["train_loss"]["mean"], "seconds": time.time() - t0}
        if "lsc" in summ:
          for when in ("before", "after"):
            per_seed = summ["lsc"][f"lsc_{when}"]
            for k in ("time", "depth", "readout"):
              row[f"{k}_{when}"] = _mean_radii(per_seed, k)
        rows.append(row)
        print(json.dumps(row), flush=True)
  os.makedirs(a.out_dir, exist_ok=True)
  stem = os.path.join(a.out_dir, "rnn" + ("" if preset == "full" else f"_{preset}")
                      + (f"_{a.tag}" if a.tag else ""))
  with open(stem + ".json", "w") as f:
    json.dump({"preset": preset, "settings": s, "rows": rows}, f, indent=2)
  lines = [f"# LSC pre-training, deep RNNs on sequential Fashion-MNIST ({preset})", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "| cell | depth | arm | test acc | ρ_time before→after | ρ_depth before→after | ρ_readout before→after | s |",
           "|---|---|---|---|---|---|---|---|"]
  fmt = lambda r, k: (f"{r[k + '_before']:.3f} → {r[k + '_after']:.3f}" if f"{k}_before" in r else "—")
  for r in rows:
    lines.append(f"| {r['cell']} | {r['depth']} | {ARMS[r['arm']]} | {r['test_accuracy']:.4f} ± "
                 f"{r['test_accuracy_std']:.4f} | {fmt(r, 'time')} | {fmt(r, 'depth')} | {fmt(r, 'readout')} | "
                 f"{r['seconds']:.0f} |")
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return rows


if __name__ == "__main__":
  main()
