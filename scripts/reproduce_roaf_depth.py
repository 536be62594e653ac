"""ROAF depth study (Ceni 2022): Jacobian spread and gradient balance vs depth, then training through the engine.

For depths L ∈ {10, 100, 1k, 10k, 50k} (full), width 64, and three networks —
ROAF MLP (x_{l+1} = α O_l x_l + β tanh(W_l x_l + b_l), critical init, config
``experiments/configs/roaf.py:mlp-L``, see `stable_training.models.roaf`), the
same with glorot_normalized W (``roaf_init='kernel_init'``) and a plain tanh
`DeepMLP` (glorot_normalized, ``roaf.py:tanh-L``) — it measures at init, on a
batch of the run's training data (`stable_training.train.load_data`):

* the singular values of J = ∂h_{L−1}/∂h_0, the Jacobian of the hidden stack
  (exact SVD of the width×width Jacobian via forward mode,
  `stable_training.diagnostics.jacobian_singular_values`; the layer maps are
  the models' `diagnostic_layer_maps`): log10 σ_max, log10 σ_min and the
  spread σ_max/σ_min;
* the per-layer weight-gradient norms of the cross-entropy on that batch:
  ‖∇W_first‖/‖∇W_last‖ over the scanned hidden layers.

ROAF filters: ``--filter_mode fast`` (default here; O_l = diag(s_l) P_l O_base,
each O_l Haar but not independent, see `stable_training.models.roaf`) because
re-deriving an independent Haar O_l by QR per layer makes a 50k-layer step
≈ 40× slower on CPU; ``--filter_mode haar`` runs the exact variant.

Then it trains the ROAF MLP and the plain tanh MLP at ``--train_depth`` through
the engine (`study.run` of ``roaf.py:mlp-D`` / ``roaf.py:tanh-D``: SGD
momentum 0.9, global-norm clipping 1.0) for ``--train_steps`` steps of
``--train_batch`` at ``--lr`` (one epoch of Fashion-MNIST at this depth is out
of reach on 2 shared CPU cores; the table states the steps) and reports test
accuracy. The first / last loss are the engine's first / last train records:
means over ``--train_log_every`` steps.

Writes ``<out>/depth[_quick|_tiny][_TAG].{md,json,png}`` (``--out`` default:
results/roaf for the full setting, a temporary folder for --quick / --tiny).

  python scripts/reproduce_roaf_depth.py            # full (hours on 2 cores)
  python scripts/reproduce_roaf_depth.py --quick    # depths 10,100,1000; < 3 min idle
  python scripts/reproduce_roaf_depth.py --tiny     # smoke test on digits
  python scripts/reproduce_roaf_depth.py --render_only results/roaf/depth   # re-render md/png from the json
"""
from __future__ import annotations

import json
import math
import os
import time

from absl import app, flags
import numpy as np

from experiments.configs import default, roaf
from stable_training import study

STUDY = "roaf"
KINDS = ("roaf", "roaf_glorot", "tanh_mlp")

study.define_flags(STUDY)
flags.DEFINE_string("depths", "10,100,1000,10000,50000", "Depths of the at-init measurements (comma list).")
flags.DEFINE_integer("width", 64, "Width of every network.")
flags.DEFINE_float("alpha", 0.99, "ROAF α.")
flags.DEFINE_integer("batch", 32, "Examples of the at-init gradient measurement.")
flags.DEFINE_integer("train_depth", 50000, "Depth of the trained networks.")
flags.DEFINE_integer("train_steps", 100, "Train steps.")
flags.DEFINE_integer("train_batch", 64, "Train batch size.")
flags.DEFINE_integer("train_log_every", 10, "Steps per engine train record (first/last loss are their means).")
flags.DEFINE_float("lr", 0.01, "Learning rate.")
flags.DEFINE_enum("optimizer", "momentum", ["momentum", "adam"], "momentum: SGD with momentum 0.9; adam: Adam.")
flags.DEFINE_string("train_models", "roaf,tanh_mlp", f"Networks to train (comma list of {', '.join(KINDS)}).")
flags.DEFINE_enum("filter_mode", "fast", ["haar", "fast"], "ROAF filters O_l.")
flags.DEFINE_integer("num_train", 60000, "Training examples (the first N).")
flags.DEFINE_integer("num_test", 0, "Test examples (the first N; 0 = all).")
flags.DEFINE_string("render_only", "", "Re-render STEM.md/png from STEM.json and exit.")
FLAGS = flags.FLAGS

