"""Fisher vectors: autograd of the GMM log-likelihood, scikit-image, naive per-set loops."""

import numpy as np
import pytest
import torch
from skimage.feature import fisher_vector as skimage_fisher_vector
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from fisher_core.fisher import FisherVectorEncoder, GaussianMixture, fisher_vector

K, D = 3, 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(600, D)) * [1.0, 2.0, 0.5, 1.0] + [3.0, 0.0, -1.0, 0.5]
    sets = [rng.normal(size=(n, D)) * 1.5 + [3.0, 0.0, -1.0, 0.5] for n in (9, 40, 1, 17)]
    return train, sets


@pytest.fixture(scope="module", params=["ours", "sklearn"])
def gmm(request, data):
    train, _ = data
    if request.param == "ours":
        return GaussianMixture(K, random_state=0, dtype="float64").fit(train)
    return SkGMM(K, covariance_type="diag", random_state=0).fit(train)


def _autograd_gradient(x, gmm):
    """∇ of 1/N Σ_t log Σ_k softmax(a)_k N(x_t | μ_k, σ_k) w.r.t. (a, μ, σ) at a = log w."""
    logits = torch.tensor(np.log(gmm.weights_), requires_grad=True)
    mu = torch.tensor(gmm.means_, requires_grad=True)
    sd = torch.tensor(np.sqrt(gmm.covariances_), requires_grad=True)
    comp = torch.distributions.Normal(mu, sd).log_prob(torch.tensor(x)[:, None, :]).sum(-1)
    mean_ll = torch.logsumexp(torch.log_softmax(logits, 0) + comp, dim=1).mean()
    return torch.autograd.grad(mean_ll, (logits, mu, sd))


def _flat(parts):
    return np.concatenate([p.detach().numpy().ravel() for p in parts])


def test_none_is_the_exact_gradient(data, gmm):
    _, sets = data
    for x in sets:
        expected = _flat(_autograd_gradient(x, gmm))
        got = fisher_vector(x, gmm, normalization="none", power=None, l2=False, dtype="float64")
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_analytic_is_gradient_times_inverse_sqrt_fisher(data, gmm):
    _, sets = data
    w = gmm.weights_
    sd = np.sqrt(gmm.covariances_)
    for x in sets:
        g_a, g_mu, g_sd = (g.numpy() for g in _autograd_gradient(x, gmm))
        expected = np.concatenate([
            g_a / np.sqrt(w),
            (g_mu * sd / np.sqrt(w)[:, None]).ravel(),
            (g_sd * sd / np.sqrt(2 * w)[:, None]).ravel(),
        ])
        got = fisher_vector(x, gmm, power=None, l2=False, dtype="float64")
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        got32 = fisher_vector(x, gmm, power=None, l2=False)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5)


def _skimage_to_ours(fv):
    """scikit-image uses the same [α, μ, σ] component-major layout but the opposite σ sign."""
    fv = fv.copy()
    fv[..., K + K * D :] *= -1
    return fv


def test_analytic_matches_scikit_image(data):
    train, sets = data
    sk = SkGMM(K, covariance_type="diag", random_state=0).fit(train)
    plain = np.stack([skimage_fisher_vector(x, sk) for x in sets])
    ours = fisher_vector(sets, sk, power=None, l2=False, dtype="float64")
    np.testing.assert_allclose(ours, _skimage_to_ours(plain), rtol=1e-10, atol=1e-12)
    # improved: power and L2 are odd / sign-blind, so the σ-block sign flip commutes
    improved = np.stack([skimage_fisher_vector(x, sk, improved=True) for x in sets])
    ours = fisher_vector(sets, sk, power=0.5, l2=True, dtype="float64")
    np.testing.assert_allclose(ours, _skimage_to_ours(improved), rtol=1e-10, atol=1e-12)
    # the μ block is the component-major (K, D) ravel: check one entry by hand
    x = sets[1]
    gamma = sk.predict_proba(x)
    k, d = 2, 1
    by_hand = (gamma[:, k] * (x[:, d] - sk.means_[k, d])).sum() / (
        len(x) * np.sqrt(sk.weights_[k]) * np.sqrt(sk.covariances_[k, d]))
    assert ours.shape == (4, K + 2 * K * D)
    assert plain[1, K + k * D + d] == pytest.approx(by_hand, rel=1e-10)


