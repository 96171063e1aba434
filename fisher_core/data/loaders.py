"""`load_file`: datasets a user brings (.npz, .npy, .zip of images, IDX), safely."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import BinaryIO

from .archive import open_zip, read_image_zip
from .arrays import assemble_dataset
from .dataset import ImageDataset
from .errors import DatasetError
from .idx import is_idx, load_idx_gz, load_plain_idx
from .limits import Limits
from .npyfile import load_npy, load_npz

__all__ = ["load_file", "SUPPORTED_FORMATS"]

SUPPORTED_FORMATS = (".npz", ".npy", ".zip", ".idx / -ubyte (optionally .gz)")


def load_file(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    filename: str | None = None,
    size: int | tuple[int, int] | None = None,
    **limits: int,
) -> ImageDataset:
    """Load a dataset a user supplied, validating everything; never unpickles.

    Parameters
    ----------
    source : path, bytes or binary file object
        The file. Formats: ``.npz`` with ``images`` ((N,H,W), (N,H,W,C) or (N,C,H,W); uint8
        or float) and optional ``labels``, ``class_names``, ``attributes``,
        ``attribute_names``; ``.npy`` of images; ``.zip`` of PNG/JPEG images (flat, or one
        sub-folder per class) with an optional ``attributes.csv`` (``filename,attr1,...``),
        or a zip holding an images IDX file and a labels IDX file; MNIST-style IDX files,
        optionally gzipped.
    filename : str, optional
        Name used to guess the format and in messages (defaults to the path or the file
        object's ``name``). The content is sniffed too.
    size : int or (int, int), optional
        Resize every image to this (H, W). Without it, images of different sizes are an
        error, never silently resized.
    **limits : int
        Overrides of :class:`fisher_core.data.Limits` (``max_bytes``, ``max_images``,
        ``max_image_pixels``, ``max_side``, ``max_entries``, ``max_uncompressed_bytes``,
        ``max_total_values``). Every limit is checked from headers before the data is
        decoded; see :class:`~fisher_core.data.Limits` for the memory budget.

    Returns
    -------
    ImageDataset

    Raises
    ------
    DatasetError
        For every bad input, with a message that says what to do. No other exception escapes.
    """
    lim = Limits.from_kwargs(**limits)
    resize_to = _size(size)
    try:
        data, name = _read_source(source, filename, lim)
        return _dispatch(data, name, lim, resize_to)
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError("the dataset is too large to load in memory; upload less.") from None
    except Exception as exc:  # last line of defence: only DatasetError may escape
        raise DatasetError(
            f"could not read {filename or 'the file'}: {type(exc).__name__}: {exc}. "
            "Check that it is one of " + ", ".join(SUPPORTED_FORMATS) + "."
        ) from None


def _size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and 2 <= s <= 1024 for s in hw):
        raise DatasetError(f"size must be an int or (H, W) between 2 and 1024; got {size!r}.")
    return hw  # type: ignore[return-value]


def _read_source(source, filename: str | None, lim: Limits) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), filename or "upload"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"no such file: {str(path)!r}.")
        if path.stat().st_size > lim.max_bytes:
            raise DatasetError(
                f"{path.name} is {path.stat().st_size} bytes, more than the limit of "
                f"{lim.max_bytes}; upload a smaller file or raise max_bytes."
            )
        data, name = path.read_bytes(), filename or path.name
    elif hasattr(source, "read"):
        data = source.read(lim.max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise DatasetError("the file object must be opened in binary mode ('rb').")
        name = filename or posixpath.basename(str(getattr(source, "name", "upload")))
        data = bytes(data)
    else:
        raise DatasetError(
            f"source must be a path, bytes or a binary file object; got {type(source).__name__}."
        )
    if len(data) > lim.max_bytes:
        raise DatasetError(
            f"{name} is larger than the limit of {lim.max_bytes} bytes; upload a smaller file."
        )
    if not data:
        raise DatasetError(f"{name} is empty.")
    return data, name


def _dispatch(data: bytes, name: str, lim: Limits, resize_to) -> ImageDataset:
    low = name.lower()
    stem = posixpath.basename(low)
    for ext in (".gz", ".npz", ".npy", ".zip", ".idx", ".ubyte"):
        stem = stem.removesuffix(ext)
    if data[:2] == b"\x1f\x8b":  # gzip: an IDX file (.gz) is the only gzipped format
        return assemble_dataset(load_idx_gz(data, name, lim, resize_to), name=stem)
    if data[:6] == b"\x93NUMPY":
        return load_npy(data, name, stem, lim, resize_to)
    if is_idx(data[:4]):
        return assemble_dataset(load_plain_idx(data, name, lim, resize_to), name=stem)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        table = open_zip(data, lim, name)
        names = table.names
        if low.endswith(".npz") or (names and all(n.endswith(".npy") for n in names)):
            return load_npz(table, name, stem, lim, resize_to)
        c = read_image_zip(table, lim, name, resize_to)
        return assemble_dataset(
            c.images, name=stem, labels=c.labels, class_names=c.class_names,
            attributes=c.attributes, attribute_names=c.attribute_names,
        )
    if low.endswith((".npz", ".npy", ".zip", ".gz")):
        raise DatasetError(
            f"{name} is truncated or corrupt: its content does not match its extension."
        )
    raise DatasetError(
        f"unknown format for {name!r}; supported formats are " + ", ".join(SUPPORTED_FORMATS)
        + "."
    )
