"""Long-lag memory tasks as generated datasets: the adding problem, the copy task, the first-symbol task.

Both are *online*: every minibatch is drawn fresh inside the compiled train
step from a key that is a pure function of (seed, step)
(`batch_key`), so a run resumes exactly and no training set is stored; the
test and validation sets are fixed draws (keys independent of the run seed,
so every seed is evaluated on the same sequences).

- Adding problem (Hochreiter & Schmidhuber 1997; the long-lag benchmark of
  Ceni 2022): x_t = (u_t, m_t), u_t ~ U(0, 1), exactly two markers m = 1, one
  in each half of the T steps; the target is y = Σ_t u_t m_t, read from the
  last state. Predicting the constant E[y] = 1 has MSE Var(u_i + u_j) = 1/6.
- Copy task (Arjovsky, Shah & Bengio 2016): T + 2·K steps (K = 10 symbols);
  the input is K symbols drawn uniformly from {1, …, S} (S = 8), T − 1
  blanks (0), the delimiter S + 1 and K more blanks, one-hot encoded; the
  target is blank for the first T + K steps, then the K symbols. A model that
  outputs blanks and then guesses uniformly has cross-entropy
  K log S / (T + 2K) per step.
- First-symbol task ("first"; Hochreiter & Schmidhuber 1997, experiment 2:
  the first element of a long sequence of distractors must be recalled at its
  end; Bengio, Simard & Frasconi 1994's "latching"): T steps, x_0 one of
  C = 8 class symbols, x_1 … x_{T−1} drawn uniformly from D = 8 distractor
  symbols (disjoint from the classes), one-hot over C + D channels; the
  target is the class of x_0, read from the last state, i.e. one input
  remembered across T − 1 transitions ("an input 10,000 time steps in the
  past", Ceni 2022). Without memory the best prediction is uniform:
  cross-entropy log C.

"Solved" in this project (`scripts/reproduce_roaf_memory.py`): test loss
≤ 0.1 × the task's baseline loss (`baseline_loss`).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DATA_SALT = 0x5EED   # data keys never coincide with the model-init keys
TEST_SEED = 10_000_019
VAL_SEED = 10_000_079
COPY_SYMBOLS = 8
COPY_LENGTH = 10
FIRST_CLASSES = 8
FIRST_DISTRACTORS = 8


class TaskSpec(NamedTuple):
  """A generated task: ``sample(key, n, lag) -> (x, y)`` and what the engine needs to know.

  `loss` names the loss (`stable_training.train.losses`), `num_outputs` the
  model's output units, `readout` the recurrent readout ('last' | 'all'),
  `baseline(lag)` the constant-predictor loss.
  """
  sample: Callable[[jax.Array, int, int], tuple[jax.Array, jax.Array]]
  loss: str
  num_outputs: int
  readout: str
  baseline: Callable[[int], float]


def adding_problem(key: jax.Array, n: int, lag: int) -> tuple[jax.Array, jax.Array]:
  """n sequences of the adding problem with lag T: ``x [n, T, 2]`` float32, ``y [n]``.

  Marker positions i ~ U{0 … ⌊T/2⌋ − 1}, j ~ U{⌊T/2⌋ … T − 1}; y = u_i + u_j.
  """
  k1, k2, k3 = jax.random.split(key, 3)
  vals = jax.random.uniform(k1, (n, lag))
  i = jax.random.randint(k2, (n,), 0, lag // 2)
  j = jax.random.randint(k3, (n,), lag // 2, lag)
  t = jnp.arange(lag)
  marks = ((t == i[:, None]) | (t == j[:, None])).astype(jnp.float32)
  return jnp.stack([vals, marks], -1), jnp.sum(vals * marks, axis=1)


def copy_task(key: jax.Array, n: int, lag: int) -> tuple[jax.Array, jax.Array]:
  """n sequences of the copy task with lag T: ``x [n, T+20, S+2]`` one-hot, ``y [n, T+20]`` int32.

  Input symbols a_1..a_K ~ U{1..S}, then T − 1 blanks, the delimiter S + 1,
  K blanks; target: T + K blanks, then a_1..a_K (K = 10, S = 8).
  """
  k = COPY_LENGTH
  sym = jax.random.randint(key, (n, k), 1, COPY_SYMBOLS + 1)
  blanks = jnp.zeros((n, lag - 1), jnp.int32)
  delim = jnp.full((n, 1), COPY_SYMBOLS + 1, jnp.int32)
  tail = jnp.zeros((n, k), jnp.int32)
  inp = jnp.concatenate([sym, blanks, delim, tail], axis=1)
  target = jnp.concatenate([jnp.zeros((n, lag + k), jnp.int32), sym], axis=1)
  return jax.nn.one_hot(inp, COPY_SYMBOLS + 2), target


def first_symbol(key: jax.Array, n: int, lag: int) -> tuple[jax.Array, jax.Array]:
  """n sequences of the first-symbol task with lag T: ``x [n, T, C+D]`` one-hot, ``y [n]`` int32 in {0 … C−1}.

  x_0 = e_y with y ~ U{0 … C−1}; x_t = e_{C+d_t}, d_t ~ U{0 … D−1} for t ≥ 1
  (C = D = 8). The class is only in the first step: the readout at step T − 1
  must carry it across T − 1 transitions.
  """
  k1, k2 = jax.random.split(key)
  y = jax.random.randint(k1, (n,), 0, FIRST_CLASSES)
  noise = jax.random.randint(k2, (n, lag - 1), 0, FIRST_DISTRACTORS) + FIRST_CLASSES
  sym = jnp.concatenate([y[:, None], noise], axis=1)
  return jax.nn.one_hot(sym, FIRST_CLASSES + FIRST_DISTRACTORS), y


TASKS: dict[str, TaskSpec] = {
    "adding": TaskSpec(adding_problem, "mse", 1, "last", lambda lag: 1.0 / 6.0),
    "copy": TaskSpec(copy_task, "cross_entropy", COPY_SYMBOLS + 1, "all",
                     lambda lag: COPY_LENGTH * math.log(COPY_SYMBOLS) / (lag + 2 * COPY_LENGTH)),
    "first": TaskSpec(first_symbol, "cross_entropy", FIRST_CLASSES, "last", lambda lag: math.log(FIRST_CLASSES)),
}


def names() -> tuple[str, ...]:
  """Names of the generated sequence tasks."""
  return tuple(sorted(TASKS))


def get_task(name: str) -> TaskSpec:
  """The `TaskSpec` of `name`; ValueError listing the valid names otherwise."""
  if name not in TASKS:
    raise ValueError(f"unknown sequence task {name!r}; valid: {', '.join(names())}")
  return TASKS[name]


def batch_key(seed: jax.Array, step: jax.Array) -> jax.Array:
  """The key of minibatch `step` of run `seed`: fold_in(fold_in(PRNGKey(SALT), seed), step)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(DATA_SALT), seed), step)


def fixed_set(name: str, n: int, lag: int, split: str) -> tuple[np.ndarray, np.ndarray]:
  """The fixed test / validation set of `n` sequences (same for every run seed)."""
  seed = {"test": TEST_SEED, "validation": VAL_SEED}[split]
  x, y = jax.jit(get_task(name).sample, static_argnums=(1, 2))(jax.random.PRNGKey(seed), n, lag)
  return np.asarray(x), np.asarray(y)
