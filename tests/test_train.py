"""The train engine: multi-seed vmap, sharding, resume after SIGKILL, non-finite guard."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import default
from stable_training import config as config_lib
from stable_training import train
from stable_training.config import ConfigError
from stable_training.models import register_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**over):
  c = default.get_config("digits")
  c.model.width, c.model.depth = 16, 3
  c.batch_size, c.eval_batch_size = 32, 360
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 20, 10, 20, 10
  c.optimizer.name, c.optimizer.learning_rate = "sgd", 0.1
  c.progress = "none"
  return config_lib.apply_overrides(c, over)


def per_seed(summary, key):
  return np.asarray(summary["final"][key]["per_seed"])


def test_multi_seed_vmap_equals_separate_runs(tmp_path):
  s3 = train.train_and_evaluate(small_config(num_seeds=3, seed=5), str(tmp_path / "v"))
  sep = [train.train_and_evaluate(small_config(seed=5 + i), str(tmp_path / f"s{i}")) for i in range(3)]
  for key in ("train_loss", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(per_seed(s3, key), [per_seed(s, key)[0] for s in sep], rtol=1e-5, atol=1e-6)
  # Different seeds really differ, and the summary reports mean/std across them.
  tl = per_seed(s3, "test_loss")
  assert len(set(np.round(tl, 6))) == 3
  assert s3["final"]["test_loss"]["mean"] == pytest.approx(tl.mean())
  assert s3["final"]["test_loss"]["std"] == pytest.approx(tl.std())


def test_training_reduces_loss_and_writes_metrics(tmp_path):
  c = small_config(num_steps=60, eval_every=60, checkpoint_every=60)
  s = train.train_and_evaluate(c, str(tmp_path))
  hist = s["history"]
  assert hist[-1]["train_loss"]["mean"] < 0.6 * hist[0]["train_loss"]["mean"]
  assert s["final"]["test_accuracy"]["mean"] > 0.5
  recs = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in recs] == [10, 20, 30, 40, 50, 60]
  # per-layer gradient norms: input + 2 scanned + output, consistent with the global norm
  lg = np.asarray(recs[0]["layer_grad_norms"]["per_seed"][0])
  assert s["layer_names"] == ["input", "hidden/0", "hidden/1", "output"] and lg.shape == (4,)
  assert json.load(open(tmp_path / "summary.json"))["final"]["test_accuracy"]["mean"] == \
      pytest.approx(s["final"]["test_accuracy"]["mean"])


def test_layer_grad_norms_match_global_norm():
  from stable_training.models import DeepMLP
  import jax.numpy as jnp
  import optax
  m = DeepMLP(8, 4, 3)
  p = m.init(jax.random.PRNGKey(0), jnp.ones((2, 5)))["params"]
  g = jax.grad(lambda p: jnp.sum(m.apply({"params": p}, jnp.ones((2, 5))) ** 2))(p)
  norms = train.layer_grad_norms(g)
  assert norms.shape == (5,)
  np.testing.assert_allclose(jnp.sqrt(jnp.sum(norms ** 2)), optax.tree.norm(g), rtol=1e-5)
  np.testing.assert_allclose(norms[-1], optax.tree.norm(g["output"]), rtol=1e-6)


SHARD_SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})
import jax
from tests.test_train import small_config
from stable_training import train
assert jax.device_count() == {n}, jax.devices()
for seeds, wd in {runs!r}:
  s = train.train_and_evaluate(small_config(num_seeds=seeds), wd)
  print(json.dumps({{**{{k: s["final"][k]["per_seed"] for k in ("train_loss", "test_loss")}},
                    "split": s["info"]["mesh_splits"]}}))
"""


def _run_devices(n, runs):
  """`train_and_evaluate` of `small_config(num_seeds=seeds)` for each (seeds, workdir) of `runs`, in one
  fresh process with `n` host devices."""
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip(), JAX_PLATFORMS="cpu")
  runs = [(seeds, str(wd)) for seeds, wd in runs]
  out = subprocess.run([sys.executable, "-c", SHARD_SCRIPT.format(root=ROOT, n=n, runs=runs)],
                       env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(runs):]]


