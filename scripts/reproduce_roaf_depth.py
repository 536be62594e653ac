"""ROAF depth study (Ceni 2022): Jacobian spread and gradient balance vs depth, then training.

For depths L ∈ {10, 100, 1k, 10k, 50k} (full), width 64, and two networks —
ROAF MLP (x_{l+1} = α O_l x_l + β tanh(W_l x_l + b_l), critical init, see
`stable_training.models.roaf`) and a plain tanh `DeepMLP` (glorot_normalized)
— it measures at init on Fashion-MNIST inputs:

* the singular values of J = ∂h_{L−1}/∂h_0, the Jacobian of the hidden stack
  (exact SVD of the width×width Jacobian via forward mode,
  `stable_training.diagnostics.jacobian_singular_values`): log10 σ_max,
  log10 σ_min and the spread σ_max/σ_min;
* the per-layer weight-gradient norms of the cross-entropy on one batch:
  ‖∇W_first‖/‖∇W_last‖ over the scanned hidden layers.

ROAF filters: ``--filter_mode fast`` (default here; O_l = diag(s_l) P_l O_base,
each O_l Haar but not independent, see `stable_training.models.roaf`) because
re-deriving an independent Haar O_l by QR per layer makes a 50k-layer step
≈ 40× slower on CPU; ``--filter_mode haar`` runs the exact variant.

Then it trains the deepest ROAF MLP and the plain tanh MLP of the same depth
with our own jitted SGD loop (not the engine: its data package was not
importable when this was written) for ``--train_steps`` steps (one epoch of
Fashion-MNIST at this depth is out of reach on 2 shared CPU cores; the table
states the steps) and reports test accuracy.

Writes results/roaf/depth.{md,json} and depth.png.

  python scripts/reproduce_roaf_depth.py            # full (hours on 2 cores)
  python scripts/reproduce_roaf_depth.py --quick    # depths 10,100,1000; < 3 min idle
  python scripts/reproduce_roaf_depth.py --tiny     # smoke test
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training.diagnostics import jacobian_singular_values
from stable_training.models.mlp import DeepMLP, DenseLayer
from stable_training.models.roaf import ROAFLayer, ROAFMLP

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def load_fashion_mnist(num_train: int, num_test: int, data_dir: str = FMNIST_DIR):
  """Standardized flat Fashion-MNIST (first N examples); synthetic if files are missing."""
  def read(stem, n, is_img):
    path = os.path.join(data_dir, stem + ".gz")
    with gzip.open(path, "rb") as f:
      raw = f.read()
    if is_img:
      return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)[:n].astype(np.float32) / 255
    return np.frombuffer(raw, np.uint8, offset=8)[:n].astype(np.int32)
  try:
    xtr = read("train-images-idx3-ubyte", num_train, True)
    ytr = read("train-labels-idx1-ubyte", num_train, False)
    xte = read("t10k-images-idx3-ubyte", num_test, True)
    yte = read("t10k-labels-idx1-ubyte", num_test, False)
    name = "fashion_mnist"
  except FileNotFoundError:
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(num_train, 784)), rng.normal(size=(num_test, 784))
    ytr, yte = rng.integers(0, 10, num_train), rng.integers(0, 10, num_test)
    name = "synthetic"
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
  return ((xtr - mu) / sd).astype(np.float32), ytr, ((xte - mu) / sd).astype(np.float32), yte, name


FILTER_MODE = "fast"
KINDS = ("roaf", "roaf_glorot", "tanh_mlp")


def make_model(kind: str, width: int, depth: int, alpha: float):
  if kind in ("roaf", "roaf_glorot"):
    init = "roaf_critical" if kind == "roaf" else "glorot_normalized"
    return ROAFMLP(width=width, depth=depth, num_classes=10, alpha=alpha, remat=True,
                   kernel_init=init, filter_mode=FILTER_MODE)
  return DeepMLP(width=width, depth=depth, num_classes=10, activation="tanh",
                 kernel_init="glorot_normalized", remat=True)


def hidden_map(kind: str, model, params):
  """h_0 ↦ h_{L−1}: the scanned hidden stack as a function of one example."""
  stacked = params["hidden"]["layer"]
  n = jax.tree.leaves(stacked)[0].shape[0]
  if kind.startswith("roaf"):
    layer = ROAFLayer(model.width, model.alpha, model.beta, model.activation, model.kernel_init,
                      model.filter_seed, model.filter_mode)
    body = lambda h, pi: (layer.apply({"params": pi[0]}, h, pi[1]), None)
    xs = (stacked, model.filter_inputs(n))
  else:
    layer = DenseLayer(model.width, model.activation, model.kernel_init)
    body = lambda h, p: (layer.apply({"params": p}, h), None)
    xs = stacked
  return lambda h: jax.lax.scan(body, h[None], xs)[0][0]


def ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def measure(kind, width, depth, alpha, x, y, key):
  """Jacobian singular values of the hidden stack and first/last gradient norms at init."""
  model = make_model(kind, width, depth, alpha)
  t0 = time.time()
  params = jax.jit(model.init)(key, x)["params"]
  h0 = DenseLayer(width, "tanh", "glorot_normalized").apply({"params": params["input"]}, x[:1])[0]
  sv = np.asarray(jax.jit(lambda p, h: jacobian_singular_values(hidden_map(kind, model, p), h,
                                                                method="exact"))(params, h0))
  grads = jax.jit(jax.grad(lambda p: ce(model.apply({"params": p}, x), y)))(params)
  k = grads["hidden"]["layer"]["dense"]["kernel"]
  norms = np.asarray(jnp.sqrt(jnp.sum(k.reshape(k.shape[0], -1) ** 2, axis=1)))
  with np.errstate(divide="ignore", invalid="ignore"):
    log_sv = np.log10(np.maximum(sv, np.finfo(np.float32).tiny))
    ratio = float(norms[0] / norms[-1]) if norms[-1] > 0 else float("inf")
  return {"model": kind, "depth": depth, "width": width,
          "log10_sigma_max": float(log_sv.max()), "log10_sigma_min": float(log_sv.min()),
          "log10_spread": float(log_sv.max() - log_sv.min()),
          "grad_first": float(norms[0]), "grad_last": float(norms[-1]), "grad_ratio": ratio,
          "log10_grad_min": float(np.log10(max(norms.min(), 1e-45))),
          "seconds": time.time() - t0}


def train(kind, width, depth, alpha, data, steps, batch, lr, seed=0):
  """Plain SGD+momentum, own jitted loop; returns test accuracy and timing."""
  xtr, ytr, xte, yte = data
  model = make_model(kind, width, depth, alpha)
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), xtr[:batch])["params"]
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr, momentum=0.9))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    loss, g = jax.value_and_grad(lambda p: ce(model.apply({"params": p}, x), y))(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt, loss

  @jax.jit
  def correct(params, x, y):
    return jnp.sum(jnp.argmax(model.apply({"params": params}, x), -1) == y)

  rng = np.random.default_rng(seed)
  t0 = time.time()
  losses = []
  for i in range(steps):
    idx = rng.integers(0, len(xtr), batch)
    params, opt, loss = step(params, opt, xtr[idx], ytr[idx])
    losses.append(float(loss))
    if i == 0:
      t_compile = time.time() - t0
      t1 = time.time()
  sec_per_step = (time.time() - t1) / max(steps - 1, 1)
  eb = 500
  acc = sum(int(correct(params, xte[i:i + eb], yte[i:i + eb])) for i in range(0, len(xte), eb)) / len(xte)
  return {"model": kind, "depth": depth, "width": width, "steps": steps, "batch": batch, "lr": lr,
          "test_accuracy": acc, "first_loss": losses[0], "final_loss": float(np.mean(losses[-10:])),
          "finite": bool(np.all(np.isfinite(losses))), "compile_plus_first_step_s": t_compile,
          "sec_per_step": sec_per_step}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--tiny", action="store_true")
  ap.add_argument("--depths", default="10,100,1000,10000,50000")
  ap.add_argument("--width", type=int, default=64)
  ap.add_argument("--alpha", type=float, default=0.99)
  ap.add_argument("--batch", type=int, default=32, help="batch of the gradient measurement")
  ap.add_argument("--train_depth", type=int, default=50000)
  ap.add_argument("--train_steps", type=int, default=100)
  ap.add_argument("--train_batch", type=int, default=64)
  ap.add_argument("--lr", type=float, default=0.01)
  ap.add_argument("--train_models", default="roaf,tanh_mlp")
  ap.add_argument("--filter_mode", default="fast", choices=["haar", "fast"])
  ap.add_argument("--num_train", type=int, default=60000)
  ap.add_argument("--out", default="results/roaf")
  ap.add_argument("--render_only", default="", help="re-render STEM.md/png from STEM.json")
  args = ap.parse_args()
  if args.render_only:
    render(args.render_only)
    return
  if args.quick:
    args.depths, args.train_depth, args.train_steps, args.num_train = "10,100,1000", 1000, 100, 10000
  if args.tiny:
    args.depths, args.width, args.train_depth, args.train_steps = "10", 16, 10, 3
    args.num_train, args.batch, args.train_batch = 512, 8, 16
    args.train_models = "roaf"
  global FILTER_MODE
  FILTER_MODE = args.filter_mode
  depths = [int(d) for d in args.depths.split(",")]
  xtr, ytr, xte, yte, ds = load_fashion_mnist(args.num_train, 1000 if args.tiny else 10000)
  x, y = jnp.asarray(xtr[:args.batch]), jnp.asarray(ytr[:args.batch])

  rows = []
  for depth in depths:
    for kind in KINDS:
      r = measure(kind, args.width, depth, args.alpha, x, y, jax.random.PRNGKey(0))
      rows.append(r)
      print(json.dumps(r), flush=True)
  trains = []
  for kind in args.train_models.split(","):
    r = train(kind, args.width, args.train_depth, args.alpha, (xtr, ytr, xte, yte),
              args.train_steps, args.train_batch, args.lr)
    trains.append(r)
    print(json.dumps(r), flush=True)

  os.makedirs(args.out, exist_ok=True)
  stem = "depth" + ("_tiny" if args.tiny else "_quick" if args.quick else "")
  setting = {k: v for k, v in vars(args).items()}
  setting["dataset"] = ds
  setting["train_loop"] = "own jitted SGD(momentum 0.9, clip 1.0) loop"
  with open(os.path.join(args.out, stem + ".json"), "w") as f:
    json.dump({"setting": setting, "depth_sweep": rows, "training": trains}, f, indent=1)
  render(os.path.join(args.out, stem))


UNDERFLOW = float(np.log10(np.finfo(np.float32).tiny)) + 0.01


def _fmt_sv(v):
  return "0 (f32 underflow)" if v <= UNDERFLOW else f"{v:.2f}"


def render(path_stem: str) -> None:
  """Markdown table + PNG from `path_stem`.json (rerun with --render_only)."""
  with open(path_stem + ".json") as f:
    res = json.load(f)
  a, rows, trains = res["setting"], res["depth_sweep"], res["training"]
  lines = [f"# ROAF depth study (Ceni 2022) — {a['dataset']}, width {a['width']}, α = {a['alpha']}, "
           f"filters '{a['filter_mode']}'", "",
           "roaf = ROAF MLP with W at 1.1× the critical gain √(1−α²)/β (orthogonal); roaf_glorot = "
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
  lines += ["", f"Training at depth {a['train_depth']} ({a['train_steps']} steps of batch "
            f"{a['train_batch']}, SGD momentum 0.9, lr {a['lr']}, grad-norm clip 1; "
            f"{a['train_loop']}; {a['num_train']} training examples; test on "
            f"{1000 if a['tiny'] else 10000} test images):", "",
            "| model | depth | steps | first loss | mean loss last 10 steps | test acc | s/step |",
            "|---|---|---|---|---|---|---|"]
  for r in trains:
    lines.append(f"| {r['model']} | {r['depth']} | {r['steps']} | {r['first_loss']:.3f} "
                 f"| {r['final_loss']:.3f} | {r['test_accuracy']:.4f} | {r['sec_per_step']:.2f} |")
  with open(path_stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for kind in KINDS:
      rr = [r for r in rows if r["model"] == kind]
      ok = [r for r in rr if r["log10_sigma_max"] > UNDERFLOW]
      ax[0].plot([r["depth"] for r in ok], [r["log10_spread"] for r in ok], "o-", label=kind)
      ax[1].plot([r["depth"] for r in rr], [r["log10_sigma_max"] for r in rr], "o-", label=kind)
    for axis, t in zip(ax, ("log10 σ_max/σ_min (underflowed points omitted)",
                            "log10 σ_max (−37.9 = f32 underflow)")):
      axis.set_xscale("log"); axis.set_xlabel("depth"); axis.set_title(t, fontsize=9); axis.legend()
    fig.tight_layout()
    fig.savefig(path_stem + ".png", dpi=100)
  except Exception as e:  # plotting is optional
    print("plot skipped:", e)
  print("\n".join(lines))

if __name__ == "__main__":
  main()
