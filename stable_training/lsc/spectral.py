"""Radii of transition Jacobians for the Local Stability Condition.

Herranz-Celotti & Rouat (2023/24), "Stabilizing RNN Gradients through
Pre-training": a network satisfies the Local Stability Condition (LSC) when
every transition Jacobian M (time: ∂s_t/∂s_{t−1}, depth: ∂s^l_t/∂s^{l−1}_t)
has radius ρ(M) at a target (1, or 0.5 in their "ρ = 0.5" variant), which
bounds the variance of the gradient's growth through depth and time.

Radii:
  * ``"spectral_radius"``: ρ(M) = max |eig(M)|. A non-square M (e.g. the
    read-out ∂o/∂s, classes × state) is first made square by keeping a random
    subset, of size min(m, n), of its longer axis (sorted, so the original
    order is kept) — as the reference implementation does.
  * ``"spectral_norm"``: σ_max(M), the largest singular value.

Note: `jnp.linalg.eigvals` (non-symmetric eigenvalues) is implemented on CPU
only in JAX; every study here runs on CPU. On GPU/TPU use ``kind=
"spectral_norm"`` or the matrix-free `radius_of_map`.

Threads: programs with several batched eig custom calls deadlocked here
(jax 0.10.2; all threads asleep on a futex). First blamed on OpenBLAS (it
went away with ``OPENBLAS_NUM_THREADS=1``), the likelier cause is the one
found for the diagnostics' batched SVD (`stable_training.train.sharding.
on_one_device`): jaxlib's batched CPU LAPACK kernels split their batch over
XLA's intra-op pool and block a pool thread until the pieces finish, so
enough concurrent kernels leave no thread to run them. So `spectral_radius` runs
NumPy's eig on the host through one `jax.pure_callback` per batch, and
``spectral_norm`` uses the same host path (singular vectors from NumPy).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("spectral_radius", "spectral_norm")


def check_kind(kind: str) -> str:
  """`kind` if it is a radius LSC knows: ρ = max |eig| or σ_max (see module doc); else ValueError."""
  if kind not in KINDS:
    raise ValueError(f"unknown radius kind {kind!r}; valid kinds: {', '.join(KINDS)}")
  return kind


def square_subsample(J: jax.Array, key: jax.Array | None) -> jax.Array:
  """[..., m, n] → [..., k, k], k = min(m, n): a random sorted subset of the longer axis."""
  m, n = J.shape[-2:]
  if m == n:
    return J
  key = jax.random.PRNGKey(0) if key is None else key
  k = min(m, n)
  idx = jnp.sort(jax.random.permutation(key, max(m, n))[:k])
  return jnp.take(J, idx, axis=-2) if m > n else jnp.take(J, idx, axis=-1)


_MIN_SPLIT = 8  # below this many matrices, threads cost more than they save


@functools.lru_cache(maxsize=1)
def _pool():
  from threadpoolctl import ThreadpoolController
  n = max(1, min(os.cpu_count() or 1, 8))
  return ThreadPoolExecutor(n, thread_name_prefix="lsc-lapack"), n, ThreadpoolController()


def _host_map(fn, A: np.ndarray):
  """fn over a batch of matrices A [N, m, n] → tuple of arrays, split across cores.

  LAPACK is entered from one worker per core with BLAS threads limited to 1
  (for small matrices nested OpenBLAS threads only contend); the pieces are
  concatenated in order, so the result equals fn(A).
  """
  pool, n, ctl = _pool()
  if n == 1 or A.shape[0] < _MIN_SPLIT:
    return fn(A)
  with ctl.limit(limits=1, user_api="blas"):
    parts = list(pool.map(fn, np.array_split(A, n)))
  return tuple(np.concatenate(p) for p in zip(*parts))


def _np_radius_and_grad(J):
  """Host (NumPy) ρ(J) and ∂ρ/∂J for a batch of real square matrices (float64 inside)."""
  J = np.asarray(J)
  shape = J.shape
  A = J.reshape((-1,) + shape[-2:]).astype(np.float64)
  r, g = _host_map(_radius_and_grad_f64, A)
  return r.reshape(shape[:-2]).astype(J.dtype), g.reshape(shape).astype(J.dtype)


def _radius_and_grad_f64(A):
  """ρ and ∂ρ/∂A for A [N, n, n] float64 (see `spectral_radius`)."""
  lam, V = np.linalg.eig(A)
  k = np.argmax(np.abs(lam), axis=-1)
  idx = np.arange(A.shape[0])
  lk, vk = lam[idx, k], V[idx, :, k]
  e = np.zeros(lam.shape, V.dtype)
  e[idx, k] = 1.0
  with np.errstate(all="ignore"):
    try:
      wk = np.linalg.solve(np.swapaxes(V, -1, -2), e[..., None])[..., 0]  # row k of V⁻¹
    except np.linalg.LinAlgError:
      wk = np.zeros_like(vk)
    r = np.abs(lk)
    coef = (np.conj(lk) / np.maximum(r, 1e-12))[:, None, None] * wk[:, :, None] * vk[:, None, :]
    g = np.real(coef)
  g = np.where(np.isfinite(g), g, 0.0)
  return r, g


def _host_radius(J):
  out = (jax.ShapeDtypeStruct(J.shape[:-2], J.dtype), jax.ShapeDtypeStruct(J.shape, J.dtype))
  # One host call per batch (vmap folds into the leading axes), so LAPACK is
  # entered from one thread at a time.
  return jax.pure_callback(_np_radius_and_grad, out, J, vmap_method="expand_dims")


@jax.custom_jvp
def spectral_radius(J: jax.Array) -> jax.Array:
  """ρ(J) = max_i |λ_i(J)| of square matrices [..., n, n] → [...], with a first-order rule.

  Derivative (simple dominant eigenvalue λ_k, right eigenvector v_k, left
  eigenvector w_kᴴ = row k of V⁻¹): dλ_k = w_kᴴ dJ v_k and
  dρ = Re(λ̄_k dλ_k)/|λ_k|, i.e. ∂ρ/∂J = Re(λ̄_k w_k v_kᵀ)/|λ_k|. Non-finite
  derivatives (defective J, singular V) are replaced by 0.

  Computed on the host with NumPy (`jax.pure_callback`, one call per batch)
  rather than `jnp.linalg.eigvals`: with jax/jaxlib 0.10.2 on CPU, programs
  holding several batched eig custom calls deadlocked here (all threads asleep
  on a futex) unless OpenBLAS was started single-threaded
  (``OPENBLAS_NUM_THREADS=1``); the host call enters LAPACK from one thread.
  """
  return _host_radius(J)[0]


@spectral_radius.defjvp
def _spectral_radius_jvp(primals, tangents):
  (J,), (dJ,) = primals, tangents
  r, g = _host_radius(J)
  return r, jnp.sum(g * dJ, axis=(-2, -1))


def radius(J: jax.Array, kind: str = "spectral_radius", key: jax.Array | None = None) -> jax.Array:
  """Radius of each matrix in J [..., m, n] → [...] (exact; LSC, Herranz-Celotti & Rouat).

  ``spectral_radius``: max_i |λ_i(J)| after `square_subsample` when m ≠ n
  (one random subset, drawn from `key`, shared by the whole batch).
  ``spectral_norm``: σ_max(J) (largest singular value).
  Leading axes are batch axes (e.g. batch element, time step, layer); average
  the result over them for the paper's mean radius.
  """
  check_kind(kind)
  J = jnp.asarray(J)
  if J.ndim < 2:
    raise ValueError(f"radius needs matrices [..., m, n], got shape {J.shape}")
  if kind == "spectral_radius":
    return spectral_radius(square_subsample(J, key))
  return spectral_norm(J)


def _np_norm_and_grad(J):
  """Host σ_max(J) and ∂σ_max/∂J = u₁ v₁ᵀ for a batch of real matrices."""
  J = np.asarray(J)
  shape = J.shape
  A = J.reshape((-1,) + shape[-2:]).astype(np.float64)
  s, g = _host_map(_norm_and_grad_f64, A)
  return s.reshape(shape[:-2]).astype(J.dtype), g.reshape(shape).astype(J.dtype)


def _norm_and_grad_f64(A):
  U, S, Vt = np.linalg.svd(A)
  return S[:, 0], U[:, :, 0, None] * Vt[:, None, 0, :]


def _host_norm(J):
  out = (jax.ShapeDtypeStruct(J.shape[:-2], J.dtype), jax.ShapeDtypeStruct(J.shape, J.dtype))
  return jax.pure_callback(_np_norm_and_grad, out, J, vmap_method="expand_dims")


@jax.custom_jvp
def spectral_norm(J: jax.Array) -> jax.Array:
  """σ_max(J) of matrices [..., m, n] → [...]; dσ = u₁ᵀ dJ v₁ (host SVD, see module doc)."""
  return _host_norm(J)[0]


@spectral_norm.defjvp
def _spectral_norm_jvp(primals, tangents):
  (J,), (dJ,) = primals, tangents
  s, g = _host_norm(J)
  return s, jnp.sum(g * dJ, axis=(-2, -1))


def _restrict_square(f: Callable, x: jax.Array, n: int, m: int, key) -> tuple[Callable, jax.Array]:
  """Square restriction of f: Rⁿ → Rᵐ at x (random subset of the longer side)."""
  if n == m:
    return f, x
  key = jax.random.PRNGKey(0) if key is None else key
  k = min(n, m)
  idx = jnp.sort(jax.random.permutation(key, max(n, m))[:k])
  if m > n:
    return (lambda v: f(v)[idx]), x
  return (lambda u: f(x.at[idx].set(u))), x[idx]


def radius_of_map(fn: Callable, x: jax.Array, kind: str = "spectral_radius", *,
                  num_iters: int = 100, key: jax.Array | None = None) -> jax.Array:
  """Matrix-free radius of J = ∂fn/∂x at one point x (power iteration via jvp/vjp).

  ``spectral_norm``: power iteration on JᵀJ (v ← JᵀJ v/‖·‖); σ_max = ‖J v‖.
  ``spectral_radius``: power iteration on J (v ← J v/‖J v‖); ρ is the
  geometric mean of the growth factors ‖J v_k‖ over the second half of the
  iterations (this also averages out the rotation of a dominant complex
  pair, whose single-step ratios oscillate around |λ|). A non-square J is
  restricted to a random square sub-block first, as in `radius`.

  The iterate is held under `stop_gradient`; gradients w.r.t. parameters
  closed over by `fn` flow through one final ‖J v‖ (exact for σ_max, whose
  derivative is uᵀ dJ v; a first-order surrogate for ρ). Cost: `num_iters`
  JVPs (plus as many VJPs for the norm), O(size of x) memory.
  Returns a scalar; vmap over examples and average for the mean radius.
  """
  check_kind(kind)
  x = jnp.asarray(x)
  shape = x.shape
  f = lambda v: jnp.reshape(fn(v.reshape(shape)), (-1,))
  x_flat = x.reshape(-1)
  n = x_flat.shape[0]
  m = int(np.prod(jax.eval_shape(f, x_flat).shape))
  k_sub, k_v = jax.random.split(jax.random.PRNGKey(0) if key is None else key)
  if kind == "spectral_radius":
    f, x_flat = _restrict_square(f, x_flat, n, m, k_sub)
  xs = jax.lax.stop_gradient(x_flat)
  _, jvp = jax.linearize(f, xs)
  jvp_sg = lambda v: jax.lax.stop_gradient(jvp(v))
  v0 = jax.random.normal(k_v, xs.shape, xs.dtype)
  v0 = v0 / jnp.linalg.norm(v0)
  if kind == "spectral_norm":
    vjp_t = jax.linear_transpose(jvp, xs)

    def body(_, v):
      w = jax.lax.stop_gradient(vjp_t(jvp(v))[0])
      return w / (jnp.linalg.norm(w) + 1e-30)
    v = jax.lax.fori_loop(0, num_iters, body, v0)
    _, jv = jax.jvp(f, (xs,), (v,))
    return jnp.linalg.norm(jv)

  half = num_iters // 2

  def body(i, carry):
    v, logsum = carry
    w = jvp_sg(v)
    nw = jnp.linalg.norm(w)
    logsum = logsum + jnp.where(i >= half, jnp.log(nw + 1e-30), 0.0)
    return w / (nw + 1e-30), logsum
  v, logsum = jax.lax.fori_loop(0, num_iters, body, (v0, jnp.zeros((), xs.dtype)))
  est = jnp.exp(logsum / max(num_iters - half, 1))
  _, jv = jax.jvp(f, (xs,), (v,))   # carries the parameter gradient
  g = jnp.linalg.norm(jv)
  return jax.lax.stop_gradient(est) + g - jax.lax.stop_gradient(g)
