"""A strict reader (and a writer, for tests) of the IDX format of MNIST / Fashion-MNIST.

IDX (LeCun et al., "The MNIST database", http://yann.lecun.com/exdb/mnist/):
bytes 0-1 are zero, byte 2 the element type (0x08 ubyte, 0x09 byte, 0x0B
int16, 0x0C int32, 0x0D float32, 0x0E float64), byte 3 the number of
dimensions d; then d big-endian uint32 sizes; then prod(sizes) elements,
big-endian, row-major. Files may be gzip-compressed (detected by the gzip
magic bytes, not the file name).

Every fault (missing file, broken gzip stream or CRC, bad magic, wrong type
or rank, payload shorter or longer than the header says) raises `DataError`
naming the file: a partial array is never returned.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from stable_training.data.core import DataError

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise DataError(f"{path}: file not found") from None
  except OSError as e:
    raise DataError(f"{path}: cannot read ({e})") from None
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    # gzip.decompress checks the CRC-32 and length trailer of every member.
    return gzip.decompress(raw)
  except EOFError:
    raise DataError(f"{path}: truncated gzip stream (compressed data ends early)") from None
  except (OSError, zlib.error) as e:
    raise DataError(f"{path}: corrupted gzip data ({e})") from None


def read_idx(path: str, *, dtype_code: int | None = None, ndim: int | None = None) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a native-endian numpy array.

  `dtype_code` / `ndim`, when given, are required values of the header's type
  byte and rank (MNIST images: 0x08 and 3, i.e. magic 0x00000803; labels:
  0x08 and 1, magic 0x00000801). Raises `DataError` naming `path` on any fault.
  """
  data = _read_bytes(path)
  if len(data) < 4:
    raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
  if data[0] != 0 or data[1] != 0:
    raise DataError(f"{path}: bad IDX magic 0x{data[:4].hex()} (first two bytes must be zero)")
  code, rank = data[2], data[3]
  if code not in IDX_DTYPES:
    raise DataError(f"{path}: unknown IDX type byte 0x{code:02x}; valid: "
                    + ", ".join(f"0x{c:02x}" for c in IDX_DTYPES))
  if dtype_code is not None and code != dtype_code:
    raise DataError(f"{path}: IDX type byte 0x{code:02x}, expected 0x{dtype_code:02x} "
                    f"(magic 0x{data[:4].hex()})")
  if ndim is not None and rank != ndim:
    raise DataError(f"{path}: IDX rank {rank}, expected {ndim} (magic 0x{data[:4].hex()})")
  header = 4 + 4 * rank
  if len(data) < header:
    raise DataError(f"{path}: truncated header ({len(data)} bytes, need {header} for rank {rank})")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=rank, offset=4))
  dt = IDX_DTYPES[code]
  expected = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
  got = len(data) - header
  if got != expected:
    what = "truncated" if got < expected else "trailing bytes"
    raise DataError(f"{path}: {what}: payload is {got} bytes, header dims {dims} need {expected}")
  arr = np.frombuffer(data, dt, offset=header).reshape(dims)
  return arr.astype(dt.newbyteorder("="))  # native-endian, writeable copy


def write_idx(path: str, array: np.ndarray, *, compress: bool | None = None) -> None:
  """Writes `array` as an IDX file (gzipped when `compress`, default: path ends in .gz)."""
  a = np.asarray(array)
  key = a.dtype.newbyteorder("=")
  if key not in _CODES:
    raise ValueError(f"dtype {a.dtype} has no IDX type; valid: {', '.join(str(d) for d in _CODES)}")
  code = _CODES[key]
  body = (bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
          + np.ascontiguousarray(a, IDX_DTYPES[code]).tobytes())
  if compress is None:
    compress = os.fspath(path).endswith(".gz")
  with open(path, "wb") as f:
    f.write(gzip.compress(body) if compress else body)
