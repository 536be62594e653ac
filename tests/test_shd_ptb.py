"""SHD (HDF5) and PTB (text) readers on tiny files written in the real formats."""
from __future__ import annotations

import numpy as np
import pytest

from stable_training.data import ptb, shd

pytest.importorskip("h5py")


def test_shd_binning(tmp_path):
  path = str(tmp_path / "shd_tiny.h5")
  times = [[0.0, 0.05, 0.06, 0.99, 1.5], [0.5]]
  units = [[0, 3, 3, 699, 1], [10]]
  shd.write_shd(path, times, units, [7, 19])
  x, y = shd.load_shd(path, num_steps=10, max_time=1.0)
  assert x.shape == (2, 10, 700) and x.dtype == np.float32
  np.testing.assert_array_equal(y, [7, 19])
  ref = np.zeros((2, 10, 700), np.float32)
  ref[0, 0, 0] = 1            # t=0.00 → bin 0
  ref[0, 0, 3] = 2            # 0.05, 0.06 → bin 0, counted twice
  ref[0, 9, 699] = 1          # 0.99 → bin 9; 1.5 ≥ max_time dropped
  ref[1, 5, 10] = 1
  np.testing.assert_array_equal(x, ref)
  xb, _ = shd.load_shd(path, num_steps=10, max_time=1.0, binary=True, limit=1)
  assert xb.shape == (1, 10, 700) and xb[0, 0, 3] == 1 and xb.sum() == 3


def test_ptb_vocab_ids_batchify(tmp_path):
  (tmp_path / "ptb.train.txt").write_text(" the cat sat \n the dog <unk> \n")
  (tmp_path / "ptb.valid.txt").write_text(" the bird \n")
  (tmp_path / "ptb.test.txt").write_text(" cat \n")
  d = ptb.load_ptb(str(tmp_path))
  v = d["vocab"]
  # counts: <eos> 2, the 2, <unk> 1, cat 1, dog 1, sat 1 → by (-count, word)
  assert list(v) == ["<eos>", "the", "<unk>", "cat", "dog", "sat"]
  np.testing.assert_array_equal(d["train"], [1, 3, 5, 0, 1, 4, 2, 0])
  np.testing.assert_array_equal(d["valid"], [1, 2, 0])      # bird → <unk>
  np.testing.assert_array_equal(d["test"], [3, 0])
  b = ptb.batchify(d["train"], 3)
  np.testing.assert_array_equal(b, [[1, 3], [5, 0], [1, 4]])
  pairs = list(ptb.lm_batches(ptb.batchify(np.arange(12), 2), seq_len=2))
  np.testing.assert_array_equal(pairs[0][0], [[0, 1], [6, 7]])
  np.testing.assert_array_equal(pairs[0][1], [[1, 2], [7, 8]])
  np.testing.assert_array_equal(pairs[-1][0], [[4], [10]])
  np.testing.assert_array_equal(pairs[-1][1], [[5], [11]])
  with pytest.raises(ValueError, match="batch_size=0"):
    ptb.batchify(d["train"], 0)
  with pytest.raises(FileNotFoundError, match="ptb.train.txt"):
    ptb.load_ptb(str(tmp_path / "nope"))
