"""Attribution of the deep ROAF step's time by ablation (not a test): a bare `lax.scan` of
`jax.checkpoint`ed layers h ↦ α·O_l h + β·tanh(h W_l), `jax.grad` of Σ h², width = batch = 128,
medians of 5 calls, every variant timed in the same rounds (interleaved).

Variants: none (O_l = I), fast (rows of one Haar matrix permuted, signed), dense_in (per-layer dense
O_l fed to the scan), perm (signed permutation, autodiff gather), perm_vjp (the same with an
inverse-permutation backward, as `models.roaf.signed_permute`), roll1 / rollk (cyclic shifts),
obase_sign, linear (no tanh), matmul_only (h ↦ h W); a ``+POLICY`` suffix changes the remat policy
(``+nockpt``, ``+dots``, ``+dots_nobatch``).

  python scripts/bench_layer_scan.py 1000 none,linear,matmul_only,none+nockpt,perm_vjp
"""
import time, sys, jax, jax.numpy as jnp, numpy as np
D, W, B = int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 128, 128
a, b = 0.99, 0.01
key = jax.random.PRNGKey(0)
Ws = jax.random.normal(key, (D, W, W)) / np.sqrt(W)
x0 = jax.random.normal(jax.random.PRNGKey(1), (B, W))
obase = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(2), (W, W)))[0]
perms = jnp.stack([jax.random.permutation(jax.random.PRNGKey(10 + i), W) for i in range(D)]).astype(jnp.int32)
signs = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (D, W)), 1.0, -1.0)
shifts = jax.random.randint(jax.random.PRNGKey(4), (D,), 0, W)

@jax.custom_vjp
def pgather(x, p, pinv):
  return x[:, p]
def pg_fwd(x, p, pinv): return x[:, p], (p, pinv)
def pg_bwd(res, g):
  p, pinv = res
  return g[:, pinv], None, None
pgather.defvjp(pg_fwd, pg_bwd)
pinvs = jnp.argsort(perms, axis=1).astype(jnp.int32)

def filt(mode, h, xs):
  if mode.startswith("none") or mode in ("linear", "matmul_only"): return h
  if mode == "fast": return h @ (obase[xs["p"]] * xs["s"][:, None]).T
  if mode == "dense_in": return h @ xs["O"].T
  if mode == "perm": return h[:, xs["p"]] * xs["s"]
  if mode == "perm_vjp": return pgather(h, xs["p"], xs["pinv"]) * xs["s"]
  if mode == "roll1": return jnp.roll(h, 1, axis=1) * xs["s"]
  if mode == "rollk": return jnp.roll(h, xs["k"], axis=1) * xs["s"]
  if mode == "obase_sign": return (h @ obase.T) * xs["s"]
  raise ValueError(mode)

POL = {"ckpt": None, "dots": jax.checkpoint_policies.dots_saveable, "nockpt": "off",
       "dots_nobatch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
def make(mode):
  pol = "ckpt"
  if "+" in mode:
    mode, pol = mode.split("+")
  def loss(Ws):
    def body(h, xs):
      def layer(h, xs):
        if mode == "matmul_only": return h @ xs["W"]
        if mode == "linear": return a * h + b * (h @ xs["W"])
        return a * filt(mode, h, xs) + b * jnp.tanh(h @ xs["W"])
      if POL[pol] == "off":
        return layer(h, xs), None
      return jax.checkpoint(layer, policy=POL[pol])(h, xs), None
    xs = {"W": Ws, "p": perms, "s": signs, "pinv": pinvs, "k": shifts}
    if mode == "dense_in":
      xs["O"] = obase[perms] * signs[:, :, None]
    h, _ = jax.lax.scan(body, x0, xs)
    return jnp.sum(h ** 2)
  return jax.jit(jax.grad(loss))

modes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["none", "fast", "dense_in", "perm", "perm_vjp", "roll1", "rollk", "obase_sign"]
print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), {len(jax.devices())} device(s)")
fns = {m: make(m) for m in modes}
for m in modes: jax.block_until_ready(fns[m](Ws))
res = {m: [] for m in modes}
for r in range(5):
  for m in modes:
    t = time.perf_counter(); jax.block_until_ready(fns[m](Ws)); res[m].append(time.perf_counter() - t)
base = np.median(res["none"]) if "none" in res else None
for m in modes:
  med = np.median(res[m]); print(f"{m:12s} {med:.3f} s  {med / base:.2f}x" if base else f"{m} {med:.3f}")
