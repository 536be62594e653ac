"""stable_training.data: IDX reader faults, built-in datasets, views, deterministic batching."""
from __future__ import annotations

import gzip
import os
import random
import sys
import types

import numpy as np
import pytest

from stable_training import data
from stable_training.data import DataError, idx, sources, tfds_source

REAL_FASHION = "/usr/share/datasets/fashion-mnist"


def _write_fashion(dirname, n_train=7, n_test=3, compress=True, seed=0):
  rng = np.random.default_rng(seed)
  ext = ".gz" if compress else ""
  arrays = {}
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    lbl = rng.integers(0, 10, (n,), dtype=np.uint8)
    idx.write_idx(os.path.join(dirname, f"{prefix}-images-idx3-ubyte{ext}"), img)
    idx.write_idx(os.path.join(dirname, f"{prefix}-labels-idx1-ubyte{ext}"), lbl)
    arrays[prefix] = (img, lbl)
  return arrays


# ---------------------------------------------------------------- IDX reader
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, dtype, compress):
  a = (np.arange(2 * 3 * 5).reshape(2, 3, 5) - 7).astype(dtype)
  p = str(tmp_path / ("a.idx.gz" if compress else "a.idx"))
  idx.write_idx(p, a)
  b = idx.read_idx(p)
  np.testing.assert_array_equal(a, b)
  assert b.dtype == np.dtype(dtype).newbyteorder("=")
  # Header bytes: 0, 0, type, rank, then big-endian dims.
  raw = gzip.decompress(open(p, "rb").read()) if compress else open(p, "rb").read()
  assert raw[:4] == bytes([0, 0, idx._CODES[np.dtype(dtype).newbyteorder("=")], 3])
  assert np.frombuffer(raw[4:16], ">u4").tolist() == [2, 3, 5]


def test_idx_mnist_magic_numbers(tmp_path):
  img, lbl = str(tmp_path / "img.gz"), str(tmp_path / "lbl.gz")
  idx.write_idx(img, np.zeros((2, 28, 28), np.uint8))
  idx.write_idx(lbl, np.zeros((2,), np.uint8))
  assert gzip.decompress(open(img, "rb").read())[:4] == (0x00000803).to_bytes(4, "big")
  assert gzip.decompress(open(lbl, "rb").read())[:4] == (0x00000801).to_bytes(4, "big")


def _raw_idx(a):
  a = np.asarray(a, np.uint8)
  return bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()


@pytest.mark.parametrize("case,needle", [
    ("missing", "not found"),
    ("truncated_gzip", "truncated gzip"),
    ("corrupt_crc", "corrupted gzip"),
    ("truncated_payload", "truncated"),
    ("trailing_bytes", "trailing bytes"),
    ("bad_magic", "bad IDX magic"),
    ("wrong_type", "type byte"),
    ("wrong_rank", "rank"),
    ("short_header", "header"),
])
def test_idx_faults_raise_naming_file(tmp_path, case, needle):
  p = tmp_path / f"{case}-images-idx3-ubyte.gz"
  good = _raw_idx(np.arange(2 * 4 * 4).reshape(2, 4, 4))
  if case == "truncated_gzip":
    p.write_bytes(gzip.compress(good)[:-12])
  elif case == "corrupt_crc":
    z = bytearray(gzip.compress(good))
    z[-6] ^= 0xFF  # flips a CRC-32 byte of the trailer
    p.write_bytes(bytes(z))
  elif case == "truncated_payload":
    p.write_bytes(gzip.compress(good[:-5]))
  elif case == "trailing_bytes":
    p.write_bytes(gzip.compress(good + b"\x00"))
  elif case == "bad_magic":
    p.write_bytes(gzip.compress(b"\x01\x02" + good[2:]))
  elif case == "wrong_type":
    p.write_bytes(gzip.compress(good[:2] + b"\x0d" + good[3:]))
  elif case == "wrong_rank":
    p.write_bytes(gzip.compress(_raw_idx(np.zeros((2, 16)))))
  elif case == "short_header":
    p.write_bytes(gzip.compress(good[:9]))
  with pytest.raises(DataError, match=needle) as e:
    idx.read_idx(str(p), dtype_code=0x08, ndim=3)
  assert str(p) in str(e.value)
  assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_tiny_files(tmp_path, compress):
  arrays = _write_fashion(str(tmp_path), compress=compress)
  for split, prefix in (("train", "train"), ("test", "t10k")):
    d = data.load("fashion_mnist", split, data_dir=str(tmp_path))
    img, lbl = arrays[prefix]
    assert d.x.shape == (len(lbl), 28, 28, 1) and d.x.dtype == np.float32
    np.testing.assert_allclose(d.x[..., 0], img / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(d.y, lbl)
    assert d.y.dtype == np.int32 and d.num_classes == 10 and d.image_shape == (28, 28, 1)


def test_fashion_mnist_count_mismatch_names_both_files(tmp_path):
  _write_fashion(str(tmp_path))
  idx.write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), np.zeros(6, np.uint8))  # 7 images
  with pytest.raises(DataError, match="7 images.*6 labels") as e:
    data.load("fashion_mnist", "train", data_dir=str(tmp_path))
  assert "train-images-idx3-ubyte.gz" in str(e.value) and "train-labels-idx1-ubyte.gz" in str(e.value)


