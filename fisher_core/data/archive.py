"""Zip archives of images (ImageFolder convention or flat, optional attributes.csv)."""

from __future__ import annotations

import csv
import io
import posixpath
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import DatasetError
from .idx import gunzip_limited, read_idx
from .limits import Limits

__all__ = ["open_zip", "read_image_zip", "ZipContent"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass
class ZipContent:
    """What a zip of images held, before validation into an ImageDataset."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    attributes: np.ndarray | None
    attribute_names: list[str] | None


def open_zip(data: bytes, limits: Limits, what: str) -> zipfile.ZipFile:
    """Open a zip and check entry count, declared sizes and member names before any read."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{what} is not a valid zip archive ({exc}); re-create it.") from None
    if len(infos) > limits.max_entries:
        raise DatasetError(
            f"{what} holds {len(infos)} entries, more than the limit of {limits.max_entries}."
        )
    total = sum(i.file_size for i in infos)
    if total > limits.max_uncompressed_bytes:
        raise DatasetError(
            f"{what} would expand to {total} bytes, more than the limit of "
            f"{limits.max_uncompressed_bytes}; it may be a zip bomb. Upload a smaller archive."
        )
    for info in infos:
        _check_member_name(info.filename, what)
    return zf


def _check_member_name(name: str, what: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(
            f"{what} contains the unsafe path {name!r} (absolute or with '..'); "
            "re-create the archive with relative paths."
        )


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int], what: str) -> bytes:
    """Read one member, never more than the remaining uncompressed budget (sizes can lie)."""
    try:
        with zf.open(info) as fh:
            out = fh.read(budget[0] + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DatasetError(f"{what}: member {info.filename!r} is corrupt ({exc}).") from None
    if len(out) > budget[0]:
        raise DatasetError(
            f"{what} expands beyond the limit of uncompressed bytes; it may be a zip bomb."
        )
    budget[0] -= len(out)
    return out


def _is_junk(name: str) -> bool:
    return name.startswith("__MACOSX/") or posixpath.basename(name) in _JUNK \
        or posixpath.basename(name).startswith("._")


def read_image_zip(zf: zipfile.ZipFile, limits: Limits, what: str,
                   resize_to: tuple[int, int] | None) -> ZipContent:
    """Decode a zip of PNG/JPEG images (or an images+labels IDX pair)."""
    files = [i for i in zf.infolist() if not i.is_dir() and not _is_junk(i.filename)]
    budget = [limits.max_uncompressed_bytes]
    idx_files = [i for i in files if _looks_idx(i.filename)]
    if idx_files:
        return _read_idx_pair(zf, idx_files, files, budget, limits, what)
    csv_info = [i for i in files if posixpath.basename(i.filename).lower() == "attributes.csv"]
    images = [i for i in files if i.filename.lower().endswith(IMAGE_EXTENSIONS)]
    others = [i.filename for i in files if i not in images and i not in csv_info]
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
    images.sort(key=lambda i: i.filename)
    labels, class_names = _folder_labels([i.filename for i in images], what)
    arrays = [_decode(read_member(zf, i, budget, what), i.filename, limits) for i in images]
    stacked = _stack(arrays, [i.filename for i in images], resize_to, what)
    attributes, attribute_names = None, None
    if csv_info:
        text = read_member(zf, csv_info[0], budget, what)
        attributes, attribute_names = _read_attributes(text, [i.filename for i in images], what)
    return ZipContent(stacked, labels, class_names, attributes, attribute_names)


def _looks_idx(name: str) -> bool:
    low = name.lower()
    return "ubyte" in low or low.endswith((".idx", ".idx.gz")) or "-idx" in low


def _read_idx_pair(zf, idx_files, files, budget, limits, what) -> ZipContent:
    extra = [i.filename for i in files if i not in idx_files]
    if extra:
        raise DatasetError(f"{what} mixes IDX files with other files, e.g. {extra[0]!r}.")
    arrays = []
    for info in idx_files:
        raw = read_member(zf, info, budget, what)
        if raw[:2] == b"\x1f\x8b":
            raw = gunzip_limited(raw, budget[0], f"{what}/{info.filename}")
        arrays.append(read_idx(raw, f"{what}/{info.filename}"))
    imgs = [a for a in arrays if a.ndim >= 3]
    labs = [a for a in arrays if a.ndim == 1]
    if len(imgs) != 1 or len(labs) > 1 or len(arrays) != len(imgs) + len(labs):
        raise DatasetError(
            f"{what} must hold one images IDX file (3-D) and at most one labels IDX file "
            f"(1-D); found arrays of shapes {[a.shape for a in arrays]}."
        )
    return ZipContent(imgs[0], labs[0] if labs else None, None, None, None)


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


def _decode(data: bytes, name: str, limits: Limits) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size  # read from the header, before decoding any pixel
            if w * h > limits.max_image_pixels:
                raise DatasetError(
                    f"image {name!r} is {w}×{h} = {w * h} pixels, more than the limit of "
                    f"{limits.max_image_pixels} (decompression-bomb guard); shrink it."
                )
            im.load()
            mode = "RGB" if im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA") else "L"
            if im.mode == "P" and "transparency" not in im.info:
                mode = "RGB"
            arr = np.asarray(im.convert(mode))
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"image {name!r} could not be decoded ({exc}); re-save it.") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - caught by the size check
        raise DatasetError(f"image {name!r} is too large ({exc}).") from None
    return arr if arr.ndim == 3 else arr[:, :, None]  # (H, W, C)


