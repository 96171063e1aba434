"""SIFT / ORB keypoint descriptors against scikit-image called directly on one image."""

import numpy as np
import pytest
from skimage.feature import ORB, SIFT
from skimage.transform import resize

from fisher_core.data import load_builtin
from fisher_core.fisher import KeypointDescriptor, keypoint_descriptors, upsample_image
from fisher_core.fisher.encodings import BagOfWordsEncoder, VLADEncoder

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def faces():
    return load_builtin("faces", n=6).images  # (6, 1, 32, 32)


def _by_hand(image, kind, **relaxed):
    """The documented recipe, written out: grey → bilinear to 64 → edge pad 16 → detect."""
    grey = resize(image[0].astype(np.float64), (64, 64), order=1, anti_aliasing=False)
    grey = np.pad(grey, 16, mode="edge")
    if kind == "sift":
        det = SIFT(upsampling=1, **relaxed)
        det.detect_and_extract(grey)
        rc, desc = det.positions, det.descriptors / np.linalg.norm(det.descriptors, axis=1,
                                                                   keepdims=True)
    else:
        det = ORB(n_keypoints=50, **relaxed)
        det.detect_and_extract(grey)
        rc, desc = det.keypoints, np.where(det.descriptors, 1.0, -1.0) / 16.0
    xy = np.stack([(rc[:, 1] - 16 + 0.5) / 64, (rc[:, 0] - 16 + 0.5) / 64], axis=1)
    return np.concatenate([desc, np.clip(xy, 0, 1)], axis=1)


@pytest.mark.parametrize(("kind", "dim"), [("sift", 128), ("orb", 256)])
def test_descriptors_match_scikit_image(faces, kind, dim):
    got = keypoint_descriptors(faces[:2], kind, pca=None)
    assert len(got) == 2
    for image, sets in zip(faces[:2], got, strict=True):
        ref = _by_hand(image, kind)
        assert sets.shape == (len(ref), dim + 2) and sets.dtype == np.float32
        assert len(ref) >= 5
        np.testing.assert_allclose(sets, ref, rtol=1e-6, atol=1e-6)
    if kind == "orb":  # ±1/16 entries: squared distance = Hamming distance / 64
        a, b = got[0][0, :dim], got[0][1, :dim]
        assert np.sum((a - b) ** 2) == pytest.approx(np.sum(a != b) / 64)


@pytest.mark.parametrize(("kind", "relaxed"), [("sift", {"c_dog": 0.004, "c_edge": 50.0}),
                                               ("orb", {"fast_threshold": 0.02})])
def test_a_straight_stroke_is_retried_with_relaxed_thresholds(kind, relaxed):
    one = load_builtin("digits").images[[797, 0]]  # a straight "1" (no corner, no blob), a "0"
    try:  # the default thresholds find nothing: SIFT raises, ORB may return no keypoint
        assert len(_by_hand(one[0], kind)) == 0
    except RuntimeError as exc:
        assert "found no features" in str(exc)
    enc = KeypointDescriptor(kind, pca=None)
    got = enc.fit_transform(one)
    assert enc.n_relaxed_ == 1
    np.testing.assert_allclose(got[0], _by_hand(one[0], kind, **relaxed), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], _by_hand(one[1], kind), rtol=1e-6, atol=1e-6)
    assert len(got[0]) >= 3


def test_upsampling_keeps_large_images_and_averages_channels():
    rgb = np.random.default_rng(0).random((3, 80, 100))
    grey, shape = upsample_image(rgb, size=64, pad=2)
    assert shape == (80, 100) and grey.shape == (84, 104)
    np.testing.assert_allclose(grey[2:-2, 2:-2], rgb.mean(0))
    small, shape = upsample_image(rgb[:, :8, :16], size=64, pad=0)
    assert shape == (64, 128) == small.shape  # the smaller side reaches 64


def test_pca_and_positions(faces):
    enc = KeypointDescriptor("sift", pca=8, random_state=0)
    sets = enc.fit_transform(faces)
    assert enc.n_features_out_ == 10 and all(s.shape[1] == 10 for s in sets)
    full = keypoint_descriptors(faces, "sift", pca=None, spatial=True)
    for s, f in zip(sets, full, strict=True):
        np.testing.assert_allclose(s[:, :8], enc.pca_.transform(f[:, :128]), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_array_equal(s[:, 8:], f[:, 128:])  # (x, y) in [0, 1]
        assert 0.0 <= f[:, 128:].min() and f[:, 128:].max() <= 1.0
    for s, t in zip(sets, enc.transform(faces), strict=True):  # the fitted PCA is reused
        np.testing.assert_allclose(s, t, rtol=1e-6)
    bare = keypoint_descriptors(faces[:1], "orb", pca=None, spatial=False)
    assert bare[0].shape[1] == 256


def test_an_image_without_keypoints_gives_an_empty_set_and_a_zero_code(faces):
    images = np.concatenate([faces[:3], np.zeros((1, 1, 32, 32), np.float32)])
    for kind in ("sift", "orb"):
        sets = keypoint_descriptors(images, kind, pca=None)
        assert sets[3].shape == (0, sets[0].shape[1]), kind
    sets = keypoint_descriptors(images, "sift", pca=4)
    assert sets[3].shape == (0, 6)
    for enc in (VLADEncoder(2, random_state=0), BagOfWordsEncoder(2, random_state=0)):
        codes = enc.fit_transform(sets)
        np.testing.assert_array_equal(codes[3], 0.0)
        assert np.all(np.linalg.norm(codes[:3], axis=1) > 0.99)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "surf"}, r"kind must be one of \['sift', 'orb'\], got 'surf'"),
    ({"kind": "sift", "pca": 200}, r"pca must be None or an integer in \[1, 128\] for SIFT "
                                   r"descriptors, got 200"),
    ({"kind": "orb", "size": 4}, r"size must be an integer >= 8, got 4"),
    ({"kind": "sift", "pca": 128}, r"pca=128 needs at least that many keypoints; the images "
                                   r"gave \d+\. Lower pca"),
])
def test_errors(faces, kwargs, match):
    with pytest.raises(ValueError, match=match):
        KeypointDescriptor(**kwargs).fit(faces[:1])


def test_images_are_checked():
    with pytest.raises(ValueError, match=r"images must be a float array of shape \(N, C, H, W\)"):
        keypoint_descriptors(np.zeros((2, 8, 8)))
