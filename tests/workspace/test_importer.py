"""A zip of images streamed into the workspace equals load_file + save_dataset."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fisher_core.data import DatasetError, load_builtin, load_file
from fisher_core.data import streamed as zipstream_module
from fisher_core.workspace import Workspace, import_dataset


def _zip(path, images, labels=None, attributes=None, colour=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        rows = ["filename,smiling,glasses"]
        for i, im in enumerate(images):
            arr = np.round(im * 255).astype(np.uint8)
            arr = np.repeat(arr[0][:, :, None], 3, axis=2) if colour else arr[0]
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            name = f"{labels[i]}/{i:04d}.png" if labels is not None else f"{i:04d}.png"
            z.writestr(f"top/{name}", buf.getvalue())
            if attributes is not None:
                rows.append(f"top/{name}," + ",".join(str(int(v)) for v in attributes[i]))
        if attributes is not None:
            z.writestr("top/attributes.csv", "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def digits():
    return load_builtin("digits").subset(np.arange(130))


@pytest.mark.parametrize(("size", "colour"), [(None, False), (None, True), (12, False)])
def test_streamed_zip_equals_the_in_memory_import(tmp_path, digits, size, colour):
    rng = np.random.default_rng(0)
    attrs = rng.random((len(digits), 2)) < 0.5
    path = _zip(tmp_path / "d.zip", digits.images, digits.labels, attrs, colour)
    ws = Workspace(tmp_path / "ws")
    seen = []
    entry = import_dataset(ws, path, "d", size=size, block=32,
                           progress=lambda f, m: seen.append((f, m)))
    ref = load_file(path, size=size)
    got = ws.load_dataset("d")
    np.testing.assert_array_equal(got.images, ref.images)
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.attributes, ref.attributes)
    assert (got.class_names, got.attribute_names) == (ref.class_names, ref.attribute_names)
    assert entry.meta["summary"] == ref.summary()
    stored = np.load(entry.path / "images.npy", mmap_mode="r")
    assert stored.dtype == (np.float32 if size else np.uint8)  # 8-bit values kept as bytes
    assert [m for _, m in seen][-1] == "decoded 130/130 images" and len(seen) == 5
    rows = ws.dataset_rows("d")
    np.testing.assert_array_equal(rows.read(100, 130), ref.images[100:130])


def test_other_formats_go_through_load_file(tmp_path, digits):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.round(digits.images[:, 0] * 255).astype(np.uint8),
             labels=digits.labels)
    ws = Workspace(tmp_path / "ws")
    import_dataset(ws, path, "d")
    np.testing.assert_array_equal(ws.load_dataset("d").images, load_file(path).images)


def test_the_archive_is_never_read_whole(tmp_path, digits, monkeypatch):
    """The zip is memory-mapped and its pages handed back after every block."""
    path = _zip(tmp_path / "d.zip", digits.images, digits.labels)
    calls = []
    real = zipstream_module.StreamedImages.blocks

    def spy(self, block=4096):
        for out in real(self, block):
            calls.append(len(out))
            yield out
    monkeypatch.setattr(zipstream_module.StreamedImages, "blocks", spy)
    monkeypatch.setattr("pathlib.Path.read_bytes", lambda self: pytest.fail("read whole"))
    import_dataset(Workspace(tmp_path / "ws"), path, "d", block=50)
    assert calls == [50, 50, 30]


def test_a_failure_mid_way_leaves_nothing(tmp_path, digits, monkeypatch):
    path = _zip(tmp_path / "d.zip", digits.images)
    ws = Workspace(tmp_path / "ws")
    import_dataset(ws, path, "d")  # a first, good version

    def broken(*a, **k):
        yield np.zeros((10, 1, 8, 8), np.uint8)
        raise OSError("disk full")
    monkeypatch.setattr(zipstream_module, "decode_blocks", broken)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(ws, path, "d")
    assert len(ws.load_dataset("d")) == 130  # the first version is still the live one


def _idx(path, arr, gz=False):
    import gzip

    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("fmt", ["npy-nhw", "npy-nhwc-alpha", "npz", "idx", "idx.gz"])
def test_uint8_arrays_are_streamed_and_equal_load_file(tmp_path, digits, fmt, monkeypatch):
    from fisher_core.data import streamed

    rng = np.random.default_rng(2)
    x = np.round(digits.images[:, 0] * 255).astype(np.uint8)  # (N, 8, 8)
    if fmt == "npy-nhw":
        path = tmp_path / "d.npy"
        np.save(path, x)
    elif fmt == "npy-nhwc-alpha":  # RGBA, channels last: alpha dropped, axes moved
        path = tmp_path / "d.npy"
        np.save(path, rng.integers(0, 256, size=(len(x), 8, 8, 4), dtype=np.uint8))
    elif fmt == "npz":
        path = tmp_path / "d.npz"
        np.savez_compressed(path, images=x, labels=digits.labels,
                            attributes=rng.random((len(x), 2)) < 0.5,
                            attribute_names=np.array(["a", "b"]))
    else:
        path = _idx(tmp_path / f"d-idx3-ubyte{'.gz' if fmt == 'idx.gz' else ''}", x,
                    gz=fmt == "idx.gz")
    calls = []
    real = streamed.uint8_blocks
    monkeypatch.setattr(streamed, "uint8_blocks",
                        lambda *a: calls.append(1) or real(*a))
    ws = Workspace(tmp_path / "ws")
    entry = import_dataset(ws, path, "d")
    assert calls, "streamed, not loaded in memory"
    ref = load_file(path)
    got = ws.load_dataset("d")
    np.testing.assert_array_equal(got.images, ref.images)
    for side in ("labels", "attributes"):
        np.testing.assert_array_equal(getattr(got, side), getattr(ref, side))
    assert got.attribute_names == ref.attribute_names and got.class_names == ref.class_names
    assert entry.meta["summary"] == ref.summary()
    assert np.load(entry.path / "images.npy", mmap_mode="r").dtype == np.uint8


def _idx_typed(path, arr):
    """An IDX file of ``arr``'s dtype (big-endian, as the format stores numbers)."""
    code = {np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                   for d in arr.shape)
    path.write_bytes(head + arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    return path


# (images to save, file kind, resize): every kind of conversion load_file makes
_CONVERTED = {
    "float-exact-8bit": (lambda x: x / 255.0, "npy", None),  # stored as uint8
    "float32-noisy": (lambda x: (x / 255.0 + 1e-3).clip(0, 1).astype(np.float32), "npy", None),
    "float-0-255": (lambda x: x.astype(np.float64), "npy", None),  # ÷255 once all are seen
    "float-0-255-noisy": (lambda x: x * 0.99 + 0.25, "npy", None),
    "big-endian-float": (lambda x: (x / 255.0).astype(">f4"), "npy", None),
    "uint16": (lambda x: x.astype(np.uint16) * 200, "npy", None),
    "uint16-8bit": (lambda x: x.astype(np.uint16) * 257, "npy", None),  # k·257/65535 = k/255
    "int16": (lambda x: x.astype(np.int16), "npy", None),
    "bool": (lambda x: x > 100, "npy", None),
    "uint8-resized": (lambda x: x, "npy", 5),
    "float-rgb-last-resized": (lambda x: np.repeat(x[..., None] / 255.0, 3, axis=3), "npy", 12),
    "float-0-255-resized": (lambda x: x.astype(np.float32), "npy", 6),
    "npz-float-with-labels": (lambda x: x / 255.0, "npz", None),
    "idx-float32": (lambda x: (x / 255.0).astype(np.float32), "idx", None),
    "idx-int16-gz": (lambda x: x.astype(np.int16), "idx.gz", None),
}


@pytest.mark.parametrize("case", sorted(_CONVERTED))
def test_converted_arrays_are_streamed_and_stored_as_save_dataset_stores_them(
        tmp_path, digits, case, monkeypatch):
    import gzip

    from fisher_core.data import streamed
    from fisher_core.workspace import importer

    make, kind, size = _CONVERTED[case]
    x = make(np.round(digits.images[:, 0] * 255).astype(np.uint8))  # (130, 8, 8)
    if kind == "npy":
        path = tmp_path / "d.npy"
        np.save(path, x)
    elif kind == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, images=x, labels=digits.labels)
    else:
        path = _idx_typed(tmp_path / "d-idx3-ubyte", x)
        if kind == "idx.gz":
            path = tmp_path / "d-idx3-ubyte.gz"
            path.write_bytes(gzip.compress((tmp_path / "d-idx3-ubyte").read_bytes()))
    passes = []
    for fn in ("scan_converted", "converted_blocks"):
        real = getattr(streamed, fn)
        monkeypatch.setattr(streamed, fn, lambda *a, _r=real, _f=fn: passes.append(_f) or _r(*a))
    monkeypatch.setattr(importer, "load_file", None)  # never read whole
    ws, ref_ws = Workspace(tmp_path / "ws"), Workspace(tmp_path / "ref")
    seen = []
    entry = import_dataset(ws, path, "d", size=size, progress=lambda f, m: seen.append(f))
    assert passes == ["scan_converted", "converted_blocks"]
    assert seen == sorted(seen) and seen[-1] == 1.0
    ref_ds = load_file(path, size=size)
    ref = ref_ws.save_dataset(ref_ds, "d")
    got_arr = np.load(entry.path / "images.npy", allow_pickle=False)
    ref_arr = np.load(ref.path / "images.npy", allow_pickle=False)
    assert got_arr.dtype == ref_arr.dtype, "stored as save_dataset stores it"
    np.testing.assert_array_equal(got_arr, ref_arr)
    np.testing.assert_array_equal(ws.load_dataset("d").images, ref_ds.images)
    assert entry.meta["summary"] == ref.meta["summary"]
    if kind == "npz":
        np.testing.assert_array_equal(ws.load_dataset("d").labels, digits.labels)
    lossless = case in ("float-exact-8bit", "float-0-255", "uint16-8bit", "int16", "bool",
                        "big-endian-float", "npz-float-with-labels", "idx-float32",
                        "idx-int16-gz")
    assert (got_arr.dtype == np.uint8) == lossless