def test_sharded_over_four_devices_equals_one_device(tmp_path):
  """2 seeds on 4 devices split each batch; 4 seeds are split over the devices, one seed each. The
  1-device references run in this process (one device: asserted)."""
  assert jax.device_count() == 1, jax.devices()
  cases = [(2, "batch"), (4, "seeds")]
  fours = _run_devices(4, [(seeds, tmp_path / f"four_{seeds}") for seeds, _ in cases])
  for (seeds, split), four in zip(cases, fours):
    one = train.train_and_evaluate(small_config(num_seeds=seeds), str(tmp_path / f"one_{seeds}"))
    assert four.pop("split") == split and one["info"]["mesh_splits"] == "batch"
    for k in ("train_loss", "test_loss"):
      np.testing.assert_allclose(four[k], one["final"][k]["per_seed"], rtol=1e-5, atol=1e-5,
                                 err_msg=f"{seeds} seeds: {k}")


def _cli(args, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


CLI_ARGS = ["--config=experiments/configs/default.py:digits", "--config.model.width=16",
            "--config.model.depth=3", "--config.batch_size=32", "--config.num_steps=400",
            "--config.log_every=10", "--config.eval_every=400", "--config.checkpoint_every=10",
            "--config.progress=none"]


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
  wd_kill, wd_full = tmp_path / "killed", tmp_path / "full"
  p = _cli(CLI_ARGS + [f"--workdir={wd_kill}"])
  ckpt = wd_kill / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline:  # kill once a few checkpoints exist, mid-run
    steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()] if ckpt.exists() else []
    if steps and max(steps) >= 50:
      break
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (wd_kill / "summary.json").exists()
  r = _cli(CLI_ARGS + [f"--workdir={wd_kill}"])
  out, err = r.communicate(timeout=900)
  assert r.returncode == 0, err[-3000:]
  assert "resumed" in err
  f = _cli(CLI_ARGS + [f"--workdir={wd_full}", "--config.checkpoint_every=400"])  # the reference: no saves on the way
  out, err = f.communicate(timeout=900)
  assert f.returncode == 0, err[-3000:]
  a = json.load(open(wd_kill / "summary.json"))["final"]
  b = json.load(open(wd_full / "summary.json"))["final"]
  for k in ("train_loss", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(a[k]["per_seed"], b[k]["per_seed"], rtol=1e-6, atol=1e-7)
  steps = [json.loads(l)["step"] for l in open(wd_kill / "metrics.jsonl")]
  assert steps == list(range(10, 401, 10))  # no duplicated records after resume


class _SqrtNet(nn.Module):
  """A classifier whose parameter `scale` starts at 0, where d√s/ds = ∞."""

  @nn.compact
  def __call__(self, x):
    s = self.param("scale", nn.initializers.zeros, ())
    h = nn.Dense(8, name="input")(x.reshape(x.shape[0], -1)) * jnp.sqrt(s)
    return nn.Dense(10, name="output")(jnp.tanh(h) + 0.1)


try:
  register_model("test_sqrt_net")(lambda cfg, **kw: _SqrtNet())
except ValueError:  # re-imported by a subprocess test
  pass


def test_nonfinite_stop_names_step_and_parameter(tmp_path):
  c = small_config(num_steps=40, **{"model.name": "test_sqrt_net"})
  with pytest.raises(train.NonFiniteError,
                     match=r"non-finite gradient at step 1 \(seed 0\), first parameter: scale"):
    train.train_and_evaluate(c, str(tmp_path))
  assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("step_loop", ["scan", "host"])
def test_nonfinite_loss_is_reported(tmp_path, step_loop):
  c = small_config(num_steps=40, step_loop=step_loop, **{"optimizer.learning_rate": 1e38})
  with pytest.raises(train.NonFiniteError, match=r"non-finite (loss|gradient|update).* at step \d+"):
    train.train_and_evaluate(c, str(tmp_path))


def test_nonfinite_skip_counts_and_stays_finite(tmp_path):
  # d√s/ds is infinite at s = 0 on every step, so optax.apply_if_finite skips all 20.
  c = small_config(num_steps=20, on_nonfinite="skip", **{"model.name": "test_sqrt_net"})
  s = train.train_and_evaluate(c, str(tmp_path))
  assert s["final"]["skipped_steps"] == [20]
  assert np.all(np.isfinite(per_seed(s, "test_loss")))


def test_skip_mode_stops_after_max_consecutive_skips(tmp_path):
  # Every update is skipped (d√s/ds = ∞ at s = 0): the run cannot recover, so after
  # max_consecutive_skips it stops instead of finishing with NaN metrics.
  c = small_config(num_steps=40, on_nonfinite="skip", max_consecutive_skips=10,
                   **{"model.name": "test_sqrt_net"})
  with pytest.raises(train.NonFiniteError, match="10 consecutive updates skipped as non-finite up to step 10"):
    train.train_and_evaluate(c, str(tmp_path))


def test_nonfinite_cli_exit_code_keeps_checkpoint(tmp_path):
  wd = tmp_path / "nan"
  p = _cli(CLI_ARGS + [f"--workdir={wd}", "--config.optimizer.learning_rate=1e38"])
  out, err = p.communicate(timeout=900)
  assert p.returncode == 3, err[-2000:]
  assert "non-finite" in err and "step" in err


# Each way the launcher rejects a config: the flag parser (unknown key, bad type) and the config's
# validation (`trainers.resolve`). More validation messages: tests/test_launcher.py::test_config_validation_*.
@pytest.mark.parametrize("arg,expect", [
    ("--config.model.depth=-1", "config.model.depth=-1: must be in [1, inf)"),
    ("--config.model.dept=3", "unknown key config.model.dept; valid keys of config.model: activation"),
    ("--config.model.depth=abc", "config.model.depth"),
])
def test_cli_validation_one_line_exit_2_writes_nothing(tmp_path, arg, expect):
  wd = tmp_path / "never"
  p = _cli(CLI_ARGS + [f"--workdir={wd}", arg])
  out, err = p.communicate(timeout=900)
  assert p.returncode == 2, (out, err)
  lines = [l for l in err.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and expect in lines[0], err
  assert not wd.exists()


def test_workdir_of_other_config_is_refused(tmp_path):
  train.train_and_evaluate(small_config(), str(tmp_path))
  before = open(tmp_path / "config.json").read()
  with pytest.raises(train.WorkdirConfigMismatch, match=r"config.model.width: 16 -> 32"):
    train.train_and_evaluate(small_config(**{"model.width": 32}), str(tmp_path))
  assert open(tmp_path / "config.json").read() == before


def test_workdir_from_before_a_key_was_added_resumes_at_its_default(tmp_path):
  """A stored config that lacks a key the package added later (here dataset.num_generated) is the same
  run when the new config has that key at its schema default, and a different one otherwise."""
  import json
  s1 = train.train_and_evaluate(small_config(), str(tmp_path))
  path = tmp_path / "config.json"
  old = json.loads(path.read_text())
  del old["dataset"]["num_generated"]
  path.write_text(json.dumps(old))
  s2 = train.train_and_evaluate(small_config(), str(tmp_path))  # finished: returns the stored summary
  assert s2["final"] == s1["final"]
  # view_seed is in every config now (default.py builds its groups from the schema): 0 -> 3 differs
  with pytest.raises(train.WorkdirConfigMismatch, match=r"config.dataset.view_seed: 0 -> 3"):
    train.train_and_evaluate(small_config(**{"dataset.view_seed": 3}), str(tmp_path))
  c = small_config(**{"dataset.num_generated": 7})
  from stable_training.train import checkpoint
  from stable_training import config as config_lib
  with pytest.raises(train.WorkdirConfigMismatch, match=r"config.dataset.num_generated: None -> 7"):
    checkpoint.check_or_write_config(str(tmp_path), c, config_lib.schema_defaults(c))


def test_finished_run_whose_checkpoints_were_deleted_is_not_trained_again(tmp_path):
  """A finished workdir (summary at num_steps, same config) returns its summary even after its checkpoints
  were removed (studies delete them to save disk); its records stay as they were. A run stopped before
  num_steps without checkpoints still trains (from step 0)."""
  import shutil
  s1 = train.train_and_evaluate(small_config(), str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints")
  metrics = (tmp_path / "metrics.jsonl").read_bytes()
  mtime = os.path.getmtime(tmp_path / "summary.json")
  s2 = train.train_and_evaluate(small_config(), str(tmp_path))
  assert s2 == s1 and (tmp_path / "metrics.jsonl").read_bytes() == metrics
  assert os.path.getmtime(tmp_path / "summary.json") == mtime
  summary = json.loads((tmp_path / "summary.json").read_text())
  summary["history"] = summary["history"][:-1]     # as if it had stopped early
  (tmp_path / "summary.json").write_text(json.dumps(summary))
  s3 = train.train_and_evaluate(small_config(), str(tmp_path))
  assert s3["history"][-1]["step"] == s1["history"][-1]["step"] and s3["final"] == s1["final"]
  assert os.path.getmtime(tmp_path / "summary.json") != mtime


def test_validate_rejects_bad_values():
  with pytest.raises(ConfigError, match="config.num_seeds=0"):
    train.train_and_evaluate(small_config(num_seeds=0), "/nonexistent/never")
  with pytest.raises(ConfigError, match="multiple of config.log_every"):
    train.train_and_evaluate(small_config(eval_every=15), "/nonexistent/never")


def test_diagnostics_do_not_change_training_and_are_written(tmp_path):
  off = train.train_and_evaluate(small_config(), str(tmp_path / "off"))
  on = train.train_and_evaluate(small_config(**{"diagnostics.enabled": True, "diagnostics.every": 10}),
                                str(tmp_path / "on"))
  for k in ("train_loss", "test_loss"):
    assert per_seed(on, k).tolist() == per_seed(off, k).tolist()  # bit-identical
  from stable_training.diagnostics import load_diagnostics
  d = load_diagnostics(str(tmp_path / "on"))
  assert sorted(set(np.asarray(d["step"]).tolist())) == [0, 10, 20]  # 0: the initialization
  assert np.asarray(d["act_mean"]).shape[-1] == 3  # depth-3 MLP: 3 hidden layers


def test_update_variance_is_pooled_numpy_variance():
  from stable_training.train.steps import _tree_variance
  rng = np.random.default_rng(0)
  tree = {"a": rng.normal(0.3, 2.0, (7, 5)).astype(np.float32),
          "b": {"c": rng.normal(-1.0, 0.5, (11,)).astype(np.float32)}}
  pooled = np.concatenate([tree["a"].ravel(), tree["b"]["c"].ravel()])
  np.testing.assert_allclose(_tree_variance(jax.tree.map(jnp.asarray, tree)), pooled.var(), rtol=1e-5)
  # Per seed under vmap, as the engine computes it.
  stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), tree)
  np.testing.assert_allclose(jax.vmap(_tree_variance)(stacked), [pooled.var(), 4 * pooled.var()], rtol=1e-5)


def test_finite_flag_read_off_the_norms_equals_the_entrywise_check():
  """1e30: a finite entry whose square overflows the norm; the entry-wise check must still say finite.
  One compiled program per form (plain, vmapped) for every entry value."""
  from stable_training.train.steps import _finite_given_norms, all_finite

  def flag(g):
    u = jax.tree.map(lambda a: -0.1 * a, g)
    return _finite_given_norms(g, u, optax.tree.norm(g), optax.tree.norm(u)), all_finite(g) & all_finite(u)
  plain, per_seed = jax.jit(flag), jax.jit(jax.vmap(flag))
  for entry, finite in [(1.0, True), (1e30, True), (np.inf, False), (-np.inf, False), (np.nan, False)]:
    g = {"w": jnp.asarray([[0.5, entry], [2.0, -1.0]], jnp.float32), "b": jnp.ones(3)}
    assert [bool(f) for f in plain(g)] == [finite, finite], entry
    # Under the seed vmap the branch becomes a select: the same answer per seed.
    flags, _ = per_seed(jax.tree.map(lambda a: jnp.stack([jnp.ones_like(a), a]), g))
    assert flags.tolist() == [True, finite], entry


@pytest.mark.parametrize("seeds", [1, 2])   # 1: the unbatched program, its seed axis dropped around the loop
def test_host_loop_chunk_equals_scanned_chunk(tmp_path, seeds):
  looped = train.train_and_evaluate(small_config(num_steps=20, num_seeds=seeds), str(tmp_path / "loop"))
  unrolled = train.train_and_evaluate(small_config(num_steps=20, num_seeds=seeds, step_loop="host"),
                                      str(tmp_path / "unroll"))
  assert len(looped["final"]["train_loss"]["per_seed"]) == seeds
  np.testing.assert_allclose(unrolled["final"]["train_loss"]["per_seed"],
                             looped["final"]["train_loss"]["per_seed"], rtol=1e-5)
  np.testing.assert_allclose(unrolled["final"]["test_accuracy"]["per_seed"],
                             looped["final"]["test_accuracy"]["per_seed"], atol=1e-6)


def test_lsc_pretraining_is_memoized_across_a_learning_rate_sweep(tmp_path, monkeypatch):
  """Two runs differing only in lr, given one memo the caller owns, pre-train each seed once, and the
  memoized start equals a fresh pre-training: the second run's numbers do not depend on the memo.
  Without a memo nothing is kept between runs (no module-level cache)."""
  import importlib
  from stable_training.train import loop, trainers
  lsc_pretrain = importlib.import_module("stable_training.lsc.pretrain")  # the module (the package exports a function of that name)
  calls = []
  real = lsc_pretrain.pretrain
  monkeypatch.setattr(lsc_pretrain, "pretrain", lambda *a, **k: calls.append(1) or real(*a, **k))
  memo = loop.BoundedMemo(max_bytes=2**20)
  over = {"num_seeds": 2, "num_steps": 10, "eval_every": 10, "checkpoint_every": 10,
          "lsc.enabled": True, "lsc.steps": 5}
  train.train_and_evaluate(small_config(**over), str(tmp_path / "a"), memo=memo)
  assert len(calls) == 2 and len(memo) == 2  # one per seed
  s_memo = trainers.run(small_config(**over, **{"optimizer.learning_rate": 0.05}), str(tmp_path / "b"), memo=memo)
  assert len(calls) == 2  # the second lr reused both seeds' pre-training
  s_fresh = train.train_and_evaluate(small_config(**over, **{"optimizer.learning_rate": 0.05}), str(tmp_path / "c"))
  assert len(calls) == 4  # no memo given: pre-trained again
  assert s_memo["lsc"] == s_fresh["lsc"]
  np.testing.assert_array_equal(per_seed(s_memo, "test_loss"), per_seed(s_fresh, "test_loss"))
  assert not hasattr(loop, "LSC_MEMO")
  # A different LSC setting is a different entry, and the byte bound evicts the oldest.
  tiny = loop.BoundedMemo(max_bytes=100)
  tiny["a"], tiny["b"] = np.zeros(20), np.zeros(20)  # 160 B each
  assert list(tiny) == ["b"]


def test_nonfinite_guard_freezes_at_the_last_good_step_and_copies_no_state():
  """make_chunk_fn(stop_on_nonfinite=True): the first step whose loss or gradient is not finite, for any
  seed, leaves every seed's state at its value after the last good step (a plain loop of that many
  steps) and stops; the steps after it change nothing. The guard is an entry-wise select that XLA
  fuses into the update: the compiled one-seed chunk copies a stacked (scanned) kernel no more often
  than the unguarded chunk (a lax.cond copied the whole state twice per step)."""
  from stable_training.models.roaf import ROAFMLP
  from stable_training.train import steps as st
  from stable_training.train.loop import init_state
  x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 5)), jnp.float32)
  y = jnp.arange(8) % 3
  model, tx = ROAFMLP(width=6, depth=5, num_classes=3, alpha=0.5, filter_mode="fast"), optax.sgd(0.1, momentum=0.9)
  step = st.make_train_step(model, st.cross_entropy, tx)
  # xs[k, s] = 1 poisons seed s's batch at step k with an inf input.
  poison = lambda data, bad: (jnp.where(bad > 0, jnp.inf, data[0]), data[1])
  chunk = jax.jit(st.make_chunk_fn(step, stop_on_nonfinite=True, make_batch=poison))
  seeds = np.asarray([0, 1])
  xs = np.zeros((5, 2), np.int32)
  xs[2, 1] = 1                        # seed 1's third step is non-finite
  state, stopped, m = chunk(init_state(model, tx, seeds, x[:1]), (x, y), jnp.asarray(xs))
  assert bool(stopped) and not np.all(np.asarray(m["finite"])[2])
  for s in range(2):
    plain = jax.tree.map(lambda a: a[s], init_state(model, tx, seeds, x[:1]))
    plain, _ = jax.lax.scan(lambda c, _: step(c, (x, y)), plain, None, length=2)   # the two good steps
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(plain)):
      np.testing.assert_allclose(np.asarray(a)[s], np.asarray(b), rtol=1e-6, atol=1e-7)

  def stacked_copies(guard):   # copies of a [depth - 1, w, w] buffer in the compiled one-seed chunk
    c = jax.jit(st.make_chunk_fn(step, stop_on_nonfinite=guard, make_batch=poison))
    text = c.lower(init_state(model, tx, seeds[:1], x[:1]), (x, y), jnp.zeros((5, 1), jnp.int32)).compile().as_text()
    return len(re.findall(r"= f32\[4,6,6\]\{[^}]*\} copy\(", text))
  assert stacked_copies(True) == stacked_copies(False)


