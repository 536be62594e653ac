r"""Benchmark: an Elman RNN's weight gradient as one matmul after the backward loop, vs autodiff.

The forward pass is the same scan for both, hₜ = tanh(hₜ₋₁ W + uₜ) with the
input projection uₜ = xₜ U + b hoisted out of the loop. Autodiff of the scan
accumulates ∂W = Σₜ hₜ₋₁ᵀ gₜ inside the backward loop: two dots per time step
(gₜ Wᵀ and hₜ₋₁ᵀ gₜ). The hoisted form (a `jax.custom_vjp`) carries only
δₜ = ∂L/∂hₜ through the reverse scan and stacks gₜ = δₜ ⊙ (1 − hₜ²):

  δₜ₋₁ = gₜ Wᵀ   (one dot per step),
  ∂W = H₋₁ᵀ G    (one [H, T·B] × [T·B, H] dot after the loop),
  ∂U = Xᵀ G,  ∂b = Σ G.

Same gradient up to float32 summation order (printed as the max relative
difference). Prints the median seconds of a jitted fwd + bwd of each over
``--reps`` interleaved rounds and the speed-ups with their [min–max] range
(`stable_training.benchmarking`) against autodiff of the hoisted scan and
against autodiff with uₜ computed inside the step, which is what the library
runs when D = 1 and only h_T is read (psMNIST; `models.recurrent.scan_cell`). A measurement of an idea
(issue 26: Elman ≥ 2× ``torch.nn.RNN``), not the library's RNN path: adopting
it would change every RNN number at rounding level.

  python scripts/bench_rnn_dw.py                  # psMNIST shape: T 784, B = H = 128
  python scripts/bench_rnn_dw.py --tiny           # seconds: a smoke test
"""
from __future__ import annotations

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

from stable_training import allocator, benchmarking


def elman_autodiff(w, u, b, x):
  """Last hidden state h_T of hₜ = tanh(hₜ₋₁ W + xₜ U + b), h₋₁ = 0; x [T, B, I]."""
  xp = x @ u + b

  def step(h, xt):
    return jnp.tanh(h @ w + xt), None
  h, _ = jax.lax.scan(step, jnp.zeros((x.shape[1], w.shape[0]), x.dtype), xp)
  return h


def elman_autodiff_inloop(w, u, b, x):
  """`elman_autodiff` with xₜ U + b inside the step: the library's path when D = 1 and only h_T is
  read (`models.recurrent.scan_cell`, ``hoist=False``; no stacked [T, B, H] input cotangent)."""
  def step(h, xt):
    return jnp.tanh(h @ w + (xt @ u + b)), None
  h, _ = jax.lax.scan(step, jnp.zeros((x.shape[1], w.shape[0]), x.dtype), x)
  return h


@jax.custom_vjp
def elman_hoisted(w, u, b, x):
  """`elman_autodiff` with ∂W, ∂U, ∂b as single matmuls after the reverse loop (module docstring)."""
  return elman_autodiff(w, u, b, x)


def _fwd(w, u, b, x):
  xp = x @ u + b

  def step(h, xt):
    h = jnp.tanh(h @ w + xt)
    return h, h
  h, hs = jax.lax.scan(step, jnp.zeros((x.shape[1], w.shape[0]), x.dtype), xp)
  return h, (w, u, x, hs)


def _bwd(res, d_last):
  w, u, x, hs = res

  def step(d, h_t):
    g = d * (1 - h_t * h_t)   # ∂L/∂(pre-activation) at step t
    return g @ w.T, g
  _, gs = jax.lax.scan(step, d_last, hs, reverse=True)
  h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
  g2 = gs.reshape(-1, gs.shape[-1])
  return (h_prev.reshape(-1, hs.shape[-1]).T @ g2, x.reshape(-1, x.shape[-1]).T @ g2, g2.sum(0),
          jnp.einsum("tbh,ih->tbi", gs, u))


elman_hoisted.defvjp(_fwd, _bwd)


def grads(rnn, params, x, y):
  """∇ of the mean cross-entropy of a linear read-out of h_T, w.r.t. (W, U, b, V)."""
  def loss(w, u, b, v):
    logits = rnn(w, u, b, x) @ v
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])
  return jax.grad(loss, argnums=(0, 1, 2, 3))(*params)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seq_len", type=int, default=784)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--reps", type=int, default=7)
  p.add_argument("--tiny", action="store_true", help="seconds-long smoke settings")
  a = p.parse_args(argv)
  allocator.setup(__name__)
  if a.tiny:
    a.seq_len, a.batch, a.hidden, a.reps = 12, 4, 8, 2
  T, B, H = a.seq_len, a.batch, a.hidden
  k = jax.random.split(jax.random.PRNGKey(0), 5)
  params = (jax.random.normal(k[0], (H, H)) / np.sqrt(H), jax.random.normal(k[1], (1, H)), jnp.zeros(H),
            jax.random.normal(k[2], (H, 10)) / np.sqrt(H))
  x, y = jax.random.normal(k[3], (T, B, 1)), jax.random.randint(k[4], (B,), 0, 10)
  fns = {"autodiff": elman_autodiff, "autodiff_inloop": elman_autodiff_inloop, "hoisted": elman_hoisted}
  jitted = {k: jax.jit(functools.partial(grads, f)) for k, f in fns.items()}
  ga, gh = jitted["autodiff"](params, x, y), jitted["hoisted"](params, x, y)
  rel = max(float(jnp.max(jnp.abs(p - q)) / (jnp.max(jnp.abs(p)) + 1e-30)) for p, q in zip(ga, gh))
  times = benchmarking.interleaved({k: (lambda f=f: jax.block_until_ready(f(params, x, y)))
                                    for k, f in jitted.items()}, a.reps)
  med = {k: np.median(v) for k, v in times.items()}
  print(benchmarking.header())
  print(f"elman T={T} B={B} H={H}, fwd+bwd, {a.reps} interleaved rounds: autodiff {med['autodiff']:.4f} s, "
        f"autodiff with the projection in the loop {med['autodiff_inloop']:.4f} s, hoisted dW {med['hoisted']:.4f} s; "
        f"speed-up vs autodiff {benchmarking.fmt_ratio(benchmarking.ratio(times['autodiff'], times['hoisted']))}, "
        f"vs the projection in the loop "
        f"{benchmarking.fmt_ratio(benchmarking.ratio(times['autodiff_inloop'], times['hoisted']))}; "
        f"max relative gradient difference {rel:.1e}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