def test_fashion_mnist_label_out_of_range(tmp_path):
  _write_fashion(str(tmp_path))
  idx.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.array([1, 10, 2], np.uint8))
  with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 10 out of range"):
    data.load("fashion_mnist", "test", data_dir=str(tmp_path))


def test_fashion_mnist_missing_and_truncated_files(tmp_path):
  _write_fashion(str(tmp_path))
  os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*not found"):
    data.load("fashion_mnist", "test", data_dir=str(tmp_path))
  p = tmp_path / "train-images-idx3-ubyte.gz"
  p.write_bytes(p.read_bytes()[:-20])
  with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
    data.load("fashion_mnist", "train", data_dir=str(tmp_path))


@pytest.mark.skipif(not os.path.exists(os.path.join(REAL_FASHION, "train-labels-idx1-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_files():
  tr, te = data.load("fashion_mnist", "train"), data.load("fashion_mnist", "test")
  assert tr.x.shape == (60000, 28, 28, 1) and te.x.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(tr.y, minlength=10), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(te.y, minlength=10), np.full(10, 1000))
  assert tr.x.min() == 0.0 and tr.x.max() == 1.0
  # Values are k/255 exactly (float32 of the uint8 division).
  k = np.round(tr.x[:100] * 255)
  np.testing.assert_allclose(tr.x[:100], (k / 255).astype(np.float32), atol=1e-7)


# ---------------------------------------------------------------- digits, mnist1d
def test_digits_fixed_stratified_split():
  from sklearn.datasets import load_digits
  tr, te = data.load("digits", "train", seed=0), data.load("digits", "test", seed=7)
  assert tr.x.shape == (1437, 8, 8, 1) and te.x.shape == (360, 8, 8, 1) and tr.image_shape == (8, 8, 1)
  assert tr.x.min() == 0.0 and tr.x.max() == 1.0
  np.testing.assert_array_equal(tr.x * 16, np.round(tr.x * 16))  # pixels are k/16
  full = load_digits()
  ctr, cte, call = (np.bincount(a, minlength=10) for a in (tr.y, te.y, full.target))
  assert (ctr > 0).all() and (cte > 0).all()
  # Stratified: every class's test count is within 1 of 360·p_class.
  assert np.abs(cte - 360 * call / call.sum()).max() <= 1.0
  # A partition of the original 1797 images (row multiset preserved).
  both = np.concatenate([tr.x.reshape(-1, 64), te.x.reshape(-1, 64)]) * 16
  key = lambda a: a[np.lexsort(a.T[::-1])]
  np.testing.assert_array_equal(key(both), key(full.data))
  # Independent of the run seed.
  np.testing.assert_array_equal(data.load("digits", "train", seed=5).y, tr.y)


def test_mnist1d_shapes_and_no_global_rng_side_effect():
  sources._mnist1d_arrays.cache_clear()
  np.random.seed(123)
  random.seed(123)
  expect_np, expect_py = np.random.random(), random.random()
  np.random.seed(123)
  random.seed(123)
  tr = data.load("mnist1d", "train")
  assert np.random.random() == expect_np and random.random() == expect_py
  te = data.load("mnist1d", "test")
  assert tr.x.shape == (4000, 40) and te.x.shape == (1000, 40) and tr.image_shape is None
  assert tr.x.dtype == np.float32 and tr.y.dtype == np.int32 and set(np.unique(tr.y)) == set(range(10))
  tr.x[0, 0] = 99.0  # a copy: the cache stays intact
  assert data.load("mnist1d", "train").x[0, 0] != 99.0


# ---------------------------------------------------------------- names, errors, TFDS
def test_unknown_name_and_split_list_choices(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails → "not installed"
  with pytest.raises(ValueError, match="unknown dataset 'mnist'.*digits, fashion_mnist, mnist1d, mnist_5k, shapeset"):
    data.load("mnist", "train")
  with pytest.raises(ValueError, match="no split 'validation'; valid: train, test"):
    data.load("digits", "validation")
  assert {"digits", "fashion_mnist", "mnist1d", "shapeset"} <= set(data.names())


def test_tfds_missing_data_error(monkeypatch):
  def data_source(name, split, data_dir):
    raise FileNotFoundError(f"no prepared dataset {name} in {data_dir}")
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(data_source=data_source))
  with pytest.raises(DataError, match=r"tfds dataset 'cifar10' split 'test'.*tfds build cifar10.*data_dir"):
    data.load("cifar10", "test", data_dir="/nonexistent")


def test_tfds_records_decoded(monkeypatch):
  rng = np.random.default_rng(0)
  recs = [{"image": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), "label": i % 3} for i in range(6)]

  class Source(list):
    dataset_info = types.SimpleNamespace(features={"label": types.SimpleNamespace(num_classes=3)})
  monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                      types.SimpleNamespace(data_source=lambda name, split, data_dir: Source(recs)))
  d = data.load("tiny_rgb", "train")
  assert d.x.shape == (6, 4, 5, 3) and d.image_shape == (4, 5, 3) and d.num_classes == 3
  np.testing.assert_allclose(d.x[2], recs[2]["image"] / 255.0, atol=1e-7)
  np.testing.assert_array_equal(d.y, [0, 1, 2, 0, 1, 2])
  # PNG-encoded bytes (TFDS without TensorFlow may hand these over) decode through Pillow.
  import io
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(recs[0]["image"][..., 0]).save(buf, format="PNG")
  d2 = tfds_source.records_to_dataset("png", [{"image": buf.getvalue(), "label": 1}], num_classes=2)
  np.testing.assert_allclose(d2.x[0, ..., 0], recs[0]["image"][..., 0] / 255.0, atol=1e-7)
  assert d2.image_shape == (4, 5, 1)
  d3 = tfds_source.records_to_dataset("imdb", [{"text": "good".encode(), "label": 1}, {"text": b"bad", "label": 0}],
                                      num_classes=2)
  assert d3.x.tolist() == ["good", "bad"] and d3.y.tolist() == [1, 0] and d3.image_shape is None
  with pytest.raises(DataError, match=r"labels outside \[0, 2\)"):
    tfds_source.records_to_dataset("bad", [{"text": b"x", "label": 2}], num_classes=2)


