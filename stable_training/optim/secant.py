"""The secant averaged gradient on any JAX model, by a jaxpr transformation.

The averaged gradient ḡ = ∫₀¹ ∇L(w + tΔw) dt of the ICLR 2025 submission
"Efficient Gradient-Based Algorithm for Training Deep Learning Models With
Many Nonlinear Activations" is estimated, by its ``secant`` method, with a
backward pass in which the derivative σ′(z) of every activation is replaced
by its averaged slope over the step,

    s = (σ(z₁) − σ(z₀)) / (z₁ − z₀) = ∫₀¹ σ′(z₀ + t(z₁ − z₀)) dt,

z₀, z₁ the pre-activation at w and w + Δw (see `avg_grad` for the two-lane
evaluation and the exactness argument). `avg_grad`'s hook does this for the
activations of `stable_training.activations`; this module does it for any
loss function, whatever calls the nonlinearities (``jnp.tanh``,
``flax.linen.gelu``, ``jax.nn.softplus``, a hand-written ``x * sigmoid(x)``):

1. ``loss_fn`` is traced once to a jaxpr.
2. Its *activations* are found: maximal regions of elementwise operations
   with one parameter-dependent input z and one output y = F(z) used outside
   the region (``jax.nn.*`` functions are jitted calls with an elementwise
   body, so they join regions too), which contain at least one activation
   nonlinearity (tanh, logistic, erf, erfc, sin, cos, atan, max/min/clamp,
   a `where` on z, a division by a function of z, or a
   `stable_training.activations` function). Regions of only exp / log / pow
   (the softmax cross-entropy, a squared error) are the loss on top: they
   keep their derivative, as the paper's output layer does.
3. The jaxpr is re-evaluated on the two lanes [w, w + Δw] with each region
   replaced by F through the secant custom VJP (`avg_grad._secant_hook`),
   inside `scan`, `jit`, `checkpoint` and `cond` bodies too.

What it refuses, in one line naming the operation: an activation whose
derivative is a user rule that cannot be replaced (inside a non-elementwise
`custom_jvp` / `custom_vjp`, or a `while` loop), a piecewise-constant unit
with a surrogate derivative (a spike: its secant slope is 0 or 1/Δz), and a
loss with no activation at all (secant would be the plain trapezoid rule).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from stable_training import activations as acts

# Elementwise primitives: a region may contain them (all operands one shape).
_ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "exp", "exp2", "log",
    "log1p", "expm1", "tanh", "logistic", "erf", "erfc", "erf_inv", "sin", "cos", "tan",
    "atan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "sqrt", "rsqrt",
    "cbrt", "pow", "integer_pow", "square", "select_n", "clamp", "convert_element_type",
    "copy", "copy_p", "ge", "gt", "le", "lt", "eq", "ne", "and", "or", "not", "xor",
    "is_finite", "floor", "ceil", "round", "nextafter", "rem", "reduce_precision"})
# Activation nonlinearities: a region with one of them is an activation.
_ACTIVATION = frozenset({"tanh", "logistic", "erf", "erfc", "erf_inv", "sin", "cos", "tan",
                         "atan", "sinh", "asinh", "max", "min", "clamp"})
# Outputs with no derivative along the input (steps).
_STEP = frozenset({"ge", "gt", "le", "lt", "eq", "ne", "and", "or", "not", "xor", "sign",
                   "floor", "ceil", "round", "is_finite", "stop_gradient"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
_REMAT = frozenset({"checkpoint", "remat", "remat2"})
MARK = "stable_training_activation_"


class SecantError(ValueError):
  """A model the secant method cannot handle (a one-line message says why)."""


def _body(eqn) -> tuple[Any, list]:
  """(jaxpr, consts) of a call-like eqn."""
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    j = eqn.params.get(key)
    if j is not None:
      return (j.jaxpr, list(j.consts)) if hasattr(j, "consts") else (j, [])
  raise KeyError(eqn.primitive.name)


def _is_var(x) -> bool:
  return not isinstance(x, jcore.Literal)


def _in_vary(eqn, vary: dict) -> list[bool]:
  return [_is_var(x) and vary.get(x, False) for x in eqn.invars]


def _elementwise(eqn, iv: list[bool]) -> bool:
  """One output, every varying operand of its shape, and elementwise (recursively for calls)."""
  if len(eqn.outvars) != 1:
    return False
  shape = eqn.outvars[0].aval.shape
  if any(f and x.aval.shape != shape for x, f in zip(eqn.invars, iv)):
    return False
  name = eqn.primitive.name
  if name in _ELEMENTWISE:
    return True
  if name in _CALLS or name in _CUSTOM:
    jaxpr, _ = _body(eqn)
    n = len(jaxpr.invars)
    return _all_elementwise(jaxpr, iv[len(iv) - n:])
  return False


def _all_elementwise(jaxpr, vary_in: list[bool]) -> bool:
  vary = dict(zip(jaxpr.invars, vary_in))
  for eqn in jaxpr.eqns:
    iv = _in_vary(eqn, vary)
    if any(iv) and not _elementwise(eqn, iv):
      return False
    for o in eqn.outvars:
      vary[o] = any(iv)
  return True


def _activation_like(eqn, iv: list[bool]) -> bool:
  name = eqn.primitive.name
  if name in _ACTIVATION:
    return True
  if name == "select_n" and iv and iv[0]:          # where(cond(z), …)
    return True
  if name == "div" and len(iv) == 2 and iv[1]:     # … / f(z)
    return True
  if name in _CALLS or name in _CUSTOM:
    if str(eqn.params.get("name", "")).startswith(MARK):
      return True
    jaxpr, _ = _body(eqn)
    vary = dict(zip(jaxpr.invars, iv[len(iv) - len(jaxpr.invars):]))
    for e in jaxpr.eqns:
      ivs = _in_vary(e, vary)
      if any(ivs) and _activation_like(e, ivs):
        return True
      for o in e.outvars:
        vary[o] = any(ivs)
  return False


def _differentiable(eqns, members, src, out) -> bool:
  """Whether `out` depends on `src` through a differentiable path (not only through steps)."""
  diff = {src: True}
  for i in members:
    eqn = eqns[i]
    ins = [_is_var(x) and diff.get(x, False) for x in eqn.invars]
    name = eqn.primitive.name
    if name in _STEP or (name == "convert_element_type"
                         and not jnp.issubdtype(eqn.params["new_dtype"], jnp.floating)):
      d = False
    elif name == "select_n":
      d = any(ins[1:])
    elif name in _CALLS or name in _CUSTOM:
      jaxpr, _ = _body(eqn)
      k = len(jaxpr.invars)
      inner_ins = ins[len(ins) - k:]
      d = any(_differentiable(jaxpr.eqns, range(len(jaxpr.eqns)), v, jaxpr.outvars[0])
              for v, f in zip(jaxpr.invars, inner_ins) if f) if jaxpr.outvars and _is_var(
                  jaxpr.outvars[0]) else False
    else:
      d = any(ins)
    for o in eqn.outvars:
      diff[o] = d
  return diff.get(out, False)


def _where(eqn) -> str:
  """'primitive[function name]' for messages."""
  name = eqn.params.get("name")
  if not name:
    try:
      info = _body(eqn)[0].debug_info
      name = getattr(info, "func_name", None) or getattr(info, "func_src_info", "").split(" ")[0]
    except (KeyError, AttributeError):
      name = None
  return f"{eqn.primitive.name}[{name}]" if name else eqn.primitive.name


class _Plan:
  """The activation regions of one jaxpr level, for given varying inputs."""

  def __init__(self, jaxpr, vary_in: list[bool], memo: dict):
    eqns = jaxpr.eqns
    vary = dict(zip(jaxpr.invars, vary_in))
    src = {v: v for v, f in zip(jaxpr.invars, vary_in) if f}
    members: dict[Any, list[int]] = {}
    self.in_vary: list[list[bool]] = []
    for i, eqn in enumerate(eqns):
      iv = _in_vary(eqn, vary)
      self.in_vary.append(iv)
      for o in eqn.outvars:
        vary[o] = any(iv)
      if not any(iv):
        continue
      srcs = {src[x] for x, f in zip(eqn.invars, iv) if f}
      if len(srcs) == 1 and _elementwise(eqn, iv):
        s = srcs.pop()
        src[eqn.outvars[0]] = s
        members.setdefault(s, []).append(i)
      else:
        for o in eqn.outvars:
          src[o] = o
    users: dict[Any, set[int]] = {}
    for i, eqn in enumerate(eqns):
      for x in eqn.invars:
        if _is_var(x):
          users.setdefault(x, set()).add(i)
    outs = {x for x in jaxpr.outvars if _is_var(x)}
    self.units: dict[int, tuple[Any, list[int], Any]] = {}   # exit eqn -> (src, members, exit var)
    self.skip: set[int] = set()
    self.vary_out = [_is_var(x) and vary.get(x, False) for x in jaxpr.outvars]
    self.eqns = eqns
    for s, idx in members.items():
      inside = set(idx)
      defined = {eqns[i].outvars[0]: i for i in idx}
      exits = [v for v in defined if v in outs or users.get(v, set()) - inside]
      acts_here = [i for i in idx if _activation_like(eqns[i], self.in_vary[i])]
      if len(exits) == 1 and exits[0].aval.shape == s.aval.shape and exits[0].aval.dtype == s.aval.dtype:
        out = exits[0]
        anc = _ancestors(eqns, idx, defined, out)
        if not _differentiable(eqns, anc, s, out):
          custom = [eqns[i] for i in anc if eqns[i].primitive.name in _CUSTOM]
          if custom:
            raise SecantError(
                f"secant: {_where(custom[0])} is piecewise constant in its input (its derivative "
                "is a surrogate rule), so its secant slope would be 0 or 1/Δz; use "
                "method='midpoint' or 'gauss_legendre'")
          continue
        if acts_here:
          self.units[defined[out]] = (s, anc, out)
          self.skip.update(i for i in idx if i != defined[out])  # the others are dead
        continue
      # Several outputs leave the region: each activation primitive on its own.
      for i in acts_here:
        e = eqns[i]
        v = [x for x, f in zip(e.invars, self.in_vary[i]) if f]
        if (len(v) == 1 and e.outvars[0].aval.shape == v[0].aval.shape
                and e.outvars[0].aval.dtype == v[0].aval.dtype):
          self.units[i] = (v[0], [i], e.outvars[0])
    # Nested bodies that hold activations.
    self.nested: dict[int, str] = {}
    for i, eqn in enumerate(eqns):
      if i in self.units or i in self.skip or not any(self.in_vary[i]):
        continue
      kind = _nested_kind(eqn, self.in_vary[i], memo)
      if kind:
        self.nested[i] = kind

  @property
  def has_units(self) -> bool:
    return bool(self.units) or bool(self.nested)


def _ancestors(eqns, idx, defined, out) -> list[int]:
  need, keep = {out}, set()
  for i in reversed(idx):
    if eqns[i].outvars[0] in need:
      keep.add(i)
      need.update(x for x in eqns[i].invars if _is_var(x) and x in defined)
  return [i for i in idx if i in keep]


def _plan(jaxpr, vary_in, memo) -> _Plan:
  key = (id(jaxpr), tuple(vary_in))
  if key not in memo:
    memo[key] = (_Plan(jaxpr, list(vary_in), memo), jaxpr)  # keep jaxpr alive: id stays unique
  return memo[key][0]


def _scan_flags(eqn, iv, memo) -> list[bool]:
  jaxpr = eqn.params["jaxpr"].jaxpr
  nc, nk = eqn.params["num_consts"], eqn.params["num_carry"]
  flags = list(iv)
  while True:
    out = _plan(jaxpr, flags, memo).vary_out
    new = flags[:nc] + [a or b for a, b in zip(flags[nc:nc + nk], out[:nk])] + flags[nc + nk:]
    if new == flags:
      return flags
    flags = new


def _nested_kind(eqn, iv, memo) -> str | None:
  """How to rewrite an eqn whose body holds activations: 'call', 'scan', 'remat', 'cond'."""
  name = eqn.primitive.name
  if name in _CALLS:
    jaxpr, _ = _body(eqn)
    return "call" if _plan(jaxpr, iv, memo).has_units else None
  if name == "scan":
    return "scan" if _plan(eqn.params["jaxpr"].jaxpr, _scan_flags(eqn, iv, memo), memo).has_units else None
  if name in _REMAT:
    return "remat" if _plan(eqn.params["jaxpr"], iv, memo).has_units else None
  if name == "cond":
    return "cond" if any(_plan(b.jaxpr, iv[1:], memo).has_units for b in eqn.params["branches"]) else None
  subs = list(jcore.jaxprs_in_params(eqn.params))
  if any(_plan(j, [any(iv)] * len(j.invars), memo).has_units for j in subs):
    why = ("its derivative is the user's custom rule" if name in _CUSTOM
           else "its body cannot be rewritten")
    raise SecantError(f"secant: an activation inside {_where(eqn)} ({why}); use method='midpoint' "
                      "or 'gauss_legendre', or apply the activation outside it")
  return None


def _bind(eqn, invals) -> list:
  """Applies `eqn`'s primitive to `invals` (as `jax.core.eval_jaxpr` does)."""
  params = eqn.primitive.get_bind_params(eqn.params)
  subfuns = []
  if isinstance(params, tuple):  # older JAX: (subfuns, params)
    subfuns, params = params
  ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
  if ctx is not None:
    with ctx:
      out = eqn.primitive.bind(*subfuns, *invals, **params)
  else:
    out = eqn.primitive.bind(*subfuns, *invals, **params)
  return list(out) if eqn.primitive.multiple_results else [out]


