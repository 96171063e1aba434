"""``attributes.csv`` in a zip of images: one row of 0/1 attributes per image, streamed.

The file's size is bounded by the number of images before it is read; it is then parsed row
by row from the zip member, each row written straight into the (N, A) boolean output. A row
names its image by full path in the archive or by file name alone (the full path wins).
Rows naming files that are not in the archive are an error: they are usually a typo.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterator

import numpy as np

from .errors import DatasetError, some_names
from .streams import member_errors
from .zipmembers import MemberTable

__all__ = ["CSV_BYTES_PER_IMAGE", "CSV_HEADER_BYTES", "check_csv_size", "read_attributes"]

# A header of up to 64 KiB (hundreds of attribute names) and up to 1 KiB per image row: a
# long path and a few hundred 0/1 columns. More than that is not an attribute table.
CSV_HEADER_BYTES = 1 << 16
CSV_BYTES_PER_IMAGE = 1 << 10
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no", "-1"})


def check_csv_size(size: int, n_images: int, what: str) -> None:
    """Refuse an attributes.csv of ``size`` bytes (as declared: it is never read beyond
    that) if it is larger than ``n_images`` rows can need."""
    allowed = CSV_HEADER_BYTES + CSV_BYTES_PER_IMAGE * n_images
    if size > allowed:
        raise DatasetError(
            f"{what}: attributes.csv is {size} bytes, more than the {allowed} allowed for "
            f"{n_images} images ({CSV_HEADER_BYTES} plus {CSV_BYTES_PER_IMAGE} per image); "
            "keep one short row per image."
        )


def read_attributes(table: MemberTable, k: int, names: list[str], what: str
                    ) -> tuple[np.ndarray, list[str]]:
    """Parse attributes.csv (``filename,attr1,attr2,...``) for the images ``names``.

    Parameters
    ----------
    table, k : the archive's members and the index of its attributes.csv
    names : list of str
        Full paths of the images in the archive, in dataset order (N of them).
    what : str
        Name of the archive, for messages.

    Returns
    -------
    attributes : ndarray of shape (N, A), bool
    attribute_names : list of str, length A
    """
    check_csv_size(int(table.usize[k]), len(names), what)
    by_path = {n: i for i, n in enumerate(names)}
    by_base: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        by_base.setdefault(posixpath.basename(n), []).append(i)
    with member_errors(what, table.names[k]), table.open(k) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            return _parse(csv.reader(text), names, by_path, by_base, what)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"{what}: attributes.csv is not UTF-8 CSV ({exc}).") from None


def _parse(reader: Iterator[list[str]], names: list[str], by_path: dict[str, int],
           by_base: dict[str, list[int]], what: str) -> tuple[np.ndarray, list[str]]:
    rows = (r for r in reader if any(c.strip() for c in r))  # blank lines are skipped
    first = next(rows, None)
    bad_header = DatasetError(
        f"{what}: attributes.csv must start with a header 'filename,attr1,attr2,...' "
        "followed by one row per image."
    )
    if first is None or len(first) < 2 or first[0].strip().lower() != "filename":
        raise bad_header
    header = [c.strip() for c in first[1:]]
    out = np.zeros((len(names), len(header)), dtype=bool)
    # 0: no row yet, 1: set by file name, 2: set by full path (wins over a file name)
    source = np.zeros(len(names), dtype=np.int8)
    absent: list[str] = []
    n_absent = n_rows = 0
    for r in rows:
        n_rows += 1
        if len(r) != len(header) + 1:
            raise DatasetError(
                f"{what}: attributes.csv row {n_rows} ({r[0].strip()!r}) has {len(r)} fields; "
                f"the header has {len(header) + 1}."
            )
        vals = [_value(c, what) for c in r[1:]]
        key = r[0].strip()
        i = by_path.get(key)
        if i is not None:
            out[i], source[i] = vals, 2
        same_name = by_base.get(key, ())
        for j in same_name:
            if source[j] < 2:
                out[j], source[j] = vals, 1
        if i is None and not same_name:
            if len(absent) < 5:
                absent.append(key)
            n_absent += 1
    if n_rows == 0:
        raise bad_header
    if n_absent:
        raise DatasetError(
            f"{what}: attributes.csv has {n_absent} row(s) naming files that are not images "
            f"in the archive: {some_names(absent, n_absent)}; fix the names or remove the rows."
        )
    missing = np.flatnonzero(source == 0)
    if missing.size:
        more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
        raise DatasetError(
            f"{what}: attributes.csv has no row for image {names[missing[0]]!r}{more}; "
            "add one row per image."
        )
    return out, header


def _value(cell: str, what: str) -> bool:
    c = cell.strip().lower()
    if c in _TRUE:
        return True
    if c not in _FALSE:
        raise DatasetError(f"{what}: attributes.csv value {c!r} is not 0/1 or true/false.")
    return False