# ---------------------------------------------------------------- standardize, views
def test_standardize_uses_train_statistics():
  rng = np.random.default_rng(0)
  tr, te = rng.uniform(0, 1, (50, 3, 3, 1)), rng.uniform(2, 3, (20, 3, 3, 1))
  a, b = data.standardize(tr, te)
  assert abs(a.mean()) < 1e-6 and abs(a.std() - 1) < 1e-5
  np.testing.assert_allclose(b, (te - tr.mean()) / tr.std(), rtol=1e-5)
  c, _ = data.standardize(np.ones((4, 2)), np.ones((1, 2)))  # constant input: no division by 0
  np.testing.assert_array_equal(c, 0.0)


def test_views():
  x = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1).astype(np.float32)
  assert data.apply_view(x, "flatten").shape == (2, 12)
  assert data.apply_view(x, "image") is x
  seq = data.apply_view(x, "sequential")
  np.testing.assert_array_equal(seq[..., 0], x.reshape(2, 12))  # row-major pixel order
  rgb = np.arange(2 * 2 * 2 * 3).reshape(2, 2, 2, 3)
  np.testing.assert_array_equal(data.apply_view(rgb, "sequential"), rgb.reshape(2, 4, 3))
  np.testing.assert_array_equal(data.apply_view(np.ones((3, 40)), "sequential").shape, (3, 40, 1))
  spikes = np.arange(2 * 5 * 7).reshape(2, 5, 7)  # [N, T, F] sequences keep their features
  np.testing.assert_array_equal(data.apply_view(spikes, "sequential"), spikes)
  np.testing.assert_array_equal(data.apply_view(spikes, "permuted_sequential", seed=1),
                                spikes[:, data.permutation(5, 1)])
  with pytest.raises(ValueError, match="unknown view 'pixels'; valid: flatten, image, sequential, permuted_sequential"):
    data.apply_view(x, "pixels")


