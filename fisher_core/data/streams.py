"""Bounded reads from (possibly compressed) streams, and plain messages for their errors."""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .errors import DatasetError

__all__ = ["READ_STEP", "gzip_errors", "member_errors", "read_up_to"]

# Largest single read() asked of a stream. BufferedReader.read(n) (gzip) allocates n bytes
# before it knows how many exist, so a read of "the limit + 1" costs the limit in memory.
READ_STEP = 1 << 22


def read_up_to(fh: BinaryIO, n: int) -> bytes:
    """Read ``n`` bytes, or fewer if the stream ends first, never asking for more than
    :data:`READ_STEP` at a time.

    Parameters
    ----------
    fh : binary file object
    n : int
        Bytes wanted.

    Returns
    -------
    bytes
        ``len(result) < n`` only at the end of the stream.
    """
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = fh.read(min(n - got, READ_STEP))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@contextmanager
def member_errors(what: str, member: str) -> Iterator[None]:
    """Turn the errors of reading zip member ``member`` of ``what`` into a DatasetError."""
    try:
        yield
    except zlib.error:
        raise DatasetError(
            f"{what}: member {member!r} is corrupt (its compressed data cannot be "
            "decompressed); re-create the archive."
        ) from None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(
            f"{what}: member {member!r} is corrupt ({exc}); re-create the archive."
        ) from None


@contextmanager
def gzip_errors(what: str) -> Iterator[None]:
    """Turn the errors of reading gzip file ``what`` into a DatasetError."""
    try:
        yield
    except zlib.error:
        raise DatasetError(
            f"{what} is corrupt (its compressed data cannot be decompressed); re-create it."
        ) from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DatasetError(f"{what} is not a valid gzip file ({exc}); re-create it.") from None
