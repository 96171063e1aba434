"""scikit-learn's own ``GaussianMixture`` tests (sklearn/mixture/tests/test_gaussian_mixture.py,
scikit-learn 1.9) that apply to diagonal covariances, ported to :class:`GaussianMixture`.

Each test keeps scikit-learn's name, data and assertions; where ours deliberately differs the
comment says so. Also here: the k-means initialisation against scikit-learn's ``KMeans``.
"""

import copy
import itertools
import re
import sys
import warnings
from io import StringIO

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_almost_equal, assert_array_equal
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics.cluster import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGMM

from fisher_core.fisher import GaussianMixture
from fisher_core.fisher._init import kmeanspp, lloyd

DTYPES = [np.float32, np.float64]


class RandomData:
    """scikit-learn's test data, diagonal part: Gaussian blobs with random weights."""

    def __init__(self, rng, n_samples=200, n_components=2, n_features=2, scale=50,
                 dtype=np.float64):
        self.n_samples, self.n_components, self.n_features = n_samples, n_components, n_features
        self.weights = rng.rand(n_components).astype(dtype)
        self.weights = self.weights / self.weights.sum()
        self.means = rng.rand(n_components, n_features).astype(dtype) * scale
        self.covariances = (0.5 + rng.rand(n_components, n_features).astype(dtype)) ** 2
        self.precisions = 1.0 / self.covariances
        data_rng = np.random.RandomState(0)
        self.X = np.vstack([
            data_rng.multivariate_normal(m, np.diag(c), int(np.round(w * n_samples)))
            for w, m, c in zip(self.weights, self.means, self.covariances, strict=True)
        ]).astype(dtype)
        self.Y = np.hstack([np.full(int(np.round(w * n_samples)), k)
                            for k, w in enumerate(self.weights)])


def test_gaussian_mixture_attributes():
    X = np.random.RandomState(0).rand(10, 2)
    g = GaussianMixture(2, tol=1e-4, n_init=3, max_iter=30, reg_covar=1e-1,
                        covariance_type="diag", init_params="random").fit(X)
    assert (g.n_components, g.covariance_type, g.tol, g.reg_covar, g.max_iter, g.n_init,
            g.init_params) == (2, "diag", 1e-4, 1e-1, 30, 3, "random")


def test_covariance_type_other_than_diag_is_refused():  # ours: diagonal only
    with pytest.raises(ValueError, match="covariance_type must be 'diag'.*scikit-learn's"):
        GaussianMixture(2, covariance_type="full").fit(np.random.RandomState(0).rand(10, 2))


@pytest.mark.parametrize("name", ["init_params", "verbose", "warm_start"])
def test_bad_parameters(name):
    bad = {"init_params": "kmeans2", "verbose": -1, "warm_start": "yes"}[name]
    with pytest.raises(ValueError, match=name):
        GaussianMixture(2, **{name: bad}).fit(np.random.RandomState(0).rand(10, 2))


def test_check_weights():
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    k = data.n_components
    g = GaussianMixture(n_components=k)
    g.weights_init = rng.rand(k, 1)  # set after construction: must be seen by fit
    with pytest.raises(ValueError, match=re.escape(
            f"The parameter 'weights' should have the shape of ({k},), but got ({k}, 1)")):
        g.fit(data.X)
    g.weights_init = rng.rand(k) + 1
    with pytest.raises(ValueError, match=re.escape("'weights' should be in the range [0, 1]")):
        g.fit(data.X)
    bad = rng.rand(k)
    g.weights_init = bad / (bad.sum() + 1)
    with pytest.raises(ValueError, match=re.escape(
            f"should be normalized, but got sum(weights) = {g.weights_init.sum():.5f}")):
        g.fit(data.X)
    g = GaussianMixture(weights_init=data.weights, n_components=k).fit(data.X)
    assert_array_equal(data.weights, g.weights_init)


def test_check_means():
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    g = GaussianMixture(n_components=data.n_components)
    g.means_init = rng.rand(data.n_components + 1, data.n_features)
    with pytest.raises(ValueError, match="The parameter 'means' should have the shape of "):
        g.fit(data.X)
    g.means_init = data.means
    g.fit(data.X)
    assert_array_equal(data.means, g.means_init)


