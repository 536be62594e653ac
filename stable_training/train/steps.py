"""Train state and compiled train / eval steps.

One train step is the same pure function whether it runs on one CPU, a device
mesh, or many seeds at once: `make_train_step` builds the per-seed step,
`make_chunk_fn` vmaps it over seeds and scans it over `K` steps so a single
compiled call advances every seed K steps with no host round trip.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

# Top-level modules whose params are stacked along a leading layer axis
# (`stable_training.models.scan_layers` names them so).
SCANNED_MODULES = ("hidden",)


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: step, params, optimizer state, PRNG key.

  The key is a raw ``uint32[2]`` array (``jax.random.PRNGKey``) so checkpoints
  hold plain arrays.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy −(1/B) Σ_b log softmax(logits_b)[y_b]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_objective(model, loss_fn: Callable = cross_entropy,
                   metrics_fn: Callable | None = None) -> Callable:
  """params-level objective ``(params, batch, rng) -> (loss, metrics)``.

  loss = `loss_fn`(f_θ(x), y); metrics = batch means of `metrics_fn`'s
  per-example values (default: accuracy, argmax f_θ(x) = y, for the
  classification `cross_entropy`).
  """
  if metrics_fn is None:
    metrics_fn = lambda logits, y: {"accuracy": (jnp.argmax(logits, -1) == y).astype(jnp.float32)}

  def objective(params, batch, rng):
    del rng
    x, y = batch
    logits = model.apply({"params": params}, x)
    aux = {k: jnp.mean(v) for k, v in metrics_fn(logits, y).items()}
    return loss_fn(logits, y), aux
  return objective


def layer_names(params) -> list[str]:
  """Names of the entries of `layer_grad_norms`, in the same (depth) order."""
  names = []
  for m in _module_order(params):
    if m in SCANNED_MODULES:
      n = jax.tree.leaves(params[m])[0].shape[0]
      names += [f"{m}/{i}" for i in range(n)]
    else:
      names.append(m)
  return names


def _module_order(params) -> list[str]:
  mods = list(params.keys())
  head = [m for m in ("input",) if m in mods]
  scanned = [m for m in SCANNED_MODULES if m in mods]
  tail = [m for m in ("output",) if m in mods]
  rest = sorted(m for m in mods if m not in head + scanned + tail)
  return head + scanned + rest + tail


def layer_grad_norms(grads) -> jax.Array:
  """‖g_l‖₂ per layer, in depth order: ``input``, each scanned layer, others, ``output``.

  A scanned module contributes one norm per entry of its leading axis.
  """
  return jnp.sqrt(_layer_sq_norms(grads))


def _layer_sq_norms(grads) -> jax.Array:
  """‖g_l‖₂² per layer, in `layer_grad_norms`' order (one pass over the gradient)."""
  out = []
  for m in _module_order(grads):
    leaves = jax.tree.leaves(grads[m])
    if m in SCANNED_MODULES:
      out.append(sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in leaves))
    else:
      out.append(sum(jnp.sum(jnp.square(g)) for g in leaves)[None])
  return jnp.concatenate(out)


def _tree_variance(tree) -> jax.Array:
  """Variance of all entries of `tree` pooled: E[u²] − E[u]².

  One pass over the leaves (sum and sum of squares, accumulated in float32):
  the two-pass form re-reads every leaf after a global reduction, which under
  the seed vmap made XLA:CPU recompute the update per element and tripled the
  cost of a 16-seed step (scripts/bench_train_step.py).
  """
  leaves = jax.tree.leaves(tree)
  n = sum(x.size for x in leaves)
  mean = sum(jnp.sum(x, dtype=jnp.float32) for x in leaves) / n
  mean_sq = sum(jnp.sum(jnp.square(x), dtype=jnp.float32) for x in leaves) / n
  return jnp.maximum(mean_sq - jnp.square(mean), 0.0)


