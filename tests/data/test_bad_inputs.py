"""The bad-input corpus: every case raises DatasetError with a message that says what to do."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
from conftest import idx_bytes, npy_bytes, npz_bytes, png_bytes, small_images, zip_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fisher_core.data import DatasetError, load_file

X = small_images(4)


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * (3 * 2**20))  # 3 MiB of zeros, a few KiB compressed
    return buf.getvalue()


def _big_png_header() -> bytes:
    # a real PNG whose header claims 5000×5000: a decompression bomb for our limits
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG")
    return buf.getvalue()


def _truncated_png_zip() -> bytes:
    return zip_bytes({"a.png": png_bytes(X[0])[:40], "b.png": png_bytes(X[1])})


def _many_entries_zip() -> bytes:
    return zip_bytes({f"{i}.png": png_bytes(X[0]) for i in range(12)})


# (id, payload, filename, extra kwargs, message regex)
CORPUS = [
    ("unknown-format", b"hello world, not a dataset", "notes.txt", {}, "unknown format"),
    ("empty-file", b"", "e.npz", {}, "is empty"),
    ("truncated-npy", npy_bytes(X)[:60], "x.npy", {}, "truncated or corrupt"),
    ("truncated-npz", npz_bytes(images=X)[:100], "x.npz", {}, "not a valid"),
    ("npz-extension-garbage", b"PKnope" + b"\0" * 50, "x.npz", {}, "truncated or corrupt"),
    ("pickled-npy", npy_bytes(np.array([{"a": 1}], dtype=object), True), "p.npy", {},
     "Python objects.*never loads"),
    ("pickled-npz-array", npz_bytes(images=X, labels=np.array([1, "a", None, 2], dtype=object)),
     "p.npz", {}, "holds Python objects"),
    ("nan-values", npy_bytes(np.full((2, 4, 4), np.nan, np.float32)), "n.npy", {}, "NaN"),
    ("inf-values", npy_bytes(np.full((2, 4, 4), np.inf)), "i.npy", {}, "NaN or infinite"),
    ("negative-floats", npy_bytes(-np.ones((2, 4, 4))), "neg.npy", {}, "minimum is -1"),
    ("too-bright-floats", npy_bytes(np.full((2, 4, 4), 300.0)), "b.npy", {}, "maximum is 300"),
    ("wrong-rank-1d", npy_bytes(np.zeros(16)), "r.npy", {}, "3 or 4 dimensions"),
    ("wrong-rank-2d", npy_bytes(np.zeros((8, 8))), "r.npy", {}, "single 2-D array"),
    ("wrong-rank-5d", npy_bytes(np.zeros((2, 1, 1, 4, 4))), "r.npy", {}, "3 or 4 dimensions"),
    ("bad-channels", npy_bytes(np.zeros((2, 5, 6, 7))), "c.npy", {}, "channel axis"),
    ("zero-images", npy_bytes(np.zeros((0, 4, 4))), "z.npy", {}, "zero images"),
    ("complex", npy_bytes(np.zeros((2, 4, 4), complex)), "c.npy", {}, "real numbers"),
    ("string-images", npy_bytes(np.array([["a"]])), "s.npy", {}, "numeric"),
    ("npz-no-images", npz_bytes(pixels=X), "n.npz", {}, "no 'images' array"),
    ("npz-extra-key", npz_bytes(images=X, junk=X), "n.npz", {}, "unexpected arrays"),
    ("labels-length", npz_bytes(images=X, labels=np.arange(3)), "l.npz", {},
     "one entry per image \\(4\\)"),
    ("attributes-length", npz_bytes(images=X, attributes=np.ones((3, 2))), "a.npz", {},
     "one row per image \\(4\\)"),
    ("attributes-not-binary", npz_bytes(images=X, attributes=np.full((4, 1), 2)), "a.npz", {},
     "binary"),
    ("attribute-names-count", npz_bytes(images=X, attributes=np.ones((4, 2)),
                                        attribute_names=np.array(["x"])), "a.npz", {},
     "one name per column"),
    ("class-names-short", npz_bytes(images=X, labels=np.array([0, 1, 2, 5]),
                                    class_names=np.array(["a", "b"])), "c.npz", {},
     "one name per class"),
    ("negative-labels", npz_bytes(images=X, labels=np.array([0, -1, 0, 1])), "n.npz", {},
     "non-negative"),
    ("fractional-labels", npz_bytes(images=X, labels=np.array([0.5, 1, 0, 1])), "f.npz", {},
     "whole numbers"),
    ("int-out-of-range", npy_bytes(np.full((2, 4, 4), 1000, np.int32)), "i.npy", {},
     "integer images must lie in \\[0, 255\\]"),
    ("zip-non-image", zip_bytes({"a.png": png_bytes(X[0]), "readme.txt": b"hi"}), "z.zip", {},
     "not PNG/JPEG.*readme.txt"),
    ("zip-path-traversal", zip_bytes({"../../etc/x.png": png_bytes(X[0])}), "t.zip", {},
     "unsafe path"),
    ("zip-absolute-path", zip_bytes({"/abs.png": png_bytes(X[0])}), "t.zip", {}, "unsafe path"),
    ("zip-bomb-declared", _zip_bomb(), "bomb.zip", {"max_uncompressed_bytes": 2**20},
     "zip bomb"),
    ("zip-too-many-entries", _many_entries_zip(), "m.zip", {"max_entries": 10},
     "more than the limit of 10"),
    ("zip-no-images", zip_bytes({"attributes.csv": b"filename,a\n"}), "e.zip", {},
     "no PNG or JPEG"),
    ("zip-corrupt-image", _truncated_png_zip(), "c.zip", {}, "could not be decoded"),
    ("zip-fake-png", zip_bytes({"a.png": b"not a png at all"}), "f.zip", {},
     "could not be decoded"),
    ("decompression-bomb", zip_bytes({"big.png": _big_png_header()}), "b.zip", {},
     "decompression-bomb guard"),
    ("image-too-large", npy_bytes(np.zeros((1, 600, 600), np.uint8)), "l.npy", {},
     "exceed the 512-pixel limit"),
    ("too-many-images", npy_bytes(np.zeros((50, 4, 4), np.uint8)), "m.npy", {"max_images": 10},
     "exceed the limit of 10"),
    ("file-too-big", npy_bytes(X), "x.npy", {"max_bytes": 100}, "larger than the limit"),
    ("mixed-depth-folders", zip_bytes({"a/1.png": png_bytes(X[0]), "2.png": png_bytes(X[1])}),
     "d.zip", {}, "mix of depths"),
    ("csv-missing-row", zip_bytes({"a.png": png_bytes(X[0]), "b.png": png_bytes(X[1]),
                                   "attributes.csv": b"filename,s\na.png,1\n"}), "c.zip", {},
     "no row for image 'b.png'"),
    ("csv-bad-value", zip_bytes({"a.png": png_bytes(X[0]),
                                 "attributes.csv": b"filename,s\na.png,maybe\n"}), "c.zip", {},
     "not 0/1"),
    ("csv-no-header", zip_bytes({"a.png": png_bytes(X[0]), "attributes.csv": b"a.png,1\n"}),
     "c.zip", {}, "must start with a header"),
    ("idx-truncated", idx_bytes(small_images(3, 28, 28))[:500], "t-idx3-ubyte", {},
     "truncated or corrupt: header says"),
    ("idx-labels-alone", idx_bytes(np.arange(5, dtype=np.uint8)), "l-idx1-ubyte", {},
     "labels IDX file; upload a zip"),
    ("idx-bad-gzip", b"\x1f\x8b" + b"\0" * 30, "x.gz", {}, "not a valid gzip"),
    ("gzip-not-idx", __import__("gzip").compress(b"hello"), "x.gz", {}, "does not hold an IDX"),
    ("idx-pair-two-labels", zip_bytes({"a-idx1-ubyte": idx_bytes(np.arange(3, dtype=np.uint8)),
                                       "b-idx1-ubyte": idx_bytes(np.arange(3, dtype=np.uint8))}),
     "p.zip", {}, "one images IDX file"),
    ("bad-limit", npy_bytes(X), "x.npy", {"max_images": -1}, "positive integer"),
    ("unknown-limit", npy_bytes(X), "x.npy", {"max_cats": 3}, "unknown limit"),
    ("wrong-source-type", 12345, None, {}, "path, bytes or a binary file object"),
    ("missing-path", "/nonexistent/file.npz", None, {}, "no such file"),
]


@pytest.mark.parametrize(("payload", "filename", "kwargs", "message"),
                         [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_corpus(payload, filename, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_file(payload, filename=filename, **kwargs)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25


def test_bad_size_argument():
    with pytest.raises(DatasetError, match="size must be an int or \\(H, W\\)"):
        load_file(npy_bytes(X), filename="x.npy", size=(1, 2, 3))


def test_idx_header_with_huge_dims_is_rejected_without_allocating():
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 10**6, 10**4, 10**4)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_file(head + b"\0" * 100, filename="h-idx3-ubyte")


# ---------------------------------------------------------------- property-based fuzzing
VALID = [
    (npz_bytes(images=X, labels=np.arange(4)), "v.npz"),
    (npy_bytes(X), "v.npy"),
    (zip_bytes({"a/1.png": png_bytes(X[0]), "b/2.png": png_bytes(X[1])}), "v.zip"),
    (idx_bytes(small_images(3, 6, 6), gz=True), "v-idx3-ubyte.gz"),
]


def _only_dataset_error(data: bytes, filename: str | None) -> None:
    try:
        load_file(data, filename=filename)
    except DatasetError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512),
       filename=st.sampled_from([None, "x.npz", "x.npy", "x.zip", "x.gz", "x-idx3-ubyte"]))
def test_fuzz_random_bytes(data, filename):
    _only_dataset_error(data, filename)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), pos=st.floats(0, 1), length=st.integers(1, 16),
       fill=st.binary(min_size=1, max_size=16), cut=st.booleans())
def test_fuzz_mutated_valid_files(which, pos, length, fill, cut):
    data, name = VALID[which]
    i = int(pos * (len(data) - 1))
    mutated = data[:i] if cut else data[:i] + fill + data[i + length:]
    _only_dataset_error(mutated, name)


@pytest.mark.parametrize(("payload", "filename", "kwargs", "message"),
                         [c[1:] for c in CORPUS if isinstance(c[1], bytes)],
                         ids=[c[0] for c in CORPUS if isinstance(c[1], bytes)])
def test_bad_input_corpus_streamed_into_a_workspace(tmp_path, payload, filename, kwargs,
                                                    message):
    """The streamed import (a zip of images on disk, decoded block by block) refuses each
    case with the message load_file gives for the same file, and leaves the workspace as
    it was."""
    from fisher_core.workspace import Workspace, import_dataset

    ws = Workspace(tmp_path / "ws")
    path = tmp_path / filename
    path.write_bytes(payload)
    with pytest.raises(DatasetError) as expected:
        load_file(path, **kwargs)
    with pytest.raises(DatasetError) as got:
        import_dataset(ws, path, "bad", **kwargs)
    import re

    def address_free(e):  # PIL's messages name objects by address
        return re.sub(r"0x[0-9a-f]+", "0x…", str(e.value))
    assert address_free(got) == address_free(expected)
    assert ws.names("datasets") == [] and ws.problems("datasets") == []