@pytest.mark.parametrize("batch_size", [None, 5, 23])
def test_batched_sets_equal_one_at_a_time(data, batch_size):
    train, sets = data
    gmm = GaussianMixture(K, random_state=0).fit(train)
    one_by_one = np.stack([fisher_vector(x, gmm, dtype="float64") for x in sets])
    batched = fisher_vector(sets, gmm, batch_size=batch_size, dtype="float64")
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-10, atol=1e-12)
    cube = np.stack([x[:9] for x in sets if len(x) >= 9])  # (S, n, D) array input
    np.testing.assert_allclose(
        fisher_vector(cube, gmm, batch_size=batch_size, dtype="float64"),
        fisher_vector(list(cube), gmm, dtype="float64"), rtol=1e-10, atol=1e-12,
    )


def test_power_and_l2_normalisation(data, gmm):
    _, sets = data
    raw = fisher_vector(sets, gmm, power=None, l2=False, dtype="float64")
    powered = fisher_vector(sets, gmm, power=0.3, l2=False, dtype="float64")
    np.testing.assert_allclose(powered, np.sign(raw) * np.abs(raw) ** 0.3, rtol=1e-12)
    final = fisher_vector(sets, gmm, dtype="float64")
    expected = np.sign(raw) * np.sqrt(np.abs(raw))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(final, expected, rtol=1e-12)


def test_all_zero_vector_stays_finite():
    # K = 1, μ = 0, σ = 1 and the set {−1, +1}: every gradient is exactly zero
    gmm = GaussianMixture(1)
    gmm.weights_, gmm.means_, gmm.covariances_ = np.ones(1), np.zeros((1, 1)), np.ones((1, 1))
    x = np.array([[-1.0], [1.0]])
    for power in (None, 0.5):
        fv = fisher_vector(x, gmm, power=power, l2=True)
        assert np.all(np.isfinite(fv)) and np.all(fv == 0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"normalization": "empirical"}, ValueError, "use FisherVectorEncoder"),
        ({"normalization": "l1"}, ValueError, "normalization must be one of"),
        ({"power": 0}, ValueError, "power must be None or a float > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be None or an integer >= 1"),
    ],
)
def test_bad_options_raise(data, kwargs, error, match):
    train, sets = data
    gmm = GaussianMixture(K, random_state=0).fit(train)
    with pytest.raises(error, match=match):
        fisher_vector(sets, gmm, **kwargs)


