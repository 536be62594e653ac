"""Penn Treebank (Mikolov's ptb.{train,valid,test}.txt) for word-level language modelling.

Each line is a sentence of space-separated words; rare words are already
``<unk>``. As in the classic TF/Zaremba et al. (2014) reader: every line ends
with ``<eos>``, the vocabulary is the training words sorted by descending
count (ties alphabetical), and `batchify` cuts the token stream into
`batch_size` contiguous rows; `lm_batches` yields (x, y = x shifted by one)
windows of `seq_len` steps (truncated BPTT). The files cannot be downloaded
here; tests use tiny files of the same format.
"""
from __future__ import annotations

import collections
import os
from typing import Iterator

import numpy as np

UNK, EOS = "<unk>", "<eos>"
SPLITS = ("train", "valid", "test")


def read_words(path: str) -> list[str]:
  """All words of a PTB file, with ``<eos>`` at the end of each line."""
  with open(path, encoding="utf-8") as f:
    return [w for line in f for w in line.split() + [EOS]]


def build_vocab(path: str, max_size: int | None = None) -> dict[str, int]:
  """word → id from a training file: by descending count, ties alphabetical; always holds <unk>, <eos>."""
  counts = collections.Counter(read_words(path))
  counts.setdefault(UNK, 0)
  words = sorted(counts, key=lambda w: (-counts[w], w))
  if max_size is not None:
    if max_size < 2:
      raise ValueError(f"max_size={max_size}: must be >= 2 (room for <unk> and <eos>)")
    keep = [w for w in words if w not in (UNK, EOS)][:max_size - 2]
    words = sorted(keep + [UNK, EOS], key=lambda w: (-counts[w], w))
  return {w: i for i, w in enumerate(words)}


def tokenize(path: str, vocab: dict[str, int]) -> np.ndarray:
  """A PTB file → int32 token ids (unknown words → <unk>)."""
  unk = vocab[UNK]
  return np.asarray([vocab.get(w, unk) for w in read_words(path)], np.int32)


def load_ptb(data_dir: str, max_vocab: int | None = None) -> dict:
  """{'train', 'valid', 'test': int32 ids, 'vocab': word → id} from ptb.{split}.txt in `data_dir`."""
  paths = {s: os.path.join(data_dir, f"ptb.{s}.txt") for s in SPLITS}
  missing = [p for p in paths.values() if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"PTB files missing: {', '.join(missing)} (expected ptb.train/valid/test.txt)")
  vocab = build_vocab(paths["train"], max_vocab)
  out = {s: tokenize(p, vocab) for s, p in paths.items()}
  out["vocab"] = vocab
  return out


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
  """Token stream → [batch_size, N // batch_size] contiguous rows (the remainder is dropped)."""
  if batch_size < 1 or batch_size > len(ids):
    raise ValueError(f"batch_size={batch_size}: must be in [1, {len(ids)}] (number of tokens)")
  n = len(ids) // batch_size
  return np.asarray(ids[:n * batch_size]).reshape(batch_size, n)


def lm_batches(data: np.ndarray, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(x, y) windows of a batchified [B, N] array: x = data[:, i:i+ℓ], y = data[:, i+1:i+1+ℓ]."""
  if seq_len < 1:
    raise ValueError(f"seq_len={seq_len}: must be >= 1")
  n = data.shape[1]
  for i in range(0, n - 1, seq_len):
    ell = min(seq_len, n - 1 - i)
    yield data[:, i:i + ell], data[:, i + 1:i + 1 + ell]