def _eval(jaxpr, consts, args, vary_in, memo, hook) -> list:
  """Evaluates `jaxpr`, each activation region F(z) replaced by ``hook(F, z)``."""
  plan = _plan(jaxpr, vary_in, memo)
  env: dict = {}

  def read(x):
    return x.val if isinstance(x, jcore.Literal) else env[x]

  for v, c in zip(jaxpr.constvars, consts):
    env[v] = c
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  for i, eqn in enumerate(jaxpr.eqns):
    if i in plan.skip:
      continue
    if i in plan.units:
      s, members, out = plan.units[i]

      def region(z, members=members, s=s, out=out):
        local = {s: z}
        for j in members:
          e = jaxpr.eqns[j]
          vals = _bind(e, [local[x] if _is_var(x) and x in local else read(x) for x in e.invars])
          local[e.outvars[0]] = vals[0]
        return local[out]
      env[out] = hook(region, read(s))
      continue
    invals = [read(x) for x in eqn.invars]
    iv = plan.in_vary[i]
    kind = plan.nested.get(i)
    if kind == "call":
      jx, cs = _body(eqn)
      outs = _eval(jx, cs, invals, iv, memo, hook)
    elif kind == "scan":
      outs = _eval_scan(eqn, invals, _scan_flags(eqn, iv, memo), memo, hook)
    elif kind == "remat":
      p = eqn.params
      fn = lambda *a, jx=p["jaxpr"], iv=iv: _eval(jx, [], list(a), iv, memo, hook)
      outs = jax.checkpoint(fn, prevent_cse=p.get("prevent_cse", True), policy=p.get("policy"))(*invals)
    elif kind == "cond":
      branches = [functools.partial(lambda b, *a: _eval(b.jaxpr, b.consts, list(a), iv[1:], memo, hook), b)
                  for b in eqn.params["branches"]]
      outs = jax.lax.switch(invals[0], branches, *invals[1:])
    else:
      outs = _bind(eqn, invals)
    for o, val in zip(eqn.outvars, outs):
      if not isinstance(o, jcore.DropVar):
        env[o] = val
  return [read(x) for x in jaxpr.outvars]