def test_bad_inputs_raise(data):
    train, sets = data
    gmm = GaussianMixture(K, random_state=0).fit(train)
    with pytest.raises(TypeError, match="gmm must be a fitted"):
        fisher_vector(sets, object())
    full = SkGMM(2, covariance_type="full", random_state=0).fit(train)
    with pytest.raises(TypeError, match="covariance_type='full'"):
        fisher_vector(sets, full)
    with pytest.raises(NotFittedError):
        fisher_vector(sets, GaussianMixture(2))
    with pytest.raises(ValueError, match="D=3 features but the GMM was fitted on D=4"):
        fisher_vector(np.zeros((5, 3)), gmm)
    with pytest.raises(ValueError, match="set 1 has no descriptors"):
        fisher_vector([sets[0], np.zeros((0, D))], gmm)
    bad = sets[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        fisher_vector([sets[0], bad], gmm)


# --------------------------------------------------------------------------- encoder
def _task(n_sets, seed):
    """Sets of 2-D descriptors; class 1 has more of them in a second, tighter mode."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_sets) % 2
    sets = []
    for label in labels:
        x = rng.normal(size=(int(rng.integers(15, 35)), 2))
        n_mode = rng.binomial(len(x), 0.35 if label else 0.1)
        x[:n_mode] = rng.normal([1.5, 1.5], 0.4, size=(n_mode, 2))
        sets.append(x)
    return sets, labels


@pytest.fixture(scope="module")
def task():
    return _task(80, 1), _task(200, 2)


def test_pipeline_grid_search_and_clone(task):
    (train, y_train), (test, y_test) = task
    pipe = Pipeline([
        ("fv", FisherVectorEncoder(2, random_state=0, max_iter=30)),
        ("clf", LogisticRegression(C=10.0)),
    ])
    search = GridSearchCV(pipe, {"fv__n_components": [2, 4]}, cv=2).fit(train, y_train)
    assert search.best_params_["fv__n_components"] in (2, 4)
    assert search.score(test, y_test) >= 0.8
    copy = clone(search.best_estimator_)
    assert copy.get_params()["fv__n_components"] == search.best_params_["fv__n_components"]
    assert not hasattr(copy.named_steps["fv"], "gmm_")


def test_normalization_variants_differ_but_all_work(task):
    (train, y_train), (test, y_test) = task
    encoded, scores = {}, {}
    for normalization in ("analytic", "empirical", "none"):
        enc = FisherVectorEncoder(3, normalization=normalization, random_state=0, max_iter=30)
        pipe = Pipeline([("fv", enc), ("clf", LogisticRegression())]).fit(train, y_train)
        scores[normalization] = pipe.score(test, y_test)
        encoded[normalization] = pipe.named_steps["fv"].transform(test)
    assert min(scores.values()) >= 0.85, scores  # chance is 0.5; seen: 0.915, 0.915, 0.91
    assert not np.allclose(encoded["analytic"], encoded["none"], atol=1e-3)
    assert not np.allclose(encoded["analytic"], encoded["empirical"], atol=1e-3)


def test_empirical_standardises_the_training_gradients(task):
    (train, _), (test, _) = task
    enc = FisherVectorEncoder(3, normalization="empirical", power=None, l2=False,
                              random_state=0, max_iter=30).fit(train)
    raw = fisher_vector(train, enc.gmm_, normalization="none", power=None, l2=False)
    z = enc.transform(train)
    np.testing.assert_allclose(z, (raw - raw.mean(0)) / raw.std(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-3)
    raw_test = fisher_vector(test, enc.gmm_, normalization="none", power=None, l2=False)
    np.testing.assert_allclose(enc.transform(test), (raw_test - enc.mean_) / enc.scale_,
                               rtol=1e-4, atol=1e-4)


def test_whitening_gives_identity_covariance(task):
    (train, _), _ = task
    enc = FisherVectorEncoder(2, whiten=5, power=None, l2=False, random_state=0, max_iter=30)
    z = enc.fit_transform(train)
    assert z.shape == (80, 5)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(5), atol=1e-4)
    unit = FisherVectorEncoder(2, whiten=5, random_state=0, max_iter=30).fit(train)
    np.testing.assert_allclose(np.linalg.norm(unit.transform(train), axis=1), 1.0, rtol=1e-5)


def test_encoder_input_errors(task):
    (train, _), _ = task
    with pytest.raises(ValueError, match="X must be many sets"):
        FisherVectorEncoder(2).fit(train[0])
    with pytest.raises(ValueError, match="normalization must be one of"):
        FisherVectorEncoder(2, normalization="whitened").fit(train)
    with pytest.raises(ValueError, match="whiten=500 exceeds"):
        FisherVectorEncoder(2, whiten=500, max_iter=5).fit(train)
    with pytest.raises(NotFittedError):
        FisherVectorEncoder(2).transform(train)