def test_one_seed_chunk_is_the_plain_loop_and_several_seeds_agree():
  """make_chunk_fn: one seed runs unbatched, the plain `lax.scan` of `train_step` (the loop a user writes;
  the tolerance leaves XLA room to fuse the chunk differently); with two seeds (vmapped) each seed's
  trajectory matches its own one-seed run."""
  from stable_training.models import DeepMLP
  from stable_training.train import steps as st
  from stable_training.train.loop import init_state
  x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 6)), jnp.float32)
  y = jnp.arange(16) % 3
  model, tx = DeepMLP(width=8, depth=3, num_classes=3), optax.adam(1e-2)
  step = st.make_train_step(model, st.cross_entropy, tx)
  chunk = jax.jit(st.make_chunk_fn(step, stop_on_nonfinite=True, make_batch=lambda data, xs: data))
  k = 5

  def run(seeds):
    state = init_state(model, tx, np.asarray(seeds), x[:1])
    return chunk(state, (x, y), jnp.zeros((k, len(seeds)), jnp.int32))
  one, stopped, m1 = run([0])
  plain = jax.tree.map(lambda a: a[0], init_state(model, tx, np.asarray([0]), x[:1]))
  plain, m_plain = jax.jit(lambda s: jax.lax.scan(lambda s, _: step(s, (x, y)), s, None, length=k))(plain)
  assert not bool(stopped)
  for a, b in zip(jax.tree.leaves((one.params, m1)), jax.tree.leaves((plain.params, m_plain))):
    np.testing.assert_allclose(np.asarray(a).reshape(np.shape(b)), np.asarray(b), rtol=1e-6, atol=1e-7)
  def batched_dots(n):   # dot_generals with a (seed) batch dimension in the lowered chunk
    state = init_state(model, tx, np.arange(n), x[:1])
    text = chunk.lower(state, (x, y), jnp.zeros((k, n), jnp.int32)).as_text()
    return sum("stablehlo.dot_general" in l and "batching_dims" in l for l in text.splitlines())
  assert batched_dots(1) == 0 and batched_dots(2) > 0
  two, _, m2 = run([0, 1])
  one_b, _, m1_b = run([1])
  for s, (ref, mref) in enumerate(((one, m1), (one_b, m1_b))):
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(ref.params)):
      np.testing.assert_allclose(np.asarray(a)[s], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(m2["loss"])[:, s], np.asarray(mref["loss"])[:, 0], rtol=1e-5)


