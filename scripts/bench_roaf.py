"""ROAF benchmarks (not a test): compile time / memory vs depth, JAX vs PyTorch eager.

Prints tables (and writes results/roaf/bench.{md,json}):

1. Roofline: achieved GFLOP/s of a jitted 2048² f32 matmul, measured in the same run.
2. ROAF MLP train step (SGD, width W, batch B, remat) for depths 100 … 50,000:
   compile seconds (`jit(...).lower().compile()`) and XLA's memory analysis
   (arguments + temporaries = the compiled program's peak estimate).
3. Train step at depth 1,000 and 10,000: JAX (one compiled nn.scan; filters
   'identity' = none (the reference the filters' cost is measured against),
   'perm' = random signed permutations, 'fast' = signed permutations of one
   Haar matrix, and 'haar' = O_l re-derived by QR per layer, see
   `stable_training.models.roaf`) vs a PyTorch eager loop over an
   nn.ModuleList of nn.Linear doing the same math: the O_l stored as buffers
   for 'fast'/'haar' (the natural PyTorch port; no QR cost, O(depth·W²)
   filter memory), a gather and sign flip for 'perm', nothing for 'identity'.
4. psMNIST RNN forward+backward over 784 steps (H = B = 128): JAX
   `RecurrentClassifier` ('elman', 'roaf' with its Haar O, and 'roaf' with
   ``filter_mode='perm'``) vs `torch.nn.RNN` (tanh).

GFLOP/s count only the useful matmul flops: per ROAF layer 2·B·W² for each
of W x and O x forward, and 2·B·W² for each of ∂x (through W and O) and
∂W backward (5 matmuls), not the QR or the remat recomputation; per RNN step
2·B·H² forward and 4·B·H² backward. Timings are medians of `--reps` runs.
PyTorch is timed at 1 thread and at its default thread count in the same
interleaved rounds, and each round's ratio uses the faster of the two: on 2 shared cores its default threads can be 6×
slower than one thread (measured: depth 1,000, 2.76 s vs 0.47 s per step while
another job held both cores), which made an earlier table overstate JAX's lead.
Both sides do the same float32 arithmetic: XLA:CPU flushes subnormals to zero,
so PyTorch does too (``--torch_subnormals=flush``, the default). PyTorch's own
default keeps them, and a step whose gradients underflow (depth 10,000) then
ran 4× slower on PyTorch's side: the earlier tables' depth-10,000 and RNN
ratios measured that (`benchmarking.set_torch_subnormals`).

A benchmark, not a reproduction: it times hand-written steps (and PyTorch,
which must be installed: ``pip install torch``), not engine runs.

Writes ``<out>/bench[_quick|_tiny][_TAG].{md,json}`` (``--out`` default:
results/roaf for the full setting, a temporary folder for --quick / --tiny).

  python scripts/bench_roaf.py            # full
  python scripts/bench_roaf.py --quick    # smaller depths / reps
  python scripts/bench_roaf.py --tiny     # seconds: tiny depths, width and batch
  python scripts/bench_roaf.py --skip compile,rnn --filter_modes fast   # one part only
"""
from __future__ import annotations

import functools
import json
import os
import time
import types

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stable_training import allocator, benchmarking, study
from stable_training.models.recurrent import RecurrentClassifier
from stable_training.models.roaf import ROAFMLP

STUDY = "roaf"
study.define_flags(STUDY)
flags.DEFINE_integer("width", 128, "ROAF MLP width.")
flags.DEFINE_integer("batch", 128, "Batch size.")
flags.DEFINE_string("compile_depths", "100,1000,10000,50000", "Depths of the compile-time table (comma list).")
flags.DEFINE_string("step_depths", "1000,10000", "Depths of the JAX vs PyTorch train-step table (comma list).")
flags.DEFINE_integer("reps", 5, "Timed repetitions (medians are reported).")
flags.DEFINE_string("filter_modes", "identity,perm,fast,haar",
                    "ROAF filter modes (comma list of identity, perm, fast, haar; identity = the no-filter reference).")
flags.DEFINE_string("skip", "", "Comma list of parts to skip: compile,step,user,rnn.")
flags.DEFINE_enum("torch_subnormals", "flush", list(benchmarking.SUBNORMAL_MODES),
                  "PyTorch's float32 subnormals: flush (as XLA:CPU does: the same arithmetic on both sides) or "
                  "keep (PyTorch's default; subnormal-heavy steps then run up to 4x slower, "
                  "benchmarking.set_torch_subnormals).")
FLAGS = flags.FLAGS

