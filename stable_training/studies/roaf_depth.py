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

ROAF filters: ``filter_mode='fast'`` (the default here; O_l = diag(s_l) P_l O_base,
each O_l Haar but not independent, see `stable_training.models.roaf`) because
re-deriving an independent Haar O_l by QR per layer makes a 50k-layer step
≈ 40× slower on CPU; ``'haar'`` runs the exact variant.

Then it trains the networks of `train_models` at `train_depth` through the
engine (``roaf.py:mlp-D`` / ``roaf.py:tanh-D``: SGD momentum 0.9 or Adam,
global-norm clipping 1.0) for `train_steps` steps of `train_batch` at `lr`
(one epoch of Fashion-MNIST at this depth is out of reach on 2 shared CPU
cores; the table states the steps) and reports test accuracy. The first / last
loss are the engine's first / last train records: means over `train_log_every`
steps.

`run(settings, root) → payload`, `table(payload) → markdown`, `plot(payload, path)`;
the entry point is ``scripts/reproduce_roaf_depth.py``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import numpy as np

from stable_training.studies import sweep as sweep_lib

KINDS = ("roaf", "roaf_glorot", "tanh_mlp")
OPTIMIZERS = ("momentum", "adam")
FILTER_MODES = ("haar", "fast")
# The payload's setting record: these fields, in this order (the JSON format of the script's results).
SETTING_FIELDS = ("depths", "width", "alpha", "batch", "train_depth", "train_steps", "train_batch",
                  "train_log_every", "lr", "optimizer", "train_models", "filter_mode", "num_train", "num_test")
TRAIN_LOOP = "the engine (roaf.py:mlp-D / tanh-D)"
UNDERFLOW = float(np.log10(np.finfo(np.float32).tiny)) + 0.01   # log10 of float32's smallest normal


@dataclasses.dataclass(frozen=True)
class Settings:
  """Depths, width, training budget (defaults: the full setting of the script's flags).

  `quick` / `tiny` / `tag`: the budget preset and output-name suffix these settings came from, recorded
  in the payload; `tiny` also switches the data to digits (`experiments.configs.default.tiny`).
  `data_dir`: the dataset folder ("" = the loader's default).
  """
  depths: tuple = (10, 100, 1000, 10000, 50000)   # depths of the at-init measurements
  width: int = 64
  alpha: float = 0.99
  batch: int = 32                  # examples of the at-init gradient measurement
  train_depth: int = 50000
  train_steps: int = 100
  train_batch: int = 64
  train_log_every: int = 10        # steps per engine train record (first/last loss are their means)
  lr: float = 0.01
  optimizer: str = "momentum"      # momentum: SGD with momentum 0.9; adam: Adam
  train_models: tuple = ("roaf", "tanh_mlp")
  filter_mode: str = "fast"
  num_train: int = 60000           # training examples (the first N)
  num_test: int = 0                # test examples (the first N; 0 = all)
  data_dir: str = ""
  quick: bool = False
  tiny: bool = False
  tag: str = ""

  def __post_init__(self):
    for kind in self.train_models:
      if kind not in KINDS:
        raise ValueError(f"train_models: unknown model {kind!r}; valid: {', '.join(KINDS)}")
    sweep_lib.check_choice("optimizer", self.optimizer, OPTIMIZERS)
    sweep_lib.check_choice("filter_mode", self.filter_mode, FILTER_MODES)
    if not self.depths or any(int(d) < 1 for d in self.depths):
      raise ValueError(f"depths: {self.depths!r}; expected one or more depths ≥ 1")


# Budgets of quick / tiny (the script's presets: a flag given on the command line wins).
PRESETS = {
    "quick": dict(depths=(10, 100, 1000), train_depth=1000, train_steps=100, num_train=10000),
    "tiny": dict(depths=(10,), width=16, train_depth=10, train_steps=4, train_log_every=2, num_train=512,
                 batch=8, train_batch=16),
}


