"""Dense patch descriptors against a naive loop over patches and scikit-learn's PCA."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from fisher_core.fisher import (
    GaussianMixture,
    PatchDescriptor,
    default_patch,
    fisher_vector,
    image_descriptors,
)


def _naive(images, patch, stride, spatial):
    """One Python loop per image, row, column: patch values (c, i, j) then centre (x, y)."""
    n, _, height, width = images.shape
    out = []
    for img in images:
        rows = []
        for y in range(0, height - patch + 1, stride):
            for x in range(0, width - patch + 1, stride):
                values = list(img[:, y : y + patch, x : x + patch].ravel())
                if spatial:
                    values += [(x + patch / 2) / width, (y + patch / 2) / height]
                rows.append(values)
        out.append(rows)
    return np.array(out)


@pytest.mark.parametrize("spatial", [True, False])
def test_patches_match_naive_loop(spatial):
    images = np.random.default_rng(0).random((3, 2, 9, 11))  # non-square: catches x/y swaps
    got = image_descriptors(images, patch=3, stride=2, spatial=spatial)
    np.testing.assert_array_equal(got, _naive(images, 3, 2, spatial))


def test_defaults_follow_image_size():
    assert default_patch(8, 8) == (3, 1)
    assert default_patch(32, 32) == (6, 2)
    digits = image_descriptors(np.random.default_rng(1).random((2, 1, 8, 8)))
    np.testing.assert_array_equal(digits, _naive(np.random.default_rng(1).random((2, 1, 8, 8)),
                                                 3, 1, True))
    assert digits.shape == (2, 36, 9 + 2)
    cifar = image_descriptors(np.random.default_rng(2).random((1, 3, 32, 32)).astype(np.float32))
    assert cifar.shape == (1, 14 * 14, 3 * 36 + 2) and cifar.dtype == np.float32
    assert 0.0 < cifar[..., -2:].min() and cifar[..., -2:].max() < 1.0


def test_pca_matches_sklearn_and_is_reusable():
    rng = np.random.default_rng(3)
    train, new = rng.random((20, 1, 8, 8)), rng.random((4, 1, 8, 8))
    desc = PatchDescriptor(pca=4, spatial=True).fit(train)
    raw = _naive(train, 3, 1, False).reshape(-1, 9)  # all patches: max_fit_patches is larger
    ref = PCA(4).fit(raw)
    signs = np.sign((desc.components_ * ref.components_).sum(1))
    np.testing.assert_allclose(desc.components_, ref.components_ * signs[:, None], atol=1e-8)
    np.testing.assert_allclose(desc.mean_, ref.mean_, atol=1e-12)
    got = desc.transform(new)  # the PCA learned on `train`, applied to new images
    expected = (_naive(new, 3, 1, False) - ref.mean_) @ (ref.components_ * signs[:, None]).T
    np.testing.assert_allclose(got[..., :4], expected, atol=1e-10)
    np.testing.assert_array_equal(got[..., 4:], _naive(new, 3, 1, True)[..., 9:])


def test_descriptors_feed_fisher_vectors():
    images = np.random.default_rng(4).random((6, 1, 8, 8))
    desc = image_descriptors(images, pca=3)  # (N, 36, 5): a valid "many sets" input
    gmm = GaussianMixture(2, random_state=0).fit(desc.reshape(-1, desc.shape[2]))
    fv = fisher_vector(desc, gmm, dtype="float64")
    np.testing.assert_allclose(fv[2], fisher_vector(desc[2], gmm, dtype="float64"), atol=1e-12)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (np.full((2, 1, 8, 8), 2.0), {}, r"values in \[0, 1\]"),
        (np.zeros((2, 8, 8)), {}, r"shape \(N, C, H, W\)"),
        (np.zeros((2, 1, 8, 8), dtype=np.uint8), {}, "float array"),
        (np.zeros((2, 1, 8, 8)), {"patch": 9}, r"patch must be an integer in \[1, 8\]"),
        (np.zeros((2, 1, 8, 8)), {"pca": 10}, r"pca must be None or an integer in \[1, C"),
    ],
)
def test_bad_inputs_raise(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_descriptors(images, **kwargs)


def test_transform_checks_channels():
    desc = PatchDescriptor().fit(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="must have 1 channels"):
        desc.transform(np.zeros((2, 3, 8, 8)))
