"""MNIST-style IDX files (optionally gzipped)."""

from __future__ import annotations

import gzip
import io

import numpy as np

from .errors import DatasetError

__all__ = ["is_idx", "read_idx", "gunzip_limited"]

# IDX type byte -> big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx(head: bytes) -> bool:
    """Whether ``head`` starts like an IDX file (two zero bytes, a type byte, a rank)."""
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES \
        and 1 <= head[3] <= 4


def gunzip_limited(data: bytes, max_bytes: int, what: str) -> bytes:
    """Decompress gzip ``data`` but stop with an error beyond ``max_bytes`` (gzip bombs)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(max_bytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{what} is not a valid gzip file ({exc}); re-create it.") from None
    if len(out) > max_bytes:
        raise DatasetError(
            f"{what} decompresses to more than {max_bytes} bytes; it may be a "
            "decompression bomb. Upload a smaller file or raise max_uncompressed_bytes."
        )
    return out


def read_idx(data: bytes, what: str) -> np.ndarray:
    """Parse an IDX file into an array, checking that its size matches its header."""
    if not is_idx(data[:4]):
        raise DatasetError(f"{what} is not an IDX file (bad magic number).")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{what} is truncated: its IDX header is incomplete.")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        raise DatasetError(
            f"{what} is truncated or corrupt: header says {dims} ({expected} bytes of data) "
            f"but the file holds {got} bytes."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=expected // dtype.itemsize)
    return arr.reshape(dims).astype(dtype.newbyteorder("="))
