"""LSC for any Flax linen model: the transitions found from the model itself.

Herranz-Celotti & Rouat (2023/24), "Stabilizing RNN Gradients through
Pre-training": the Local Stability Condition sets the radius ρ(M) of every
transition Jacobian M of a network (time ∂s_t/∂s_{t−1}, depth
∂s^l_t/∂s^{l−1}_t, read-out ∂o/∂y). Our models declare those maps
(``lsc_transitions``, `stable_training.lsc.protocol`); `find_transitions`
finds them for a model that does not, from one forward pass under
`flax.linen.intercept_methods`:

  * The *units* are the outermost calls of `nn.Dense` and `nn.RNN` modules, in
    call order (the cell and Dense calls inside an `nn.RNN` belong to it).
    Everything between two units is the *glue* (activations, dropout in
    eval mode, reshapes …). A unit's params live at its module path (an RNN's
    at its cell's path).
  * Feed-forward (no `nn.RNN`), Dense units D_0 … D_{K−1}: the depth
    transition of layer l = 1 … K−2 is the map from the input h_l of D_l to
    the input h_{l+1} of D_{l+1}, h_{l+1} = g_l(D_l(h_l)), Jacobian
    M_l = diag g_l′(z_l) · W_lᵀ, z_l = W_lᵀ h_l + b_l (flax kernel [in, out]);
    the read-out is D_{K−1} (∂o/∂h = W_outᵀ). D_0 maps the input, not a
    hidden state, and has no target (as for `DeepMLP`).
  * Recurrent: a run of `nn.RNN` layers l = 0 … L−1 over any flax cell
    (`LSTMCell`, `GRUCell`, `SimpleCell`, …) with state s^l_t = the cell's
    carry ((c, h) concatenated for the LSTM): time transitions
    s^l_{t−1} ↦ s^l_t = cell_l(s^l_{t−1}, x^l_t) (Jacobian ∂s^l_t/∂s^l_{t−1}),
    depth transitions h^{l−1}_t ↦ h^l_t = out(cell_l(s^l_{t−1}, g(h^{l−1}_t)))
    (∂h^l_t/∂h^{l−1}_t, the cells' outputs; same spectrum as ∂s^l_t/∂s^{l−1}_t
    when the output is part of the carry), read-out the last Dense after the
    RNN stack. Dense layers before the stack (or between it and the
    read-out) have no target.

The glue must be elementwise (the depth maps are "Dense, then an elementwise
op"): `find_transitions` checks it numerically once (two JVPs of the forward
pass with every unit's output replaced by an input: J t = (J 1) ⊙ t for a
random t) and checks that every parameter belongs to a unit (or an
`nn.Embed`). Otherwise — conv layers, normalisation, residual connections,
units inside `nn.scan` / `nn.remat` — it raises one line naming the model,
what it found, and the escape hatch: ``transitions=fn(params, x, key,
time_samples) -> {kind: Transitions | (step, points)}``, a user-supplied
step function (`user_transitions`).

The glue's derivative d = g′ enters the maps as a diagonal factor: for the
feed-forward depth maps d = g′(z(θ)) is recomputed from the parameters (one
JVP of the glue), so the LSC loss differentiates through it; between RNN
layers it is taken at the fixed forward states (the condition is local).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stable_training.lsc.protocol import Transitions, supports

_UNITS = (nn.Dense, nn.RNN)
_INPUT_LAYERS = (nn.Embed,)    # parametrised modules allowed outside the units (they map the input)
HINT = ("it understands stacks of nn.Dense with elementwise activations and nn.RNN layers of a flax cell "
        "(LSTMCell, GRUCell, SimpleCell, ...) with a Dense read-out; pass transitions=fn(params, x, key, "
        "time_samples) -> {kind: (step, points) | Transitions} (a user-supplied step function) instead")


def cannot(model, what: str) -> ValueError:
  """The one-line error for a model whose transitions cannot be found."""
  return ValueError(f"LSC cannot find the transitions of {type(model).__name__}: {what}; {HINT}")


# ------------------------------------------------------------ forward pass ---
@dataclasses.dataclass
class _Call:
  module: Any      # the bound unit
  inputs: Any      # its input array
  kwargs: dict
  out: Any         # its output (a pytree for nn.RNN(return_carry=True))


def _calls(model, params, x, apply_kwargs, replace=None, seen=None):
  """model.apply with the outermost unit calls recorded (unit j returns replace[j] if given).

  Returns (model output, [_Call]). `seen` (a dict) collects path → type of
  every module called outside the units (for error messages).
  """
  calls, busy = [], [0]

  def intercept(next_fun, args, kwargs, ctx):
    m = ctx.module
    if busy[0] or ctx.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if seen is not None:
      seen.setdefault(tuple(m.path), type(m).__name__)
    if not isinstance(m, _UNITS):
      return next_fun(*args, **kwargs)
    if replace is not None:
      out = replace[len(calls)]
    else:
      busy[0] += 1     # the cell and Dense calls inside a unit are part of it
      try:
        out = next_fun(*args, **kwargs)
      finally:
        busy[0] -= 1
    calls.append(_Call(m, args[0] if args else kwargs["inputs"], dict(kwargs), out))
    return out

  with nn.intercept_methods(intercept):
    y = model.apply({"params": params}, x, **apply_kwargs)
  return y, calls


# ------------------------------------------------------------------- plan ---
@dataclasses.dataclass(frozen=True)
class _Unit:
  kind: str                  # "dense" | "rnn"
  name: str                  # the module path, for messages
  path: tuple[str, ...]      # where its params are (an RNN: its cell's path)
  module: Any                # unbound clone: the Dense, or the RNN's cell
  time_major: bool = False
  return_carry: bool = False

  def seq(self, out):
    """The unit's output sequence/activations (an RNN with return_carry: (carry, ys) → ys)."""
    return out[1] if self.return_carry else out

  def with_seq(self, out, y):
    return (out[0], y) if self.return_carry else y

  def batch_major(self, a):
    return jnp.swapaxes(a, 0, 1) if self.time_major else a


