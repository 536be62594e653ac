"""LSC pre-training for deep feed-forward nets (Herranz-Celotti & Rouat 2023/24), Fashion-MNIST.

A DeepMLP (30 layers × 128 in the paper's setting) with activation ∈ {sin,
relu, cos}; arms: Glorot (normalized) init, He init, and Glorot init followed
by LSC pre-training to ρ(∂h_{l+1}/∂h_l) = 1 (and read-out radius 1). Adam over
a learning-rate grid, several seeds (vmapped by the engine); the table gives,
per arm, the best mean test accuracy over learning rates. Every run goes
through `train_and_evaluate` with ``config.lsc.*``; the pre-training of one
(activation, seed) is computed once and reused across learning rates.

Writes results/lsc/ffn[_quick|_tiny].{md,json}.

  python scripts/reproduce_lsc_ffn.py --quick
  python scripts/reproduce_lsc_ffn.py            # full grid (hours on 2 cores)
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

ARMS = {"glorot": ("glorot", "none"), "he": ("he", "none"), "lsc": ("glorot", "lsc")}

PRESETS = {
    "tiny": dict(acts="sin", arms="glorot,lsc", depth=4, width=16, lrs="1e-3", seeds=1, num_steps=10,
                 num_train=256, num_test=128, lsc_steps=5, lsc_batch=4, batch_size=32),
    "quick": dict(acts="sin,relu,cos", arms="glorot,he,lsc", depth=10, width=64, lrs="1e-3", seeds=1,
                  num_steps=300, num_train=10000, num_test=2000, lsc_steps=100, lsc_batch=4, batch_size=64),
    "full": dict(acts="sin,relu,cos", arms="glorot,he,lsc", depth=30, width=128, lrs="1e-2,1e-3,1e-4,1e-5",
                 seeds=4, num_steps=3000, num_train=0, num_test=0, lsc_steps=500, lsc_batch=8, batch_size=128),
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="small grid, a few minutes on 2 cores")
  p.add_argument("--tiny", action="store_true", help="smoke-test budget")
  for k, v in PRESETS["full"].items():
    p.add_argument(f"--{k}", type=type(v), default=None, help=f"override (full: {v})")
  p.add_argument("--out_dir", default="results/lsc")
  p.add_argument("--tag", default="", help="suffix of the output file names")
  p.add_argument("--workdir", default="")
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


def make_config(act, arm, lr, s):
  init, lsc_arm = ARMS[arm]
  c = lsc_configs.get_config(f"ffn-{act}-{init}-{lsc_arm}")
  c.model.depth, c.model.width = s["depth"], s["width"]
  c.num_steps = s["num_steps"]
  c.log_every = max(1, min(100, s["num_steps"]))
  c.eval_every = c.checkpoint_every = s["num_steps"]
  c.batch_size = s["batch_size"]
  c.num_seeds = s["seeds"]
  c.dataset.num_train, c.dataset.num_test = s["num_train"], s["num_test"]
  c.eval_batch_size = min(1000, s["num_test"] or 1000)
  c.optimizer.learning_rate = lr
  c.lsc.steps = s["lsc_steps"]
  c.lsc.batch = s["lsc_batch"]
  c.progress = "none"
  return c


def main(argv=None):
  a, preset, s = parse_args(argv)
  from stable_training.train import train_and_evaluate
  root = a.workdir or tempfile.mkdtemp(prefix="lsc_ffn_")
  runs = []
  for act in s["acts"].split(","):
    for arm in s["arms"].split(","):
      for lr in map(float, s["lrs"].split(",")):
        t0 = time.time()
        summ = train_and_evaluate(make_config(act, arm, lr, s), os.path.join(root, f"{act}-{arm}-{lr:g}"))
        r = {"act": act, "arm": arm, "lr": lr, "test_accuracy": summ["final"]["test_accuracy"]["mean"],
             "test_accuracy_std": summ["final"]["test_accuracy"]["std"],
             "train_loss": summ["final"]["train_loss"]["mean"], "seconds": time.time() - t0}
        if "lsc" in summ:
          for when in ("before", "after"):
            r[f"depth_{when}"] = float(np.mean([np.mean(x["depth"]) for x in summ["lsc"][f"lsc_{when}"]]))
        runs.append(r)
        print(json.dumps(r), flush=True)
  best = {}
  for r in runs:
    k = (r["act"], r["arm"])
    acc = r["test_accuracy"] if np.isfinite(r["test_accuracy"]) else -1.0
    if k not in best or acc > best[k]["test_accuracy"]:
      best[k] = r
  os.makedirs(a.out_dir, exist_ok=True)
  stem = os.path.join(a.out_dir, "ffn" + ("" if preset == "full" else f"_{preset}")
                      + (f"_{a.tag}" if a.tag else ""))
  with open(stem + ".json", "w") as f:
    json.dump({"preset": preset, "settings": s, "runs": runs,
               "best": [best[k] for k in sorted(best)]}, f, indent=2)
  lines = [f"# LSC pre-training, {s['depth']}×{s['width']} MLP on Fashion-MNIST ({preset})", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), "",
           "Best test accuracy over learning rates (mean ± std over seeds).", "",
           "| activation | arm | best test acc | best lr | mean ρ_depth before→after |", "|---|---|---|---|---|"]
  for (act, arm), r in sorted(best.items()):
    rad = f"{r['depth_before']:.3f} → {r['depth_after']:.3f}" if "depth_before" in r else "—"
    lines.append(f"| {act} | {arm} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | {r['lr']:g} | {rad} |")
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return runs


if __name__ == "__main__":
  main()
