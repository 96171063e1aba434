"""Every loader, against the arrays it was built from."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import idx_bytes, npy_bytes, npz_bytes, png_bytes, small_images, zip_bytes

from fisher_core.data import DatasetError, ImageDataset, load_builtin, load_file


def test_npz_uint8_hw_with_labels_and_attributes():
    x = small_images(5)
    ds = load_file(npz_bytes(images=x, labels=np.array([0, 1, 2, 1, 0]),
                             class_names=np.array(["a", "b", "c"]),
                             attributes=np.array([[1, 0], [0, 0], [1, 1], [0, 1], [1, 0]]),
                             attribute_names=np.array(["smile", "hat"])), filename="s.npz")
    np.testing.assert_allclose(ds.images[:, 0], x / 255.0, atol=1e-7)
    assert ds.labels.tolist() == [0, 1, 2, 1, 0]
    assert ds.class_names == ["a", "b", "c"] and ds.attribute_names == ["smile", "hat"]
    assert ds.attributes.dtype == bool and ds.attributes[2].tolist() == [True, True]
    assert ds.name == "s"


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_npz_rgb_layouts(layout):
    rgb = np.random.default_rng(1).random((4, 6, 7, 3)).astype(np.float32)
    arr = rgb if layout == "nhwc" else rgb.transpose(0, 3, 1, 2)
    ds = load_file(npz_bytes(images=arr), filename="c.npz")
    np.testing.assert_array_equal(ds.images, rgb.transpose(0, 3, 1, 2))


def test_npy_float_0_255_and_string_labels():
    x = small_images(4).astype(np.float64)
    ds = load_file(npy_bytes(x), filename="x.npy")
    np.testing.assert_allclose(ds.images[:, 0], x / 255.0, rtol=1e-6)
    ds = load_file(npz_bytes(images=x, labels=np.array(["cat", "dog", "cat", "ant"])),
                   filename="y.npz")
    assert ds.class_names == ["ant", "cat", "dog"] and ds.labels.tolist() == [1, 2, 1, 0]


def test_path_and_file_object_sources(tmp_path):
    p = tmp_path / "d.npy"
    p.write_bytes(npy_bytes(small_images(3)))
    assert len(load_file(p)) == 3
    assert len(load_file(str(p))) == 3
    with open(p, "rb") as fh:
        assert load_file(fh).name == "d"


def test_zip_imagefolder_with_attributes_csv():
    imgs = small_images(4, 5, 6)
    members = {
        "root/cat/1.png": png_bytes(imgs[0]), "root/cat/2.png": png_bytes(imgs[1]),
        "root/dog/3.png": png_bytes(imgs[2]), "root/dog/4.png": png_bytes(imgs[3]),
        "root/attributes.csv": b"filename,fluffy\n1.png,1\n2.png,0\n3.png,true\n4.png,no\n",
        "__MACOSX/._1.png": b"junk",
    }
    ds = load_file(zip_bytes(members), filename="pets.zip")
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(ds.images[:, 0], imgs / 255.0, atol=1e-7)
    assert ds.attributes[:, 0].tolist() == [True, False, True, False]


def test_zip_flat_rgb_and_jpeg():
    rgb = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    ds = load_file(zip_bytes({"a.png": png_bytes(rgb[0]), "b.jpg": png_bytes(rgb[1], "JPEG")}),
                   filename="flat.zip")
    assert ds.labels is None and ds.shape == (3, 8, 8)
    np.testing.assert_allclose(ds.images[0], rgb[0].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_zip_mixed_sizes_resized_only_when_asked():
    data = zip_bytes({"a.png": png_bytes(small_images(1, 8, 8)[0]),
                      "b.png": png_bytes(small_images(1, 12, 10)[0])})
    with pytest.raises(DatasetError, match="different sizes.*choose a common size"):
        load_file(data, filename="m.zip")
    assert load_file(data, filename="m.zip", size=16).shape == (1, 16, 16)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_pair_in_zip(gz):
    x = small_images(7, 28, 28)
    y = np.arange(7, dtype=np.uint8) % 10
    ds = load_file(idx_bytes(x, gz), filename="t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    np.testing.assert_allclose(ds.images[:, 0], x / 255.0, atol=1e-7)
    pair = zip_bytes({"train-images-idx3-ubyte.gz": idx_bytes(x, True),
                      "train-labels-idx1-ubyte.gz": idx_bytes(y, True)})
    ds = load_file(pair, filename="mnist.zip")
    assert ds.labels.tolist() == y.tolist()


def test_resize_on_request_matches_direct_resize():
    x = small_images(3, 16, 16)
    ds = load_file(npy_bytes(x), filename="r.npy", size=(8, 8))
    ref = ImageDataset((x / 255.0).astype(np.float32)[:, None]).resize(8).images
    np.testing.assert_allclose(ds.images, ref, atol=1e-6)


def test_builtins():
    d = load_builtin("digits")
    assert d.images.shape == (1797, 1, 8, 8) and d.labels.max() == 9
    from sklearn.datasets import load_digits
    np.testing.assert_allclose(d.images[:, 0] * 16, load_digits().images, atol=1e-5)
    f = load_builtin("faces", n=400, seed=3)
    assert f.images.shape == (400, 1, 32, 32)
    assert f.attribute_names == ["smiling", "eyeglasses", "eyes_open", "hat"]
    # attributes are independent fair coins; labels encode the combination
    assert np.all(np.abs(f.attributes.mean(0) - 0.5) < 0.1)
    assert abs(np.corrcoef(f.attributes.T)[0, 1]) < 0.15
    np.testing.assert_array_equal(f.labels, f.attributes @ (1 << np.arange(4)))
    # same seed, same faces; the attribute is visible: smiling faces differ in the mouth
    np.testing.assert_array_equal(f.images, load_builtin("faces", n=400, seed=3).images)
    with pytest.raises(DatasetError, match="unknown built-in dataset 'cifar'"):
        load_builtin("cifar")


def test_dataset_methods():
    f = load_builtin("faces", n=200)
    tr, te = f.split(0.25, seed=1)
    assert len(tr) == 150 and len(te) == 50
    assert set(map(tuple, tr.images.reshape(150, -1)[:, :5])).isdisjoint(
        set(map(tuple, te.images.reshape(50, -1)[:, :5])))
    q = f.quantize(4)
    assert q.levels == 4 and set(np.unique(q.images * 3).round(5)) <= {0.0, 1.0, 2.0, 3.0}
    rgb = f.to_rgb()
    assert rgb.shape == (3, 32, 32)
    np.testing.assert_allclose(rgb.to_grey().images, f.images, atol=1e-5)
    assert f.subset([3, 1]).labels.tolist() == [f.labels[3], f.labels[1]]
    with pytest.raises(ValueError, match="levels must be an integer in \\[2, 256\\]"):
        f.quantize(1)
    with pytest.raises(ValueError, match="test_size must be in \\(0, 1\\)"):
        f.split(1.5)


def test_binary_file_object_in_text_mode_rejected(tmp_path):
    p = tmp_path / "t.npy"
    p.write_bytes(b"hello")
    with open(p) as fh, pytest.raises(DatasetError, match="binary mode"):
        load_file(fh)


def test_bytesio_named_upload():
    buf = io.BytesIO(npy_bytes(small_images(2)))
    buf.name = "upload.npy"
    assert load_file(buf).name == "upload"