def _stack(arrays: list[np.ndarray], names: list[str], resize_to, what: str) -> np.ndarray:
    channels = max(a.shape[2] for a in arrays)
    if channels == 3:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        if resize_to is None:
            first = arrays[0].shape[:2]
            odd = next(n for n, a in zip(names, arrays, strict=True) if a.shape[:2] != first)
            raise DatasetError(
                f"{what}: images have different sizes (e.g. {names[0]!r} is {first}, {odd!r} "
                "differs); choose a common size to resize them to."
            )
        from PIL import Image

        h, w = resize_to
        arrays = [
            np.asarray(Image.fromarray(a.squeeze(-1) if a.shape[2] == 1 else a).resize(
                (w, h), Image.BILINEAR)).reshape(h, w, -1)
            for a in arrays
        ]
    return np.stack(arrays)  # (N, H, W, C) uint8


def _read_attributes(text: bytes, names: list[str], what: str) -> tuple[np.ndarray, list[str]]:
    try:
        rows = list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{what}: attributes.csv is not UTF-8 CSV ({exc}).") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2 or len(rows[0]) < 2 or rows[0][0].strip().lower() != "filename":
        raise DatasetError(
            f"{what}: attributes.csv must start with a header 'filename,attr1,attr2,...' "
            "followed by one row per image."
        )
    header = [c.strip() for c in rows[0][1:]]
    table: dict[str, list[bool]] = {}
    truthy, falsy = {"1", "true", "yes"}, {"0", "false", "no", "-1"}
    for r in rows[1:]:
        if len(r) != len(header) + 1:
            raise DatasetError(f"{what}: attributes.csv row {r!r} has the wrong number of fields.")
        vals = []
        for c in r[1:]:
            c = c.strip().lower()
            if c not in truthy | falsy:
                raise DatasetError(f"{what}: attributes.csv value {c!r} is not 0/1 or true/false.")
            vals.append(c in truthy)
        table[r[0].strip()] = vals
    out = []
    for n in names:
        key = n if n in table else posixpath.basename(n)
        if key not in table:
            raise DatasetError(f"{what}: attributes.csv has no row for image {n!r}.")
        out.append(table[key])
    return np.array(out, dtype=bool), header