# Budgets of --quick / --tiny; a flag given on the command line wins.
PRESETS = {
    "quick": dict(depths="10,100,1000", train_depth=1000, train_steps=100, num_train=10000),
    "tiny": dict(depths="10", width=16, train_depth=10, train_steps=4, train_log_every=2, num_train=512,
                 batch=8, train_batch=16),
}
SETTING_FLAGS = ("depths", "width", "alpha", "batch", "train_depth", "train_steps", "train_batch",
                 "train_log_every", "lr", "optimizer", "train_models", "filter_mode", "num_train", "num_test")


def settings() -> dict:
  """The flags' values with the setting's preset applied where a flag was not given."""
  s = study.preset_values(SETTING_FLAGS, PRESETS)
  for kind in s["train_models"].split(","):
    if kind not in KINDS:
      raise app.UsageError(f"--train_models: unknown model {kind!r}; valid: {', '.join(KINDS)}")
  return s


def make_config(kind: str, depth: int, s: dict):
  """Engine config of network `kind` at `depth`: ``roaf.py:mlp-D`` or ``roaf.py:tanh-D`` at budget `s`."""
  c = roaf.get_config(("tanh" if kind == "tanh_mlp" else "mlp") + f"-{depth}")
  if FLAGS.tiny:
    default.tiny(c)   # digits, seconds-long
  c.model.width, c.model.alpha, c.model.filter_mode = s["width"], s["alpha"], s["filter_mode"]
  if kind == "roaf_glorot":
    c.model.roaf_init = "kernel_init"   # W glorot_normalized, like the input/output layers
  c.dataset.num_train, c.dataset.num_test = s["num_train"], s["num_test"]
  c.batch_size = s["train_batch"]
  c.optimizer.learning_rate = s["lr"]
  c.optimizer.name = s["optimizer"]
  study.set_budget(c, s["train_steps"], log_every=math.gcd(s["train_steps"], s["train_log_every"]))
  c.progress = "none" if FLAGS.tiny else "auto"
  return c


# ------------------------------------------------------------------ at init ---
def hidden_map(model, params):
  """h_0 ↦ h_{L−1} for one example: the scanned hidden stack through the model's layer maps."""
  import jax
  hook = getattr(model, "diagnostic_layer_maps", None)
  if callable(hook):          # ROAF MLP: layer_fn(θ_l, h) = α O_l h + β φ(W_l h + b_l)
    layer_fn, xs = hook(params)
  else:                       # DeepMLP: the scanned DenseLayer
    from stable_training.models.mlp import DenseLayer
    body = DenseLayer(model.width, model.activation, model.kernel_init)
    layer_fn, xs = (lambda p, h: body.apply({"params": p}, h[None])[0]), params["hidden"]["layer"]
  return lambda h: jax.lax.scan(lambda h, th: (layer_fn(th, h), None), h, xs)[0]


def measure(kind: str, depth: int, s: dict, x, y) -> dict:
  """Jacobian singular values of the hidden stack and first/last gradient norms at init (PRNGKey(0))."""
  import jax
  import jax.numpy as jnp
  import optax
  from stable_training import models
  from stable_training.diagnostics import jacobian_singular_values
  from stable_training.models.mlp import DenseLayer

  c = make_config(kind, depth, s)
  model = models.build_model(c.model, num_classes=10, input_shape=x.shape[1:])
  input_layer = DenseLayer(model.width, model.activation, "glorot_normalized")

  @jax.jit
  def at_init(key, x, y):
    params = model.init(key, x)["params"]
    h0 = input_layer.apply({"params": params["input"]}, x[:1])[0]
    sv = jacobian_singular_values(hidden_map(model, params), h0, method="exact")
    ce = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()
    k = jax.grad(ce)(params)["hidden"]["layer"]["dense"]["kernel"]
    return sv, jnp.sqrt(jnp.sum(k.reshape(k.shape[0], -1) ** 2, axis=1))

  t0 = time.time()
  sv, norms = map(np.asarray, at_init(jax.random.PRNGKey(0), x, y))
  with np.errstate(divide="ignore", invalid="ignore"):
    log_sv = np.log10(np.maximum(sv, np.finfo(np.float32).tiny))
    ratio = float(norms[0] / norms[-1]) if norms[-1] > 0 else float("inf")
  return {"model": kind, "depth": depth, "width": s["width"],
          "log10_sigma_max": float(log_sv.max()), "log10_sigma_min": float(log_sv.min()),
          "log10_spread": float(log_sv.max() - log_sv.min()),
          "grad_first": float(norms[0]), "grad_last": float(norms[-1]), "grad_ratio": ratio,
          "log10_grad_min": float(np.log10(max(norms.min(), 1e-45))),
          "seconds": time.time() - t0}


