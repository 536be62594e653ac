"""scripts/bench_rnn_dw.py: the hoisted-∂W Elman gradient equals autodiff's (in-process, against jax.grad of
the same scan and a Python loop), and --tiny runs as a user runs it (no timing assertions)."""
import importlib.util
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
  spec = importlib.util.spec_from_file_location("bench_rnn_dw", os.path.join(ROOT, "scripts", "bench_rnn_dw.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_hoisted_gradient_equals_autodiff_and_a_python_loop():
  b = _bench()
  k = jax.random.split(jax.random.PRNGKey(3), 5)
  T, B, H, I = 9, 3, 5, 2
  params = (jax.random.normal(k[0], (H, H)) / np.sqrt(H), jax.random.normal(k[1], (I, H)),
            0.1 * jax.random.normal(k[2], (H,)), jax.random.normal(k[3], (H, 10)))
  x, y = jax.random.normal(k[4], (T, B, I)), jnp.arange(B) % 10

  def loop_rnn(w, u, bias, x):   # the recurrence written out step by step
    h = jnp.zeros((x.shape[1], w.shape[0]))
    for t in range(x.shape[0]):
      h = jnp.tanh(h @ w + x[t] @ u + bias)
    return h
  want = jax.jit(lambda p: b.grads(loop_rnn, p, x, y))(params)
  for rnn in (b.elman_autodiff, b.elman_autodiff_inloop, b.elman_hoisted):
    got = jax.jit(lambda p: b.grads(rnn, p, x, y))(params)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
  # ∂L/∂x too (the custom VJP's input cotangent), against autodiff of the loop.
  f = lambda rnn: jax.grad(lambda x: jnp.sum(rnn(*params[:3], x) ** 2))(x)
  np.testing.assert_allclose(f(b.elman_hoisted), f(loop_rnn), rtol=2e-5, atol=1e-6)


def test_tiny_prints_a_ratio_within_its_range_and_matching_gradients():
  p = subprocess.run([sys.executable, "scripts/bench_rnn_dw.py", "--tiny"], cwd=ROOT, capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  m = re.search(r"speed-up vs autodiff (\S+)× \[(\S+)–(\S+)\], vs the projection in the loop (\S+)× "
                r"\[(\S+)–(\S+)\]; max relative gradient difference (\S+)$", p.stdout, re.M)
  assert m, p.stdout
  *ratios, rel = map(float, m.groups())
  for ratio, lo, hi in (ratios[:3], ratios[3:]):
    assert 0 < lo <= ratio <= hi
  assert rel < 1e-5
