"""Accelerator readiness of both trainers' compiled chunks (issue 15, item 6).

What makes a chunk of k updates run on a GPU/TPU without the host in the loop:
no host callback compiled into it (a ``jax.debug.print`` / ``io_callback``
would make every step wait for Python), every input already resident on the
device (checked with ``jax.transfer_guard("disallow")``, which raises on any
implicit host↔device transfer), and the carried state donated (its buffers
aliased to the outputs, so a chunk does not hold two copies of params and
optimizer state). Checked on the CPU backend, the same program the
accelerators compile.
"""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np

CALLBACK = re.compile(r"custom_call_target=\"[^\"]*callback[^\"]*\"", re.I)


def _check_compiled(compiled, num_state_leaves: int):
  hlo = compiled.as_text()
  assert not CALLBACK.search(hlo), CALLBACK.search(hlo).group(0)
  # Donation: one input_output_alias entry per donated state buffer (XLA prints
  # `input_output_alias={ {out}: (param, {}, may-alias), ... }` in the module header).
  header = hlo.splitlines()[0]
  assert "input_output_alias={" in header, "no input_output_alias: the state is not donated"
  aliases = header.split("input_output_alias={", 1)[1].split(" }, ", 1)[0]
  assert len(re.findall(r"(?:may|must)-alias", aliases)) >= num_state_leaves, aliases


def _guarded(fn, *args):
  with jax.transfer_guard("disallow"):
    out = fn(*args)
    jax.block_until_ready(out)
  return out


def test_supervised_chunk_is_device_resident_donated_and_callback_free():
  from experiments.configs import default
  from stable_training import train
  from stable_training.train import loop
  c = default.get_config("digits")
  c.model.width, c.model.depth, c.batch_size, c.num_seeds = 16, 3, 32, 2
  c.optimizer.name, c.optimizer.learning_rate, c.progress = "sgd", 0.1, "none"
  data = train.load_data(c)
  setup = train.build(c, data)
  state = train.init_state(setup.model, setup.tx, setup.seeds, jnp.asarray(data["x_test"][:1]))
  state = jax.device_put(state, jax.tree.map(lambda a: loop._leaf_sharding(setup, a), state))
  xs = setup.batch_xs(0, 5)
  compiled = setup.chunk.lower(state, setup.device_data, xs).compile()
  _check_compiled(compiled, len(jax.tree.leaves(state.params)))
  # The guarded chunk gives the same numbers as the engine's own 5 steps from the same state.
  ref_state = jax.tree.map(jnp.copy, state)
  new, stopped, m = _guarded(compiled, state, setup.device_data, xs)
  assert not bool(np.any(np.asarray(stopped))) and int(np.asarray(new.step)[0]) == 5
  assert all(a.is_deleted() for a in jax.tree.leaves(state.params))   # donated: the old buffers are gone
  again, _, m2 = compiled(ref_state, setup.device_data, setup.batch_xs(0, 5))
  np.testing.assert_array_equal(np.asarray(m["loss"]), np.asarray(m2["loss"]))
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sequence_task_chunk_draws_its_batches_on_the_device():
  """Generated tasks (adding problem): batches are sampled inside the chunk, nothing crosses per step."""
  from experiments.configs import roaf
  from stable_training import train
  c = roaf.get_config("adding-elman-20")
  c.model.width, c.batch_size, c.num_seeds, c.progress = 8, 4, 2, "none"
  data = train.load_data(c)
  setup = train.build(c, data)
  state = train.init_state(setup.model, setup.tx, setup.seeds, jnp.asarray(data["x_test"][:1]))
  xs = setup.batch_xs(0, 3)
  assert xs.shape == (3, 2, 2) and setup.device_data == ()       # only (seed, step) per step and seed
  compiled = setup.chunk.lower(state, setup.device_data, xs).compile()
  _check_compiled(compiled, len(jax.tree.leaves(state.params)))
  new, _, m = _guarded(compiled, state, setup.device_data, xs)
  assert np.all(np.isfinite(np.asarray(m["loss"]))) and int(np.asarray(new.step)[0]) == 3


def test_dqn_chunk_is_device_resident_donated_and_callback_free():
  """The whole DQN chunk (env steps, replay buffer, updates, evaluation) runs without the host."""
  from experiments.configs import dqn as dqn_configs
  from stable_training.rl import trainer
  c = trainer.resolve(dqn_configs.get_config("tgelu_none,tiny"))
  program = json.dumps(trainer.program_config(c), sort_keys=True)
  init = trainer._compiled_init(program)
  runner = jax.tree.map(lambda *a: jnp.stack(a), *[init(k) for k in trainer.seed_keys(c)[:2]])
  compiled = trainer._compiled_chunk(program, 2, None)
  _check_compiled(compiled, len(jax.tree.leaves(runner.params)))
  k = jax.device_put(np.int32(0))
  reference = compiled(jax.tree.map(jnp.copy, runner), k)[1]
  new, m = _guarded(compiled, runner, k)
  assert all(a.is_deleted() for a in jax.tree.leaves(runner.buffer_state))  # the replay buffer is donated
  assert int(np.asarray(new.t)[0]) == c.eval_every
  for key in ("eval_return", "loss"):
    np.testing.assert_array_equal(np.asarray(m[key]), np.asarray(reference[key]))
