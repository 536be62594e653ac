"""Shapeset-3×2 (Glorot & Bengio 2010, §2.1), generated with a vectorized numpy rasterizer.

Each 32×32 grayscale image holds one or two shapes from {triangle,
parallelogram, ellipse}; the label says which shapes are present, ignoring
order. Following the paper and the original Shapeset generator (Breuleux et
al., LISA lab):
- shape parameters: a triangle's vertices lie on a circle, every arc between
  consecutive vertices ≥ 72° (no slivers); a parallelogram has sides 1 and
  ρ ~ U[0.5, 1] at an angle φ ~ U[60°, 120°]; an ellipse is a 20-gon with
  semi-axes 1 and ρ ~ U[0.5, 1]. Each unit shape has circumradius 1;
- scale s ~ U[0.2, 0.8]: the circumscribed circle's diameter is s·32 pixels;
- rotation ~ U[0, 2π); position: the circumcircle's centre is uniform over
  the positions that keep the whole circle (hence the shape) inside the frame;
- grey levels: background ~ U[0, 0.45], each shape's foreground ~ U[0.55, 1];
  with probability 0.5 the roles swap (background ~ U[0.55, 1], shapes
  ~ U[0, 0.45]). The second shape is drawn over the first;
- two shapes overlap by at most 50 % (rejection sampling on the rasterized
  masks): |m₁ ∩ m₂| ≤ 0.5·min(|m₁|, |m₂|), so at least half of each shape
  lies on the background and neither can hide the other (the paper bounds the
  overlap by half of the first shape's area; bounding by the smaller area is
  slightly stricter and also keeps a small second shape visible when its grey
  level happens to match the first's). Every shape covers ≥ `MIN_PIXELS` pixels.

Classes (`CLASSES`, `CLASS_NAMES`): 0 triangle, 1 parallelogram, 2 ellipse
(one shape); 3 triangle+parallelogram, 4 triangle+ellipse,
5 parallelogram+ellipse (two different shapes, drawn in random order);
6 triangle+triangle, 7 parallelogram+parallelogram, 8 ellipse+ellipse.
Classes are balanced: each sample of n holds ⌊n/9⌋ of every class plus the
remainder on distinct random classes, shuffled.

Rasterization (`rasterize`): a pixel is on iff its centre lies in the convex
polygon, tested with the half-plane of every edge, batched over images (no
loop over pixels).
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

import numpy as np

from stable_training.data.core import Dataset, register_dataset

SIZE = 32
SHAPES = ("triangle", "parallelogram", "ellipse")
CLASSES = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 0), (1, 1), (2, 2))
CLASS_NAMES = tuple("+".join(SHAPES[s] for s in c) for c in CLASSES)
NUM_CLASSES = len(CLASSES)
MAX_VERTICES = 20            # the ellipse's polygon; triangles/parallelograms are padded
SCALE_RANGE = (0.2, 0.8)     # circumcircle diameter / image size
FG_RANGE = (0.55, 1.0)
BG_RANGE = (0.0, 0.45)
MAX_OVERLAP = 0.5
MIN_PIXELS = 4
MIN_TRIANGLE_ARC = 2 * np.pi / 5
SPLIT_SIZES = {"train": 10000, "validation": 5000, "test": 5000}
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
_STREAM_CODE = 3
_MAX_REJECTION_ROUNDS = 1000


def polygon_area(vertices: np.ndarray) -> np.ndarray:
  """Shoelace area ½|Σ xᵢ yᵢ₊₁ − xᵢ₊₁ yᵢ| of polygons ``[..., K, 2]`` (repeated vertices add 0)."""
  v = np.asarray(vertices, np.float64)
  x, y = v[..., 0], v[..., 1]
  return 0.5 * np.abs(np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, axis=-1))


def rasterize(vertices: np.ndarray, size: int = SIZE, chunk: int = 1024) -> np.ndarray:
  """Binary masks ``[..., size, size]`` of convex polygons ``[..., K, 2]`` (pixel units).

  Coordinates are (x, y) = (column, row) with pixel (i, j) centred at
  (j + ½, i + ½). A centre q is inside iff for every edge pᵢ→pᵢ₊₁,
  o·((pᵢ₊₁ − pᵢ) × (q − pᵢ)) ≥ 0 with o the polygon's orientation (sign of
  its signed area); zero-length edges (padding by repeating a vertex) pass
  every test. Loops over the K edges only, vectorized over images and pixels.
  """
  v = np.asarray(vertices, np.float32)
  if v.ndim < 2 or v.shape[-1] != 2:
    raise ValueError(f"vertices shape {v.shape}; valid: [..., K, 2]")
  lead, k = v.shape[:-2], v.shape[-2]
  v = v.reshape(-1, k, 2)
  c = np.arange(size, dtype=np.float32) + 0.5
  x, y = v[..., 0].astype(np.float64), v[..., 1].astype(np.float64)
  signed = np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, axis=-1)
  orient = np.where(signed >= 0, 1.0, -1.0).astype(np.float32)
  out = np.empty((v.shape[0], size, size), bool)
  c = c.astype(np.float32)
  for lo in range(0, v.shape[0], chunk):
    vb, ob = v[lo:lo + chunk], orient[lo:lo + chunk, None]
    nb = vb.shape[0]
    inside = np.ones((nb, size, size), bool)
    buf = np.empty((nb, size, size), np.float32)
    hit = np.empty((nb, size, size), bool)
    for i in range(k):
      p, q = vb[:, i], vb[:, (i + 1) % k]
      # o·cross = a·y + b·x + c0, split into a row term and a column term so
      # the per-pixel work is one broadcast add and one compare.
      ex, ey = q[:, 0] - p[:, 0], q[:, 1] - p[:, 1]
      a, b, c0 = ob[:, 0] * ex, -ob[:, 0] * ey, ob[:, 0] * (ey * p[:, 0] - ex * p[:, 1])
      row = a[:, None] * c[None, :] + c0[:, None]
      col = b[:, None] * c[None, :]
      np.add(row[:, :, None], col[:, None, :], out=buf)
      np.greater_equal(buf, 0, out=hit)
      inside &= hit
    out[lo:lo + chunk] = inside
  return out.reshape(lead + (size, size))


def _pad(v: np.ndarray) -> np.ndarray:
  """Pads ``[B, k, 2]`` to MAX_VERTICES by repeating the last vertex (zero-length edges)."""
  return np.concatenate([v, np.repeat(v[:, -1:], MAX_VERTICES - v.shape[1], axis=1)], axis=1)


def _unit_shapes(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
  """Unit shapes (circumradius 1, centred at 0) of the given kinds, ``[B, MAX_VERTICES, 2]``.

  All three families are drawn for every row (a fixed number of draws per row
  keeps the stream deterministic), then the row's kind is selected.
  """
  b = kinds.shape[0]
  # Triangle: vertices on the unit circle, arcs = min_arc + (2π − 3·min_arc)·Dirichlet(1,1,1).
  arcs = MIN_TRIANGLE_ARC + (2 * np.pi - 3 * MIN_TRIANGLE_ARC) * rng.dirichlet(np.ones(3), size=b)
  ang = rng.uniform(0, 2 * np.pi, size=(b, 1)) + np.concatenate([np.zeros((b, 1)), np.cumsum(arcs[:, :2], 1)], 1)
  tri = _pad(np.stack([np.cos(ang), np.sin(ang)], -1))
  # Parallelogram: corners ±u/2 ± v/2, u = (1, 0), v = ρ(cos φ, sin φ), normalized to circumradius 1.
  rho = rng.uniform(0.5, 1.0, size=b)
  phi = rng.uniform(np.pi / 3, 2 * np.pi / 3, size=b)
  u = np.stack([np.ones(b), np.zeros(b)], -1)
  w = rho[:, None] * np.stack([np.cos(phi), np.sin(phi)], -1)
  par = 0.5 * np.stack([u + w, w - u, -u - w, u - w], 1)
  par /= np.linalg.norm(par, axis=-1).max(-1)[:, None, None]
  par = _pad(par)
  # Ellipse: a regular 20-gon stretched to semi-axes (1, ρ).
  rho_e = rng.uniform(0.5, 1.0, size=b)
  t = 2 * np.pi * np.arange(MAX_VERTICES) / MAX_VERTICES
  ell = np.stack([np.broadcast_to(np.cos(t), (b, MAX_VERTICES)), rho_e[:, None] * np.sin(t)], -1)
  return np.choose(kinds[:, None, None], [tri, par, ell])


def _place(rng: np.random.Generator, unit: np.ndarray, size: int) -> np.ndarray:
  """Scales, rotates and translates unit shapes into pixel coordinates (fully in frame)."""
  b = unit.shape[0]
  radius = rng.uniform(*SCALE_RANGE, size=b) * size / 2
  alpha = rng.uniform(0, 2 * np.pi, size=b)
  centre = radius[:, None] + rng.uniform(size=(b, 2)) * (size - 2 * radius)[:, None]
  cos, sin = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
  x, y = unit[..., 0], unit[..., 1]
  rot = np.stack([cos * x - sin * y, sin * x + cos * y], -1)
  return rot * radius[:, None, None] + centre[:, None, :]


_NUM_VERTICES = (3, 4, MAX_VERTICES)


def _rasterize_kinds(verts: np.ndarray, kinds: np.ndarray, size: int) -> np.ndarray:
  """`rasterize` per shape kind without the padding edges (3 / 4 / 20 edges)."""
  masks = np.empty((verts.shape[0], size, size), bool)
  for kind, nv in enumerate(_NUM_VERTICES):
    rows = np.flatnonzero(kinds == kind)
    if rows.size:
      masks[rows] = rasterize(verts[rows, :nv], size)
  return masks


def _balanced_labels(rng: np.random.Generator, n: int) -> np.ndarray:
  rest = rng.choice(NUM_CLASSES, size=n % NUM_CLASSES, replace=False)
  return rng.permutation(np.concatenate([np.arange(n - n % NUM_CLASSES) % NUM_CLASSES, rest])).astype(np.int32)


def _draw_shapes(rng, kinds, size, accept) -> tuple[np.ndarray, np.ndarray]:
  """Rejection-samples placed shapes until ``accept(rows, masks)`` holds for every row."""
  verts = np.zeros((kinds.shape[0], MAX_VERTICES, 2))
  masks = np.zeros((kinds.shape[0], size, size), bool)
  todo = np.arange(kinds.shape[0])
  for _ in range(_MAX_REJECTION_ROUNDS):
    if todo.size == 0:
      return verts, masks
    v = _place(rng, _unit_shapes(rng, kinds[todo]), size)
    m = _rasterize_kinds(v, kinds[todo], size)
    ok = accept(todo, m)
    verts[todo[ok]], masks[todo[ok]] = v[ok], m[ok]
    todo = todo[~ok]
  raise RuntimeError(f"shapeset: rejection sampling did not finish for {todo.size} images")


def generate(n: int, seed: int | Sequence[int], *, size: int = SIZE, return_metadata: bool = False):
  """Draws `n` Shapeset-3×2 images (see the module docstring); a pure function of (n, seed, size).

  Returns ``(x, y)`` with x float32 ``[n, size, size, 1]`` in [0, 1] and y
  int32 in [0, 9); with `return_metadata` also a dict: ``shapes`` [n, 2]
  (shape index per slot, −1 = none), ``vertices`` [n, 2, 20, 2] (pixel
  coordinates, padded polygons), ``masks`` [n, 2, size, size] bool,
  ``fg`` [n, 2], ``bg`` [n], ``swapped`` [n] bool.
  """
  if n < 0:
    raise ValueError(f"n={n}; valid: n >= 0")
  rng = np.random.default_rng(seed)
  y = _balanced_labels(rng, n)
  first = np.array([c[0] for c in CLASSES])[y]
  second = np.array([c[-1] for c in CLASSES])[y]
  two = y >= 3
  # Mixed pairs: which shape is drawn first (under) is random.
  flip = (rng.random(n) < 0.5) & (first != second)
  first, second = np.where(flip, second, first), np.where(flip, first, second)

  v1, m1 = _draw_shapes(rng, first, size, lambda rows, m: m.sum((1, 2)) >= MIN_PIXELS)
  a1 = m1.sum((1, 2))

  def accept_second(rows, m):
    a2 = m.sum((1, 2))
    inter = (m & m1[rows]).sum((1, 2))
    return (a2 >= MIN_PIXELS) & (inter <= MAX_OVERLAP * np.minimum(a1[rows], a2))

  idx2 = np.flatnonzero(two)
  v2 = np.zeros_like(v1)
  m2 = np.zeros_like(m1)
  v2[idx2], m2[idx2] = _draw_shapes(rng, second[idx2], size, lambda rows, m: accept_second(idx2[rows], m))

  swapped = rng.random(n) < 0.5
  fg = rng.uniform(*FG_RANGE, size=(n, 2))
  bg = rng.uniform(*BG_RANGE, size=n)
  # Swap: shapes take dark levels and the background a light one (mirror about ½).
  fg = np.where(swapped[:, None], 1.0 - fg, fg)
  bg = np.where(swapped, 1.0 - bg, bg)
  img = np.where(m1, fg[:, 0, None, None], bg[:, None, None])
  img = np.where(m2, fg[:, 1, None, None], img)
  x = img[..., None].astype(np.float32)
  if not return_metadata:
    return x, y
  shapes = np.stack([first, np.where(two, second, -1)], 1).astype(np.int32)
  meta = {"shapes": shapes, "vertices": np.stack([v1, v2], 1), "masks": np.stack([m1, m2], 1),
          "fg": fg, "bg": bg, "swapped": swapped}
  return x, y, meta


def shapeset_stream(batch_size: int, seed: int, *, start_step: int = 0,
                    size: int = SIZE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """The paper's online (infinite) training stream: batch k = ``generate(batch_size, [seed, 3, k])``.

  Every batch is a pure function of (seed, k), so a stream restarted at
  `start_step` continues exactly; its seeds are disjoint from the fixed splits'.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}; valid: >= 1")
  k = start_step
  while True:
    yield generate(batch_size, [int(seed), _STREAM_CODE, k], size=size)
    k += 1


