"""Atomic file writes and pickle-free array/tensor I/O shared by the whole library.

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace``, which is atomic on POSIX: a reader sees either the old file or the new one,
never a half-written file, even if the writer is killed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json",
    "save_arrays",
    "load_arrays",
    "NpyRows",
    "NpyWriter",
]


def atomic_write(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically.

    Parameters
    ----------
    path : path-like
        Destination. Its parent folder is created if missing.
    writer : callable
        Called with a binary file object open on a temporary file in the same folder.

    Returns
    -------
    Path
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save named NumPy arrays as safetensors, atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.safetensors`` file.
    arrays : mapping of str to ndarray
        Numeric arrays (no object dtype).
    """
    from safetensors.numpy import save

    clean = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return atomic_write_bytes(path, save(clean))


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load arrays saved by :func:`save_arrays` (safetensors: no pickle involved)."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


class NpyRows:
    """Rows of a C-ordered ``.npy`` file read on demand with plain file reads (no pickle).

    Reading rows ``[a, b)`` costs those rows only; unlike a memory map, what was read does not
    stay resident in the process, so a pass over a 100k-row file in chunks keeps memory flat.

    Parameters
    ----------
    path : path-like
        A ``.npy`` file of a numeric dtype, C order, at least one dimension.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"{self.path.name}: .npy version {version} is not supported.")
            shape, fortran, dtype = read(fh)
            self.offset = fh.tell()
        if fortran or dtype.hasobject or len(shape) == 0:
            raise ValueError(f"{self.path.name} must hold a C-ordered numeric array with at "
                             "least one dimension.")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the array) as a new array."""
        start, stop = max(0, start), min(stop, self.shape[0])
        count = max(0, stop - start)
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.row_bytes)
            data = fh.read(count * self.row_bytes)
        if len(data) != count * self.row_bytes:
            raise ValueError(f"{self.path.name} is truncated (rows {start}:{stop} missing).")
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.shape[1:])).copy()


class NpyWriter:
    """Writes a ``.npy`` of known shape block by block, without holding it in memory.

    Parameters
    ----------
    path : path-like
        Destination (written in place: use it inside a workspace writer's folder, or on a
        temporary path that is moved into place afterwards).
    shape : tuple of int
    dtype : dtype-like
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype) -> None:
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.written = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close() / the context manager
        np.lib.format.write_array_header_2_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                       "fortran_order": False, "shape": self.shape})

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` (n, *shape[1:]), cast to the file's dtype."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.written + len(rows) > self.shape[0]:
            raise ValueError(f"rows of shape {rows.shape} do not fit the remaining "
                             f"{self.shape[0] - self.written} of {self.shape}.")
        self._fh.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        """Close the file; it must hold every row by now."""
        self._fh.close()
        if self.written != self.shape[0]:
            raise ValueError(f"only {self.written} of {self.shape[0]} rows were written.")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()
