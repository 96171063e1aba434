"""FisherNormalizer (the data-fitted steps of the improved Fisher vector) against direct
NumPy computations: standardisation with the training mean/std, whitening with the training
vectors' own covariance (eigendecomposition), and the order standardise → power → whiten → L2."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.fisher import FisherNormalizer


def _vectors(n=200, d=12, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return (rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 3).astype(np.float32)


def test_standardize_uses_training_mean_and_std():
    train, test = _vectors(), _vectors(seed=1)
    steps = FisherNormalizer(standardize=True, power=None, l2=False).fit(train)
    mean, std = train.astype(np.float64).mean(0), train.astype(np.float64).std(0)
    np.testing.assert_allclose(steps.transform(test), (test - mean) / std, rtol=1e-4,
                               atol=1e-4)


def test_whitening_makes_the_training_covariance_the_identity():
    train, test = _vectors(), _vectors(seed=1)
    d = 6
    steps = FisherNormalizer(power=None, whiten=d, l2=False).fit(train)
    z = steps.transform(train).astype(np.float64)
    # sklearn's PCA whitening divides by sqrt of the unbiased (n − 1) variance
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(d), atol=1e-4)
    # the direct formula: top-d eigenvectors of the training covariance, scaled by 1/√λ
    x = train.astype(np.float64)
    lam, vec = np.linalg.eigh(np.cov(x, rowvar=False))
    lam, vec = lam[::-1][:d], vec[:, ::-1][:, :d]
    ref = (test - x.mean(0)) @ vec / np.sqrt(lam)
    got = steps.transform(test)
    signs = np.sign((got * ref).sum(0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(got * signs, ref, rtol=1e-3, atol=1e-3)


def test_order_is_standardize_power_whiten_l2():
    train, test = _vectors(), _vectors(seed=1)
    steps = FisherNormalizer(standardize=True, power=0.5, whiten=4, l2=True).fit(train)
    mean, std = train.mean(0), train.std(0)

    def powered(x):
        s = (x - mean) / std
        return np.sign(s) * np.sqrt(np.abs(s))

    from sklearn.decomposition import PCA

    pca = PCA(4, whiten=True, random_state=0).fit(powered(train))
    ref = pca.transform(powered(test))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = steps.transform(test)
    signs = np.sign((got * ref).sum(0))
    np.testing.assert_allclose(got * signs, ref, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_constant_dimensions_are_only_centred():
    train = _vectors()
    train[:, 3] = 7.0
    z = FisherNormalizer(standardize=True, power=None, l2=False).fit_transform(train)
    assert np.all(np.isfinite(z)) and np.allclose(z[:, 3], 0.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"whiten": 0}, "whiten must be None or an integer >= 1"),
    ({"whiten": 300}, r"whiten=300 exceeds min\(n_samples, n_features\) = 12"),
    ({"power": -1}, "power must be None or a number > 0"),
    ({"l2": "yes"}, "l2 must be True or False"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FisherNormalizer(**kwargs).fit(_vectors())


def test_transform_checks_the_width():
    steps = FisherNormalizer().fit(_vectors())
    with pytest.raises(ValueError, match="X has 5 features but the normaliser was fitted on 12"):
        steps.transform(np.zeros((3, 5)))