@pytest.mark.parametrize("family", ["deep_mlp", "roaf_mlp", "lstm"])
def test_init_compiled_at_level_2_has_the_default_levels_bits(family):
  """The engine compiles its init program at XLA's optimization level 2 (`loop.INIT_COMPILER_OPTIONS`, 2–3×
  faster to compile on a CPU): the parameters must be those of XLA's default level 3, bit for bit, for the
  initializers the models use (uniform Glorot, orthogonal by QR, truncated-normal LeCun, ROAF's filters)."""
  from stable_training.models.mlp import DeepMLP
  from stable_training.models.recurrent import RecurrentClassifier
  from stable_training.models.roaf import ROAFMLP
  from stable_training.train import loop
  model, x = {
      "deep_mlp": (DeepMLP(width=16, depth=3, num_classes=10, activation="tanh", kernel_init="glorot_normalized"),
                   jnp.zeros((1, 64))),
      "roaf_mlp": (ROAFMLP(width=16, depth=4, num_classes=10, filter_mode="fast"), jnp.zeros((1, 64))),
      "lstm": (RecurrentClassifier(cell="lstm", hidden=8, num_classes=10), jnp.zeros((1, 12, 3))),
  }[family]

  def one(key):
    return model.init(key, x)["params"]

  key = jax.random.PRNGKey(7)
  fast = jax.jit(one, compiler_options=loop.INIT_COMPILER_OPTIONS)(key)
  default = jax.jit(one, compiler_options={"xla_backend_optimization_level": 3})(key)   # XLA's default level
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a).view(np.uint32),
                                                          np.asarray(b).view(np.uint32)), fast, default)
  assert loop.init_compiler_options("") == loop.INIT_COMPILER_OPTIONS   # the CPU backend, no level of the user's
  assert loop.init_compiler_options("--xla_backend_optimization_level=0") is None   # the user's level wins
