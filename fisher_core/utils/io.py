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