def test_permuted_view_same_permutation_for_train_and_test():
  t = 28 * 28
  train = np.tile(np.arange(t, dtype=np.float32).reshape(1, 28, 28, 1), (3, 1, 1, 1))
  test = 2 * train[:2]
  a = data.apply_view(train, "permuted_sequential", seed=4)[..., 0]
  b = data.apply_view(test, "permuted_sequential", seed=4)[..., 0]
  perm = data.permutation(t, 4)
  np.testing.assert_array_equal(a[0], perm)  # x[t] = t exposes the order
  np.testing.assert_array_equal(b[1], 2 * perm)
  np.testing.assert_array_equal(np.sort(perm), np.arange(t))  # a true permutation
  assert (perm != np.arange(t)).mean() > 0.99
  assert not np.array_equal(perm, data.permutation(t, 5))


# ---------------------------------------------------------------- batching
def test_batch_indices_epochs_cover_each_example_once():
  n, bs = 23, 5
  spe = n // bs  # 4 steps, 20 examples, 3 dropped per epoch
  for epoch in range(3):
    idx_ = np.concatenate([data.batch_indices(n, bs, seed=1, step=epoch * spe + k) for k in range(spe)])
    assert len(idx_) == spe * bs and len(np.unique(idx_)) == spe * bs and idx_.max() < n
    perm = np.random.default_rng([1, epoch]).permutation(n)  # the documented formula
    np.testing.assert_array_equal(idx_, perm[:spe * bs])
  a = data.batch_indices(n, bs, seed=1, step=0)
  np.testing.assert_array_equal(a, data.batch_indices(n, bs, seed=1, step=0))
  assert not np.array_equal(a, data.batch_indices(n, bs, seed=2, step=0))
  assert not np.array_equal(a, data.batch_indices(n, bs, seed=1, step=spe))  # reshuffled next epoch
  with pytest.raises(ValueError, match="batch_size=24"):
    data.batch_indices(n, 24, seed=0, step=0)


def test_iterate_batches_resumes_exactly():
  x, y = np.arange(30, dtype=np.float32)[:, None], np.arange(30)
  it = data.iterate_batches(x, y, 4, seed=3)
  full = [next(it) for _ in range(12)]
  resumed = data.iterate_batches(x, y, 4, seed=3, start_step=9)
  for k in range(9, 12):
    xb, yb = next(resumed)
    np.testing.assert_array_equal(xb, full[k][0])
    np.testing.assert_array_equal(yb, full[k][1])
    np.testing.assert_array_equal(xb[:, 0], yb)


def test_digits_split_cache_equals_scikit_learn(tmp_path, monkeypatch):
  """The cached digits split is scikit-learn's stratified split, bit for bit, and survives a bad cache file."""
  from sklearn.datasets import load_digits as sk_load
  from sklearn.model_selection import train_test_split
  from stable_training.data import sources
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  d = sk_load()
  want = train_test_split(d.images, d.target, test_size=sources.DIGITS_TEST_SIZE, stratify=d.target,
                          random_state=sources.DIGITS_SPLIT_SEED)
  path = sources._digits_cache_path()
  assert path.startswith(str(tmp_path))
  for prepare in (lambda: None, lambda: None, lambda: open(path, "wb").write(b"garbage")):
    prepare()
    sources._digits_split.cache_clear()
    got = sources._digits_split()
    assert os.path.exists(path)
    for a, b in zip(got, want):
      np.testing.assert_array_equal(a, b)
  sources._digits_split.cache_clear()
