"""Issue 14: every upload is loaded within a memory budget checked from headers, before
anything large is allocated; the built-in faces render in chunks.

Each test reproduces a defect at a small scale (small limits and files). Memory is the peak
that ``tracemalloc`` traces (numpy registers its buffers with it), never a time.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    blank_png,
    idx_bytes,
    npy_bytes,
    npz_bytes,
    npz_compressed_bytes,
    png_bytes,
    small_images,
    traced_peak,
    zip_bytes,
)
from faces_reference import render_faces_reference

from fisher_core.data import DatasetError, ImageDataset, load_builtin, load_file

pytestmark = pytest.mark.usefixtures("warm_loaders")
F32 = 4  # bytes of one float32 value


# ------------------------------------------------ defect 1: images capped one by one only
BIG = 1024


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_total_values": 2**18, "max_side": BIG},
     "8×1×1024×1024 values exceed the limit of 262144"),
    ({"max_total_values": 2**18}, "1024×1024 pixels exceed the 512-pixel limit"),
])
def test_image_zip_over_budget_is_refused_from_headers(limits, message):
    data = zip_bytes({f"{i}.png": blank_png(BIG) for i in range(8)})  # 8 MiB decoded
    err, peak = traced_peak(load_file, data, filename="b.zip", **limits)
    assert isinstance(err, DatasetError)
    assert message in str(err)
    assert peak < 3 * F32 * limits["max_total_values"]


def test_image_zip_resize_decodes_one_image_at_a_time():
    pattern = (np.add.outer(np.arange(BIG), 3 * np.arange(BIG)) % 256).astype(np.uint8)
    imgs = np.stack([np.roll(pattern, 37 * i, axis=1) for i in range(6)])
    data = zip_bytes({f"{i}.png": png_bytes(a) for i, a in enumerate(imgs)})
    # The budget is that of the resized dataset: far less than one decoded image.
    ds, peak = traced_peak(load_file, data, filename="r.zip", size=32,
                           max_total_values=6 * 32 * 32)
    assert isinstance(ds, ImageDataset), ds
    ref = F.interpolate(torch.from_numpy(imgs[:, None].astype(np.float32) / 255.0),
                        size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(ds.images, ref.clamp(0, 1).numpy(), atol=1e-6)
    one_image = BIG * BIG * (1 + F32)  # one decoded image, as uint8 and as float32
    assert peak < 3 * (ds.images.nbytes + one_image)


# ------------------------------------------------ defect 3: arrays read before any check
_ZEROS = np.zeros((256, 256, 256), np.uint8)  # 16 MiB: 64× the limit below, ~16 KB packed
_LIMIT = 2**18


@pytest.mark.parametrize(("payload", "filename"), [
    (npz_compressed_bytes(images=_ZEROS), "z.npz"),
    (idx_bytes(_ZEROS, gz=True), "z-idx3-ubyte.gz"),
    (zip_bytes({"i-idx3-ubyte.gz": idx_bytes(_ZEROS, gz=True),
                "l-idx1-ubyte": idx_bytes(np.zeros(256, np.uint8))}), "pair.zip"),
], ids=["npz", "idx-gz", "idx-pair-zip"])
def test_array_over_budget_is_refused_from_its_header(payload, filename):
    err, peak = traced_peak(load_file, payload, filename=filename, max_total_values=_LIMIT)
    assert isinstance(err, DatasetError)
    assert "256×1×256×256 values exceed the limit of 262144" in str(err)
    assert peak < 3 * F32 * _LIMIT


def test_npz_side_array_over_budget_is_refused_from_its_header():
    data = npz_compressed_bytes(images=small_images(4), labels=np.zeros(2**21, np.int64))
    err, peak = traced_peak(load_file, data, filename="l.npz")
    assert isinstance(err, DatasetError)
    assert "array 'labels' takes 16777216 bytes" in str(err)
    assert peak < 2**20


def test_idx_gz_longer_than_its_header_says_is_refused():
    x = small_images(3, 6, 6)
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 3, 6, 6)
    data = gzip.compress(head + x.tobytes() + b"\0" * 1000)
    with pytest.raises(DatasetError, match="header says \\(3, 6, 6\\).*holds 1108 bytes"):
        load_file(data, filename="x-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match="header says \\(3, 6, 6\\).*holds 100 bytes"):
        load_file(gzip.compress(head + x.tobytes()[:100]), filename="x-idx3-ubyte.gz")


def _payload(fmt: str, x: np.ndarray) -> tuple[bytes, str]:
    if fmt == "npz":
        return npz_bytes(images=x), "a.npz"
    if fmt == "npz-compressed":
        return npz_compressed_bytes(images=x), "a.npz"
    if fmt == "npy":
        return npy_bytes(x), "a.npy"
    return idx_bytes(x, gz=True), "a-idx3-ubyte.gz"


@pytest.mark.parametrize(("fmt", "dtype"), [
    ("npz", np.uint8), ("npz-compressed", np.float64), ("npy", np.uint8), ("npy", np.float64),
    ("idx-gz", np.uint8), ("idx-gz", np.float32),
])
def test_largest_accepted_array_costs_about_its_own_size(fmt, dtype):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (16, 128, 128)).astype(dtype)
    if dtype != np.uint8:
        x /= 255.0
    payload, name = _payload(fmt, x)
    ds, peak = traced_peak(load_file, payload, filename=name, max_total_values=x.size)
    assert isinstance(ds, ImageDataset), ds
    expected = x.astype(np.float32) / np.float32(255) if dtype == np.uint8 else \
        x.astype(np.float32)
    np.testing.assert_array_equal(ds.images[:, 0], expected)
    assert peak < 2 * ds.images.nbytes  # the dataset itself, plus a little


@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_rgba_arrays_larger_than_a_read_block(layout, fortran):
    # One image is larger than the block the reader converts at a time, so blocks split
    # images; the alpha channel is dropped; Fortran-ordered arrays are read too.
    rng = np.random.default_rng(3)
    rgba = rng.random((2, 180, 190, 4))
    x = rgba if layout == "nhwc" else rgba.transpose(0, 3, 1, 2)
    x = np.asfortranarray(x) if fortran else np.ascontiguousarray(x)
    ds = load_file(npz_compressed_bytes(images=x), filename="rgba.npz")
    np.testing.assert_array_equal(ds.images, rgba[..., :3].transpose(0, 3, 1, 2)
                                  .astype(np.float32))


def test_array_resize_budget_uses_the_target_size():
    x = np.random.default_rng(5).integers(0, 256, (4, 600, 600)).astype(np.uint8)
    ds = load_file(npz_compressed_bytes(images=x), filename="r.npz", size=32,
                   max_total_values=4 * 32 * 32)
    ref = F.interpolate(torch.from_numpy(x[:, None].astype(np.float32) / 255.0), size=(32, 32),
                        mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(ds.images, ref.clamp(0, 1).numpy(), atol=1e-6)
    with pytest.raises(DatasetError, match="600×600 = 360000 pixels.*limit of 100000"):
        load_file(npz_compressed_bytes(images=x), filename="r.npz", size=32,
                  max_image_pixels=100_000)


# ------------------------------------------------ defect 5: faces rendered all at once
@pytest.mark.parametrize(("n", "size", "seed", "noise"), [
    (1, 16, 0, 0.03), (37, 16, 5, 0.03), (23, 32, 1, 0.0), (9, 40, 2, 0.1), (5, 128, 3, 0.03),
])
def test_faces_identical_to_the_original_renderer(n, size, seed, noise):
    ds = load_builtin("faces", n=n, size=size, seed=seed, noise=noise)
    rng = np.random.default_rng(seed)
    attributes = rng.random((n, 4)) < 0.5
    ref = render_faces_reference(attributes, size=size, rng=rng, noise=noise)
    np.testing.assert_array_equal(ds.attributes, attributes)
    np.testing.assert_array_equal(ds.images, ref)


def test_faces_render_within_the_dataset_size():
    ds, peak = traced_peak(load_builtin, "faces", n=1000, size=32)
    assert ds.images.shape == (1000, 1, 32, 32)
    assert peak < 3 * ds.images.nbytes