def quick(**kw) -> Settings:
  """Minutes: depths 10, 100, 1000; training at depth 1000 on 10,000 examples."""
  return Settings(**{**PRESETS["quick"], "quick": True, **kw})


def tiny(**kw) -> Settings:
  """Seconds: depth 10, width 16, 4 training steps on digits (the suite's smoke test)."""
  return Settings(**{**PRESETS["tiny"], "tiny": True, **kw})


def make_config(s: Settings, kind: str, depth: int):
  """Engine config of network `kind` at `depth`: ``roaf.py:mlp-D`` or ``roaf.py:tanh-D`` at budget `s`."""
  from experiments.configs import default, roaf
  c = roaf.get_config(("tanh" if kind == "tanh_mlp" else "mlp") + f"-{depth}")
  if s.tiny:
    default.tiny(c)   # digits, seconds-long
  if s.data_dir:
    c.dataset.data_dir = s.data_dir
  c.model.width, c.model.alpha, c.model.filter_mode = s.width, s.alpha, s.filter_mode
  if kind == "roaf_glorot":
    c.model.roaf_init = "kernel_init"   # W glorot_normalized, like the input/output layers
  c.dataset.num_train, c.dataset.num_test = s.num_train, s.num_test
  c.batch_size = s.train_batch
  c.optimizer.learning_rate = s.lr
  c.optimizer.name = s.optimizer
  sweep_lib.set_budget(c, s.train_steps, log_every=math.gcd(s.train_steps, s.train_log_every))
  c.progress = "none" if s.tiny else "auto"
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


def measure(s: Settings, kind: str, depth: int, x, y) -> dict:
  """At init (PRNGKey(0)), on the batch (x, y): log10 of the singular values σ of J = ∂h_{L−1}/∂h_0 (max, min,
  spread log10 σ_max/σ_min) and the norms ‖∇W_l‖ of the cross-entropy's gradient per hidden layer (first, last,
  first/last, log10 of the smallest)."""
  import jax
  import jax.numpy as jnp
  import optax
  from stable_training import models
  from stable_training.diagnostics import jacobian_singular_values
  from stable_training.models.mlp import DenseLayer

  c = make_config(s, kind, depth)
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
  return {"model": kind, "depth": depth, "width": s.width,
          "log10_sigma_max": float(log_sv.max()), "log10_sigma_min": float(log_sv.min()),
          "log10_spread": float(log_sv.max() - log_sv.min()),
          "grad_first": float(norms[0]), "grad_last": float(norms[-1]), "grad_ratio": ratio,
          "log10_grad_min": float(np.log10(max(norms.min(), 1e-45))),
          "seconds": time.time() - t0}


# ----------------------------------------------------------------- training ---
def train(s: Settings, sweep: sweep_lib.Sweep, kind: str) -> dict:
  """Trains `kind` at the train depth through the engine in ``depth_KIND_DEPTH``; a row of the training table
  (test accuracy, first/last record's mean train loss, the loss curve; NaN where the loss went non-finite)."""
  from stable_training.train import NonFiniteError
  c = make_config(s, kind, s.train_depth)
  row = {"model": kind, "depth": s.train_depth, "width": s.width, "steps": s.train_steps,
         "batch": s.train_batch, "lr": s.lr}
  try:
    summ = sweep.run(f"depth_{kind}_{s.train_depth}", c)
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


def setting_record(s: Settings) -> dict:
  """The settings as the payload records them: `SETTING_FIELDS` (lists as comma strings, like the flags),
  then quick, tiny, tag."""
  rec = {k: getattr(s, k) for k in SETTING_FIELDS}
  rec["depths"] = ",".join(str(d) for d in s.depths)
  rec["train_models"] = ",".join(s.train_models)
  return {**rec, "quick": s.quick, "tiny": s.tiny, "tag": s.tag}