@dataclasses.dataclass(frozen=True)
class _Plan:
  units: tuple[_Unit, ...]
  recurrent: bool
  depth: tuple[int, ...]     # feed-forward: Dense j (h_j → h_{j+1}); recurrent: RNN i (h^{i−1} → h^i)
  time: tuple[int, ...]      # the RNN units
  readout: int | None
  depth_length: int          # L: hidden layers (feed-forward) or RNN layers

  def describe(self) -> str:
    return (f"units=[{', '.join(f'{u.kind}:{u.name}' for u in self.units)}], depth={list(self.depth)}, "
            f"time={list(self.time)}, readout={self.readout}, L={self.depth_length}")


def _at(params, path):
  for k in path:
    params = params[k]
  return params


def _fields(module) -> str:
  """The module's settings that change what it computes (not its name, parent or initializers)."""
  return repr({f.name: getattr(module, f.name) for f in dataclasses.fields(module)
               if f.name not in ("parent", "name") and not f.name.endswith("_init")})


def _model_id(model) -> str:
  # The class identity too: two locally defined classes may share a name and repr.
  return f"{type(model).__module__}.{type(model).__qualname__}@{id(type(model)):x}:{model!r}"


def _signature(unit: _Unit, p) -> tuple:
  """Units with equal signatures are vmapped together (stacked parameters)."""
  leaves = jax.tree.leaves(p)
  return (unit.kind, unit.time_major, _fields(unit.module), str(jax.tree.structure(p)),
          tuple((tuple(a.shape), str(a.dtype)) for a in leaves))


def _runs(idx, key):
  """Consecutive runs of `idx` with equal key(i), in order."""
  out = []
  for i in idx:
    if out and key(out[-1][0]) == key(i):
      out[-1].append(i)
    else:
      out.append([i])
  return out


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _carry_codec(prev):
  """Carry pytree with leaves [B, T, *f] → (flat [B, T, S], ravel, unravel) for one example."""
  leaves, treedef = jax.tree.flatten(prev)
  shapes = [a.shape[2:] for a in leaves]
  cuts = np.cumsum([math.prod(s) for s in shapes])[:-1]
  flat = jnp.concatenate([a.reshape(a.shape[:2] + (-1,)) for a in leaves], axis=-1)
  ravel = lambda c: jnp.concatenate([jnp.reshape(a, (-1,)) for a in jax.tree.leaves(c)])
  unravel = lambda s: treedef.unflatten([p.reshape(sh) for p, sh in zip(jnp.split(s, cuts), shapes)])
  return flat, ravel, unravel


