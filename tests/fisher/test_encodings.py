"""VLAD and bag-of-words against per-set Python loops, np.bincount and scikit-learn's tf-idf."""

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfTransformer

from fisher_core.fisher import BagOfWordsEncoder, VLADEncoder

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _sets(seed=0, d=5):
    """Variable-length sets of clustered points, one of them empty."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(6, d))
    sizes = [7, 0, 1, 30, 12, 3, 25]
    return [centres[rng.integers(0, 6, n)] + rng.normal(size=(n, d)) for n in sizes]


def _nearest(x, centers):
    return np.array([int(np.argmin([np.sum((row - c) ** 2) for c in centers])) for row in x],
                    dtype=np.int64)


def _vlad_loop(sets, centers, intra, power, l2):
    """Jégou et al.'s formula one set, one descriptor at a time."""
    k, d = centers.shape
    out = []
    for x in sets:
        v = np.zeros((k, d))
        for row, word in zip(x, _nearest(x, centers), strict=True):
            v[word] += row - centers[word]
        if intra:
            for j in range(k):
                norm = np.linalg.norm(v[j])
                if norm > 0:
                    v[j] /= norm
        v = v.ravel()
        if power is not None:
            v = np.sign(v) * np.abs(v) ** power
        if l2 and np.linalg.norm(v) > 0:
            v /= np.linalg.norm(v)
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize(("intra", "power", "l2"), [(True, 0.5, True), (False, None, False),
                                                     (False, 0.5, True)])
def test_vlad_matches_the_per_set_loop(intra, power, l2):
    sets = _sets()
    enc = VLADEncoder(4, intra=intra, power=power, l2=l2, random_state=0)
    got = enc.fit_transform(sets)
    assert got.shape == (len(sets), 4 * 5) and got.dtype == np.float32
    ref = _vlad_loop(sets, enc.cluster_centers_, intra, power, l2)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(got[1], 0.0)  # the empty set
    new = _sets(seed=1)
    np.testing.assert_allclose(enc.transform(new),
                               _vlad_loop(new, enc.cluster_centers_, intra, power, l2),
                               rtol=2e-5, atol=2e-6)


def test_codebook_is_a_lloyd_fixed_point():
    sets = _sets(seed=2)
    flat = np.concatenate(sets)
    enc = VLADEncoder(5, random_state=3).fit(sets)
    words = _nearest(flat, enc.cluster_centers_)
    for k in range(5):  # every word is the mean of the descriptors it quantises
        np.testing.assert_allclose(enc.cluster_centers_[k], flat[words == k].mean(0),
                                   rtol=1e-6, atol=1e-8)
    inertia = sum(np.sum((flat[words == k] - enc.cluster_centers_[k]) ** 2) for k in range(5))
    assert enc.inertia_ == pytest.approx(inertia, rel=1e-6)
    again = VLADEncoder(5, random_state=3).fit(sets)  # seeded: the same codebook
    np.testing.assert_array_equal(again.cluster_centers_, enc.cluster_centers_)


@pytest.mark.parametrize(("weighting", "power", "l2"), [("tf", 0.5, True), ("none", None, False),
                                                        ("tf", None, False)])
def test_bag_of_words_matches_bincount(weighting, power, l2):
    sets = _sets(seed=4)
    enc = BagOfWordsEncoder(6, weighting=weighting, power=power, l2=l2, random_state=0)
    got = enc.fit_transform(sets)
    ref = []
    for x in sets:
        h = np.bincount(_nearest(x, enc.cluster_centers_), minlength=6).astype(float)
        if weighting == "tf" and len(x):
            h /= len(x)
        if power is not None:
            h = np.sqrt(h)
        if l2 and h.any():
            h /= np.linalg.norm(h)
        ref.append(h)
    np.testing.assert_allclose(got, np.array(ref), rtol=1e-6, atol=1e-7)
    if weighting == "none":
        assert got.sum() == sum(len(s) for s in sets)  # plain counts


def test_tfidf_matches_scikit_learn():
    sets = _sets(seed=5)
    enc = BagOfWordsEncoder(6, weighting="tfidf", power=None, l2=True, random_state=0)
    got = enc.fit_transform(sets)
    counts = np.array([np.bincount(_nearest(x, enc.cluster_centers_), minlength=6)
                       for x in sets])
    sk = TfidfTransformer(norm="l2", smooth_idf=True).fit(counts)
    np.testing.assert_allclose(enc.idf_, sk.idf_, rtol=1e-12)
    np.testing.assert_allclose(got, sk.transform(counts).toarray(), rtol=1e-6, atol=1e-7)
    # new sets reuse the training idf
    new = _sets(seed=6)
    new_counts = np.array([np.bincount(_nearest(x, enc.cluster_centers_), minlength=6)
                           for x in new])
    np.testing.assert_allclose(enc.transform(new), sk.transform(new_counts).toarray(),
                               rtol=1e-6, atol=1e-7)


def test_a_3d_array_is_many_equal_sets():
    x = np.random.default_rng(7).normal(size=(4, 9, 3))
    enc = VLADEncoder(3, random_state=0)
    np.testing.assert_allclose(enc.fit_transform(x), enc.transform(list(x)), rtol=1e-6)


@pytest.mark.parametrize(("make", "X", "error", "match"), [
    (lambda: VLADEncoder(80), _sets(), ValueError,
     r"n_clusters=80 needs at least that many descriptors to fit the codebook; the sets "
     r"hold 78\. Lower n_clusters"),
    (lambda: VLADEncoder(0), _sets(), ValueError, r"n_clusters must be an integer >= 1, got 0"),
    (lambda: VLADEncoder(2, intra="yes"), _sets(), ValueError,
     r"intra must be True or False, got 'yes'"),
    (lambda: BagOfWordsEncoder(2, weighting="bm25"), _sets(), ValueError,
     r"weighting must be one of \['tf', 'tfidf', 'none'\], got 'bm25'"),
    (lambda: BagOfWordsEncoder(2, power=-1), _sets(), ValueError,
     r"power must be None or a float > 0"),
    (lambda: VLADEncoder(2), np.zeros((5, 3)), ValueError,
     r"X must be many sets: .* single 2-D array of shape \(5, 3\); wrap it in a list"),
    (lambda: VLADEncoder(2), [np.zeros((3, 2)), np.zeros((2, 4))], ValueError,
     r"all sets must have the same D, got D values \[2, 4\]"),
])
def test_errors(make, X, error, match):
    with pytest.raises(error, match=match):
        make().fit(X)


def test_transform_checks_the_dimension():
    enc = BagOfWordsEncoder(2, random_state=0).fit(_sets())
    with pytest.raises(ValueError, match=r"descriptors have D=3 features but the codebook "
                                         r"was fitted on D=5; use descriptors of the "
                                         r"codebook's dimension"):
        enc.transform([np.zeros((2, 3))])