@pytest.mark.parametrize(("values", "message"), [
    (lambda x: np.where(x > 250, np.nan, x / 255.0), "NaN or infinite"),
    (lambda x: x * 2.0, "the maximum is"),
    (lambda x: x / 255.0 - 0.5, "the minimum is"),
    (lambda x: x.astype(np.int16) * 2, r"integer images must lie in \[0, 255\]"),
])
def test_bad_values_found_by_the_scan_leave_the_workspace_as_it_was(tmp_path, digits, values,
                                                                    message):
    x = np.round(digits.images[:, 0] * 255).astype(np.uint8)
    x[-1, 0, 0] = 255  # the bad value sits in the last group read
    path = tmp_path / "d.npy"
    np.save(path, values(x))
    with pytest.raises(DatasetError, match=message) as expected:
        load_file(path)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(DatasetError) as got:
        import_dataset(ws, path, "d")
    assert str(got.value) == str(expected.value)
    assert ws.names("datasets") == [] and ws.problems("datasets") == []


def test_blocks_before_scan_is_refused(tmp_path, digits):
    from fisher_core.data.streamed import stream_file

    path = tmp_path / "d.npy"
    np.save(path, digits.images[:, 0])
    stream = stream_file(path)
    assert stream.needs_scan
    with pytest.raises(RuntimeError, match="call scan"):
        next(stream.blocks())
    assert stream.scan() == np.float32


def test_column_major_arrays_are_loaded_in_memory(tmp_path, digits):
    from fisher_core.data.streamed import stream_file

    path = tmp_path / "d.npy"
    np.save(path, np.asfortranarray(np.round(digits.images[:, 0] * 255).astype(np.uint8)))
    assert stream_file(path) is None
    ws = Workspace(tmp_path / "ws")
    import_dataset(ws, path, "d")
    np.testing.assert_array_equal(ws.load_dataset("d").images, load_file(path).images)
