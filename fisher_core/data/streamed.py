"""Dataset files on disk, decoded a block of images at a time (the streamed import of issue 20).

:func:`stream_file` opens what it can stream and says None for the rest (which
:func:`~fisher_core.data.load_file` reads in memory):

- a zip of PNG/JPEG images: the archive is memory-mapped, read only; the central directory,
  names, headers and side data (labels from folders, ``attributes.csv``) are read and checked
  exactly as :func:`~fisher_core.data.load_file` does, then the pixels come out in blocks of
  images (uint8 when they keep their 8-bit values), the mapped pages handed back
  (``madvise``) while probing and after each block;
- images in an ``.npy``, an ``.npz`` (labels, names and attributes read and checked first) or
  an IDX file (plain or gzipped), read from the file a block at a time: uint8 images kept at
  their size keep their stored values; other dtypes (floats, uint16, other integers, bool) and
  resized images are converted as :func:`~fisher_core.data.load_file` converts them, in two
  passes (:meth:`StreamedImages.scan` checks every value and learns the float range and
  whether the result is exactly 8-bit; :meth:`StreamedImages.blocks` then converts again).

Neither the compressed file nor the decoded images are ever held whole; the caller writes
each block out (see :func:`fisher_core.workspace.import_dataset`).
"""

from __future__ import annotations

import contextlib
import gzip
import math
import mmap
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .archive import ZipImages, open_zip, prepare_image_zip
from .arrays import side_arrays
from .convert import (
    ImagePlan,
    Scan,
    StreamSource,
    converted_blocks,
    plan_images,
    scan_converted,
    uint8_blocks,
)
from .dataset import ImageDataset
from .errors import DatasetError
from .idx import check_expanded_size, finish_stream, is_idx, read_header
from .images import decode_blocks
from .limits import Limits
from .loaders import _size
from .npyfile import npz_parts, read_npy_header
from .streams import gzip_errors, member_errors

__all__ = ["StreamedImages", "stream_file"]


@dataclass
class StreamedImages:
    """What a zip of images holds, its pixels still to decode with :meth:`blocks`.

    Attributes
    ----------
    n : int
    shape : (C, H, W)
    dtype : numpy.dtype
        uint8 (8-bit values) or float32 in [0, 1]; for array files to convert, known only
        after :meth:`scan`.
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
    _blocks: Callable[[int], Iterator[np.ndarray]] = field(repr=False)
    _close: Callable[[], None] = field(repr=False)
    _scan: Callable[[Callable[[float], None] | None], np.dtype] | None = field(
        default=None, repr=False)

    def __post_init__(self) -> None:
        # the checks an ImageDataset makes of its side data (binary attributes, a name per
        # class and per column...), with the same messages, on stand-in 2×2 images
        ds = ImageDataset(np.zeros((self.n, 1, 2, 2), np.float32), labels=self.labels,
                          class_names=self.class_names, attributes=self.attributes,
                          attribute_names=list(self.attribute_names or []), name=self.name)
        self.labels, self.class_names = ds.labels, ds.class_names
        self.attributes, self.attribute_names = ds.attributes, ds.attribute_names
        self.side = ds  # what the dataset will hold besides its images

    @property
    def needs_scan(self) -> bool:
        """Whether :meth:`scan` reads the file once before :meth:`blocks` (a conversion)."""
        return self._scan is not None

    def scan(self, progress: Callable[[float], None] | None = None) -> np.dtype:
        """Read the file once to check every value and fix :attr:`dtype` (images that need a
        conversion); a no-op for the rest. Call it before :meth:`blocks`.

        Raises
        ------
        DatasetError
            What :func:`~fisher_core.data.load_file` says of the same values.
        """
        if self._scan is not None:
            self.dtype = self._scan(progress)
        return self.dtype

    def blocks(self, block: int = 4096) -> Iterator[np.ndarray]:
        """(k, C, H, W) blocks of ``dtype``, in order (``block`` images at most: a zip of
        images; arrays come in blocks of a few MiB); closes the file at the end."""
        try:
            yield from self._blocks(block)
        finally:
            self.close()

    def summary(self) -> dict[str, Any]:
        """The summary :meth:`ImageDataset.summary` gives, without the pixels."""
        return {**self.side.summary(), "shape": list(self.shape)}

    def close(self) -> None:
        """Release the file (idempotent)."""
        self._close()


def stream_file(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                **limits: int) -> StreamedImages | None:
    """Open a dataset file for a streamed import (see the module docstring); None for what
    is not streamed (an IDX pair in a zip, column-major arrays, unknown formats):
    :func:`~fisher_core.data.load_file` reads those, and gives the errors of files it cannot
    read.

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
    if path.stat().st_size < 22:
        return None  # empty or tiny: load_file says what is wrong with it
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head[:6] == b"\x93NUMPY":
        return _stream_npy(path, lim, resize_to)
    if head[:2] == b"\x1f\x8b" or is_idx(head[:4]):
        return _stream_idx(path, lim, resize_to, gzipped=head[:2] == b"\x1f\x8b")
    if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    what = path.name
    try:
        table = open_zip(mapped, lim, what)
        if path.name.lower().endswith(".npz") or (
                table.names and all(n.endswith(".npy") for n in table.names)):
            return _stream_npz(table, mapped, what, lim, resize_to)
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

    def blocks(block: int) -> Iterator[np.ndarray]:
        for out in decode_blocks(prepared.members, plan, what, block):
            yield out
            mapped.madvise(mmap.MADV_DONTNEED)  # what was read stays on disk only

    return StreamedImages(n, (plan.channels, *plan.out_hw),
                          np.dtype(np.float32 if plan.how == "torch" else np.uint8),
                          y, cn, a, an or [], _stem(what), blocks,
                          lambda: _give_up(prepared.members, mapped))


