"""A zip of images on disk, decoded a block at a time (the streamed import of issue 20).

The archive is memory-mapped, read only, rather than read into memory; the central
directory, names, headers and side data (labels from folders, ``attributes.csv``) are read
and checked exactly as :func:`~fisher_core.data.load_file` does, then the pixels come out in
blocks of images: uint8 when they keep their 8-bit values. After each block the mapped pages
are handed back (``madvise``), so neither the compressed archive nor the decoded images are
ever held whole; the caller writes each block out (see
:func:`fisher_core.workspace.import_dataset`).
"""

from __future__ import annotations

import mmap
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .archive import ZipImages, open_zip, prepare_image_zip
from .arrays import side_arrays
from .errors import DatasetError
from .images import decode_blocks
from .limits import Limits
from .loaders import _size

__all__ = ["StreamedImages", "stream_image_zip"]


@dataclass
class StreamedImages:
    """What a zip of images holds, its pixels still to decode with :meth:`blocks`.

    Attributes
    ----------
    n : int
    shape : (C, H, W)
    dtype : numpy.dtype
        uint8 (8-bit values kept) or float32 in [0, 1] (resized).
    labels, class_names, attributes, attribute_names
        Validated side data, as in an :class:`~fisher_core.data.ImageDataset`.
    name : str
        The file's stem.
    """

    n: int
    shape: tuple[int, int, int]
    dtype: np.dtype
    labels: np.ndarray | None
    class_names: list[str] | None
    attributes: np.ndarray | None
    attribute_names: list[str]
    name: str
    _zip: ZipImages = field(repr=False)
    _map: Any = field(repr=False)
    _what: str = field(repr=False)

    def blocks(self, block: int = 4096) -> Iterator[np.ndarray]:
        """(k, C, H, W) blocks of ``dtype``, in order; closes the archive at the end."""
        try:
            for out in decode_blocks(self._zip.members, self._zip.plan, self._what, block):
                yield out
                self._map.madvise(mmap.MADV_DONTNEED)  # what was read stays on disk only
        finally:
            self.close()

    def summary(self) -> dict[str, Any]:
        """The summary :meth:`ImageDataset.summary` gives, without the pixels."""
        return {"name": self.name, "n": self.n, "shape": list(self.shape), "levels": None,
                "class_names": self.class_names, "attribute_names": self.attribute_names,
                "class_counts": None if self.labels is None else np.bincount(
                    self.labels, minlength=len(self.class_names or [])).tolist(),
                "attribute_counts": None if self.attributes is None else
                self.attributes.sum(axis=0).astype(int).tolist()}

    def close(self) -> None:
        """Release the archive (idempotent)."""
        if self._map.closed:
            return
        view, self._zip.members.data = self._zip.members.data, memoryview(b"")
        try:
            view.release()
            self._map.close()
        except BufferError:  # a view of it is still alive somewhere: the GC closes it
            pass


def stream_image_zip(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                     **limits: int) -> StreamedImages | None:
    """Open a zip of PNG/JPEG images for a streamed import; None if it is another kind of
    file (an .npz, an IDX pair in a zip, not a zip): those load with
    :func:`~fisher_core.data.load_file`.

    Parameters
    ----------
    path : path-like
    size : int or (int, int), optional
        Resize every image to (H, W), as :func:`~fisher_core.data.load_file` does.
    **limits : int
        :class:`~fisher_core.data.Limits` overrides; checked from headers, as in
        :func:`~fisher_core.data.load_file`.

    Raises
    ------
    DatasetError
        For every bad input, with a message that says what to do.
    """
    lim, resize_to = Limits.from_kwargs(**limits), _size(size)
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no such file: {str(path)!r}.")
    if path.stat().st_size > lim.max_bytes:
        raise DatasetError(f"{path.name} is {path.stat().st_size} bytes, more than the limit of "
                           f"{lim.max_bytes}; upload a smaller file or raise max_bytes.")
    if path.name.lower().endswith(".npz") or path.stat().st_size < 22:
        return None
    with open(path, "rb") as fh:
        if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            return None
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    what = path.name
    try:
        table = open_zip(mapped, lim, what)
        if table.names and all(n.endswith(".npy") for n in table.names):
            return _give_up(table, mapped)
        prepared = prepare_image_zip(table, lim, what, resize_to, eager=False,
                                     release=lambda: mapped.madvise(mmap.MADV_DONTNEED))
        mapped.madvise(mmap.MADV_DONTNEED)
    except DatasetError:
        _give_up(locals().get("table"), mapped)
        raise
    except Exception as exc:  # as load_file: only DatasetError escapes
        _give_up(locals().get("table"), mapped)
        raise DatasetError(f"could not read {what}: {type(exc).__name__}: {exc}. Check that it "
                           "is a zip of PNG/JPEG images.") from None
    if not isinstance(prepared, ZipImages):  # an IDX pair, read whole: load_file's job
        return _give_up(table, mapped)
    n, plan = len(prepared.members), prepared.plan
    y, cn, a, an = side_arrays(n, labels=prepared.labels, class_names=prepared.class_names,
                               attributes=prepared.attributes,
                               attribute_names=prepared.attribute_names)
    stem = posixpath.basename(what.lower()).removesuffix(".zip")
    return StreamedImages(n, (plan.channels, *plan.out_hw),
                          np.dtype(np.float32 if plan.how == "torch" else np.uint8),
                          y, cn, a, an or [], stem, prepared, mapped, what)


def _give_up(table: Any, mapped: mmap.mmap) -> None:
    """Close the map (when nothing views it any more; else the GC does)."""
    try:
        if table is not None:
            table.data.release()
        mapped.close()
    except BufferError:
        pass