# ----------------------------------------------------------------- training ---
def train(kind: str, s: dict) -> dict:
  """Trains `kind` at the train depth through the engine; a row of the training table."""
  from stable_training.train import NonFiniteError
  c = make_config(kind, s["train_depth"], s)
  row = {"model": kind, "depth": s["train_depth"], "width": s["width"], "steps": s["train_steps"],
         "batch": s["train_batch"], "lr": s["lr"]}
  try:
    summ = study.run(c, STUDY, f"depth_{kind}_{s['train_depth']}")
  except NonFiniteError as e:   # the engine stops at the first non-finite loss / gradient
    return {**row, "test_accuracy": float("nan"), "first_loss": float("nan"), "final_loss": float("nan"),
            "finite": False, "error": str(e), "compile_s": float("nan"), "sec_per_step": float("nan")}
  losses = [h["train_loss"]["mean"] for h in summ["history"]]
  sps = summ["steps_per_sec"]
  return {**row, "dataset": summ["dataset"], "test_accuracy": summ["final"]["test_accuracy"]["mean"],
          "curve": [[h["step"], h["train_loss"]["mean"]] for h in summ["history"]],
          "first_loss": losses[0], "final_loss": losses[-1], "log_every": c.log_every,
          "finite": bool(np.all(np.isfinite(losses))), "compile_s": summ["compile_seconds"],
          "sec_per_step": 1.0 / sps if sps and math.isfinite(sps) else float("nan")}


def main(argv):
  del argv
  if FLAGS.render_only:
    render(FLAGS.render_only)
    return
  study.setup_process()
  s = settings()
  depths = [int(d) for d in s["depths"].split(",")]
  d = study.load_data(make_config("roaf", depths[0], s))
  x, y = d["x_train"][:s["batch"]], d["y_train"][:s["batch"]]
  rows = []
  for depth in depths:
    for kind in KINDS:
      rows.append(measure(kind, depth, s, x, y))
      print(json.dumps(rows[-1]), flush=True)
  trains = []
  for kind in s["train_models"].split(","):
    trains.append(train(kind, s))
    print(json.dumps(trains[-1]), flush=True)

  out = study.out_dir(STUDY)
  stem = os.path.join(out, study.stem("depth"))
  setting = {**s, "quick": FLAGS.quick, "tiny": FLAGS.tiny, "tag": FLAGS.tag, "dataset": d["name"],
             "test_images": int(d["x_test"].shape[0]),
             "train_loop": "the engine (roaf.py:mlp-D / tanh-D)",
             "command": study.command("scripts/reproduce_roaf_depth.py",
                                      ["quick", "tiny", "tag", "data_dir", *SETTING_FLAGS])}
  with open(stem + ".json", "w") as f:
    json.dump({"setting": setting, "depth_sweep": rows, "training": trains}, f, indent=1)
  render(stem)


UNDERFLOW = float(np.log10(np.finfo(np.float32).tiny)) + 0.01


def _fmt_sv(v):
  return "0 (f32 underflow)" if v <= UNDERFLOW else f"{v:.2f}"


def _fmt_secs(v):
  return f"{v:.2f}" if not math.isfinite(v) or v >= 0.1 else f"{v:.2g}"