def _previous_carries(cell, theta, xs, c0):
  """s_{t−1} for t = 0 … T−1 (s_{−1} = c0) of `cell` over xs [B, T, d]: leaves [B, T, ...]."""
  def step(c, xt):
    return cell.apply({"params": theta}, c, xt)[0], c
  _, prev = jax.lax.scan(step, c0, jnp.swapaxes(xs, 0, 1))
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), prev)


@dataclasses.dataclass(frozen=True, eq=False)
class FoundTransitions:
  """A Flax model plus the transitions `find_transitions` found in it (the LSC protocol).

  ``lsc_transitions(params, x, key, time_samples)`` returns {kind: Transitions}
  (Herranz-Celotti & Rouat's time, depth and read-out maps; see the module
  docstring); pass this object wherever the LSC functions take a model (it
  is traceable, e.g. under `jax.jit` or `jax.grad`).
  """
  model: Any
  plan: _Plan
  apply_kwargs: tuple = ()

  def __repr__(self):
    return f"FoundTransitions({_model_id(self.model)}, {self.plan.describe()}, apply_kwargs={self.apply_kwargs!r})"

  def _glue_derivative(self, params, x, outs, sources, outputs):
    """d = ∂(input of unit j+1)/∂(output of unit j), elementwise, for j in `sources` (one JVP).

    outs: every unit's output (the points where the glue is evaluated);
    outputs: the units whose inputs are returned (one per source).
    """
    units = self.plan.units
    tangent = [u.with_seq(jax.tree.map(jnp.zeros_like, o), jnp.ones_like(u.seq(o)) if j in sources
                          else jnp.zeros_like(u.seq(o))) for j, (u, o) in enumerate(zip(units, outs))]

    def glue(w):
      cs = _calls(self.model, params, x, dict(self.apply_kwargs), replace=w)[1]
      return [cs[k].inputs for k in outputs]
    return jax.jvp(glue, (outs,), (tangent,))[1]

  def lsc_transitions(self, params, x, key, time_samples: int = 2) -> dict:
    """{kind: Transitions} of the model at `params` on inputs x (Herranz-Celotti & Rouat 2023/24).

    depth (feed-forward) [L−1, *P]: h_l ↦ g_l′(z_l(θ)) ⊙ D_l(h_l), Jacobian
      diag g_l′(z_l) W_lᵀ = ∂h_{l+1}/∂h_l at the forward pass's h_l.
    time [L, B, K]: s^l_{t−1} ↦ cell_l(s^l_{t−1}, x^l_t), at K = min(time_samples, T)
      steps drawn from `key` without replacement (the same for every layer).
    depth (recurrent) [L−1, B, K]: h^{l−1}_t ↦ out(cell_l(s^l_{t−1}, x^l_t + g′ ⊙ (h − h^{l−1}_t)))
      (the glue linearised at the point: its Jacobian there is exact).
    readout [P]: y ↦ D_out(y) at the read-out's inputs (square-subsampled per point).
    States are held under stop_gradient (the condition is local).
    """
    plan, units = self.plan, self.plan.units
    sg = jax.lax.stop_gradient
    _, calls = _calls(self.model, params, x, dict(self.apply_kwargs))
    if len(calls) != len(units):
      raise ValueError(f"LSC: {type(self.model).__name__} called {len(calls)} Dense/RNN layers on these inputs, "
                       f"{len(units)} when its transitions were found; call find_transitions on inputs like these")
    ins = [sg(c.inputs) for c in calls]
    outs = [sg(c.out) for c in calls]
    k_d, k_t, k_r, k_m = jax.random.split(key, 4)
    found = {}
    if plan.recurrent:
      found.update(self._recurrent(params, x, calls, ins, outs, k_t, k_m, time_samples))
    elif plan.depth:
      found["depth"] = self._dense_depth(params, x, ins, outs, k_d)
    if plan.readout is not None:
      u = units[plan.readout]
      ys = ins[plan.readout]
      ys = ys.reshape(-1, ys.shape[-1])
      found["readout"] = Transitions(fn=lambda th, _, v, m=u.module: m.apply({"params": th}, v),
                                     theta=_at(params, u.path), points=ys, keys=jax.random.split(k_r, ys.shape[0]),
                                     stacked=False)
    return found

  def _dense_depth(self, params, x, ins, outs, key):
    units, depth = self.plan.units, self.plan.depth
    outs = list(outs)
    for j in depth:  # z_j(θ) at the fixed input h_j: g′(z_j(θ)) is differentiated too
      outs[j] = units[j].module.apply({"params": _at(params, units[j].path)}, ins[j])
    d = dict(zip(depth, self._glue_derivative(params, x, outs, set(depth), [j + 1 for j in depth])))
    trs = []
    for run in _runs(depth, lambda j: _signature(units[j], _at(params, units[j].path))):
      m = units[run[0]].module
      trs.append(Transitions(fn=lambda th, dj, u, m=m: dj * m.apply({"params": th}, u),
                             theta=_stack([_at(params, units[j].path) for j in run]),
                             points=jnp.stack([ins[j] for j in run]), context=jnp.stack([d[j] for j in run]),
                             keys=key, length=self.plan.depth_length))
    return tuple(trs)

  def _recurrent(self, params, x, calls, ins, outs, k_t, k_m, time_samples):
    plan, units = self.plan, self.plan.units
    sg = jax.lax.stop_gradient
    xs = {i: units[i].batch_major(ins[i]) for i in plan.time}
    T = xs[plan.time[0]].shape[1]
    t_idx = jax.random.choice(k_t, T, (min(time_samples, T),), replace=False)
    at = lambda a: a[:, t_idx]
    prev, codec = {}, {}
    for i in plan.time:
      u, c = units[i], calls[i]
      c0 = c.kwargs.get("initial_carry")
      if c0 is None:
        key0 = c.kwargs.get("init_key")
        c0 = u.module.initialize_carry(jax.random.key(0) if key0 is None else key0, xs[i][:, 0].shape)
      flat, ravel, unravel = _carry_codec(
          _previous_carries(u.module, sg(_at(params, u.path)), xs[i], sg(c0)))
      prev[i], codec[i] = sg(flat), (ravel, unravel)

    sig = lambda i: _signature(units[i], _at(params, units[i].path))
    time = []
    for run in _runs(plan.time, sig):
      m, (ravel, unravel) = units[run[0]].module, codec[run[0]]
      time.append(Transitions(
          fn=lambda th, xt, s, m=m, ravel=ravel, unravel=unravel: ravel(m.apply({"params": th}, unravel(s), xt)[0]),
          theta=_stack([_at(params, units[i].path) for i in run]),
          points=jnp.stack([at(prev[i]) for i in run]), context=jnp.stack([at(xs[i]) for i in run]),
          keys=k_m, length=T))
    found = {"time": tuple(time)}
    if plan.depth:
      d = dict(zip(plan.depth, self._glue_derivative(params, x, outs, {i - 1 for i in plan.depth}, list(plan.depth))))
      depth = []
      for run in _runs(plan.depth, sig):
        m, unravel = units[run[0]].module, codec[run[0]][1]
        ys = {i: units[i - 1].batch_major(units[i - 1].seq(outs[i - 1])) for i in run}
        ctx = tuple(jnp.stack(v) for v in zip(*[
            (at(prev[i]), at(xs[i]), at(units[i].batch_major(sg(d[i]))), at(ys[i])) for i in run]))
        depth.append(Transitions(
            fn=lambda th, c, h, m=m, unravel=unravel: m.apply({"params": th}, unravel(c[0]),
                                                              c[1] + c[2] * (h - c[3]))[1],
            theta=_stack([_at(params, units[i].path) for i in run]), points=jnp.stack([at(ys[i]) for i in run]),
            context=ctx, keys=k_m, length=plan.depth_length))
      found["depth"] = tuple(depth)
    return found


