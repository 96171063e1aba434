"""Issue 14: zip uploads, read in time linear in their members and within bounds: images
decoded one at a time (by the right path), attributes.csv bounded and streamed, members that
cannot be read safely refused, and short, plain messages.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    corrupt_deflate,
    idx_bytes,
    npz_bytes,
    npz_compressed_bytes,
    png_bytes,
    small_images,
    traced_peak,
    zip64_directory,
    zip_bytes,
)
from PIL import Image

from fisher_core.data import DatasetError, load_file
from fisher_core.data.attributes import CSV_BYTES_PER_IMAGE, CSV_HEADER_BYTES
from fisher_core.data.zipmembers import MemberTable

pytestmark = pytest.mark.usefixtures("warm_loaders")
X = small_images(4)


# ------------------------------------------------ decoding paths of a zip of images
def _colour_and_grey(side: int) -> tuple[bytes, np.ndarray]:
    """A zip of two noisy RGB images (too large to be read whole while probing) and a grey
    one; and the (3, N, H, W)-ordered uint8 reference, grey repeated over the channels."""
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (2, side, side, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (side, side), dtype=np.uint8)
    data = zip_bytes({"a.png": png_bytes(rgb[0]), "b.png": png_bytes(grey),
                      "c.png": png_bytes(rgb[1])})
    ref = np.stack([rgb[0], np.repeat(grey[:, :, None], 3, 2), rgb[1]]).transpose(0, 3, 1, 2)
    return data, ref


def test_zip_of_large_colour_and_grey_images():
    data, ref = _colour_and_grey(200)
    ds = load_file(data, filename="cg.zip")
    np.testing.assert_array_equal(ds.images, ref / np.float32(255))


def test_zip_of_small_grey_then_colour_images():
    # the grey image starts a uint8 stack while probing; the colour one ends that shortcut
    rng = np.random.default_rng(8)
    grey, rgb = rng.integers(0, 256, (6, 7), dtype=np.uint8), \
        rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    ds = load_file(zip_bytes({"a.png": png_bytes(grey), "b.png": png_bytes(rgb)}),
                   filename="gc.zip")
    ref = np.stack([np.repeat(grey[:, :, None], 3, 2), rgb]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(ds.images, ref / np.float32(255))


def test_zip_resize_of_colour_images_larger_than_a_block():
    data, ref = _colour_and_grey(300)  # one image is 1 MB as float32: resized by channel
    ds = load_file(data, filename="cg.zip", size=(8, 9))
    expected = F.interpolate(torch.from_numpy(ref.astype(np.float32) / 255.0), size=(8, 9),
                             mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(ds.images, expected.clamp(0, 1).numpy(), atol=1e-6)


def test_mixed_sizes_resized_per_image_like_pil():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    ds = load_file(zip_bytes({"a.png": png_bytes(a), "b.png": png_bytes(b)}), filename="m.zip",
                   size=(8, 9))
    # grey images join RGB ones as three equal channels, then PIL's bilinear resize
    ref_a = np.asarray(Image.fromarray(np.repeat(a[:, :, None], 3, 2)).resize((9, 8),
                                                                              Image.BILINEAR))
    ref_b = np.asarray(Image.fromarray(b).resize((9, 8), Image.BILINEAR))
    ref = np.stack([ref_a, ref_b]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    np.testing.assert_array_equal(ds.images, ref)


def test_zip_of_images_four_pixels_high_is_not_mistaken_for_channels():
    # (N, 4, W, 1) once read as (N, C=4, H=W, W=1) and was refused
    x = small_images(3, 4, 5)
    ds = load_file(zip_bytes({f"{i}.png": png_bytes(a) for i, a in enumerate(x)}),
                   filename="s.zip")
    np.testing.assert_array_equal(ds.images[:, 0], x / np.float32(255))


# ------------------------------------------------ defect 2: attributes.csv parsed whole
def _three_images_with(csv: bytes) -> bytes:
    x = small_images(3, 6, 6)
    members = {f"{c}.png": png_bytes(x[i]) for i, c in enumerate("abc")}
    return zip_bytes({**members, "attributes.csv": csv})


def test_attributes_csv_larger_than_its_images_need_is_refused_unread():
    rows = "".join(f"missing/{i}.png,1\n" for i in range(60_000))  # ~1 MB
    csv = ("filename,smiling\na.png,1\nb.png,0\nc.png,1\n" + rows).encode()
    err, peak = traced_peak(load_file, _three_images_with(csv), filename="c.zip")
    assert isinstance(err, DatasetError)
    assert f"attributes.csv is {len(csv)} bytes" in str(err) and "3 images" in str(err)
    assert peak < 3 * (CSV_HEADER_BYTES + 3 * CSV_BYTES_PER_IMAGE)


def test_attributes_csv_rows_naming_absent_files_are_an_error():
    csv = b"filename,s\na.png,1\nb.png,0\nc.png,1\n" + b"".join(
        b"zz%d.png,1\n" % i for i in range(7))
    with pytest.raises(DatasetError, match=(
            "attributes.csv has 7 row\\(s\\) naming files that are not images in the archive: "
            "'zz0.png', 'zz1.png', 'zz2.png', 'zz3.png', 'zz4.png' and 2 more")):
        load_file(_three_images_with(csv), filename="c.zip")


def test_attributes_csv_full_paths_win_over_basenames():
    x = small_images(3, 6, 6)
    csv = ("\ufefffilename, s , t\r\n\r\n"  # BOM, padded names, CRLF, a blank line
           "1.png,1,0\r\n"                   # both 1.png by basename ...
           '"pets/dog/1.png",0,1\r\n'         # ... but dog/1.png by its full path
           "2.png, yes ,TRUE\r\n").encode()
    data = zip_bytes({"pets/cat/1.png": png_bytes(x[0]), "pets/dog/1.png": png_bytes(x[1]),
                      "pets/dog/2.png": png_bytes(x[2]), "pets/attributes.csv": csv})
    ds = load_file(data, filename="p.zip")
    assert ds.attribute_names == ["s", "t"] and ds.class_names == ["cat", "dog"]
    assert ds.attributes.tolist() == [[True, False], [False, True], [True, True]]


# ------------------------------------------------ members that cannot be read within bounds
def test_image_member_far_larger_than_its_image_is_refused():
    padded = png_bytes(small_images(1, 6, 6)[0]) + bytes(9 * 2**20)  # PIL ignores the tail
    data = zip_bytes({"a.png": padded, "b.png": png_bytes(small_images(1, 6, 6)[0])})
    err, peak = traced_peak(load_file, data, filename="p.zip")
    assert isinstance(err, DatasetError)
    assert f"image 'a.png' takes {len(padded)} bytes, far more than a 6×6 image needs" \
        in str(err)
    assert peak < 2**20


def test_zip_members_that_cannot_be_read_within_bounds_are_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as zf:  # bzip2 inflates unbounded
        zf.writestr("a.png", png_bytes(X[0]))
    with pytest.raises(DatasetError, match="'a.png' uses a compression FisherLab does not "
                                           "read \\(method 12\\)"):
        load_file(buf.getvalue(), filename="b.zip")
    data = bytearray(zip_bytes({"a.png": png_bytes(X[0])}))
    central = data.index(b"PK\x01\x02")
    data[6] |= 1  # the "encrypted" flag, in the local header ...
    data[central + 8] |= 1  # ... and in the central directory
    with pytest.raises(DatasetError, match="'a.png' is encrypted; upload an archive without"):
        load_file(bytes(data), filename="e.zip")


# ------------------------------------------------ defect 4: quadratic zip listing
class _CountedName(str):
    """A member name that counts its comparisons (str's own are invisible from Python)."""

    comparisons = 0
    __hash__ = str.__hash__

    def __eq__(self, other):
        _CountedName.comparisons += 1
        return str.__eq__(self, other)

    def __lt__(self, other):
        _CountedName.comparisons += 1
        return str.__lt__(self, other)


def test_zip_members_are_sorted_out_in_linear_time(monkeypatch):
    n = 2000
    data = zip_bytes({f"{i:05d}.png": png_bytes(small_images(1, 6, 6)[0]) for i in range(n)})
    calls = [0]

    def counting_eq(self, other):  # zipfile's ZipInfo compares by identity
        calls[0] += 1
        return self is other

    read = MemberTable.read_directory.__func__

    def counted_names(cls, *args):
        table = read(cls, *args)
        table.names = [_CountedName(m) for m in table.names]
        return table

    monkeypatch.setattr(MemberTable, "read_directory", classmethod(counted_names))
    _CountedName.comparisons = 0
    zipfile.ZipInfo.__eq__ = counting_eq
    try:
        ds = load_file(data, filename="many.zip")
    finally:
        del zipfile.ZipInfo.__eq__
    assert len(ds) == n
    # sorting takes n·log2(n) comparisons; a membership test in a list per member, n²/2
    assert calls[0] + _CountedName.comparisons <= 4 * n * math.log2(n)


def test_zip64_directory_entries_are_read():
    x = small_images(3, 6, 6)
    data = zip_bytes({f"{i}.png": png_bytes(a) for i, a in enumerate(x)})
    z64 = zip64_directory(data)
    assert [i.file_size for i in zipfile.ZipFile(io.BytesIO(z64)).infolist()] == \
        [i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist()]  # valid for zipfile
    np.testing.assert_array_equal(load_file(z64, filename="z.zip").images,
                                  load_file(data, filename="z.zip").images)


# ------------------------------------------------ defect 9 (part): vague or endless messages


@pytest.mark.parametrize(("payload", "filename", "message"), [
    (corrupt_deflate(zip_bytes({"a.png": png_bytes(X[0]), "b.png": png_bytes(X[1])}), "b.png"),
     "c.zip", "c.zip: member 'b.png' is corrupt (its compressed data cannot be decompressed); "
              "re-create the archive."),
    (corrupt_deflate(npz_compressed_bytes(images=X), "images.npy"), "c.npz",
     "c.npz: member 'images.npy' is corrupt (its compressed data cannot be decompressed); "
     "re-create the archive."),
    (idx_bytes(X, gz=True)[:10] + b"\xff" + idx_bytes(X, gz=True)[11:], "c-idx3-ubyte.gz",
     "c-idx3-ubyte.gz is corrupt (its compressed data cannot be decompressed); re-create it."),
], ids=["zip-png", "npz", "idx-gz"])
def test_corrupt_compressed_data_is_named_plainly(payload, filename, message):
    with pytest.raises(DatasetError) as info:
        load_file(payload, filename=filename)
    assert str(info.value) == message


def test_npz_with_many_unexpected_arrays_names_only_a_few():
    extra = {f"junk{i:03d}": np.zeros(1, np.uint8) for i in range(200)}
    with pytest.raises(DatasetError, match="unexpected arrays 'junk000', 'junk001', 'junk002', "
                                           "'junk003', 'junk004' and 195 more; allowed") as info:
        load_file(npz_bytes(images=X, **extra), filename="j.npz")
    assert len(str(info.value)) < 300
    with pytest.raises(DatasetError, match="no 'images' array \\(found 'junk000', .* and 195 "
                                           "more\\)") as info:
        load_file(npz_bytes(**extra), filename="j.npz")
    assert len(str(info.value)) < 300