def run(s: Settings, root: str, command: str = "", log=None) -> dict[str, Any]:
  """The at-init measurements at every depth, then the training runs in workdirs under `root` (finished runs
  read back); returns the payload ``{"setting", "depth_sweep", "training"}`` (`command`: its Regenerate line)."""
  from stable_training.train import load_data
  log = log or (lambda line: print(line, flush=True))
  d = load_data(make_config(s, "roaf", s.depths[0]))
  x, y = d["x_train"][:s.batch], d["y_train"][:s.batch]
  rows = []
  for depth in s.depths:
    for kind in KINDS:
      rows.append(measure(s, kind, int(depth), x, y))
      log(json.dumps(rows[-1]))
  sweep = sweep_lib.Sweep(root, log=log)
  trains = []
  for kind in s.train_models:
    trains.append(train(s, sweep, kind))
    log(json.dumps(trains[-1]))
  setting = {**setting_record(s), "dataset": d["name"], "test_images": int(d["x_test"].shape[0]),
             "train_loop": TRAIN_LOOP, "command": command}
  return {"setting": setting, "depth_sweep": rows, "training": trains}


def _fmt_sv(v):
  return "0 (f32 underflow)" if v <= UNDERFLOW else f"{v:.2f}"


def _fmt_secs(v):
  return f"{v:.2f}" if not math.isfinite(v) or v >= 0.1 else f"{v:.2g}"


def table(payload: dict, command: str | None = None) -> str:
  """The markdown report: the at-init table (one row per model and depth) and the training table. `command`:
  the Regenerate line (default: the one the payload records). Reads payloads of earlier revisions too."""
  a, rows, trains = payload["setting"], payload["depth_sweep"], payload["training"]
  command = a.get("command") if command is None else command
  k = a.get("train_log_every")     # absent in results of the pre-engine script (one loss per step)
  filters = f"filters '{a['filter_mode']}'" if "filter_mode" in a else "filters not recorded (an earlier revision)"
  lines = [f"# ROAF depth study (Ceni 2022) — {a['dataset']}, width {a['width']}, α = {a['alpha']}, {filters}", ""]
  if command:
    lines += [f"Regenerate: `{command}`", ""]
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
  return "\n".join(lines)


def plot(payload: dict, path: str) -> str:
  """PNG at `path`: log10 σ_max/σ_min and log10 σ_max vs depth per model and, when the payload has loss curves,
  the trained networks' train loss vs step (ln 10 = chance). Returns `path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from stable_training.diagnostics.plot import plot_learning_curves
  rows, trains = payload["depth_sweep"], payload["training"]
  curves = [t for t in trains if t.get("curve")]
  fig = Figure(figsize=(13.5 if curves else 9, 3.5))
  FigureCanvasAgg(fig)
  ax = fig.subplots(1, 3 if curves else 2)
  for kind in KINDS:
    rr = [r for r in rows if r["model"] == kind]
    ok = [r for r in rr if r["log10_sigma_max"] > UNDERFLOW]
    ax[0].plot([r["depth"] for r in ok], [r["log10_spread"] for r in ok], "o-", label=kind)
    ax[1].plot([r["depth"] for r in rr], [r["log10_sigma_max"] for r in rr], "o-", label=kind)
  for axis, t in zip(ax, ("log10 σ_max/σ_min (underflowed points omitted)",
                          "log10 σ_max (−37.9 = f32 underflow)")):
    axis.set_xscale("log")
    axis.set_xlabel("depth")
    axis.set_title(t, fontsize=9)
    axis.legend()
  if curves:   # the learning curve of each trained network (mean train loss per record)
    plot_learning_curves({f"{t['model']}, depth {t['depth']} (test acc {t['test_accuracy']:.3f})": t["curve"]
                          for t in curves}, "train loss", xlabel="step", title="training", ax=ax[2])
    ax[2].axhline(math.log(10), color="0.6", lw=0.8, ls=":", label="chance (ln 10)")
    ax[2].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path
