"""Zip archives of images (ImageFolder convention or flat, optional attributes.csv), or of an
images + labels IDX pair. Members are sorted out in one pass (time linear in their number);
what they hold is checked from headers before anything large is decoded.
"""

from __future__ import annotations

import gzip
import posixpath
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .attributes import check_csv_size, read_attributes
from .convert import ImagePlan, StreamSource, convert, plan_images
from .errors import DatasetError
from .idx import IdxHeader, finish_stream, read_header
from .images import ImagesPlan, decode_images, probe_images
from .limits import Limits
from .streams import gzip_errors, member_errors, read_up_to
from .zipmembers import MemberTable

__all__ = ["ZipContent", "ZipImages", "open_zip", "prepare_image_zip", "read_image_zip"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass
class ZipContent:
    """What a zip held: float32 (N, C, H, W) images in [0, 1] and their side arrays."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    attributes: np.ndarray | None
    attribute_names: list[str] | None


def open_zip(data: bytes, limits: Limits, what: str) -> MemberTable:
    """List a zip's members (count checked first) and check their declared sizes, names,
    encryption and compression before any is read.

    The declared sizes are a true bound: a member is never read beyond its declared size
    (and fails its CRC check if its data was longer).
    """
    try:
        table = MemberTable.read_directory(data, limits.max_entries, what)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{what} is not a valid zip archive ({exc}); re-create it.") from None
    total = int(table.usize.sum())
    if total > limits.max_uncompressed_bytes:
        raise DatasetError(
            f"{what} would expand to {total} bytes, more than the limit of "
            f"{limits.max_uncompressed_bytes}; it may be a zip bomb. Upload a smaller archive."
        )
    for name in table.names:
        _check_member_name(name, what)
    # a local header (30 bytes) and the compressed data must lie inside the archive
    outside = np.flatnonzero((table.offset < 0)
                             | (table.offset + 30 + table.csize > len(data)))
    if outside.size:
        raise DatasetError(
            f"{what} is truncated or corrupt (member {table.names[outside[0]]!r} lies outside "
            "the archive); re-create it."
        )
    encrypted = np.flatnonzero(table.flags & 0x1)
    if encrypted.size:
        raise DatasetError(
            f"{what}: member {table.names[encrypted[0]]!r} is encrypted; upload an archive "
            "without a password."
        )
    # only stored and deflated data are read, in bounded steps (no bzip2, LZMA, ...)
    other = np.flatnonzero(~np.isin(table.method, _METHODS))
    if other.size:
        k = int(other[0])
        raise DatasetError(
            f"{what}: member {table.names[k]!r} uses a compression FisherLab does not read "
            f"(method {table.method[k]}); re-create the archive with the standard (deflate) "
            "compression."
        )
    return table


def _check_member_name(name: str, what: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(
            f"{what} contains the unsafe path {name!r} (absolute or with '..'); "
            "re-create the archive with relative paths."
        )


def _is_junk(name: str) -> bool:
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base in _JUNK or base.startswith("._")


@dataclass
class ZipImages:
    """A zip of images, checked from headers, ready to decode (see :func:`prepare_image_zip`)."""

    members: MemberTable
    plan: ImagesPlan
    labels: np.ndarray | None
    class_names: list[str] | None
    attributes: np.ndarray | None
    attribute_names: list[str] | None


def read_image_zip(table: MemberTable, limits: Limits, what: str,
                   resize_to: tuple[int, int] | None) -> ZipContent:
    """Decode a zip of PNG/JPEG images (or an images+labels IDX pair) within ``limits``."""
    prepared = prepare_image_zip(table, limits, what, resize_to)
    if isinstance(prepared, ZipContent):
        return prepared
    z = prepared
    stacked = decode_images(z.members, z.plan, what)
    return ZipContent(stacked, z.labels, z.class_names, z.attributes, z.attribute_names)


def prepare_image_zip(table: MemberTable, limits: Limits, what: str,
                      resize_to: tuple[int, int] | None, *, eager: bool = True,
                      release: Callable[[], None] | None = None) -> ZipImages | ZipContent:
    """Sort a zip's members out, read the images' headers and the side data (labels from
    folders, attributes.csv), all checked against ``limits``; the pixels are left to decode.

    An images + labels IDX pair is read whole (a :class:`ZipContent`). ``eager``: keep the
    pixels of small images read whole while probing, ``release`` (see :func:`probe_images`).
    """
    files = [k for k, n in enumerate(table.names) if not n.endswith("/") and not _is_junk(n)]
    if any(_looks_idx(table.names[k]) for k in files):
        return _read_idx_pair(table, files, limits, what, resize_to)
    images, csvs, others = [], [], []
    for k in files:  # one pass: each member is looked at once
        name = table.names[k]
        if posixpath.basename(name).lower() == "attributes.csv":
            csvs.append(k)
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            images.append(k)
        else:
            others.append(name)
    if others:
        raise DatasetError(
            f"{what} contains {len(others)} file(s) that are not PNG/JPEG images, e.g. "
            f"{others[0]!r}; remove them (only images and an optional attributes.csv)."
        )
    if not images:
        raise DatasetError(f"{what} contains no PNG or JPEG images.")
    if len(images) > limits.max_images:
        raise DatasetError(
            f"{what} holds {len(images)} images, more than the limit of {limits.max_images}."
        )
    images.sort(key=table.names.__getitem__)
    members = table.subset(images)
    if csvs:
        check_csv_size(int(table.usize[csvs[0]]), len(members), what)  # before any image
    labels, class_names = _folder_labels(members.names, what)
    plan = probe_images(members, what, limits, resize_to, eager=eager, release=release)
    attributes, attribute_names = None, None
    if csvs:  # parsed before the pixels are decoded: a bad table fails fast
        attributes, attribute_names = read_attributes(table, csvs[0], members.names, what)
    return ZipImages(members, plan, labels, class_names, attributes, attribute_names)


def _looks_idx(name: str) -> bool:
    low = name.lower()
    return "ubyte" in low or low.endswith((".idx", ".idx.gz")) or "-idx" in low


@contextmanager
def _idx_stream(table: MemberTable, k: int) -> Iterator[tuple[BinaryIO, bool]]:
    """The member's data stream, through gzip if it is gzipped; and whether it is."""
    with table.open(k) as fh:
        gzipped = read_up_to(fh, 2) == b"\x1f\x8b"
    with table.open(k) as fh:
        if not gzipped:
            yield fh, False
            return
        with gzip.GzipFile(fileobj=fh) as gz:
            yield gz, True


def _read_idx_pair(table: MemberTable, files: list[int], limits: Limits, what: str,
                   resize_to: tuple[int, int] | None) -> ZipContent:
    idx_files = [k for k in files if _looks_idx(table.names[k])]
    extra = [table.names[k] for k in files if not _looks_idx(table.names[k])]
    if extra:
        raise DatasetError(f"{what} mixes IDX files with other files, e.g. {extra[0]!r}.")
    headers: list[tuple[int, IdxHeader]] = []
    expanded = 0
    for k in idx_files:
        name = f"{what}/{table.names[k]}"
        with member_errors(what, table.names[k]), gzip_errors(name), \
                _idx_stream(table, k) as (fh, gzipped):
            hdr = read_header(fh, name, gzipped=gzipped)
        if not gzipped and int(table.usize[k]) - hdr.size != hdr.data_bytes:
            raise DatasetError(hdr.mismatch(name, int(table.usize[k]) - hdr.size))
        expanded += hdr.size + hdr.data_bytes
        if expanded > limits.max_uncompressed_bytes:  # from the headers, before any data
            raise DatasetError(
                f"{what} decompresses to more than {limits.max_uncompressed_bytes} bytes; it "
                "may be a decompression bomb. Upload a smaller file or raise "
                "max_uncompressed_bytes."
            )
        headers.append((k, hdr))
    imgs = [(k, h) for k, h in headers if len(h.dims) >= 3]
    labs = [(k, h) for k, h in headers if len(h.dims) == 1]
    if len(imgs) != 1 or len(labs) > 1 or len(headers) != len(imgs) + len(labs):
        raise DatasetError(
            f"{what} must hold one images IDX file (3-D) and at most one labels IDX file "
            f"(1-D); found arrays of shapes {[h.dims for _, h in headers]}."
        )
    k, hdr = imgs[0]
    plan = plan_images(hdr.dims, hdr.dtype, limits, resize_to)
    labels = None
    if labs:
        lk, lhdr = labs[0]
        if lhdr.dims != (plan.n,):  # checked before the images are read
            raise DatasetError(
                f"labels must hold one entry per image ({plan.n}); got shape {lhdr.dims}."
            )
        labels = _read_idx_data(table, lk, lhdr, what, limits, None)
    images = _read_idx_data(table, k, hdr, what, limits, plan)
    return ZipContent(images, labels, None, None, None)


def _read_idx_data(table: MemberTable, k: int, hdr: IdxHeader, what: str, limits: Limits,
                   plan: ImagePlan | None) -> np.ndarray:
    """The data of an IDX member: converted images if ``plan`` is given, else the array."""
    name = f"{what}/{table.names[k]}"
    with member_errors(what, table.names[k]), gzip_errors(name), \
            _idx_stream(table, k) as (fh, gzipped):
        read_header(fh, name, gzipped=gzipped)
        if plan is None:
            data = read_up_to(fh, hdr.data_bytes)
            if len(data) < hdr.data_bytes:
                raise DatasetError(hdr.mismatch(name, len(data)))
            out = np.frombuffer(data, hdr.dtype).reshape(hdr.dims)
        else:
            out = convert(plan, StreamSource(fh, hdr.dtype, hdr.dims,
                                             lambda got: hdr.mismatch(name, got)))
        if gzipped:
            finish_stream(fh, hdr, name, limits.max_uncompressed_bytes)
    return out


def _folder_labels(names: list[str], what: str) -> tuple[np.ndarray | None, list[str] | None]:
    """ImageFolder convention: one sub-folder per class, after a common top folder."""
    dirs = [posixpath.dirname(n).split("/") if posixpath.dirname(n) else [] for n in names]
    common = 0
    while all(len(d) > common for d in dirs) and len({d[common] for d in dirs}) == 1:
        common += 1
    rest = [d[common:] for d in dirs]
    depths = {len(r) for r in rest}
    if depths == {0}:
        return None, None
    if depths != {1}:
        raise DatasetError(
            f"{what}: images must be either all in one folder, or in exactly one sub-folder "
            "per class (e.g. cat/1.png, dog/2.png); found a mix of depths."
        )
    classes = sorted({r[0] for r in rest})
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[r[0]] for r in rest], dtype=np.int64), classes

