r"""Benchmark: the engine's train step beside a hand-written loop of the same math.

For each model the same training steps run twice, interleaved call by call so
that a shared machine's load falls on both alike:

* engine: the config through `stable_training.train.loop.build` + `init_state`,
  timed as the engine's host loop runs a chunk of ``--steps`` steps
  (`loop._run_chunk`): the chunk's batch indices made on the host
  (`setup.batch_xs`), the compiled chunk (seed vmap, step scan, every metric,
  the non-finite guard) and the metrics fetched to the host;
* hand: a `jax.jit` of a `lax.scan` over the same steps (gather the batch from
  the device-resident train set, `value_and_grad` of the cross-entropy, the
  optax update), only the losses fetched: the former hand loops of
  ``scripts/reproduce_roaf_psmnist.py`` (Adam) and ``reproduce_roaf_depth.py``
  (SGD momentum), both with `clip_by_global_norm(1.0)`.

Both start from the engine's initial parameters and see the same batches, so
their losses agree (printed as ``max |Δloss|``). Data are synthetic random
arrays of the study's shapes (timing only). Prints the median seconds per step
of each over ``--reps`` calls (after one warm-up call) and the ratio engine /
hand (goal ≤ 1.1).

  rnn: ``roaf.py:psmnist-roaf``: ROAF RNN, hidden 128, batch 128, 784 steps
       (the first ``--seq_len`` permuted pixels), Adam 2e-3.
  mlp: ``roaf.py:mlp-DEPTH``: ROAF MLP, depth 1,000, width 64, batch 64,
       SGD momentum 0.9, lr 0.01.

  python scripts/bench_engine.py                  # the study's settings (minutes)
  python scripts/bench_engine.py --models=rnn --seq_len=196 --reps=3
  python scripts/bench_engine.py --tiny           # seconds: a smoke test
"""
from __future__ import annotations

import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import roaf
from stable_training import allocator, benchmarking
from stable_training.models.recurrent import RecurrentClassifier
from stable_training.models.roaf import CRITICAL_INIT, ROAFMLP
from stable_training.train import loop
from stable_training.train import sharding as sharding_lib

flags.DEFINE_list("models", ["rnn", "mlp"], "Which benchmarks: rnn (psMNIST ROAF RNN), mlp (deep ROAF MLP).")
flags.DEFINE_integer("hidden", 128, "rnn: hidden units.")
flags.DEFINE_integer("batch", 128, "rnn: batch size.")
flags.DEFINE_integer("seq_len", 784, "rnn: sequence length (the first seq_len permuted pixels).")
flags.DEFINE_integer("depth", 1000, "mlp: depth.")
flags.DEFINE_integer("width", 64, "mlp: width.")
flags.DEFINE_integer("mlp_batch", 64, "mlp: batch size.")
flags.DEFINE_integer("num_train", 0, "Synthetic training examples (0 = 8 batches).")
flags.DEFINE_integer("steps", 20, "Train steps per timed call (the engine's chunk length, i.e. log_every).")
flags.DEFINE_integer("reps", 5, "Timed calls of each (after one warm-up call); the median is reported.")
flags.DEFINE_bool("tiny", False, "Seconds-long smoke settings (overrides the sizes above).")
FLAGS = flags.FLAGS


def _synthetic(shape_x, n, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, *shape_x)).astype(np.float32)
  y = rng.integers(0, 10, n).astype(np.int32)
  return {"x_train": x, "y_train": y, "x_val": None, "y_val": None, "x_test": x[:64], "y_test": y[:64],
          "num_classes": 10, "name": "synthetic", "task": None, "info": {}}


def _engine_config(c, batch, steps):
  c.batch_size = batch
  c.num_seeds, c.num_epochs = 1, 0
  c.num_steps = steps * (FLAGS.reps + 1)
  c.log_every = c.eval_every = c.checkpoint_every = steps
  c.progress = "none"
  loop.validate(c)
  return c


def _hand_chunk(model, tx):
  """jit(scan over K steps): gather, value_and_grad of the mean cross-entropy, optax update."""
  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

  @jax.jit
  def chunk(params, opt_state, x_all, y_all, idx):
    def step(carry, i):
      p, s = carry
      loss, g = jax.value_and_grad(loss_fn)(p, x_all[i], y_all[i])
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), loss
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), idx)
    return params, opt_state, losses
  return chunk