def _eval_scan(eqn, invals, flags, memo, hook) -> list:
  p = eqn.params
  body = p["jaxpr"]
  nc, nk = p["num_consts"], p["num_carry"]
  consts, init, xs = invals[:nc], invals[nc:nc + nk], invals[nc + nk:]

  def step(carry, x):
    outs = _eval(body.jaxpr, body.consts, consts + list(carry) + list(x), flags, memo, hook)
    return outs[:nk], outs[nk:]
  carry, ys = jax.lax.scan(step, list(init), list(xs), length=p["length"], reverse=p["reverse"],
                           unroll=p.get("unroll", 1))
  return list(carry) + list(ys)


def _mark(fn: Callable, z: jax.Array) -> jax.Array:
  """Activation hook used while tracing: a registry activation becomes one named jitted call."""
  base = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "act")

  def unit(x):
    return fn(x)
  unit.__name__ = MARK + base
  return jax.jit(unit)(z)


def secant_transform(loss_fn: Callable, params: Any, *args, hook: Callable) -> Callable:
  """``f(p) = loss_fn(p, *args)`` with each activation region F(z) evaluated as ``hook(F, z)``.

  `params` fixes the shapes of ``p``; `args` (e.g. the batch) are not
  differentiated. Registry activations (`stable_training.activations`) are
  traced as single units, so their whole function is one region.

  Raises:
    SecantError (one line): no activation in ``loss_fn`` w.r.t. the
      parameters, an activation the transformation cannot reach, or a
      piecewise-constant unit with a surrogate derivative.
  """
  with acts.activation_hook(_mark):
    closed, out_shape = jax.make_jaxpr(lambda p, a: loss_fn(p, *a), return_shape=True)(params, args)
  flat_a = jax.tree.leaves(args)
  n_p = len(jax.tree.leaves(params))
  vary = [True] * n_p + [False] * len(flat_a)
  memo: dict = {}
  plan = _plan(closed.jaxpr, vary, memo)
  if not plan.has_units:
    prims = sorted({e.primitive.name for e in closed.jaxpr.eqns} & (_ELEMENTWISE - {
        "add", "sub", "mul", "neg", "convert_element_type", "copy", "copy_p"}))
    raise SecantError(
        "secant: no activation (tanh, sigmoid, relu, gelu, erf, sin, cos, max, a where on the "
        "pre-activation, or a stable_training.activations function) acts on the parameters in "
        f"loss_fn (elementwise ops found: {', '.join(prims) or 'none'}, treated as the loss), so "
        "secant would be the plain trapezoid rule; use method='midpoint' or 'gauss_legendre'")
  out_tree = jax.tree.structure(out_shape)

  def f(p):
    outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(p) + flat_a, vary, memo, hook)
    return jax.tree.unflatten(out_tree, outs)
  return f
