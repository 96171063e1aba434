"""Embedding export (.npz, CSV, TensorBoard Projector): every file read back independently."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from fisher_core.data import ImageDataset, load_builtin
from fisher_core.embeddings import (
    Embedding,
    export_csv,
    export_npz,
    export_projector,
    export_projector_zip,
    pixel_embedding,
    projector_selection,
)
from fisher_core.embeddings.export import PROJECTOR_FILES


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_builtin("digits").subset(slice(0, 30))


@pytest.fixture(scope="module")
def faces() -> ImageDataset:
    return load_builtin("faces", n=12, size=16)


def _hard_floats(n: int, k: int = 5) -> Embedding:
    """float32 values over many magnitudes: short decimal forms would not round-trip."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, k)) * 10.0 ** rng.uniform(-30, 30, (n, k))
    v[0, 0], v[0, 1] = np.finfo(np.float32).max, np.finfo(np.float32).tiny
    return Embedding(v.astype(np.float32), "toy", "fisher", model="pixelcnn",
                     normalization="fim_diag", params={"dim": np.int64(5), "tag": "ü"})


def _u8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → (N, H, W, C) uint8, the documented round(255·x)."""
    return np.round(images * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _tile(sprite: np.ndarray, i: int, g: int, th: int, tw: int) -> np.ndarray:
    r, c = divmod(i, g)
    return sprite[r * th:(r + 1) * th, c * tw:(c + 1) * tw]


def _metadata(text: bytes) -> list[list[str]]:
    return [line.split("\t") for line in text.decode("utf-8").split("\n")[:-1]]


# ---------------------------------------------------------------------------- npz
def test_npz_round_trip_is_exact_and_needs_no_pickle(faces):
    emb = _hard_floats(len(faces))
    z = np.load(io.BytesIO(export_npz(emb, faces)), allow_pickle=False)
    assert sorted(z.files) == ["attribute_names", "attributes", "class_names", "labels", "meta",
                               "vectors"]
    assert all(z[name].dtype.kind != "O" for name in z.files)
    assert z["vectors"].dtype == np.float32
    np.testing.assert_array_equal(z["vectors"], emb.vectors)
    assert z["meta"].dtype.kind == "U" and z["meta"].shape == (1,)
    meta = json.loads(str(z["meta"][0]))
    assert meta == {**emb.metadata(), "params": {"dim": 5, "tag": "ü"}}
    np.testing.assert_array_equal(z["labels"], faces.labels)
    assert z["class_names"].tolist() == faces.class_names
    assert z["attributes"].dtype == bool
    np.testing.assert_array_equal(z["attributes"], faces.attributes)
    assert z["attribute_names"].tolist() == faces.attribute_names


def test_npz_without_dataset_holds_vectors_and_meta(digits):
    emb = pixel_embedding(digits)
    z = np.load(io.BytesIO(export_npz(emb)), allow_pickle=False)
    assert sorted(z.files) == ["meta", "vectors"]
    np.testing.assert_array_equal(z["vectors"], emb.vectors)
    assert json.loads(str(z["meta"][0])) == emb.metadata()


# ---------------------------------------------------------------------------- csv
def test_csv_parses_back_to_the_float32_vectors_labels_and_attributes():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (6, 1, 4, 4)).astype(np.float32)
    ds = ImageDataset(images, labels=np.array([0, 1, 2, 0, 1, 2]),
                      class_names=["a,b", 'say "hi"', "line\nbreak"],
                      attributes=rng.integers(0, 2, (6, 2)).astype(bool),
                      attribute_names=["smiling", "x,y"])
    emb = _hard_floats(6, k=3)
    rows = list(csv.reader(io.StringIO(export_csv(emb, ds).decode("utf-8"))))
    assert rows[0] == ["index", "label", "smiling", "x,y", "v0", "v1", "v2"]
    body = rows[1:]
    assert len(body) == 6
    assert [int(r[0]) for r in body] == list(range(6))
    assert [r[1] for r in body] == [ds.class_names[y] for y in ds.labels]
    np.testing.assert_array_equal(np.array([r[2:4] for r in body], dtype=int), ds.attributes)
    back = np.array([[float(x) for x in r[4:]] for r in body]).astype(np.float32)
    np.testing.assert_array_equal(back, emb.vectors)


def test_csv_without_dataset_loads_with_loadtxt(digits):
    emb = pixel_embedding(digits)
    data = export_csv(emb)
    header = data.decode("utf-8").split("\n", 1)[0].split(",")
    assert header == ["index"] + [f"v{j}" for j in range(64)]
    table = np.loadtxt(io.BytesIO(data), delimiter=",", skiprows=1, dtype=np.float64)
    np.testing.assert_array_equal(table[:, 0], np.arange(30))
    np.testing.assert_array_equal(table[:, 1:].astype(np.float32), emb.vectors)


# ---------------------------------------------------------------------------- projector
def test_projector_files_read_back(digits):
    emb = pixel_embedding(digits)
    files = export_projector(emb, digits)
    assert tuple(files) == PROJECTOR_FILES
    vectors = np.loadtxt(io.BytesIO(files["vectors.tsv"]), delimiter="\t", dtype=np.float64)
    np.testing.assert_array_equal(vectors.astype(np.float32), emb.vectors)
    meta = _metadata(files["metadata.tsv"])
    assert meta[0] == ["index", "label"]
    assert meta[1:] == [[str(i), digits.class_names[y]] for i, y in enumerate(digits.labels)]

    # 30 points → 6 × 6 grid; 8 px digits → 16 px thumbnails (each pixel doubled)
    sprite_img = Image.open(io.BytesIO(files["sprite.png"]))
    assert sprite_img.mode == "L" and sprite_img.size == (96, 96)
    sprite = np.asarray(sprite_img)
    u8 = _u8(digits.images)[..., 0]
    for i in range(30):
        np.testing.assert_array_equal(_tile(sprite, i, 6, 16, 16), np.kron(u8[i], np.ones((2, 2))))
    for i in range(30, 36):  # unused cells stay black
        assert not _tile(sprite, i, 6, 16, 16).any()

    config = files["projector_config.pbtxt"].decode("utf-8")
    assert re.search(r'tensor_path:\s*"vectors\.tsv"', config)
    assert re.search(r'metadata_path:\s*"metadata\.tsv"', config)
    assert re.search(r'sprite\s*{\s*image_path:\s*"sprite\.png"', config)
    assert re.findall(r"single_image_dim:\s*(\d+)", config) == ["16", "16"]
    assert config.count("{") == config.count("}") == 2


def test_rgb_sprite_and_box_downscale(digits):
    rgb = digits.convert(channels=3)
    emb = pixel_embedding(rgb)
    files = export_projector(emb, rgb, thumb=4)  # 8 → 4 px: BOX filter = mean of 2 × 2 blocks
    sprite_img = Image.open(io.BytesIO(files["sprite.png"]))
    assert sprite_img.mode == "RGB" and sprite_img.size == (24, 24)
    sprite = np.asarray(sprite_img).astype(int)
    u8 = _u8(rgb.images).astype(float)
    blocks = u8.reshape(30, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    for i in range(30):
        np.testing.assert_allclose(_tile(sprite, i, 6, 4, 4), blocks[i], atol=1)
    assert re.findall(r"single_image_dim:\s*(\d+)", files["projector_config.pbtxt"].decode()) \
        == ["4", "4"]


def test_metadata_with_one_column_has_no_header():
    rng = np.random.default_rng(2)
    ds = ImageDataset(rng.uniform(0, 1, (5, 1, 6, 6)).astype(np.float32))
    files = export_projector(pixel_embedding(ds), ds)
    assert _metadata(files["metadata.tsv"]) == [[str(i)] for i in range(5)]


def test_metadata_values_are_sanitised():
    rng = np.random.default_rng(3)
    ds = ImageDataset(rng.uniform(0, 1, (4, 1, 6, 6)).astype(np.float32),
                      labels=np.array([0, 1, 0, 1]), class_names=["tab\there", "new\nline\r"],
                      attributes=np.array([[1], [0], [0], [1]]), attribute_names=["a\tb"])
    meta = _metadata(export_projector(pixel_embedding(ds), ds)["metadata.tsv"])
    assert meta[0] == ["index", "label", "a b"]
    assert meta[1:] == [["0", "tab here", "1"], ["1", "new line ", "0"],
                        ["2", "tab here", "0"], ["3", "new line ", "1"]]


def test_subsample_is_seeded_and_applied_to_every_file(faces):
    emb = _hard_floats(len(faces))
    files = export_projector(emb, faces, max_points=5, seed=7)
    assert files == export_projector(emb, faces, max_points=5, seed=7)
    meta = _metadata(files["metadata.tsv"])
    index = np.array([int(r[0]) for r in meta[1:]])
    assert len(index) == 5 and np.all(np.diff(index) > 0) and index.max() < len(faces)
    assert [r[1] for r in meta[1:]] == [faces.class_names[y] for y in faces.labels[index]]
    assert [r[2:] for r in meta[1:]] == faces.attributes[index].astype(int).astype(str).tolist()
    vectors = np.loadtxt(io.BytesIO(files["vectors.tsv"]), delimiter="\t", dtype=np.float64)
    np.testing.assert_array_equal(vectors.astype(np.float32), emb.vectors[index])
    sprite = np.asarray(Image.open(io.BytesIO(files["sprite.png"])))
    assert sprite.shape == (3 * 16, 3 * 16)  # 5 points → 3 × 3 grid of 16 px faces
    u8 = _u8(faces.images)[..., 0]
    for j, i in enumerate(index):
        np.testing.assert_array_equal(_tile(sprite, j, 3, 16, 16), u8[i])


def test_sprite_limit_caps_points_and_thumbnail_size():
    # default thumbnails: images upscaled by a whole factor to at least 16 px
    assert projector_selection(30, (8, 8))[1] == 16
    assert projector_selection(30, (5, 5))[1] == 20
    assert projector_selection(30, (28, 28))[1] == 28
    # 70,000 MNIST-sized points fit at 28 px (265 × 28 ≤ 8192)
    index, t = projector_selection(70_000, (28, 28))
    assert t == 28 and len(index) == 70_000
    # 100,000 points: thumbnails shrink to fit the 8192 px limit
    index, t = projector_selection(100_000, (28, 28))
    assert len(index) == 100_000 and math.ceil(math.sqrt(100_000)) * t <= 8192 and t >= 16
    # beyond 512² points even 16 px thumbnails do not fit: a seeded subsample
    index, t = projector_selection(300_000, (8, 8), seed=1)
    assert t == 16 and len(index) == 512**2 == len(np.unique(index))
    assert np.all(np.diff(index) > 0)
    np.testing.assert_array_equal(index, projector_selection(300_000, (8, 8), seed=1)[0])
    # an explicit thumb caps the points at (8192 // thumb)²
    index, t = projector_selection(30, (8, 8), thumb=2048)
    assert t == 2048 and len(index) == 16


def test_non_square_images_keep_their_aspect():
    rng = np.random.default_rng(4)
    ds = ImageDataset(rng.uniform(0, 1, (3, 1, 8, 4)).astype(np.float32))
    files = export_projector(pixel_embedding(ds), ds)
    config = files["projector_config.pbtxt"].decode()
    assert re.findall(r"single_image_dim:\s*(\d+)", config) == ["8", "16"]  # width, height
    sprite = np.asarray(Image.open(io.BytesIO(files["sprite.png"])))
    assert sprite.shape == (2 * 16, 2 * 8)
    u8 = _u8(ds.images)[..., 0]
    for i in range(3):
        np.testing.assert_array_equal(_tile(sprite, i, 2, 16, 8), np.kron(u8[i], np.ones((2, 2))))


def test_zip_holds_the_four_files(digits):
    emb = pixel_embedding(digits)
    data = export_projector_zip(emb, digits, max_points=12)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == list(PROJECTOR_FILES)
        assert zf.testzip() is None
        unzipped = {name: zf.read(name) for name in zf.namelist()}
    assert unzipped == export_projector(emb, digits, max_points=12)


# ---------------------------------------------------------------------------- errors
def test_wrong_dataset_is_rejected(digits, faces):
    emb = pixel_embedding(digits)
    msg = r"30 rows but dataset 'faces' has 12 images; pass the dataset the embedding was computed"
    for export in (export_npz, export_csv, export_projector, export_projector_zip):
        with pytest.raises(ValueError, match=msg):
            export(emb, faces)


@pytest.mark.parametrize("thumb", [0, -3, 1.5, True, "16", 9000])
def test_bad_thumb_is_rejected(digits, thumb):
    with pytest.raises(ValueError, match="thumb"):
        export_projector(pixel_embedding(digits), digits, thumb=thumb)


@pytest.mark.parametrize("max_points", [0, -1, 2.0, False])
def test_bad_max_points_is_rejected(digits, max_points):
    with pytest.raises(ValueError, match="max_points"):
        export_projector(pixel_embedding(digits), digits, max_points=max_points)