def _stem(what: str) -> str:
    """The dataset's name from its file's, as :func:`~fisher_core.data.load_file` makes it."""
    stem = posixpath.basename(what.lower())
    for ext in (".gz", ".npz", ".npy", ".zip", ".idx", ".ubyte"):
        stem = stem.removesuffix(ext)
    return stem


def _array_stream(plan: ImagePlan, opener: Callable[[], Any], what: str, header_bytes: int,
                  side: tuple = (None, None, None, []),
                  finish: Callable[[Any], None] | None = None,
                  errors: Callable[[], Any] = contextlib.nullcontext,
                  release: Callable[[], None] | None = None) -> StreamedImages:
    """An image array read from ``opener()`` (positioned ``header_bytes`` in), in blocks:
    uint8 images kept at their size as stored, any other in two passes (scan, convert).

    ``finish(fh)`` runs after the last block; ``errors()`` is the context that names the
    stream's errors as load_file does; ``release()`` runs when the stream is closed.
    """
    handles: list = []
    as_stored = plan.dtype == np.uint8 and not plan.resize
    scanned: list[Scan] = []

    def source() -> StreamSource:
        fh = opener()
        handles.append(fh)
        fh.seek(header_bytes) if fh.seekable() else fh.read(header_bytes)
        return StreamSource(fh, plan.dtype, plan.shape, lambda got: _short(what, plan, got))

    def scan(progress: Callable[[float], None] | None) -> np.dtype:
        with errors():
            src = source()
            scanned[:] = [scan_converted(plan, src, progress)]
            if finish is not None:
                finish(src.fh)
        src.fh.close()
        handles.remove(src.fh)
        return scanned[0].dtype

    def blocks(block: int) -> Iterator[np.ndarray]:
        if not as_stored and not scanned:
            raise RuntimeError("call scan() before blocks(): these images are converted")
        with errors():
            src = source()
            yield from (uint8_blocks(plan, src) if as_stored
                        else converted_blocks(plan, src, scanned[0]))
            if finish is not None:
                finish(src.fh)

    def close() -> None:
        for fh in handles:
            fh.close()
        handles.clear()
        if release is not None:
            release()

    y, cn, a, an = side
    dtype = np.dtype(np.uint8 if as_stored else np.float32)
    return StreamedImages(plan.n, (plan.c, *plan.out_hw), dtype, y, cn, a, an or [],
                          _stem(what), blocks, close, None if as_stored else scan)


def _short(what: str, plan: ImagePlan, got: int) -> str:
    return (f"{what} is truncated or corrupt (its header says {plan.shape}, "
            f"{math.prod(plan.shape)} bytes, but it holds {got}).")


def _stream_npy(path: Path, lim: Limits, resize_to) -> StreamedImages | None:
    """An .npy of uint8 images, checked as :func:`~fisher_core.data.npyfile.load_npy` does."""
    what = path.name
    with open(path, "rb") as fh:
        hdr = read_npy_header(fh, what)
    if hdr.dtype.hasobject or hdr.fortran:
        return None
    if path.stat().st_size - hdr.offset < hdr.nbytes:
        return None  # load_file names the truncation
    plan = plan_images(hdr.shape, hdr.dtype, lim, resize_to)
    return _array_stream(plan, lambda: open(path, "rb"), what, hdr.offset)


def _stream_idx(path: Path, lim: Limits, resize_to, gzipped: bool) -> StreamedImages | None:
    """A plain or gzipped IDX file of uint8 images, checked as :mod:`.idx` does."""
    what = path.name
    opener = (lambda: gzip.open(path, "rb")) if gzipped else (lambda: open(path, "rb"))
    try:
        with gzip_errors(what), opener() as fh:
            hdr = read_header(fh, what, gzipped=gzipped)
    except DatasetError:
        return None  # load_file gives the same error, with its own checks first
    if len(hdr.dims) == 1:
        return None
    if gzipped:
        check_expanded_size(hdr, what, lim.max_uncompressed_bytes)
    elif path.stat().st_size - hdr.size != hdr.data_bytes:
        return None  # load_file names the mismatch
    plan = plan_images(hdr.dims, hdr.dtype, lim, resize_to)

    def finish(fh: Any) -> None:
        if gzipped:
            finish_stream(fh, hdr, what, lim.max_uncompressed_bytes)

    # decompression errors are named as load_file names them
    errors = (lambda: gzip_errors(what)) if gzipped else contextlib.nullcontext
    return _array_stream(plan, opener, what, hdr.size, finish=finish, errors=errors)


def _stream_npz(table: Any, mapped: mmap.mmap, what: str, lim: Limits,
                resize_to) -> StreamedImages | None:
    """The 'images' of an .npz (uint8, C order), after its side arrays were read and checked
    as :func:`~fisher_core.data.npyfile.load_npz` checks them."""
    plan, hdr, k, side = npz_parts(table, what, lim, resize_to)
    if hdr.fortran:
        _give_up(table, mapped)
        return None

    return _array_stream(plan, lambda: table.open(k), what, hdr.offset, side=side,
                         errors=lambda: member_errors(what, table.names[k]),
                         release=lambda: _give_up(table, mapped))


def _give_up(table: Any, mapped: mmap.mmap) -> None:
    """Close the map (when nothing views it any more; else the GC does)."""
    try:
        if table is not None:
            table.data.release()
        mapped.close()
    except BufferError:
        pass