def compare(name, config, d, hand_model, hand_tx, steps, reps) -> dict:
  """Times engine and hand chunks of `steps` steps, interleaved; returns medians, ratio, loss gap."""
  setup = loop.build(config, d)
  state = loop.init_state(setup.model, setup.tx, setup.seeds, jnp.asarray(d["x_test"][:1]))
  state = jax.device_put(state, sharding_lib.replicated(setup.mesh))
  # The hand loop starts from the engine's seed-0 parameters (copied: the engine donates its state).
  params = jax.tree.map(lambda a: jnp.array(np.asarray(a[0])), state.params)
  opt_state = hand_tx.init(params)
  hand = _hand_chunk(hand_model, hand_tx)
  x_all, y_all = jnp.asarray(d["x_train"]), jnp.asarray(d["y_train"])
  # The hand loop's batches: the engine's, made before timing.
  hand_idx = [jnp.asarray(np.asarray(setup.batch_xs(r * steps, steps))[:, 0]) for r in range(reps + 1)]

  t0 = time.perf_counter()
  compiled = setup.chunk.lower(state, setup.device_data, setup.batch_xs(0, steps)).compile()
  compile_engine = time.perf_counter() - t0
  t0 = time.perf_counter()
  hand_c = hand.lower(params, opt_state, x_all, y_all, hand_idx[0]).compile()
  compile_hand = time.perf_counter() - t0

  # One engine call and one hand call per round, which goes first alternating by round
  # (`benchmarking.interleaved`); round 0 is the warm-up. Each keeps its outputs for the loss comparison.
  engine_out, hand_out = [], []

  def run_engine():
    nonlocal state
    xs = setup.batch_xs(len(engine_out) * steps, steps)
    state, stopped, m = compiled(state, setup.device_data, xs)
    engine_out.append((stopped, jax.device_get(m)))

  def run_hand():
    nonlocal params, opt_state
    params, opt_state, losses = hand_c(params, opt_state, x_all, y_all, hand_idx[len(hand_out)])
    hand_out.append(jax.device_get(losses))

  times = benchmarking.interleaved({"engine": run_engine, "hand": run_hand}, reps + 1)
  gap = 0.0
  for (stopped, m), losses in zip(engine_out, hand_out):
    if bool(stopped):
      raise FloatingPointError(f"{name}: the engine stopped on a non-finite step")
    gap = max(gap, float(np.max(np.abs(m["loss"][:, 0] - losses))))
  t_engine, t_hand = ([t / steps for t in times[k][1:]] for k in ("engine", "hand"))
  e, h = statistics.median(t_engine), statistics.median(t_hand)
  r = benchmarking.ratio(t_engine, t_hand)   # per round: engine / hand
  # Rounds 1, 3, … ran the hand loop first (t_* lists start at round 1).
  by_order = {"hand_first": benchmarking.ratio(t_engine[0::2], t_hand[0::2])["median"],
              "engine_first": benchmarking.ratio(t_engine[1::2], t_hand[1::2])["median"] if reps > 1 else None}
  return {"name": name, "engine_s_per_step": e, "hand_s_per_step": h, "ratio": r["median"],
          "ratio_min": r["min"], "ratio_max": r["max"], "ratio_by_order": by_order,
          "compile_engine_s": compile_engine, "compile_hand_s": compile_hand, "max_abs_loss_diff": gap,
          "final_loss": float(losses[-1])}


def bench_rnn(steps, reps):
  c = _engine_config(roaf.get_config("psmnist-roaf"), FLAGS.batch, steps)
  c.model.width = FLAGS.hidden
  n = FLAGS.num_train or 8 * FLAGS.batch
  d = _synthetic((FLAGS.seq_len, 1), n)
  m = c.model
  model = RecurrentClassifier(cell="roaf", hidden=FLAGS.hidden, num_classes=10, readout=m.readout,
                              alpha=m.alpha, beta=m.beta, activation=m.activation, kernel_init=m.kernel_init,
                              filter_seed=m.filter_seed, filter_mode=m.filter_mode,
                              recurrent_gain=m.get("recurrent_gain"), input_gain=m.get("input_gain", 1.0))
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(c.optimizer.learning_rate))
  desc = f"rnn  psmnist-roaf hidden={FLAGS.hidden} batch={FLAGS.batch} seq_len={FLAGS.seq_len}"
  return compare(desc, c, d, model, tx, steps, reps)


def bench_mlp(steps, reps):
  c = _engine_config(roaf.get_config(f"mlp-{FLAGS.depth}"), FLAGS.mlp_batch, steps)
  c.model.width = FLAGS.width
  n = FLAGS.num_train or 8 * FLAGS.mlp_batch
  d = _synthetic((784,), n)
  m = c.model
  model = ROAFMLP(width=FLAGS.width, depth=FLAGS.depth, num_classes=10, alpha=m.alpha, beta=m.beta,
                  activation=m.activation, kernel_init=CRITICAL_INIT, remat=m.remat,
                  filter_seed=m.filter_seed, filter_mode=m.filter_mode)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.sgd(c.optimizer.learning_rate, momentum=c.optimizer.momentum))
  desc = f"mlp  mlp-{FLAGS.depth} width={FLAGS.width} batch={FLAGS.mlp_batch}"
  return compare(desc, c, d, model, tx, steps, reps)


def _fmt(x):
  return "-" if x is None else f"{x:.3f}"


def main(argv):
  del argv
  allocator.setup(__name__)   # as the launcher runs (STABLE_TRAINING_ALLOCATOR; default tcmalloc where installed)
  if FLAGS.tiny:
    FLAGS.hidden, FLAGS.batch, FLAGS.seq_len = 8, 8, 16
    FLAGS.depth, FLAGS.width, FLAGS.mlp_batch = 4, 8, 8
    FLAGS.steps, FLAGS.reps = 3, 2
  print(benchmarking.header())
  print(f"timing: {FLAGS.reps} interleaved rounds (one engine call and one hand call, the first of the two alternating by round) of {FLAGS.steps} steps each, "
        "after one warm-up round; ratio = median of the per-round engine / hand ratios [min–max]")
  runs = {"rnn": bench_rnn, "mlp": bench_mlp}
  for name in FLAGS.models:
    if name not in runs:
      raise app.UsageError(f"--models: unknown {name!r}; valid: {', '.join(runs)}")
  for name in FLAGS.models:
    r = runs[name](FLAGS.steps, FLAGS.reps)
    print(f"{r['name']}: engine {r['engine_s_per_step']:.4f} s/step, hand {r['hand_s_per_step']:.4f} s/step, "
          f"ratio (engine / hand) {r['ratio']:.3f} [{r['ratio_min']:.3f}–{r['ratio_max']:.3f}] "
          f"(median of the engine-first rounds {_fmt(r['ratio_by_order']['engine_first'])}, "
          f"hand-first {_fmt(r['ratio_by_order']['hand_first'])}); compile engine {r['compile_engine_s']:.1f} s, "
          f"hand {r['compile_hand_s']:.1f} s; max |Δloss| {r['max_abs_loss_diff']:.2e}", flush=True)


if __name__ == "__main__":
  app.run(main)