# Budgets of --quick / --tiny; a flag given on the command line wins.
PRESETS = {
    "quick": dict(compile_depths="100,1000,10000", step_depths="1000", reps=3),
    "tiny": dict(compile_depths="10", step_depths="10", reps=1, width=16, batch=8),
}


def median_time(fn, reps):
  """Median wall seconds of `reps` calls of fn()."""
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t)
  return float(np.median(ts))


def roofline(reps):
  """Achieved GFLOP/s of a jitted 2048² float32 matmul (2·2048³ flops, median of `reps`)."""
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  return 2 * 2048 ** 3 / median_time(lambda: f(a).block_until_ready(), reps) / 1e9


def jax_step(depth, width, batch, filter_mode="fast", unroll=1):
  """(jitted SGD step of a `ROAFMLP`, its params, x, y, init seconds): lr 1e-3, cross-entropy, remat."""
  model = ROAFMLP(width=width, depth=depth, num_classes=10, remat=True, filter_mode=filter_mode,
                  layer_unroll=unroll)
  x = jnp.ones((batch, width))
  y = jnp.zeros((batch,), jnp.int32)
  t = time.perf_counter()
  # Block: lowering with not-yet-computed (donated) arguments waits for them, which
  # once made the init's run time (QR per layer, O(depth)) look like compile time.
  params = jax.block_until_ready(jax.jit(model.init)(jax.random.PRNGKey(0), x)["params"])
  init_s = time.perf_counter() - t

  def step(p, x, y):
    g = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": p}, x), y).mean())(p)
    return optax.apply_updates(p, jax.tree.map(lambda u: -1e-3 * u, g))
  return jax.jit(step, donate_argnums=0), params, x, y, init_s


def compile_row(depth, width, batch, filter_mode):
  """Compile seconds, init seconds and XLA's peak-memory estimate (MiB) of `jax_step` at `depth`."""
  step, params, x, y, init_s = jax_step(depth, width, batch, filter_mode)
  t = time.perf_counter()
  compiled = step.lower(params, x, y).compile()
  secs = time.perf_counter() - t
  mem = compiled.memory_analysis()
  peak = None
  if mem is not None:
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes) / 2 ** 20
  return {"depth": depth, "filter_mode": filter_mode, "compile_s": secs, "init_s": init_s, "peak_mib": peak,
          "param_mib": sum(v.size * 4 for v in jax.tree.leaves(params)) / 2 ** 20}


def layer_flops(width, batch):
  """Useful matmul flops of one ROAF layer's train step: 5 matmuls of 2·B·W² (see module doc)."""
  return 5 * 2 * batch * width * width


def jax_train_runner(depth, width, batch, filter_mode, unroll=1):
  """A compiled, warmed-up train step of the JAX ROAF MLP as a no-argument callable."""
  step, params, x, y, _ = jax_step(depth, width, batch, filter_mode, unroll)
  params = step(params, x, y)
  jax.block_until_ready(params)
  box = [params]

  def run():
    box[0] = step(box[0], x, y)
    jax.block_until_ready(box[0])
  return run


def versus_torch(jax_runs: dict, torch_runs: dict, reps: int) -> dict:
  """Each JAX mode against its PyTorch port (`torch_filter_kind`), all timed in the same interleaved rounds,
  PyTorch at each of `benchmarking.torch_thread_counts`: {mode: (JAX seconds per round, row fields)}."""
  counts = benchmarking.torch_thread_counts()
  ts = benchmarking.interleaved({**{"jax/" + m: r for m, r in jax_runs.items()},
                                 **{f"torch/{k}@{n}": benchmarking.at_threads(r, n) for k, r in torch_runs.items()
                                    for n in counts}}, reps)
  out = {}
  for mode in jax_runs:
    tj = ts["jax/" + mode]
    tt, threads = benchmarking.torch_best(ts, "torch/" + torch_filter_kind(mode), counts)
    sp = benchmarking.ratio(tt, tj)
    out[mode] = tj, {"jax_s": float(np.median(tj)), "torch_s": float(np.median(tt)), "torch_threads": threads,
                     "torch_filter": torch_filter_kind(mode), "speedup": sp["median"],
                     "speedup_min": sp["min"], "speedup_max": sp["max"]}
  return out


def torch_filter_kind(filter_mode: str) -> str:
  """The PyTorch port's filter for a JAX filter mode: the same math, PyTorch's natural form."""
  return {"perm": "perm", "identity": "identity"}.get(filter_mode, "dense")


