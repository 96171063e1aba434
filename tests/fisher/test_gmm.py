"""Diagonal GMM: scikit-learn conformance, EM against scikit-learn and a naive density."""

import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.utils.estimator_checks import parametrize_with_checks

from fisher_core.fisher import DegenerateDataWarning, GaussianMixture
from fisher_core.fisher._em import _m_step, _Params


def _blobs(n=600, seed=0, offset=0.0):
    """Three well separated diagonal clusters in 2-D (unique EM optimum)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-6.0, 0.0], [0.0, 5.0], [6.0, -1.0]]) + offset
    scales = np.array([[1.0, 0.5], [0.4, 1.2], [0.8, 0.8]])
    label = rng.integers(0, 3, n)
    return centres[label] + scales[label] * rng.normal(size=(n, 2))


def _sorted(gmm):
    order = np.argsort(gmm.means_[:, 0])
    return gmm.weights_[order], gmm.means_[order], gmm.covariances_[order]


def _sklearn_with(params):
    """A scikit-learn GMM carrying given (weights, means, variances): an independent scorer."""
    weights, means, variances = params
    sk = SkGMM(len(weights), covariance_type="diag")
    sk.weights_, sk.means_, sk.covariances_ = weights, means, variances
    sk.precisions_cholesky_ = 1.0 / np.sqrt(variances)
    return sk


@parametrize_with_checks(
    [GaussianMixture(), GaussianMixture(n_components=2, dtype="float64", random_state=0)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_em_matches_sklearn_on_separated_clusters(dtype):
    X = _blobs(offset=100.0)  # far from the origin: exercises the centring
    ours = GaussianMixture(3, tol=1e-8, max_iter=300, dtype=dtype, random_state=0).fit(X)
    ref = SkGMM(3, covariance_type="diag", tol=1e-8, max_iter=300, random_state=0).fit(X)
    for a, b in zip(_sorted(ours), _sorted(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    held_out = _blobs(seed=1, offset=100.0)
    assert ours.score(held_out) == pytest.approx(ref.score(held_out), abs=1e-5)
    assert ours.converged_ and ours.n_iter_ >= 2


def test_inference_matches_naive_density_and_sklearn():
    X = _blobs()
    gmm = GaussianMixture(3, random_state=0).fit(X)
    # naive: a loop over components with scipy's univariate normal log-pdf
    joint = np.stack(
        [
            np.log(w) + norm.logpdf(X, m, np.sqrt(v)).sum(1)
            for w, m, v in zip(gmm.weights_, gmm.means_, gmm.covariances_, strict=True)
        ],
        axis=1,
    )
    np.testing.assert_allclose(gmm.score_samples(X), logsumexp(joint, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        gmm.predict_proba(X), np.exp(joint - logsumexp(joint, axis=1, keepdims=True)),
        atol=1e-12,
    )
    sk = _sklearn_with((gmm.weights_, gmm.means_, gmm.covariances_))
    np.testing.assert_array_equal(gmm.predict(X), sk.predict(X))
    assert gmm.bic(X) == pytest.approx(sk.bic(X), rel=1e-12)
    assert gmm.aic(X) == pytest.approx(sk.aic(X), rel=1e-12)


def test_em_likelihood_never_decreases():
    X = _blobs(n=300, seed=3)
    bounds = []
    for max_iter in range(1, 8):
        gmm = GaussianMixture(4, max_iter=max_iter, tol=0.0, dtype="float64", random_state=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            bounds.append(gmm.fit(X).lower_bound_)
    assert np.all(np.diff(bounds) >= -1e-10), bounds


def test_minibatched_estep_and_float32_agree_with_full_float64():
    X = _blobs(n=500, seed=2)
    full = GaussianMixture(3, dtype="float64", random_state=0, tol=1e-9, max_iter=200).fit(X)
    small = GaussianMixture(3, dtype="float64", random_state=0, tol=1e-9, max_iter=200,
                            batch_size=7).fit(X)
    f32 = GaussianMixture(3, random_state=0, tol=1e-9, max_iter=200, batch_size=64).fit(X)
    for a, b, c in zip(_sorted(full), _sorted(small), _sorted(f32), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)


def test_more_inits_never_worse():
    X = _blobs(n=400, seed=4)
    one = GaussianMixture(6, n_init=1, random_state=3).fit(X)
    many = GaussianMixture(6, n_init=4, random_state=3).fit(X)  # first init is the same one
    assert many.lower_bound_ >= one.lower_bound_ - 1e-9


def test_duplicates_warn_and_stay_finite():
    X = np.repeat(np.array([[0.0, 1.0], [2.0, 3.0]]), 10, axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmm = GaussianMixture(4, random_state=0).fit(X)
    messages = [str(w.message) for w in caught if w.category is DegenerateDataWarning]
    assert any("only 2 distinct points" in m for m in messages), messages
    # the duplicate components lose every point to their twin: kept, and reported
    assert any("2 of 4 components ended with (almost) no responsibility" in m
               for m in messages), messages
    for value in (gmm.weights_, gmm.means_, gmm.covariances_):
        assert np.all(np.isfinite(value))
    assert gmm.covariances_.min() >= gmm.reg_covar * 0.99
    assert np.all(np.isfinite(gmm.score_samples(X)))


def test_constant_dimension_gets_reg_covar_floor():
    X = _blobs(n=200)
    X = np.column_stack([X, np.full(len(X), 3.0)])
    gmm = GaussianMixture(3, reg_covar=1e-4, random_state=0).fit(X)
    np.testing.assert_allclose(gmm.covariances_[:, 2], 1e-4, rtol=1e-3)
    np.testing.assert_allclose(gmm.means_[:, 2], 3.0, rtol=1e-6)


def test_empty_component_is_kept_with_previous_parameters():
    prev = _Params(
        torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64),
        torch.tensor([[0.0], [7.0], [9.0]], dtype=torch.float64),
        torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64),
    )
    nk = torch.tensor([6.0, 0.0, 4.0], dtype=torch.float64)
    s1 = torch.tensor([[6.0], [0.0], [36.0]], dtype=torch.float64)
    s2 = torch.tensor([[12.0], [0.0], [328.0]], dtype=torch.float64)
    new = _m_step((nk, s1, s2), prev, 1e-6)
    assert new.means[1].item() == 7.0 and new.variances[1].item() == 2.0
    assert new.means[2].item() == 9.0 and new.variances[2].item() == pytest.approx(1.0 + 1e-6)
    assert 0 < new.weights[1].item() < 1e-14
    assert new.weights.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 0}, "n_components must be an integer >= 1, got 0"),
        ({"reg_covar": -1.0}, "reg_covar must be a finite float >= 0"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"device": "tpu:x"}, "device must be None"),
    ],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**params).fit(_blobs(n=20))


def test_fewer_samples_than_components_raises():
    with pytest.raises(ValueError, match="n_components = 5, n_samples = 3"):
        GaussianMixture(5).fit(np.arange(6.0).reshape(3, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        GaussianMixture(2, device="cuda").fit(_blobs(n=20))


def test_nonconvergence_warns():
    with pytest.warns(ConvergenceWarning, match=r"did not converge.*\(max_iter=1, tol=0.0\)"):
        GaussianMixture(3, max_iter=1, tol=0.0, random_state=0).fit(_blobs(n=100))
