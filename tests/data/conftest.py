"""Builders of valid (and deliberately broken) dataset files, and a memory probe, shared by
the loader tests."""

from __future__ import annotations

import functools
import gzip
import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from fisher_core.data import DatasetError, load_builtin, load_file


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(arr, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def idx_bytes(arr: np.ndarray, gz: bool = False) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    code = codes[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    return gzip.compress(data) if gz else data


def small_images(n: int = 6, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


# ------------------------------------------------ memory and archive helpers (issue 14)
def traced_peak(fn, *args, **kwargs):
    """Run ``fn``; return what it returned (or the DatasetError it raised) and the peak of
    memory it allocated, in bytes, as traced by tracemalloc."""
    tracemalloc.start()
    try:
        try:
            result = fn(*args, **kwargs)
        except DatasetError as exc:
            result = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def npz_compressed_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@functools.cache
def blank_png(side: int) -> bytes:
    """A black side×side grey PNG: a few hundred bytes that decode to side² bytes."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_deflate(data: bytes, member: str) -> bytes:
    """``data`` (a zip) with the first byte of ``member``'s deflate stream set to an invalid
    block type, so that zlib fails with "Error -3 while decompressing data"."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                      info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    return data[:start] + b"\xff" + data[start + 1:]


def zip64_directory(data: bytes) -> bytes:
    """``data`` (a zip) with every central directory entry in ZIP64 form, as tools write
    members over 4 GiB: sizes and offset 0xFFFFFFFF, the values in a ZIP64 extra field."""
    eocd = data.rindex(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack("<2xH2L", data[eocd + 8: eocd + 20])
    p, entries = cd_offset, []
    for _ in range(count):
        fixed = bytearray(data[p: p + 46])
        csize, usize, n_name, n_extra, n_comment = struct.unpack("<2L3H", fixed[20:34])
        offset = struct.unpack("<L", fixed[42:46])[0]
        name = data[p + 46: p + 46 + n_name]
        rest = data[p + 46 + n_name: p + 46 + n_name + n_extra + n_comment]
        fixed[20:28] = struct.pack("<2L", 0xFFFFFFFF, 0xFFFFFFFF)
        fixed[30:32] = struct.pack("<H", n_extra + 28)
        fixed[42:46] = struct.pack("<L", 0xFFFFFFFF)
        zip64 = struct.pack("<2H3Q", 1, 24, usize, csize, offset)
        entries.append(bytes(fixed) + name + zip64 + rest)
        p += 46 + n_name + n_extra + n_comment
    directory = b"".join(entries)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory),
                      cd_offset, 0)
    return data[:cd_offset] + directory + end


@pytest.fixture(scope="session")
def warm_loaders():
    # Import-time and first-use allocations (PIL plugins, torch) must not count as a load's.
    x = small_images(2, 6, 6)
    load_file(zip_bytes({"a.png": png_bytes(x[0]), "b.png": png_bytes(x[1])}), filename="w.zip")
    load_file(zip_bytes({"a.png": png_bytes(x[0]), "b.png": png_bytes(x[1])}), filename="w.zip",
              size=3)
    load_file(npz_compressed_bytes(images=x), filename="w.npz", size=3)
    load_file(idx_bytes(x, gz=True), filename="w-idx3-ubyte.gz")
    load_builtin("faces", n=2, size=16)