def render(path_stem: str) -> None:
  """Markdown table + PNG from `path_stem`.json (rerun with --render_only)."""
  with open(path_stem + ".json") as f:
    res = json.load(f)
  a, rows, trains = res["setting"], res["depth_sweep"], res["training"]
  k = a.get("train_log_every")     # absent in results of the pre-engine script (one loss per step)
  lines = [f"# ROAF depth study (Ceni 2022) — {a['dataset']}, width {a['width']}, α = {a['alpha']}, "
           f"filters '{a['filter_mode']}'", ""]
  if a.get("command"):
    lines += [f"Regenerate: `{a['command']}`", ""]
  lines += ["roaf = ROAF MLP with W at 1.1× the critical gain √(1−α²)/β (orthogonal); roaf_glorot = "
            "ROAF MLP with glorot_normalized W; tanh_mlp = plain tanh DeepMLP, glorot_normalized.", "",
            "Hidden-stack Jacobian ∂h_{L−1}/∂h_0 (exact SVD of the width×width Jacobian) and "
            f"weight-gradient norms of the scanned hidden layers at init (one batch of {a['batch']}). "
            "Spread and ratio are undefined (—) where everything underflowed to 0 in float32. "
            "The Jacobian is float32: singular values below ≈ 1e-7·σ_max are at the SVD's rounding "
            "floor, so a log10 spread above ≈ 7 reads as \"at least ≈ 7\".", "",
            "| model | depth | log10 σ_max | log10 σ_min | log10 σ_max/σ_min | ‖∇W_first‖/‖∇W_last‖ "
            "| log10 min_l ‖∇W_l‖ |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    under = r["log10_sigma_max"] <= UNDERFLOW
    spread = "—" if under else f"{r['log10_spread']:.2f}"
    ratio = f"{r['grad_ratio']:.3g}" if math.isfinite(r["grad_ratio"]) and r["grad_last"] > 0 else "— (0/0)"
    gmin = "0 (underflow)" if r["log10_grad_min"] <= -44 else f"{r['log10_grad_min']:.1f}"
    lines.append(f"| {r['model']} | {r['depth']} | {_fmt_sv(r['log10_sigma_max'])} "
                 f"| {_fmt_sv(r['log10_sigma_min'])} | {spread} | {ratio} | {gmin} |")
  n_test = a.get("test_images", 1000 if a["tiny"] else 10000)
  first = "first loss" if k is None else f"mean loss first {min(k, a['train_steps'])} steps"
  last = "mean loss last 10 steps" if k is None else f"mean loss last {min(k, a['train_steps'])} steps"
  lines += ["", f"Training at depth {a['train_depth']} ({a['train_steps']} steps of batch "
            f"{a['train_batch']}, {'Adam' if a.get('optimizer') == 'adam' else 'SGD momentum 0.9'}, lr {a['lr']}, "
            f"grad-norm clip 1; "
            f"{a['train_loop']}; {a['num_train']} training examples; test on "
            f"{n_test} test images):", "",
            f"| model | depth | steps | {first} | {last} | test acc | s/step |",
            "|---|---|---|---|---|---|---|"]
  for r in trains:
    lines.append(f"| {r['model']} | {r['depth']} | {r['steps']} | {r['first_loss']:.3f} "
                 f"| {r['final_loss']:.3f} | {r['test_accuracy']:.4f} | {_fmt_secs(r['sec_per_step'])} |")
  with open(path_stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = [t for t in trains if t.get("curve")]
    fig, ax = plt.subplots(1, 3 if curves else 2, figsize=(13.5 if curves else 9, 3.5))
    for kind in KINDS:
      rr = [r for r in rows if r["model"] == kind]
      ok = [r for r in rr if r["log10_sigma_max"] > UNDERFLOW]
      ax[0].plot([r["depth"] for r in ok], [r["log10_spread"] for r in ok], "o-", label=kind)
      ax[1].plot([r["depth"] for r in rr], [r["log10_sigma_max"] for r in rr], "o-", label=kind)
    for axis, t in zip(ax, ("log10 σ_max/σ_min (underflowed points omitted)",
                            "log10 σ_max (−37.9 = f32 underflow)")):
      axis.set_xscale("log"); axis.set_xlabel("depth"); axis.set_title(t, fontsize=9); axis.legend()
    if curves:   # the learning curve of each trained network (mean train loss per record)
      from stable_training.diagnostics.plot import plot_learning_curves
      plot_learning_curves({f"{t['model']}, depth {t['depth']} (test acc {t['test_accuracy']:.3f})": t["curve"]
                            for t in curves}, "train loss", xlabel="step", title="training", ax=ax[2])
      ax[2].axhline(math.log(10), color="0.6", lw=0.8, ls=":", label="chance (ln 10)")
      ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_stem + ".png", dpi=100)
  except Exception as e:  # plotting is optional
    print("plot skipped:", e)
  print("\n".join(lines))


if __name__ == "__main__":
  study.app_run(main)
