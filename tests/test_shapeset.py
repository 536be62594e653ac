"""Shapeset-3×2 generator (Glorot & Bengio 2010): rasterizer areas, balance, overlap, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from stable_training import data
from stable_training.data import shapeset as S

N = 1800


@pytest.fixture(scope="module")
def sample():
  return S.generate(N, 0, return_metadata=True)


def test_deterministic_by_seed():
  x1, y1 = S.generate(40, 3)
  x2, y2 = S.generate(40, 3)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(y1, y2)
  x3, _ = S.generate(40, 4)
  assert not np.array_equal(x1, x3)


def test_values_shapes_and_grey_levels(sample):
  x, y, m = sample
  assert x.shape == (N, 32, 32, 1) and x.dtype == np.float32 and y.dtype == np.int32
  assert x.min() >= 0.0 and x.max() <= 1.0
  masks, fg, bg, sw = m["masks"], m["fg"], m["bg"], m["swapped"]
  # Image = background, then shape 1, then shape 2 painted over it.
  expect = np.where(masks[:, 1], fg[:, 1, None, None], np.where(masks[:, 0], fg[:, 0, None, None], bg[:, None, None]))
  np.testing.assert_allclose(x[..., 0], expect, atol=1e-6)
  light = lambda v: (v >= 0.55) & (v <= 1.0)
  dark = lambda v: (v >= 0.0) & (v <= 0.45)
  assert np.all(np.where(sw, light(bg), dark(bg)))
  assert np.all(np.where(sw[:, None], dark(fg), light(fg)))
  assert 0.4 < sw.mean() < 0.6


def test_classes_balanced(sample):
  _, y, _ = sample
  np.testing.assert_array_equal(np.bincount(y, minlength=9), np.full(9, N // 9))
  # Non-multiple of 9: counts differ by at most 1, and over many draws no class is favoured (χ², 8 dof).
  counts = np.zeros(9)
  for s in range(60):
    c = np.bincount(S._balanced_labels(np.random.default_rng(s), 20), minlength=9)
    assert c.max() - c.min() <= 1
    counts += c
  chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
  assert chi2 < 26.1  # 99.9 % quantile of χ²(8)


def test_rasterizer_areas():
  sq = np.array([[5.0, 5.0], [15.0, 5.0], [15.0, 15.0], [5.0, 15.0]])
  assert S.rasterize(sq).sum() == 100  # 10×10 square on the grid: exactly 100 centres
  np.testing.assert_array_equal(S.rasterize(sq), S.rasterize(sq[::-1]))  # orientation-free
  t = 2 * np.pi * np.arange(20) / 20
  for r, c in ((10.0, 16.0), (6.3, 15.2)):
    gon = np.stack([c + r * np.cos(t + 0.1), c + 0.7 + r * np.sin(t + 0.1)], -1)
    analytic = 0.5 * 20 * r ** 2 * np.sin(2 * np.pi / 20)
    assert abs(S.rasterize(gon).sum() / analytic - 1) < 0.04
    assert abs(S.polygon_area(gon) / analytic - 1) < 1e-9
  tri = np.array([[2.0, 3.0], [29.0, 7.0], [11.0, 27.0]])
  assert abs(S.rasterize(tri).sum() / S.polygon_area(tri) - 1) < 0.03
  # Batched over leading axes, and padding by a repeated vertex changes nothing.
  padded = np.concatenate([sq, np.repeat(sq[-1:], 16, 0)])
  batch = np.stack([np.stack([padded, padded + 3.0])] * 2)  # [2, 2, 20, 2]
  masks = S.rasterize(batch)
  assert masks.shape == (2, 2, 32, 32)
  np.testing.assert_array_equal(masks[1, 0], S.rasterize(sq))
  np.testing.assert_array_equal(masks[0, 1], S.rasterize(sq + 3.0))


def test_overlap_constraint_and_masks_recomputed(sample):
  _, y, m = sample
  masks = S.rasterize(m["vertices"])  # [N, 2, 32, 32]
  two = y >= 3
  np.testing.assert_array_equal(masks[:, 0], m["masks"][:, 0])
  np.testing.assert_array_equal(masks[two, 1], m["masks"][two, 1])
  assert not m["masks"][~two, 1].any()
  a1, a2 = masks[two, 0].sum((1, 2)), masks[two, 1].sum((1, 2))
  inter = (masks[two, 0] & masks[two, 1]).sum((1, 2))
  assert np.all(inter <= 0.5 * np.minimum(a1, a2))
  assert (inter > 0).mean() > 0.2  # overlaps do occur
  assert masks[:, 0].sum((1, 2)).min() >= S.MIN_PIXELS and a2.min() >= S.MIN_PIXELS
  # Shapes stay in frame: all vertices within [0, 32].
  v = m["vertices"][np.concatenate([np.ones(N, bool)[:, None], two[:, None]], 1)]
  assert v.min() >= 0.0 and v.max() <= 32.0


def test_class_mapping_matches_rendered_shapes(sample):
  _, y, m = sample
  shapes, verts = m["shapes"], m["vertices"]
  single = y < 3
  np.testing.assert_array_equal(shapes[single, 0], y[single])
  assert np.all(shapes[single, 1] == -1)
  pairs = np.sort(shapes[~single], axis=1)
  np.testing.assert_array_equal(pairs, np.sort(np.array([S.CLASSES[c] for c in y[~single]]), axis=1))
  # The polygon drawn for shape k has 3 / 4 / 20 distinct vertices, and
  # scale ∈ [0.2, 0.8]·32 as the circumcircle's diameter.
  for i in np.flatnonzero(single)[:60]:
    distinct = len(np.unique(np.round(verts[i, 0], 6), axis=0))
    assert distinct == (3, 4, 20)[y[i]]
  assert S.CLASS_NAMES[:3] == S.SHAPES and S.CLASS_NAMES[5] == "parallelogram+ellipse"
  assert S.CLASS_NAMES[8] == "ellipse+ellipse" and len(S.CLASS_NAMES) == 9


def test_stream_and_load_splits(monkeypatch):
  it = S.shapeset_stream(8, seed=1)
  b0, b1 = next(it), next(it)
  np.testing.assert_array_equal(b0[0], S.generate(8, [1, 3, 0])[0])
  assert not np.array_equal(b0[0], b1[0])
  np.testing.assert_array_equal(next(S.shapeset_stream(8, seed=1, start_step=1))[1], b1[1])
  monkeypatch.setattr(S, "SPLIT_SIZES", {"train": 27, "validation": 18, "test": 18})
  S._split_arrays.cache_clear()
  try:
    tr, va, te = (data.load("shapeset", s, seed=2) for s in ("train", "validation", "test"))
    assert tr.x.shape == (27, 32, 32, 1) and va.x.shape == (18, 32, 32, 1)
    assert tr.num_classes == 9 and tr.image_shape == (32, 32, 1)
    assert not np.array_equal(va.x, te.x) and not np.array_equal(va.x, tr.x[:18])
    np.testing.assert_array_equal(data.load("shapeset", "train", seed=2).x, tr.x)
    assert not np.array_equal(data.load("shapeset", "train", seed=3).x, tr.x)
  finally:
    S._split_arrays.cache_clear()
  with pytest.raises(ValueError, match="no split 'dev'; valid: train, validation, test"):
    data.load("shapeset", "dev")


def test_larger_generated_train_split(monkeypatch):
  """num_generated: the fixed training images first, then fresh blocks (no repeats), test split unchanged;
  refused for a fixed dataset and by the config validator."""
  monkeypatch.setattr(S, "SPLIT_SIZES", {"train": 20, "validation": 10, "test": 10})
  S._split_arrays.cache_clear()
  S._large_train.cache_clear()
  try:
    fixed = data.load("shapeset", "train", seed=4)
    big = data.load("shapeset", "train", seed=4, num_generated=50)
    assert big.x.shape == (50, 32, 32, 1)
    np.testing.assert_array_equal(big.x[:20], fixed.x)
    np.testing.assert_array_equal(big.x[20:40], S.generate(20, [4, 0, 1])[0])
    flat = big.x.reshape(50, -1)
    assert len({row.tobytes() for row in flat}) == 50  # every image drawn once
    np.testing.assert_array_equal(data.load("shapeset", "test", seed=4, num_generated=50).x,
                                  data.load("shapeset", "test", seed=4).x)
  finally:
    S._split_arrays.cache_clear()
    S._large_train.cache_clear()
  with pytest.raises(ValueError, match="num_generated=5 needs a generated dataset; 'digits' is not one of: shapeset"):
    data.load("digits", "train", num_generated=5)
  from experiments.configs import default
  from stable_training.config import ConfigError, validate
  c = default.get_config("digits")
  c.dataset.num_generated = 100
  with pytest.raises(ConfigError, match=r"config.dataset.num_generated=100: only for generated datasets \(shapeset\)"):
    validate(c)