@functools.lru_cache(maxsize=4)
def _split_arrays(split: str, seed: int):
  x, y = generate(SPLIT_SIZES[split], [int(seed), _SPLIT_CODES[split]])
  x.setflags(write=False)
  y.setflags(write=False)
  return x, y


@functools.lru_cache(maxsize=1)
def _large_train(n: int, seed: int):
  """`n` training images: the fixed 10000, then blocks of 10000 drawn from ``[seed, 0, block]``."""
  block = SPLIT_SIZES["train"]
  parts = [_split_arrays("train", seed)]
  for b in range(1, -(-n // block)):
    parts.append(generate(min(block, n - b * block), [seed, _SPLIT_CODES["train"], b]))
  x, y = (np.concatenate(a)[:n] for a in zip(*parts))
  x.setflags(write=False)
  y.setflags(write=False)
  return x, y


@register_dataset("shapeset", splits=("train", "validation", "test"), generated=True)
def load_shapeset(split: str, *, data_dir=None, seed: int = 0, num_train: int | None = None) -> Dataset:
  """A fixed Shapeset-3×2 sample: ``SPLIT_SIZES[split]`` images (10000 / 5000 / 5000).

  Generated from seed ``[seed, code]`` with code 0 train, 1 validation,
  2 test (the stream uses 3), so the splits never share a random stream.
  `num_train` (train split only): that many training images instead — the
  fixed 10000 first, then fresh ones — for budgets that approach Glorot &
  Bengio's online stream without reusing each image hundreds of times.
  Cached in-process; `data_dir` is unused.
  """
  del data_dir
  if num_train and split == "train":
    x, y = _large_train(int(num_train), int(seed))
  else:
    x, y = _split_arrays(split, int(seed))
  return Dataset(x.copy(), y.copy(), NUM_CLASSES, "shapeset", (SIZE, SIZE, 1))