# -------------------------------------------------------------- discovery ---
def _owner(path, seen):
  """The innermost called module whose path prefixes `path` (a param's module path)."""
  for n in range(len(path), -1, -1):
    if tuple(path[:n]) in seen:
      return tuple(path[:n]), seen[tuple(path[:n])]
  return None


def _check_elementwise(model, plan: _Plan, params, x, apply_kwargs, outs, edges):
  """Raises unless input(unit b) = g(output(unit a)) elementwise for each edge (a, b).

  One JVP with ones and one with a random tangent t on every unit's output:
  an elementwise glue has J t = (J 1) ⊙ t_a; mixing across units or features
  (convolution, normalisation, residual sums) breaks it.
  """
  units = plan.units
  rng = np.random.default_rng(0)

  def jvp(fill):
    tangent = [jax.tree.map(lambda a: jnp.asarray(fill(a), a.dtype), o) for o in outs]
    def glue(w):
      cs = _calls(model, params, x, dict(apply_kwargs), replace=w)[1]
      return [cs[b].inputs for _, b in edges]
    return tangent, jax.jvp(glue, (outs,), (tangent,))[1]

  _, ones = jvp(lambda a: np.ones(a.shape))
  tangent, rand = jvp(lambda a: rng.standard_normal(a.shape))
  for (a, b), d, jr in zip(edges, ones, rand):
    src = units[a].seq(outs[a])
    if d.shape != src.shape:
      raise cannot(model, f"the input of {units[b].name} ({d.shape}) is not an elementwise function of the "
                          f"output of {units[a].name} ({src.shape})")
    want = np.asarray(d, np.float64) * np.asarray(units[a].seq(tangent[a]), np.float64)
    got = np.asarray(jr, np.float64)
    # Rounding differs between J t and (J 1) ⊙ t only at the dtype's precision; mixing is O(1).
    rtol = max(1e-4, 8 * float(jnp.finfo(jr.dtype).eps))
    scale = np.abs(want).max() + np.abs(got).max() + 1e-30
    if not np.any(want != 0) or not np.allclose(got, want, rtol=rtol, atol=rtol * 0.1 * scale):
      raise cannot(model, f"the map from the output of {units[a].name} to the input of {units[b].name} is not "
                          f"elementwise (normalisation, convolution, a residual sum or a skip connection?)")


