"""MNIST-style IDX files (optionally gzipped), read header first.

The header (type byte, rank, dimensions) says how much data follows; it is checked against
the limits before the data is read. Plain files are viewed in place; gzipped ones are
decompressed block by block straight into the output (see :mod:`.convert`).
"""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .convert import ArraySource, StreamSource, convert, plan_images
from .errors import DatasetError
from .limits import Limits
from .streams import gzip_errors, read_up_to

__all__ = ["IdxHeader", "finish_stream", "idx_view", "is_idx", "load_idx_gz", "read_header"]

# IDX type byte -> big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx(head: bytes) -> bool:
    """Whether ``head`` starts like an IDX file (two zero bytes, a type byte, a rank)."""
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES \
        and 1 <= head[3] <= 4


@dataclass(frozen=True)
class IdxHeader:
    """An IDX header: data type, dimensions, and the size of the header itself."""

    dtype: np.dtype
    dims: tuple[int, ...]
    size: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.dims) * self.dtype.itemsize

    def mismatch(self, what: str, got: int) -> str:
        """The message for a file holding ``got`` bytes of data where the header says more
        or less."""
        return (
            f"{what} is truncated or corrupt: header says {self.dims} ({self.data_bytes} bytes "
            f"of data) but the file holds {got} bytes."
        )


def read_header(fh: BinaryIO, what: str, *, gzipped: bool = False) -> IdxHeader:
    """Read an IDX header from the start of ``fh``.

    Raises
    ------
    DatasetError
        If ``fh`` does not start like an IDX file, or its header is incomplete.
    """
    head = read_up_to(fh, 4)
    if not is_idx(head):
        if gzipped:
            raise DatasetError(f"{what} is gzipped but does not hold an IDX file.")
        raise DatasetError(f"{what} is not an IDX file (bad magic number).")
    ndim = head[3]
    raw = read_up_to(fh, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise DatasetError(f"{what} is truncated: its IDX header is incomplete.")
    dims = tuple(int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(ndim))
    return IdxHeader(np.dtype(_IDX_TYPES[head[2]]), dims, 4 + 4 * ndim)


def idx_view(data: bytes, what: str) -> np.ndarray:
    """The array of a plain IDX file, as a read-only view of ``data`` (no copy), after
    checking that its size matches its header. Big-endian dtype."""
    hdr = read_header(io.BytesIO(data[:20]), what)
    got = len(data) - hdr.size
    if got != hdr.data_bytes:
        raise DatasetError(hdr.mismatch(what, got))
    return np.frombuffer(data, dtype=hdr.dtype, offset=hdr.size,
                         count=math.prod(hdr.dims)).reshape(hdr.dims)


def finish_stream(fh: BinaryIO, hdr: IdxHeader, what: str, max_bytes: int) -> None:
    """After the data, the stream must end: count what is left (without keeping it, and
    no further than ``max_bytes``) to say how long the file really is."""
    extra = 0
    while part := fh.read(1 << 16):  # small: gzip allocates the whole size asked for
        extra += len(part)
        if hdr.size + hdr.data_bytes + extra > max_bytes:
            break
    if extra:
        raise DatasetError(hdr.mismatch(what, hdr.data_bytes + extra))


def check_expanded_size(hdr: IdxHeader, what: str, max_bytes: int) -> None:
    """A gzipped IDX file must not decompress to more than ``max_bytes``."""
    if hdr.size + hdr.data_bytes > max_bytes:
        raise DatasetError(
            f"{what} decompresses to more than {max_bytes} bytes; it may be a "
            "decompression bomb. Upload a smaller file or raise max_uncompressed_bytes."
        )


def labels_alone(what: str) -> DatasetError:
    return DatasetError(
        f"{what} is a labels IDX file; upload a zip holding both the images IDX file "
        "and this labels file."
    )


def load_plain_idx(data: bytes, what: str, limits: Limits,
                   resize_to: tuple[int, int] | None) -> np.ndarray:
    """Images of a plain IDX file as float32 (N, C, H, W)."""
    x = idx_view(data, what)
    if x.ndim == 1:
        raise labels_alone(what)
    return convert(plan_images(x.shape, x.dtype, limits, resize_to), ArraySource(x))


def load_idx_gz(data: bytes, what: str, limits: Limits,
                resize_to: tuple[int, int] | None) -> np.ndarray:
    """Images of a gzipped IDX file as float32 (N, C, H, W), decompressed block by block
    into the output after the header has been checked against the limits."""
    with gzip_errors(what), gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        hdr = read_header(fh, what, gzipped=True)
        check_expanded_size(hdr, what, limits.max_uncompressed_bytes)
        if len(hdr.dims) == 1:
            raise labels_alone(what)
        plan = plan_images(hdr.dims, hdr.dtype, limits, resize_to)
        x = convert(plan, StreamSource(fh, hdr.dtype, hdr.dims,
                                       lambda got: hdr.mismatch(what, got)))
        finish_stream(fh, hdr, what, limits.max_uncompressed_bytes)
    return x