def torch_train_runner(depth, width, batch, alpha=0.99, kind="dense", in_features=None):
  """A warmed-up SGD step (lr 1e-3) of the PyTorch eager ROAF MLP as a no-argument callable.

  `kind`: 'dense' (O_l stored as buffers: the port of 'fast' and 'haar'), 'perm'
  (h[:, p_l] * s_l, the port of 'perm') or 'identity' (no filter). With
  `in_features`, `ROAFMLP`'s own shape: tanh(Linear(in_features → width)), then
  depth − 1 ROAF layers; without, depth ROAF layers on width-wide inputs.
  """
  import torch
  torch.manual_seed(0)
  n = depth - 1 if in_features else depth   # ROAF layers

  class ROAFTorch(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.inp = torch.nn.Linear(in_features, width) if in_features else None
      self.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(n)])
      if kind == "dense":
        self.register_buffer("o", torch.linalg.qr(torch.randn(n, width, width))[0])
      elif kind == "perm":
        self.register_buffer("p", torch.argsort(torch.rand(n, width), dim=1))
        self.register_buffer("s", torch.randint(0, 2, (n, width)).float() * 2 - 1)
      self.out = torch.nn.Linear(width, 10)

    def filt(self, h, l):
      if kind == "dense":
        return h @ self.o[l].T
      if kind == "perm":
        return h[:, self.p[l]] * self.s[l]
      return h

    def forward(self, h):
      if self.inp is not None:
        h = torch.tanh(self.inp(h))
      for l, lin in enumerate(self.layers):
        h = alpha * self.filt(h, l) + (1 - alpha) * torch.tanh(lin(h))
      return self.out(h)

  model = ROAFTorch()
  opt = torch.optim.SGD(model.parameters(), lr=1e-3)
  x = torch.ones(batch, in_features or width)
  y = torch.zeros(batch, dtype=torch.long)

  def run():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
  run()
  return run