def find_transitions(model, params, x, *, apply_kwargs: Mapping | None = None):
  """The LSC transitions of any Flax linen model, found from the model (Herranz-Celotti & Rouat 2023/24).

  Returns `model` itself when it declares them (``lsc_transitions``, the fast
  path), else a `FoundTransitions` whose ``lsc_transitions`` gives the maps
  of the module docstring: feed-forward depth maps h_l ↦ g_l(W_lᵀ h_l + b_l)
  (Jacobian diag g_l′(z_l) W_lᵀ), recurrent time maps s_{t−1} ↦ cell(s_{t−1}, x_t)
  and depth maps h^{l−1}_t ↦ h^l_t, read-out o = W_outᵀ y + b.

  Runs the model eagerly once (`params`, `x` concrete: call it outside
  `jax.jit`; the returned object is then traceable). `apply_kwargs` are
  passed to ``model.apply({'params': params}, x, **apply_kwargs)`` (e.g.
  ``{'train': False}``).
  Raises:
    ValueError (one line): the model's structure is not understood (see the
      module docstring), naming what was found and the `transitions=` option.
  """
  if supports(model):
    return model
  if not isinstance(model, nn.Module):
    raise cannot(model, f"a {type(model).__name__} is not a flax.linen Module")
  kw = dict(apply_kwargs or {})
  if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((params, x))):
    raise ValueError(f"LSC finds the transitions of {type(model).__name__} from concrete params and inputs: "
                     f"call it outside jax.jit, or pass lsc.find_transitions(model, params, x) (made once, "
                     f"eagerly) as the model")
  x = jnp.asarray(x)
  seen = {}
  _, calls = _calls(model, params, x, kw, seen=seen)
  if not calls:
    raise cannot(model, f"found no nn.Dense or nn.RNN call (modules: {_listing(seen)})")
  for c in calls:
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(c.inputs)):
      raise cannot(model, f"{'/'.join(c.module.path)} ({type(c.module).__name__}) is called inside a lifted "
                          f"transform (nn.scan, nn.vmap, nn.remat, ...)")
  units = tuple(_unit(model, c) for c in calls)
  _check_coverage(model, params, units, seen)
  kinds = [u.kind for u in units]
  if "rnn" in kinds:
    r = [i for i, k in enumerate(kinds) if k == "rnn"]
    if r != list(range(r[0], r[-1] + 1)):
      between = [units[i].name for i in range(r[0], r[-1]) if kinds[i] != "rnn"]
      raise cannot(model, f"found Dense layers ({', '.join(between)}) between the nn.RNN layers")
    after = [i for i in range(r[-1] + 1, len(units))]
    plan = _Plan(units, True, tuple(r[1:]), tuple(r), after[-1] if after else None, len(r))
    edges = [(i - 1, i) for i in r[1:]]
  else:
    K = len(units)
    plan = _Plan(units, False, tuple(range(1, K - 1)), (), K - 1, K - 1)
    edges = [(j, j + 1) for j in range(K - 1)]
  if edges:
    _check_elementwise(model, plan, params, x, tuple(sorted(kw.items())), [c.out for c in calls], edges)
  return FoundTransitions(model, plan, tuple(sorted(kw.items())))


