""".npy and .npz uploads, read header first; nothing is ever unpickled.

Every array's shape and dtype come from its .npy header (for an .npz, read from the zip
member's stream) and are checked against the limits before its data is read. The images are
then converted block by block into the output (see :mod:`.convert`); the few small side
arrays (labels, names, attributes) are bounded by a per-image allowance.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .arrays import assemble_dataset, side_arrays
from .convert import ArraySource, StreamSource, convert, plan_images
from .dataset import ImageDataset
from .errors import DatasetError, some_names
from .limits import Limits
from .streams import member_errors
from .zipmembers import MemberTable

__all__ = ["NPZ_KEYS", "SIDE_BYTES_PER_IMAGE", "SIDE_HEADER_BYTES", "NpyHeader", "load_npy",
           "load_npz", "npz_parts", "read_npy_header"]

NPZ_KEYS = {"images", "labels", "class_names", "attributes", "attribute_names"}
# Each side array may take this much: generous for labels, names and a few hundred attribute
# columns, yet proportional to the images, so a small upload cannot declare a huge one.
SIDE_HEADER_BYTES = 1 << 16
SIDE_BYTES_PER_IMAGE = 4096
_MAX_HEADER = 10_000  # numpy's own default bound on an .npy header


@dataclass(frozen=True)
class NpyHeader:
    """What an .npy header declares; ``offset`` is where the data starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(fh: BinaryIO, what: str) -> NpyHeader:
    """Read the magic string and header of an .npy stream (the data is not touched).

    Raises
    ------
    DatasetError
        For a truncated or corrupt header, or an unknown format version.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
        else:
            raise DatasetError(
                f"{what} uses .npy format version {version}, which FisherLab does not read; "
                "save it with np.save or np.savez."
            )
    except (DatasetError, zlib.error, zipfile.BadZipFile):
        raise  # the stream's own errors, named by the caller (see streams.member_errors)
    except Exception as exc:  # numpy parses the header text: many error types are possible
        raise DatasetError(f"{what} is truncated or corrupt ({exc}).") from None
    if any(d < 0 for d in shape):
        raise DatasetError(f"{what} is truncated or corrupt (its shape {shape} is negative).")
    return NpyHeader(tuple(shape), bool(fortran), dtype, fh.tell())


def load_npy(data: bytes, name: str, stem: str, limits: Limits,
             resize_to: tuple[int, int] | None) -> ImageDataset:
    """An .npy upload of images, converted from a view of ``data`` (never copied whole)."""
    hdr = read_npy_header(io.BytesIO(data), name)
    if hdr.dtype.hasobject:
        raise DatasetError(
            f"{name} holds Python objects (a pickled array), which FisherLab never loads "
            "for safety; save a numeric array instead (np.save with a numeric dtype)."
        )
    if len(data) - hdr.offset < hdr.nbytes:
        raise DatasetError(
            f"{name} is truncated or corrupt (its header says {hdr.shape} {hdr.dtype}, "
            f"{hdr.nbytes} bytes of data, but it holds {len(data) - hdr.offset})."
        )
    plan = plan_images(hdr.shape, hdr.dtype, limits, resize_to)
    x = np.frombuffer(data, dtype=hdr.dtype, count=math.prod(hdr.shape), offset=hdr.offset)
    x = x.reshape(hdr.shape, order="F" if hdr.fortran else "C")
    return assemble_dataset(convert(plan, ArraySource(x)), name=stem)


def load_npz(table: MemberTable, name: str, stem: str, limits: Limits,
             resize_to: tuple[int, int] | None) -> ImageDataset:
    """An .npz upload: every header is checked before any array is read."""
    plan, hdr, k, (y, cn, a, an) = npz_parts(table, name, limits, resize_to)
    with member_errors(name, table.names[k]), table.open(k) as fh:
        if hdr.fortran:  # column-major: not readable image by image; read it whole
            x = np.lib.format.read_array(fh, allow_pickle=False, max_header_size=_MAX_HEADER)
            source: ArraySource | StreamSource = ArraySource(x)
        else:
            read_npy_header(fh, f"{name}: array 'images'")
            source = StreamSource(fh, hdr.dtype, hdr.shape, lambda got: (
                f"{name}: array 'images' is truncated or corrupt (its header says {hdr.shape}, "
                f"{hdr.nbytes} bytes, but it holds {got})."))
        images = convert(plan, source)
    return assemble_dataset(images, name=stem, labels=y, class_names=cn, attributes=a,
                            attribute_names=an)


def npz_parts(table: MemberTable, name: str, limits: Limits,
              resize_to: tuple[int, int] | None):
    """An .npz's checked plan: (plan of 'images', its header, its member index, and the
    validated side arrays (labels, class_names, attributes, attribute_names)); every header
    is checked, and the side arrays read, before any image is."""
    members = {_key(n): k for k, n in enumerate(table.names) if not n.endswith("/")}
    if "images" not in members:
        raise DatasetError(
            f"{name} has no 'images' array (found {some_names(sorted(members))}); save it "
            "with np.savez(path, images=..., labels=...)."
        )
    unknown = sorted(set(members) - NPZ_KEYS)
    if unknown:
        raise DatasetError(
            f"{name} has unexpected arrays {some_names(unknown)}; allowed are "
            f"{sorted(NPZ_KEYS)}."
        )
    headers = {key: _member_header(table, k, name, key) for key, k in members.items()}
    plan = plan_images(headers["images"].shape, headers["images"].dtype, limits, resize_to)
    allowance = SIDE_HEADER_BYTES + SIDE_BYTES_PER_IMAGE * plan.n
    for key, hdr in headers.items():
        if key != "images" and hdr.nbytes > allowance:
            raise DatasetError(
                f"{name}: array {key!r} takes {hdr.nbytes} bytes ({hdr.shape} {hdr.dtype}), "
                f"more than the {allowance} allowed with {plan.n} images; it should hold one "
                "short entry per image (or per class)."
            )
    side = {key: _read_side(table, k, name, key) for key, k in members.items()
            if key != "images"}
    # Labels and attributes are checked against N before the (large) images are read.
    return plan, headers["images"], members["images"], side_arrays(plan.n, **side)


def _key(member: str) -> str:
    return member[:-4] if member.endswith(".npy") else member


def _member_header(table: MemberTable, k: int, name: str, key: str) -> NpyHeader:
    with member_errors(name, table.names[k]), table.open(k) as fh:
        hdr = read_npy_header(fh, f"{name}: array {key!r}")
    if hdr.dtype.hasobject:
        raise DatasetError(
            f"{name}: array {key!r} holds Python objects (pickled), which FisherLab never "
            "loads for safety; save numeric or string arrays instead."
        )
    size = int(table.usize[k])
    if size < hdr.offset + hdr.nbytes:  # before anything is allocated for it
        raise DatasetError(
            f"{name}: array {key!r} is truncated or corrupt (its header says {hdr.shape} "
            f"{hdr.dtype}, {hdr.nbytes} bytes, but it holds {size - hdr.offset})."
        )
    return hdr


def _read_side(table: MemberTable, k: int, name: str, key: str) -> np.ndarray:
    try:
        with member_errors(name, table.names[k]), table.open(k) as fh:
            # numpy reads a non-file stream in bounded chunks into one preallocated array
            return np.lib.format.read_array(fh, allow_pickle=False,
                                            max_header_size=_MAX_HEADER)
    except ValueError as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{name}: array {key!r} is truncated or corrupt ({exc}).") from None