def user_loop_runner(depth, width, batch, filter_mode, in_features=784):
  """A warmed-up step of the loop a user writes around the library's `ROAFMLP` (defaults: remat, α = 0.99):
  ``jax.jit`` of ``value_and_grad`` of the mean cross-entropy + ``optax.sgd(1e-3)``, params and optimizer
  state donated, `in_features`-wide inputs; as a no-argument callable."""
  model = ROAFMLP(width=width, depth=depth, num_classes=10, filter_mode=filter_mode)
  tx = optax.sgd(1e-3)
  x = jnp.ones((batch, in_features))
  y = jnp.zeros((batch,), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x)["params"]
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(p, s, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss
  box = list(step(params, opt_state, x, y)[:2])
  jax.block_until_ready(box)

  def run():
    box[0], box[1], loss = step(box[0], box[1], x, y)
    jax.block_until_ready(loss)
  return run


def user_loop_table(args, modes: list[str]) -> list[dict]:
  """The user's own loop (`user_loop_runner`) vs the same loop in PyTorch eager, per depth and mode
  (784-wide inputs), interleaved rounds (`versus_torch`)."""
  rows = []
  for d in [int(v) for v in args.step_depths.split(",")]:
    kinds = sorted({torch_filter_kind(m) for m in modes})
    res = versus_torch({m: user_loop_runner(d, args.width, args.batch, m) for m in modes},
                       {k: torch_train_runner(d, args.width, args.batch, kind=k, in_features=784) for k in kinds},
                       args.reps)
    for mode in modes:
      rows.append({"depth": d, "filter_mode": mode, **res[mode][1]})
      print(json.dumps(rows[-1]), flush=True)
  return rows


def rnn_times(hidden, batch, steps, reps):
  """Per-round fwd+bwd seconds of JAX `RecurrentClassifier` cells and torch.nn.RNN, interleaved
  (torch.nn.RNN at each of `benchmarking.torch_thread_counts`, its faster per round: see `benchmarking.torch_best`)."""
  import torch
  x = jnp.ones((batch, steps, 1))
  runs = {}
  for name, cell, kw in (("elman", "elman", {}), ("roaf", "roaf", {}),
                         ("roaf_perm", "roaf", {"filter_mode": "perm"})):
    m = RecurrentClassifier(cell=cell, hidden=hidden, num_classes=10, **kw)
    p = m.init(jax.random.PRNGKey(0), x)["params"]
    g = jax.jit(jax.grad(lambda p, x, m=m: jnp.sum(m.apply({"params": p}, x))))
    jax.block_until_ready(g(p, x))
    runs["jax_" + name] = lambda g=g, p=p: jax.block_until_ready(g(p, x))
  torch.manual_seed(0)   # its initialization decides how many subnormals a kept-mode step meets
  rnn = torch.nn.RNN(1, hidden, nonlinearity="tanh", batch_first=True)
  head = torch.nn.Linear(hidden, 10)
  xt = torch.ones(batch, steps, 1)

  def run():
    rnn.zero_grad(set_to_none=True)
    ys, _ = rnn(xt)
    head(ys[:, -1]).sum().backward()
  counts = benchmarking.torch_thread_counts()
  runs.update({f"torch_rnn@{n}": benchmarking.at_threads(run, n) for n in counts})
  ts = benchmarking.interleaved(runs, reps)
  ts["torch_rnn"], threads = benchmarking.torch_best(ts, "torch_rnn", counts)
  for n in counts:
    del ts[f"torch_rnn@{n}"]
  return ts, threads


def settings() -> dict:
  """The flags' values with the setting's preset applied where a flag was not given."""
  names = ("quick", "tiny", "width", "batch", "compile_depths", "step_depths", "reps", "filter_modes", "skip",
           "tag")
  return study.preset_values(names, PRESETS)


def compile_table(args, modes: list[str]) -> list[dict]:
  """`compile_row` for every --compile_depths depth and filter mode (printed as measured)."""
  rows = []
  for d in [int(v) for v in args.compile_depths.split(",")]:
    for mode in modes:
      r = compile_row(d, args.width, args.batch, mode)
      rows.append(r)
      print(json.dumps(r), flush=True)
  return rows


def train_step_table(args, modes: list[str]) -> list[dict]:
  """JAX vs PyTorch train-step seconds, per-round speed-up and GFLOP/s per --step_depths depth and filter
  mode: every JAX mode and PyTorch port timed in interleaved rounds (`versus_torch`)."""
  rows = []
  for d in [int(v) for v in args.step_depths.split(",")]:
    kinds = sorted({torch_filter_kind(m) for m in modes})
    res = versus_torch({m: jax_train_runner(d, args.width, args.batch, m) for m in modes},
                       {k: torch_train_runner(d, args.width, args.batch, kind=k) for k in kinds}, args.reps)
    fl = layer_flops(args.width, args.batch) * d  # the dense filter's flops: the same work for every mode
    for mode in modes:
      r = {"depth": d, "filter_mode": mode, **res[mode][1]}
      r["vs_identity"] = r["jax_s"] / res["identity"][1]["jax_s"] if "identity" in modes else None
      r["jax_gflops"], r["torch_gflops"] = fl / r["jax_s"] / 1e9, fl / r["torch_s"] / 1e9
      rows.append(r)
      print(json.dumps(r), flush=True)
  return rows


def markdown(res: dict, args, cmd: str) -> list[str]:
  """The report's lines: the compile, train-step and RNN tables of `res` (as `main` fills it)."""
  roof = res["roofline_gflops"]
  lines = [f"# ROAF benchmarks (width {args.width}, batch {args.batch}; roofline {roof:.0f} GFLOP/s)", "",
           res["header"], "",
           f"Regenerate: `{cmd}`", "",
           f"Speed-ups are medians of {args.reps} interleaved rounds (one JAX and one PyTorch step each) with "
           "their [min–max] over rounds; PyTorch timed at 1 thread and at its default count in the same rounds, the faster per round (threads: the count "
           "that won most rounds).", "",
           "| depth | filters | compile s | vs first depth | init s (run, not compile) | XLA peak MiB | params MiB |",
           "|---|---|---|---|---|---|---|"]
  for r in res["compile"]:
    c0 = next(q["compile_s"] for q in res["compile"] if q["filter_mode"] == r["filter_mode"])
    lines.append(f"| {r['depth']} | {r['filter_mode']} | {r['compile_s']:.2f} | {r['compile_s'] / c0:.2f}× "
                 f"| {r['init_s']:.1f} | {r['peak_mib']:.0f} | {r['param_mib']:.0f} |")
  lines += ["", "| train step, depth | filters | JAX s | JAX vs no filter (identity) | PyTorch eager s (threads, "
            "filter) | speed-up [range] | JAX GFLOP/s (% roof) | torch GFLOP/s (% roof) |",
            "|---|---|---|---|---|---|---|---|"]
  for r in res["train_step"]:
    vs = f"{r['vs_identity']:.2f}×" if r.get("vs_identity") else "—"
    sp = benchmarking.fmt_ratio({"median": r["speedup"], "min": r["speedup_min"], "max": r["speedup_max"]})
    lines.append(f"| {r['depth']} | {r['filter_mode']} | {r['jax_s']:.3f} | {vs} | {r['torch_s']:.3f} "
                 f"({r['torch_threads']}, {r['torch_filter']}) | {sp} "
                 f"| {r['jax_gflops']:.1f} ({100 * r['jax_gflops'] / roof:.0f} %) "
                 f"| {r['torch_gflops']:.1f} ({100 * r['torch_gflops'] / roof:.0f} %) |")
  if res.get("user_loop"):
    lines += ["", "| a user's loop: `ROAFMLP` (784-wide inputs) in `jit(value_and_grad)` + `optax.sgd`, donated; depth "
              "| filters | JAX s | PyTorch eager s (threads, filter) | speed-up [range] |", "|---|---|---|---|---|"]
    for r in res["user_loop"]:
      sp = benchmarking.fmt_ratio({"median": r["speedup"], "min": r["speedup_min"], "max": r["speedup_max"]})
      lines.append(f"| {r['depth']} | {r['filter_mode']} | {r['jax_s']:.3f} | {r['torch_s']:.3f} "
                   f"({r['torch_threads']}, {r['torch_filter']}) | {sp} |")
  if res["rnn"]:
    lines += ["", f"| RNN fwd+bwd, {res['rnn_steps']} steps, {res['rnn_shape']} (torch.nn.RNN at {res['rnn_torch_threads']} "
              "thread(s)) | s | speed-up vs torch.nn.RNN [range] | GFLOP/s |", "|---|---|---|---|"]
    for k, v in res["rnn"].items():
      sp = benchmarking.fmt_ratio(v["speedup"]) if "speedup" in v else "—"
      lines.append(f"| {k} | {v['s']:.3f} | {sp} | {v['gflops']:.1f} |")
  return lines


def rnn_table(args) -> dict:
  """`rnn_times` at the psMNIST shape (H = B = 128, 784 steps; 16 / 8 / 20 under --tiny) as rows."""
  h, b, steps = (16, 8, 20) if args.tiny else (128, 128, 784)
  ts, threads = rnn_times(h, b, steps, args.reps)
  fl = 3 * 2 * b * h * h * steps
  rows = {}
  for k, v in ts.items():
    m = float(np.median(v))
    rows[k] = {"s": m, "gflops": fl / m / 1e9, "times": v}
    if k != "torch_rnn":
      rows[k]["speedup"] = benchmarking.ratio(ts["torch_rnn"], v)
  return {"rnn": rows, "rnn_torch_threads": threads, "rnn_steps": steps, "rnn_shape": f"H={h}, B={b}"}


def main(argv):
  del argv
  study.setup_process()
  args = types.SimpleNamespace(**settings())
  skip = set(args.skip.split(","))
  if not {"step", "user", "rnn"} <= skip:   # the PyTorch comparisons
    import torch  # noqa: F401  (fail here, before any timing, where PyTorch is missing)
    benchmarking.set_torch_subnormals(FLAGS.torch_subnormals)
  out = study.out_dir(STUDY)
  env = os.environ.get(allocator.ENV)   # the allocator decides the ratio: part of the command
  cmd = " ".join([*([f"{allocator.ENV}={env}"] if env else []), "python scripts/bench_roaf.py",
                  *(FLAGS[n].serialize() for n in
                  ("quick", "tiny", "tag", "width", "batch", "compile_depths", "step_depths", "reps",
                   "filter_modes", "skip", "torch_subnormals") if FLAGS[n].present)])
  res = {"setting": vars(args), "command": cmd, "devices": str(jax.devices())}
  res["roofline_gflops"] = roofline(args.reps)
  print(f"roofline 2048² matmul: {res['roofline_gflops']:.1f} GFLOP/s", flush=True)
  modes = args.filter_modes.split(",")
  res["compile"] = [] if "compile" in skip else compile_table(args, modes)
  res["train_step"] = [] if "step" in skip else train_step_table(args, modes)
  user_modes = [m for m in modes if m in ("fast", "perm")]
  res["user_loop"] = [] if "user" in skip or not user_modes else user_loop_table(args, user_modes)
  res["rnn"] = {}
  if "rnn" not in skip:
    res.update(rnn_table(args))
    print(json.dumps({k: v["s"] for k, v in res["rnn"].items()}), flush=True)
  threads = ({r["torch_threads"] for r in res["train_step"] + res["user_loop"]} | ({res["rnn_torch_threads"]} if res["rnn"] else set()))
  res["header"] = benchmarking.header(", ".join(map(str, sorted(threads))) if threads else None,
                                      FLAGS.torch_subnormals)
  lines = markdown(res, args, cmd)
  stem = study.stem("bench")
  with open(os.path.join(out, stem + ".json"), "w") as f:
    json.dump(res, f, indent=1)
  with open(os.path.join(out, stem + ".md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(f"wrote {os.path.join(out, stem)}.md")


if __name__ == "__main__":
  study.app_run(main, compilation_cache=False)   # its compile table times XLA, not the cache