def _listing(seen, paths=None) -> str:
  items = [(p, t) for p, t in seen.items() if p and (paths is None or p in paths)]
  return ", ".join(f"{'/'.join(p)} ({t})" for p, t in items) or "none"


def _unit(model, call: _Call) -> _Unit:
  m = call.module
  name = "/".join(m.path) or type(m).__name__
  if isinstance(m, nn.Dense):
    return _Unit("dense", name, tuple(m.path), m.clone(parent=None))
  opt = lambda k: call.kwargs.get(k) if call.kwargs.get(k) is not None else getattr(m, k)
  if opt("reverse") or call.kwargs.get("seq_lengths") is not None:
    raise cannot(model, f"{name} (nn.RNN) runs reversed or with seq_lengths")
  cell = m.cell
  if getattr(cell, "num_feature_axes", 1) != 1:
    raise cannot(model, f"{name} (nn.RNN) has a {type(cell).__name__} with {cell.num_feature_axes} feature axes")
  return _Unit("rnn", name, tuple(cell.path), cell.clone(parent=None), time_major=bool(opt("time_major")),
               return_carry=bool(opt("return_carry")))


def _check_coverage(model, params, units, seen):
  """Every parameter must belong to a unit or an input layer (nn.Embed): else the model has maps LSC can't see."""
  covered = [u.path for u in units]
  foreign = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)
    if any(keys[:len(c)] == c for c in covered):
      continue
    own = _owner(keys[:-1], seen)
    if own is None or (not own[0] and len(keys) > 1) or own[1] in {t.__name__ for t in _INPUT_LAYERS}:
      continue  # a submodule never called, or an input layer
    foreign[own[0]] = own[1]
  if foreign:
    found = ", ".join(f"{'/'.join(p) or type(model).__name__} ({t})" for p, t in foreign.items())
    units_s = ", ".join(f"{u.name} ({'Dense' if u.kind == 'dense' else 'RNN'})" for u in units)
    raise cannot(model, f"found {found} with parameters outside its Dense/RNN layers ({units_s})")


# ------------------------------------------------------- user step function ---
@dataclasses.dataclass(frozen=True, eq=False)
class UserTransitions:
  """A model whose LSC transitions a user function gives (the escape hatch; Herranz-Celotti & Rouat).

  ``fn(params, x, key, time_samples) -> {kind: value}`` with value a
  `Transitions`, a tuple of stacked `Transitions`, or a pair ``(step,
  points)``: ``step(params, u) -> v`` one transition of one point and
  ``points`` [P, n] the states u_p at which LSC takes ρ(∂step/∂u) (held
  fixed), giving radii [P].
  """
  model: Any
  fn: Callable

  def __repr__(self):
    return f"UserTransitions({_model_id(self.model)}, {self.fn!r})"

  def lsc_transitions(self, params, x, key, time_samples: int = 2) -> dict:
    out = {}
    for kind, v in self.fn(params, x, key, time_samples).items():
      if isinstance(v, Transitions) or (isinstance(v, (tuple, list)) and v
                                        and all(isinstance(t, Transitions) for t in v)):
        out[kind] = tuple(v) if isinstance(v, list) else v
      elif isinstance(v, (tuple, list)) and len(v) == 2 and callable(v[0]):
        step, pts = v
        pts = jax.lax.stop_gradient(jnp.asarray(pts))
        out[kind] = Transitions(fn=lambda th, _, u, step=step: step(th, u), theta=params, points=pts,
                                keys=key, stacked=False)
      else:
        raise ValueError(f"LSC transitions={self.fn!r} returned {kind!r}: {type(v).__name__}; expected a "
                         f"Transitions, a tuple of them, or a pair (step(params, u) -> v, points [P, n])")
    return out


def lsc_model(model, params, x, *, transitions: Callable | None = None, apply_kwargs: Mapping | None = None):
  """What the LSC functions measure: `model` if it declares its transitions, a user's, or found ones.

  (Herranz-Celotti & Rouat's transition maps; `transitions` overrides both
  the declared and the found ones, see `UserTransitions`.)
  """
  if transitions is not None:
    if not callable(transitions):
      raise ValueError(f"LSC transitions={transitions!r}: expected a function "
                       f"fn(params, x, key, time_samples) -> {{kind: (step, points) | Transitions}}")
    return UserTransitions(model, transitions)
  return find_transitions(model, params, x, apply_kwargs=apply_kwargs)
