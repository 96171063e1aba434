"""Local-descriptor baselines: each (descriptor, encoding) pair equals its parts composed."""

import numpy as np
import pytest

from fisher_core.data import ImageDataset, load_builtin
from fisher_core.embeddings import (
    default_pca,
    fisher_vector_embedding,
    local_descriptor_embedding,
)
from fisher_core.fisher import (
    BagOfWordsEncoder,
    FisherVectorEncoder,
    VLADEncoder,
    image_descriptors,
    keypoint_descriptors,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def faces():
    ds = load_builtin("faces", n=30)
    # one blank image: no keypoint at all
    images = np.concatenate([ds.images, np.zeros((1, 1, 32, 32), np.float32)])
    return ImageDataset(images, name="faces31")


def test_sift_vlad_is_keypoints_then_vlad(faces):
    steps = []
    emb = local_descriptor_embedding(faces, descriptors="sift", encoding="vlad",
                                     n_components=4, progress=lambda f, m: steps.append(f))
    sets = keypoint_descriptors(faces.images, "sift", pca=32)
    ref = VLADEncoder(4, random_state=0).fit_transform(sets)
    np.testing.assert_allclose(emb.vectors, ref, rtol=1e-6, atol=1e-7)
    assert emb.kind == "vlad" and emb.dim == 4 * 34 and emb.model == "kmeans-k4-sift"
    p = emb.params
    assert (p["descriptors"], p["encoding"], p["pca"], p["descriptor_dim"]) == (
        "sift", "vlad", 32, 34)
    assert p["n_empty"] == 1 and p["mean_descriptors"] == pytest.approx(
        np.mean([len(s) for s in sets]), abs=0.01)
    np.testing.assert_array_equal(emb.vectors[-1], 0.0)
    assert steps == sorted(steps) and steps[-1] == 1.0 and len(steps) > 3


def test_orb_fisher_vectors_zero_for_the_empty_image(faces):
    emb = local_descriptor_embedding(faces, descriptors="orb", encoding="fisher",
                                     n_components=3, pca=6, spatial=False)
    sets = keypoint_descriptors(faces.images, "orb", pca=6, spatial=False)
    full = [s for s in sets if len(s)]
    ref = FisherVectorEncoder(3, random_state=0).fit_transform(full)
    assert emb.kind == "fisher_vector" and emb.dim == 3 * (1 + 2 * 6)
    np.testing.assert_allclose(emb.vectors[:-1], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(emb.vectors[-1], 0.0)
    assert emb.params["n_empty"] == 1 and emb.params["n_keypoints"] == 50


def test_dense_bow_and_dense_fisher(faces):
    emb = local_descriptor_embedding(faces, descriptors="dense", encoding="bow",
                                     n_components=5, weighting="tfidf")
    ref = BagOfWordsEncoder(5, weighting="tfidf", random_state=0).fit_transform(
        image_descriptors(faces.images, pca=24))  # "auto": 6×6 patches are PCA-reduced
    np.testing.assert_allclose(emb.vectors, ref, rtol=1e-6, atol=1e-7)
    assert emb.kind == "bow" and emb.params["n_empty"] == 0 and emb.params["pca"] == 24
    assert emb.params["mean_descriptors"] == 196  # 6×6 patches every 2 pixels of 32×32
    fv = local_descriptor_embedding(faces, descriptors="dense", encoding="fisher",
                                    n_components=2)
    ref, _ = fisher_vector_embedding(faces, n_components=2, pca=24)  # today's path
    np.testing.assert_array_equal(fv.vectors, ref.vectors)
    assert fv.params["descriptors"] == "dense" and fv.kind == "fisher_vector"


def test_default_pca_follows_the_descriptor():
    assert default_pca("sift", (1, 8, 8)) == default_pca("orb", (3, 64, 64)) == 32
    assert default_pca("dense", (1, 8, 8)) is None  # 3×3 patches: 9 values
    assert default_pca("dense", (1, 32, 32)) == 24  # 6×6 patches: 36 values
    assert default_pca("dense", (3, 8, 8)) == 24  # 3 channels × 3×3 = 27 values
    assert default_pca("dense", (1, 32, 32), patch=4) is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"descriptors": "surf"}, r"descriptors must be one of \['dense', 'sift', 'orb'\], got "
                              r"'surf'"),
    ({"encoding": "vlat"}, r"encoding must be one of \['fisher', 'vlad', 'bow'\], got 'vlat'"),
    ({"n_components": 0}, r"n_components must be an integer >= 1, got 0"),
])
def test_errors(faces, kwargs, match):
    with pytest.raises(ValueError, match=match):
        local_descriptor_embedding(faces, **kwargs)


def test_no_keypoint_anywhere_is_an_error():
    blank = ImageDataset(np.zeros((3, 1, 16, 16), np.float32), name="blank")
    with pytest.raises(ValueError, match=r"no image has a keypoint; use dense descriptors"):
        local_descriptor_embedding(blank, encoding="fisher", pca=None)