def all_finite(tree) -> jax.Array:
  """True iff every leaf of `tree` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _finite_given_norms(grads, updates, grad_norm, update_norm) -> jax.Array:
  """`all_finite` of grads and updates, read off their norms when those are finite.

  A finite ‖g‖₂ = √Σ g² implies every g is finite (an inf or NaN entry makes
  the sum inf or NaN), so the entry-wise check runs only when a norm is not
  finite: a finite vector whose squares overflow still counts as finite. Same
  answer as ``all_finite(grads) & all_finite(updates)``, without two more
  passes over the parameters in the common case.
  """
  return jax.lax.cond(jnp.isfinite(grad_norm) & jnp.isfinite(update_norm),
                      lambda: jnp.array(True),
                      lambda: all_finite(grads) & all_finite(updates))


def make_train_step(model, loss_fn: Callable, tx: optax.GradientTransformation, *,
                    metrics_fn: Callable | None = None) -> Callable:
  """One SGD-style step for one seed: ``(state, (x, y)) -> (state, metrics)``.

  (loss, aux), grads = value_and_grad(L)(θ; x, y), then
  ``updates, s = tx.update(grads, s, θ, grad_fn=grad_fn)`` and
  θ ← θ + updates. ``grad_fn(p, *unused) = ∇_p L(p; x, y)`` at the step's
  batch and rng is the extra argument of `optax.GradientTransformationExtraArgs`
  transforms that need more gradients, e.g. the averaged gradient
  (`optim.averaged_gradient_estimator`, ICLR 2025 submission "… Many
  Nonlinear Activations") or `optax.contrib.sam(..., opaque_mode=True)`;
  ``grad_fn.at_params`` is `grads` (lets a transform check it receives them
  unchanged) and ``grad_fn.loss_fn`` the loss p ↦ L(p; x, y) (the secant
  estimator rewrites its activations on any model). A caller's
  `optim.averaged_gradient` wrapper gets ``grad_fn`` directly. Plain transforms drop it, and it is traced only if called, so
  for them the step costs one forward+backward, as before. Metrics: loss,
  accuracy, ‖g‖, per-layer ‖g_l‖ (of ∇L(θ)), ‖updates‖, the variance of the
  update entries and whether loss, grads and updates are finite, plus the batch
  means of `metrics_fn` (`make_objective`).
  """
  from stable_training.optim.avg_grad import AveragedGradientTransformation
  objective = make_objective(model, loss_fn, metrics_fn)
  vg = jax.value_and_grad(objective, has_aux=True)
  if not isinstance(tx, AveragedGradientTransformation):  # a user's st.averaged_gradient takes grad_fn itself
    tx = optax.with_extra_args_support(tx)

  def train_step(state: TrainState, batch):
    rng, step_rng = jax.random.split(state.rng)
    (loss, aux), grads = vg(state.params, batch, step_rng)

    def grad_fn(params, *unused):
      """∇L(params) at this step's batch and rng (extra `unused`: sam's step index)."""
      del unused
      return jax.grad(lambda p: objective(p, batch, step_rng)[0])(params)
    grad_fn.at_params = grads
    grad_fn.loss_fn = lambda p: objective(p, batch, step_rng)[0]   # secant on any model (optim.secant)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_fn=grad_fn)
    params = optax.apply_updates(state.params, updates)
    # ‖g‖ from the per-layer squares: ‖g‖² = Σ_l ‖g_l‖², one pass over the gradient, not two.
    layer_sq = _layer_sq_norms(grads)
    grad_norm, update_norm = jnp.sqrt(jnp.sum(layer_sq)), optax.tree.norm(updates)
    metrics = {
        "loss": loss,
        **aux,
        "grad_norm": grad_norm,
        "update_norm": update_norm,
        "update_var": _tree_variance(updates),
        "layer_grad_norms": jnp.sqrt(layer_sq),
        # Updates too: a finite gradient times a huge step can overflow.
        "finite": jnp.isfinite(loss) & _finite_given_norms(grads, updates, grad_norm, update_norm),
    }
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         rng=rng), metrics
  return train_step


def gather_batch(data, idx):
  """The array-dataset batch maker: ``(x_all[idx], y_all[idx])`` for ``data = (x_all, y_all)``."""
  x_all, y_all = data
  return x_all[idx], y_all[idx]


def make_chunk_fn(train_step: Callable, *, stop_on_nonfinite: bool, unroll: int = 1,
                  make_batch: Callable = gather_batch) -> Callable:
  """K steps for S seeds in one call: ``(state, data, xs[K,S,...]) -> (state, stopped, metrics[K,S])``.

  Step k of seed s trains on ``make_batch(data, xs[k, s])``. For an array
  dataset `data` = (x_all, y_all) lives on device and xs holds each step's
  example indices (`gather_batch`); for a generated task xs holds (seed,
  step) and the batch is drawn inside the step. Either way the data order is
  a pure function of (seed, step) and resume is exact.
  With `stop_on_nonfinite`, the first step whose loss or gradient is not
  finite for any seed freezes the state at the last good values (the host then
  reports that step and stops).

  Seeds are vmapped; a single seed runs unbatched, as a plain loop of
  `train_step` would (a batch-1 vmap was 25 % slower on XLA:CPU).

  `unroll` is `jax.lax.scan`'s: steps per loop iteration (compile time and
  memory grow with it). ``unroll=0`` builds a loop-free one-step program
  (xs of leading size 1) for a host loop: XLA:CPU runs convolutions inside
  any while loop, even one of trip count 1, ≈ 5× slower.
  """
  def one_seed(state, data, xs_s):
    return train_step(state, make_batch(data, xs_s))
  all_seeds = jax.vmap(one_seed, in_axes=(0, None, 0))

  def chunk(state, data, xs):
    # One seed runs unbatched: the plain loop's own program, its seed axis dropped once around
    # the loop, not in every step. Under vmap a batch-1 dot_general is not handed to YNNPACK by
    # XLA:CPU (the ROAF RNN's ∂W dot ran on Eigen: the 1-seed step 25 % slower than the same
    # step unbatched, scripts/bench_engine.py).
    single = jax.tree.leaves(xs)[0].shape[1] == 1
    step = one_seed if single else all_seeds
    if single:
      state, xs = jax.tree.map(lambda a: a[0], state), jax.tree.map(lambda a: a[:, 0], xs)

    def body(carry, xs_k):
      state, stopped = carry
      new_state, m = step(state, data, xs_k)
      if stop_on_nonfinite:
        stopped = stopped | ~jnp.all(m["finite"])
        # An entry-wise select, not a lax.cond: XLA fuses the select into the fusions that
        # produce the new state, while a conditional returning either state made it copy the
        # whole state twice per step (the depth-1,000 MLP: 4 copies of a 16 MB stacked kernel).
        new_state = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), state, new_state)
      return (new_state, stopped), m
    if unroll == 0:  # one step, no loop
      (state, stopped), m = body((state, jnp.array(False)), jax.tree.map(lambda a: a[0], xs))
      metrics = jax.tree.map(lambda a: a[None], m)
    else:
      (state, stopped), metrics = jax.lax.scan(body, (state, jnp.array(False)), xs, unroll=unroll)
    if single:
      state, metrics = jax.tree.map(lambda a: a[None], state), jax.tree.map(lambda a: a[:, None], metrics)
    return state, stopped, metrics
  return chunk


def make_eval_step(model, loss=None, *, batch_size: int) -> Callable:
  """Held-out metrics for every seed: ``(params[S], x, y) -> {'loss': [S], metric: [S], …}``.

  `loss` is a `stable_training.train.losses.Loss` (default cross-entropy with
  accuracy): the mean of its per-example values and metrics over the whole
  set. Evaluates in chunks of `batch_size` (padded; padding is masked out)
  with `lax.map`, so memory does not grow with the set's size.
  """
  if loss is None:
    from stable_training.train.losses import get_loss
    loss = get_loss("cross_entropy")

  def eval_one(params, x, y):
    n = x.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    mask = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)]).reshape(nb, batch_size)
    xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(nb, batch_size, *x.shape[1:])
    yp = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)]).reshape(nb, batch_size, *y.shape[1:])

    def one(args):
      xb, yb, mb = args
      out = model.apply({"params": params}, xb)
      vals = {"loss": loss.per_example(out, yb), **loss.metrics(out, yb)}
      return {k: jnp.sum(v * mb) for k, v in vals.items()}
    sums = jax.lax.map(one, (xp, yp, mask))
    return {k: v.sum() / n for k, v in sums.items()}
  return jax.vmap(eval_one, in_axes=(0, None, None))


def first_nonfinite_path(tree) -> str | None:
  """The '/'-joined path of the first leaf with a non-finite entry, or None."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not bool(jnp.all(jnp.isfinite(leaf))):
      return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
  return None