def test_check_precisions():
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    k, d = data.n_components, data.n_features
    g = GaussianMixture(n_components=k, random_state=rng)
    g.precisions_init = np.ones((k + 1, d))
    with pytest.raises(ValueError, match="The parameter 'diag precision' should have the shape"):
        g.fit(data.X)
    g.precisions_init = np.full((k, d), -1.0)
    with pytest.raises(ValueError, match="'diag precision' should be positive"):
        g.fit(data.X)
    g.precisions_init = data.precisions
    g.fit(data.X)
    assert_array_equal(data.precisions, g.precisions_init)


def _with_init(data, **kwargs):
    return GaussianMixture(n_components=data.n_components, weights_init=data.weights,
                           means_init=data.means, precisions_init=data.precisions, **kwargs)


def test_gaussian_mixture_predict_predict_proba():
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    g = _with_init(data, random_state=rng)
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted yet"):
        g.predict(data.X)
    g.fit(data.X)
    assert_array_equal(g.predict(data.X), g.predict_proba(data.X).argmax(axis=1))
    assert adjusted_rand_score(data.Y, g.predict(data.X)) > 0.95


@pytest.mark.filterwarnings("ignore:.*did not converge.*")
@pytest.mark.parametrize("seed, max_iter, tol", [(0, 2, 1e-7), (1, 2, 1e-1), (3, 300, 1e-7),
                                                 (4, 300, 1e-1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_mixture_fit_predict(seed, max_iter, tol, dtype):
    rng = np.random.RandomState(seed)
    data = RandomData(rng, dtype=dtype)
    g = _with_init(data, random_state=rng, max_iter=max_iter, tol=tol)
    f = copy.deepcopy(g)
    assert_array_equal(f.fit(data.X).predict(data.X), g.fit_predict(data.X))
    assert adjusted_rand_score(data.Y, g.fit_predict(data.X)) > 0.95
    assert g.means_.dtype == g.weights_.dtype == g.precisions_.dtype == dtype


def test_gaussian_mixture_fit_predict_n_init():
    X = np.random.RandomState(0).randn(1000, 5)
    gm = GaussianMixture(n_components=5, n_init=5, random_state=0)
    assert_array_equal(gm.fit_predict(X), gm.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_mixture_fit(dtype):
    """Recover the ground truth (reg_covar=0, 20 initialisations)."""
    rng = np.random.RandomState(0)
    data = RandomData(rng, dtype=dtype)
    g = GaussianMixture(n_components=data.n_components, n_init=20, reg_covar=0,
                        random_state=rng).fit(data.X)
    assert_allclose(np.sort(g.weights_), np.sort(data.weights), rtol=0.1, atol=1e-2)
    order, truth = g.means_[:, 0].argsort(), data.means[:, 0].argsort()
    assert_allclose(g.means_[order], data.means[truth], rtol=0.1, atol=1e-2)
    order, truth = g.precisions_.sum(1).argsort(), data.precisions.sum(1).argsort()
    for a, b in zip(order, truth, strict=True):  # EmpiricalCovariance.error_norm: ‖Δ‖²_F / D
        assert ((g.precisions_[a] - data.precisions[b]) ** 2).sum() / data.n_features < 0.15
    assert g.means_.dtype == g.covariances_.dtype == g.precisions_.dtype == dtype


def test_gaussian_mixture_fit_best_params():
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    g = GaussianMixture(n_components=data.n_components, reg_covar=0, random_state=rng)
    ll = [g.fit(data.X).score(data.X) for _ in range(10)]
    best = GaussianMixture(n_components=data.n_components, n_init=10, reg_covar=0,
                           random_state=rng).fit(data.X)
    assert best.score(data.X) == pytest.approx(min(ll), abs=1e-6)


def test_gaussian_mixture_fit_convergence_warning():
    rng = np.random.RandomState(0)
    data = RandomData(rng, scale=1)
    g = GaussianMixture(n_components=data.n_components, max_iter=1, reg_covar=0,
                        random_state=rng)
    with pytest.warns(ConvergenceWarning, match=re.escape(
            "Best performing initialization did not converge. Try different init parameters, "
            "or increase max_iter, tol, or check for degenerate data")):
        g.fit(data.X)


def test_multiple_init():
    X = np.random.RandomState(0).randn(50, 5)
    one = GaussianMixture(2, random_state=0).fit(X).score(X)
    five = GaussianMixture(2, random_state=0, n_init=5).fit(X).score(X)
    assert five >= one


def test_gaussian_mixture_n_parameters():
    X = np.random.RandomState(0).randn(50, 5)
    assert GaussianMixture(2, random_state=0).fit(X)._n_parameters() == 21


def test_bic_1d_1component():
    """Diagonal and scikit-learn's full covariance agree in 1-D with one component."""
    X = np.random.RandomState(0).randn(100, 1)
    full = SkGMM(1, covariance_type="full", random_state=0).fit(X).bic(X)
    assert GaussianMixture(1, random_state=0).fit(X).bic(X) == pytest.approx(full, rel=1e-7)


def test_gaussian_mixture_aic_bic():
    rng = np.random.RandomState(0)
    n, d = 50, 3
    X = rng.randn(n, d)
    _, logdet = np.linalg.slogdet(np.cov(X.T, bias=1))
    sgh = 0.5 * (logdet + d * (1 + np.log(2 * np.pi)))  # standard Gaussian entropy
    g = GaussianMixture(2, random_state=rng, max_iter=200).fit(X)
    bound = d / np.sqrt(n)
    assert (g.aic(X) - (2 * n * sgh + 2 * g._n_parameters())) / n < bound
    assert (g.bic(X) - (2 * n * sgh + np.log(n) * g._n_parameters())) / n < bound


@pytest.mark.parametrize("verbose", [1, 2])
def test_gaussian_mixture_verbose(verbose, capsys):
    data = RandomData(np.random.RandomState(0))
    GaussianMixture(data.n_components, reg_covar=0, random_state=0, verbose=verbose,
                    verbose_interval=1).fit(data.X)
    out = capsys.readouterr().out
    assert out.startswith("Initialization 0\n  Iteration 1")
    assert "Initialization converged." in out
    assert ("time lapse" in out) == (verbose == 2)


def test_not_verbose_prints_nothing(capsys):
    GaussianMixture(2, random_state=0).fit(RandomData(np.random.RandomState(0)).X)
    assert capsys.readouterr().out == ""


@pytest.mark.filterwarnings("ignore:.*did not converge.*")
@pytest.mark.parametrize("seed", (0, 1, 2))
def test_warm_start(seed):
    X = np.random.RandomState(seed).rand(500, 2)
    g = GaussianMixture(2, max_iter=2, reg_covar=0, random_state=seed).fit(X)
    h = GaussianMixture(2, max_iter=1, reg_covar=0, random_state=seed, warm_start=True)
    score1 = h.fit(X).score(X)
    score2 = h.fit(X).score(X)
    assert_array_almost_equal(g.weights_, h.weights_)
    assert_array_almost_equal(g.means_, h.means_)
    assert_array_almost_equal(g.precisions_, h.precisions_)
    assert score2 > score1
    g = GaussianMixture(2, max_iter=5, reg_covar=0, random_state=seed, tol=1e-6).fit(X)
    assert not g.converged_
    h = GaussianMixture(2, max_iter=5, reg_covar=0, random_state=seed, tol=1e-6,
                        warm_start=True)
    for _ in range(1000):
        if h.fit(X).converged_:
            break
    assert h.converged_


def test_warm_start_with_other_features_is_refused():
    rng = np.random.default_rng(0)
    g = GaussianMixture(2, warm_start=True, random_state=0).fit(rng.random((50, 2)))
    with pytest.raises(ValueError, match="set warm_start=False"):
        g.fit(rng.random((50, 3)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("max_iter", [1, 2, 50])
def test_convergence_detected_with_warm_start(max_iter):
    rng = np.random.RandomState(0)
    data = RandomData(rng)
    gmm = GaussianMixture(data.n_components, warm_start=True, max_iter=max_iter,
                          random_state=rng)
    for _ in range(100):
        if gmm.fit(data.X).converged_:
            break
    assert gmm.converged_ and max_iter >= gmm.n_iter_


@pytest.mark.parametrize("dtype", DTYPES)
def test_score(dtype):
    rng = np.random.RandomState(0)
    data = RandomData(rng, scale=7, dtype=dtype)
    g1 = GaussianMixture(data.n_components, max_iter=1, reg_covar=0, random_state=rng)
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted"):
        g1.score(data.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g1.fit(data.X)
    assert g1.means_.dtype == g1.covariances_.dtype == dtype
    # ours: inference is float64 whatever the dtype of X (module docstring)
    assert g1.score(data.X) == pytest.approx(g1.score_samples(data.X).mean(), abs=1e-12)
    g2 = GaussianMixture(data.n_components, reg_covar=0, random_state=rng).fit(data.X)
    assert g2.score(data.X) > g1.score(data.X)


def test_score_samples():
    rng = np.random.RandomState(0)
    data = RandomData(rng, scale=7)
    g = GaussianMixture(data.n_components, reg_covar=0, random_state=rng)
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted"):
        g.score_samples(data.X)
    assert g.fit(data.X).score_samples(data.X).shape == (data.n_samples,)


def test_monotonic_likelihood():
    rng = np.random.RandomState(0)
    data = RandomData(rng, scale=7)
    g = GaussianMixture(data.n_components, reg_covar=0, warm_start=True, max_iter=1,
                        random_state=rng, tol=1e-7, dtype="float64")
    current = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(600):
            previous, current = current, g.fit(data.X).score(data.X)
            assert current >= previous - 1e-12
            if g.converged_:
                break
    assert g.converged_


def test_regularisation():
    """Two collapsed clusters: reg_covar=0 is scikit-learn's ValueError, never a NaN."""
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    g = GaussianMixture(n_components=10, reg_covar=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the duplicate-points warning
        with pytest.raises(ValueError, match=re.escape(
                "Fitting the mixture model failed because some components have ill-defined "
                "empirical covariance (for instance caused by singleton or collapsed samples). "
                "Try to decrease the number of components, increase reg_covar, or scale the "
                "input data.")):
            g.fit(X)
        g.set_params(reg_covar=1e-6).fit(X)
    assert np.isfinite(g.means_).all() and np.isfinite(g.covariances_).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fitted_precision_covariance_consistency(dtype):
    data = RandomData(np.random.RandomState(0), scale=7, dtype=dtype)
    g = GaussianMixture(data.n_components, random_state=0, n_init=5).fit(data.X)
    assert g.precisions_.dtype == g.covariances_.dtype == dtype
    assert_array_almost_equal(g.precisions_, 1.0 / g.covariances_)
    assert_allclose(g.precisions_cholesky_ ** 2, g.precisions_, rtol=1e-5)


def test_sample():
    rng = np.random.RandomState(0)
    data = RandomData(rng, scale=7, n_components=3)
    g = GaussianMixture(3, random_state=rng)
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted"):
        g.sample(0)
    g.fit(data.X)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        g.sample(0)
    X_s, y_s = g.sample(20000)
    for k in range(3):
        assert_array_almost_equal(g.covariances_[k], np.diag(np.cov(X_s[y_s == k].T)),
                                  decimal=1)
    means_s = np.array([X_s[y_s == k].mean(0) for k in range(3)])
    assert_array_almost_equal(g.means_, means_s, decimal=1)
    assert X_s.shape == (20000, data.n_features)
    for size in range(1, 100):
        assert g.sample(size)[0].shape == (size, data.n_features)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("random_state", range(15))
def test_init(random_state):
    """More initialisations never end lower."""
    data = RandomData(np.random.RandomState(random_state), n_samples=50, scale=1)
    g1 = GaussianMixture(data.n_components, max_iter=1, random_state=random_state).fit(data.X)
    g2 = GaussianMixture(data.n_components, n_init=10, max_iter=1,
                         random_state=random_state).fit(data.X)
    assert g2.lower_bound_ >= g1.lower_bound_


def test_gaussian_mixture_setting_best_params():
    """Diverging start (scikit-learn #18216, as diagonal precisions): attributes all set.

    Two components start on single points; with reg_covar=0 they collapse, which is our
    ValueError (scikit-learn's spherical original escapes it by round-off), so a tiny
    reg_covar here.
    """
    X = np.random.RandomState(0).uniform(size=(30, 3))
    means_init = np.array([[0.6706, 0.2104, 0.1289], [0.0939, 0.5759, 0.9293],
                           [0.5033, 0.9570, 0.0865], [0.1858, 0.5531, 0.1939],
                           [0.4549, 0.3518, 0.5681], [0.6093, 0.7929, 0.9620]])
    precisions = np.array([999999.999604483, 999999.9990869573, 553.7603944542167,
                           204.78596008931834, 15.867423501783637, 85.4595728389735])
    weights = np.array([1, 1, 2, 2, 21, 3]) / 30
    g = GaussianMixture(6, reg_covar=1e-10, means_init=means_init, weights_init=weights,
                        precisions_init=np.repeat(precisions[:, None], 3, 1), random_state=0,
                        max_iter=1, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(X)
    assert not g.converged_
    for attr in ["weights_", "means_", "covariances_", "precisions_cholesky_", "n_iter_",
                 "lower_bound_", "lower_bounds_"]:
        assert hasattr(g, attr)


@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++", "kmeans"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_init_means_not_duplicated(init_params, seed):
    rng = np.random.RandomState(seed)
    data = RandomData(rng, scale=5)
    g = GaussianMixture(data.n_components, init_params=init_params, random_state=rng,
                        max_iter=0).fit(data.X)
    for a, b in itertools.combinations(g.means_, r=2):
        assert not np.allclose(a, b)


@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++", "kmeans"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_means_for_all_inits(init_params, seed, dtype):
    rng = np.random.RandomState(seed)
    data = RandomData(rng, scale=5, dtype=dtype)
    g = GaussianMixture(data.n_components, init_params=init_params, random_state=rng)
    g.fit(data.X)
    assert g.means_.shape == (data.n_components, data.n_features)
    assert np.all(data.X.min(axis=0) <= g.means_) and np.all(g.means_ <= data.X.max(axis=0))
    assert g.converged_
    assert g.means_.dtype == g.covariances_.dtype == g.weights_.dtype == dtype


def test_max_iter_zero():
    data = RandomData(np.random.RandomState(0), scale=5)
    means_init = [[20, 30], [30, 25]]
    g = GaussianMixture(2, random_state=0, means_init=means_init, tol=1e-6, max_iter=0)
    assert_allclose(g.fit(data.X).means_, means_init)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_mixture_precisions_init_diag(dtype):
    """Precisions from k-means given as precisions_init: same fit, same iterations."""
    rng = np.random.RandomState(0)
    stretched = rng.randn(300, 2) + np.array([20, 20])
    X = np.vstack([stretched, rng.randn(300, 2) @ np.array([[0.0, -0.7], [3.5, 0.7]])])
    X = X.astype(dtype)
    start = GaussianMixture(2, random_state=0, max_iter=0).fit(X)  # our k-means start
    with_init = GaussianMixture(2, precisions_init=start.precisions_, random_state=0).fit(X)
    without = GaussianMixture(2, random_state=0).fit(X)
    assert with_init.precisions_cholesky_.dtype == without.precisions_cholesky_.dtype == dtype
    assert with_init.n_iter_ == without.n_iter_
    order = lambda g: np.argsort(g.means_[:, 0])  # noqa: E731
    assert_allclose(with_init.precisions_cholesky_[order(with_init)],
                    without.precisions_cholesky_[order(without)], rtol=1e-4)


def test_gaussian_mixture_single_component_stable():
    X = np.random.RandomState(0).multivariate_normal(np.zeros(2), np.identity(2), size=3)
    GaussianMixture(n_components=1).fit(X).sample()


def test_all_init_arrays_skip_the_initialisation(monkeypatch):
    """All three *_init given: no k-means, the start is exactly them (scikit-learn gh-26015)."""
    import fisher_core.fisher.gmm as gmm_module

    def fail(*args, **kwargs):
        raise AssertionError("initial_params must not run when all *_init are given")

    monkeypatch.setattr(gmm_module, "initial_params", fail)
    data = RandomData(np.random.RandomState(0))
    g = _with_init(data, max_iter=0, dtype="float64").fit(data.X)
    assert_allclose(g.means_, data.means)
    assert_allclose(g.precisions_, data.precisions, rtol=1e-12)


# ------------------------------------------------------------------ k-means initialisation
def _naive_lloyd(x, centers, n_iter):
    """Textbook Lloyd iterations with numpy loops (no empty clusters arise in these data)."""
    c = centers.copy()
    for _ in range(n_iter):
        labels = np.array([np.argmin(((c - row) ** 2).sum(1)) for row in x])
        c = np.array([x[labels == j].mean(0) for j in range(len(c))])
    return c


def test_lloyd_step_matches_naive_loop():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 1.0, (40, 3)) for m in (-5, 0, 5)])
    start = x[[0, 50, 100]]
    ours = lloyd(torch.from_numpy(x), torch.from_numpy(start), max_iter=2, tol=0.0)[0]
    assert_allclose(ours.numpy(), _naive_lloyd(x, start, 2), rtol=1e-12)


def test_lloyd_relocates_empty_clusters():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], dtype=torch.float64)
    start = torch.tensor([[0.0], [100.0]], dtype=torch.float64)  # the 2nd centre is empty
    centers, labels, inertia, _ = lloyd(x, start)
    assert sorted(centers.flatten().tolist()) == pytest.approx([0.05, 10.05])
    assert inertia == pytest.approx(4 * 0.05**2)


def test_kmeans_objective_matches_sklearn():
    """k-means++ then Lloyd to convergence: scikit-learn's KMeans inertia, on average over
    seeds (single runs of either land in local optima 20 % above or below the other)."""
    ours, ref, seeds_only = [], [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        centres = rng.normal(0, 4, (12, 5))
        x = (centres[rng.integers(0, 12, 1500)] + rng.normal(size=(1500, 5))).astype(np.float32)
        xt = torch.from_numpy(x)
        seeds, _ = kmeanspp(xt.double(), 12, torch.Generator().manual_seed(seed))
        ours.append(lloyd(xt, seeds)[2])
        ref.append(KMeans(12, n_init=1, random_state=seed).fit(x).inertia_)
        seeds_only.append(float(((xt[:, None] - seeds.float()[None]) ** 2).sum(-1).min(1)[0]
                                .sum()))
    assert np.mean(ours) <= 1.02 * np.mean(ref)
    assert np.mean(ours) < 0.9 * np.mean(seeds_only)  # the iterations matter


def test_default_fit_matches_sklearn_default_on_clustered_data():
    """The default initialisation: held-out likelihood of scikit-learn's default fit."""
    rng = np.random.default_rng(0)
    k, d = 16, 8
    centres = rng.normal(0, 3, (k, d))
    draw = lambda n: (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)))  # noqa: E731
    train, test = draw(4000), draw(2000)
    ours = np.mean([GaussianMixture(k, random_state=s).fit(train).score(test)
                    for s in range(3)])
    ref = np.mean([SkGMM(k, covariance_type="diag", random_state=s).fit(train).score(test)
                   for s in range(3)])
    assert ours > ref - 0.05


def test_verbose_goes_to_stdout_only_when_asked():
    old, sys.stdout = sys.stdout, StringIO()
    try:
        GaussianMixture(2, random_state=0, verbose=1).fit(
            np.random.default_rng(0).random((30, 2)))
        printed = sys.stdout.getvalue()
    finally:
        sys.stdout = old
    assert printed.startswith("Initialization 0")
