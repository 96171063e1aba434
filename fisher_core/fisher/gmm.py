"""Diagonal-covariance Gaussian mixture fitted by EM in torch.

The E-step is two GEMMs per chunk of rows. With precisions P = 1/σ² (K, D), the log density of
every row under every component is one matrix product against the *augmented* data [x², x]:

    log N(x | μ_k, σ_k²) = [x², x] @ [-½ Pᵀ ; (μ P)ᵀ]  -  ½ Σ_d μ² P  -  ½ Σ_d log σ²  -  D/2 log 2π

and the M-step statistics (Σ γ x², Σ γ x) are the single product γᵀ [x², x]. Nothing of size
(N, K, D) is ever built, so memory is the data plus one (batch, K) block.

Numerics. Data are centred on their mean (kept in float64) before the float32 arithmetic, which
removes most of the cancellation in the x² expansion. Log-likelihood sums, sufficient statistics
across chunks and the M-step itself are float64. Inference (``predict``, ``predict_proba``,
``score_samples``) always runs in float64: it is cheap next to fitting, accurate to ~1e-12, and
independent of batch composition.

Initialisation. By default k-means++ seeds and Lloyd's k-means run to convergence on a random
subsample of at most ``max(10_000, 100 K)`` rows, then one hard assignment of all rows
(:mod:`._init`; scikit-learn's other three ``init_params`` choices are there too). Stopping
k-means early (seeds plus one Lloyd step) costs ~1 nat/sample of held-out likelihood on
clustered data; k-means on the whole data set buys nothing over the subsample.

Degenerate data. Fewer samples than components is a ``ValueError``. Fewer *distinct* points than
components (duplicates) gives a :class:`DegenerateDataWarning` and duplicate components.
Constant dimensions get the ``reg_covar`` variance floor. A component whose total responsibility
falls below ``1e-6`` (an "empty" component) is **kept**: its mean and variance stay at their
previous values (variance ≥ ``reg_covar``) and its weight is floored at 10·eps, so no parameter
is ever NaN; a :class:`DegenerateDataWarning` says how many ended empty. With ``reg_covar=0``
a variance that collapses to zero is a ``ValueError`` (scikit-learn's message), never a NaN.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils.devices import resolve_device, resolve_dtype
from ._em import (
    _EMPTY,
    _augmented_data,
    _e_pass,
    _m_step,
    _Params,
    augment,
    auto_batch_size,
    gemm_coefficients,
    softmax_,
)
from ._init import INIT_CHOICES, check_initial_arrays, initial_params

__all__ = ["DegenerateDataWarning", "GaussianMixture", "gmm_parameters"]


class DegenerateDataWarning(UserWarning):
    """Data that cannot support the requested mixture (duplicates, empty components)."""


def gmm_parameters(gmm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 (weights (K,), means (K, D), variances (K, D)) of a fitted diagonal GMM.

    Accepts :class:`fisher_core.GaussianMixture` or scikit-learn's ``GaussianMixture``
    with ``covariance_type="diag"``; anything else is a ``TypeError``.
    """
    if isinstance(gmm, SklearnGaussianMixture):
        if gmm.covariance_type != "diag":
            raise TypeError(
                "gmm must have diagonal covariances, got a scikit-learn GaussianMixture with "
                f"covariance_type={gmm.covariance_type!r}; refit it with covariance_type='diag'."
            )
    elif not isinstance(gmm, GaussianMixture):
        raise TypeError(
            "gmm must be a fitted fisher_core.GaussianMixture or a scikit-learn "
            f"GaussianMixture(covariance_type='diag'), got {type(gmm).__name__}."
        )
    check_is_fitted(gmm, ["weights_", "means_", "covariances_"])
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return as64(gmm.weights_), as64(gmm.means_), as64(gmm.covariances_)


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture with diagonal covariances, fitted by EM in torch.

    A drop-in replacement for ``sklearn.mixture.GaussianMixture(covariance_type="diag")``:
    same parameters, attributes and methods, faster (float32 GEMMs, see the module
    docstring), plus ``batch_size``, ``dtype`` and ``device``.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {"diag"}, default="diag"
        Only diagonal covariances; accepted so that code written for scikit-learn runs as is.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood per sample improves by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to every variance (floor against collapse on constant dimensions).
    max_iter : int, default=100
        Maximum EM iterations per initialisation (0: initialisation only).
    n_init : int, default=1
        Number of initialisations; the best final likelihood wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the starting parameters are found (:mod:`fisher_core.fisher._init`): k-means to
        convergence (on a subsample of at most ``max(10_000, 100 K)`` rows), k-means++ seeds
        alone, random responsibilities, or random rows as means.
    weights_init : array-like of shape (K,) or None, default=None
        Starting weights (summing to 1); ``None``: from ``init_params``.
    means_init : array-like of shape (K, D) or None, default=None
        Starting means; ``None``: from ``init_params``.
    precisions_init : array-like of shape (K, D) or None, default=None
        Starting precisions (inverse variances, > 0); ``None``: from ``init_params``.
    random_state : int, RandomState or None, default=None
        Seeds the initialisations and :meth:`sample`.
    warm_start : bool, default=False
        When fitted already, ``fit`` continues from the current parameters (one
        initialisation, convergence judged against the previous ``lower_bound_``).
    verbose : int, default=0
        1 prints each initialisation and iteration count, 2 adds times and likelihood changes.
    verbose_interval : int, default=10
        Iterations between two printed lines.
    batch_size : int or None, default=None
        Rows per E-step chunk; ``None`` picks one so a (batch, K) block is about 16 MiB.
    dtype : {"float32", "float64"}, default="float32"
        Arithmetic of the EM GEMMs (statistics and M-step are float64 either way).
    device : str or None, default=None
        Torch device for fitting; ``None`` is CPU. ``"cuda"`` only when available.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray of shape (K, D)
        Per-component variances (diagonal covariances), as in scikit-learn's ``"diag"``.
    precisions_ : ndarray of shape (K, D)
        ``1 / covariances_``.
    precisions_cholesky_ : ndarray of shape (K, D)
        ``1 / sqrt(covariances_)``.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample at the last E-step of the best initialisation.
    lower_bounds_ : list of float
        Mean log-likelihood per sample at every E-step of the best initialisation.
    n_features_in_ : int

    The fitted arrays have the dtype of ``X`` (float32 or float64), as in scikit-learn.

    Notes
    -----
    Empty components are kept (module docstring). With ``reg_covar=0``, a component whose
    variance collapses to zero (a singleton or duplicated points) is a ``ValueError``, as in
    scikit-learn.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "diag",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        batch_size: int | None = None,
        dtype: str = "float32",
        device: str | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def _int(name: str, low: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")

        def _nonneg(name: str) -> None:
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not ok or not value >= 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float >= 0, got {value!r}.")

        _int("n_components", 1)
        _int("max_iter", 0)
        _int("n_init", 1)
        _int("verbose", 0)
        _int("verbose_interval", 1)
        _nonneg("tol")
        _nonneg("reg_covar")
        if self.batch_size is not None:
            _int("batch_size", 1)
        if self.covariance_type != "diag":
            raise ValueError(
                "covariance_type must be 'diag' (this GaussianMixture has diagonal covariances "
                f"only), got {self.covariance_type!r}; use scikit-learn's GaussianMixture for "
                "full, tied or spherical covariances."
            )
        if self.init_params not in INIT_CHOICES:
            raise ValueError(
                f"init_params must be one of {INIT_CHOICES}, got {self.init_params!r}."
            )
        if not isinstance(self.warm_start, bool | np.bool_):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}.")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> GaussianMixture:
        """Fit the mixture by EM (``n_init`` initialisations, the best one kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : GaussianMixture
        """
        self._check_params()
        dtype, device = resolve_dtype(self.dtype), resolve_device(self.device)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        fitted_features = getattr(self, "n_features_in_", None)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n_samples, n_features = X.shape
        k = self.n_components
        if n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n_samples}; lower n_components or pass more data."
            )
        if warm and (fitted_features != n_features or self.means_.shape[0] != k):
            raise ValueError(
                f"warm_start=True continues a fit with {self.means_.shape[0]} components on "
                f"{fitted_features} features, but got n_components={k} and X with "
                f"{n_features} features; set warm_start=False to start afresh."
            )
        arrays = check_initial_arrays(
            self.weights_init, self.means_init, self.precisions_init, k, n_features
        )
        batch = self.batch_size or auto_batch_size(k, n_features)
        shift = X.mean(0, dtype=np.float64)
        aug = _augmented_data(X, shift, dtype, device, batch)
        rng = check_random_state(self.random_state)
        previous = self.lower_bound_ if warm else -np.inf
        best = None
        for init in range(1 if warm else self.n_init):
            self._say(1, f"Initialization {init}")
            if warm:
                params = self._current_params(shift, device)
            else:
                gen = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
                params = self._initial_params(aug, gen, batch, arrays, shift)
            result = self._run_em(aug, params, batch, previous)
            if best is None or result[1] > best[1]:
                best = result
        self._store(*best, shift=shift, out_dtype=X.dtype)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit the mixture, then return each sample's most probable component, (n_samples,)."""
        return self.fit(X).predict(X)

    def _initial_params(self, aug, gen, batch, arrays, shift) -> _Params:
        k = self.n_components
        weights, means, precisions = arrays
        device = aug.device
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        if weights is not None and means is not None and precisions is not None:
            params = None  # everything given: nothing to estimate (as scikit-learn)
        else:
            params, n_distinct = initial_params(
                self.init_params, aug, k, gen, batch, self.reg_covar
            )
            if n_distinct < k:
                warnings.warn(
                    f"Found only {n_distinct} distinct points for n_components={k}; "
                    "duplicate components were created. Lower n_components or deduplicate X.",
                    DegenerateDataWarning,
                    stacklevel=4,
                )
        start = _Params(
            as_t(weights) if weights is not None else params.weights,
            as_t(means - shift) if means is not None else params.means,
            1.0 / as_t(precisions) if precisions is not None else params.variances,
        )
        self._check_collapse(start)
        return start

    def _current_params(self, shift: np.ndarray, device) -> _Params:
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        return _Params(as_t(self.weights_), as_t(np.asarray(self.means_, np.float64) - shift),
                       as_t(self.covariances_))

    def _check_collapse(self, params: _Params) -> None:
        """``ValueError`` (scikit-learn's) when a variance is zero, negative or not finite.

        With ``reg_covar=0`` a variance below the float round-off of the second moment it came
        from (8 ε (μ² + σ²)) counts as zero too: a singleton or duplicated points.
        """
        variances = params.variances
        bad = ~torch.isfinite(variances) | (variances <= 0)
        if self.reg_covar == 0:
            eps = torch.finfo(resolve_dtype(self.dtype)).eps
            bad |= variances <= 8 * eps * (params.means**2 + variances)
        if bool(bad.any()):
            raise ValueError(
                "Fitting the mixture model failed because some components have ill-defined "
                "empirical covariance (for instance caused by singleton or collapsed samples). "
                "Try to decrease the number of components, increase reg_covar, or scale the "
                "input data."
            )

    def _run_em(self, aug: torch.Tensor, params: _Params, batch: int, previous: float):
        lower_bound, converged, n_iter, n_empty, bounds = previous, False, 0, 0, []
        started = time.perf_counter()
        while n_iter < self.max_iter:
            n_iter += 1
            before = lower_bound
            stats, lower_bound = _e_pass(aug, params, batch)
            params = _m_step(stats, params, self.reg_covar)
            self._check_collapse(params)
            bounds.append(lower_bound)
            n_empty = int((stats[0] < _EMPTY).sum())
            change = lower_bound - before
            if n_iter % self.verbose_interval == 0:
                self._say(1, f"  Iteration {n_iter}", f"\t time lapse "
                          f"{time.perf_counter() - started:.5f}s\t ll change {change:.5f}")
            if abs(change) < self.tol:
                converged = True
                break
        self._say(1, "Initialization converged." if converged else "Initialization did not "
                  "converge.", f" time lapse {time.perf_counter() - started:.5f}s\t lower bound "
                  f"{lower_bound:.5f}.")
        return params, lower_bound, n_iter, converged, n_empty, bounds

    def _say(self, level: int, message: str, detail: str = "") -> None:
        """scikit-learn's verbose lines: ``message`` from level 1, ``detail`` added at 2."""
        if self.verbose >= level:  # scikit-learn's verbose output goes to stdout, on request
            sys.stdout.write(message + (detail if self.verbose >= 2 else "") + "\n")

    def _store(self, params, lower_bound, n_iter, converged, n_empty, bounds, *, shift,
               out_dtype) -> None:
        variances = params.variances.cpu().numpy()
        self.weights_ = params.weights.cpu().numpy().astype(out_dtype)
        self.means_ = (params.means.cpu().numpy() + shift).astype(out_dtype)
        self.covariances_ = variances.astype(out_dtype)
        self.precisions_ = (1.0 / variances).astype(out_dtype)
        self.precisions_cholesky_ = (1.0 / np.sqrt(variances)).astype(out_dtype)
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(b) for b in bounds]
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        if n_empty:
            warnings.warn(
                f"{n_empty} of {self.n_components} components ended with (almost) no "
                "responsibility and were kept at their previous parameters; "
                "consider fewer components.",
                DegenerateDataWarning,
                stacklevel=3,
            )
        if not converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data "
                f"(max_iter={self.max_iter}, tol={self.tol}).",
                ConvergenceWarning,
                stacklevel=3,
            )

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, D)
            Samples, grouped by component.
        y : ndarray of shape (n_samples,)
            The component of each sample.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
                or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r} . The sampling requires at "
                "least one sample."
            )
        rng = check_random_state(self.random_state)
        weights = np.asarray(self.weights_, np.float64)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        std = np.sqrt(np.asarray(self.covariances_, np.float64))
        means = np.asarray(self.means_, np.float64)
        X = np.vstack([means[j] + rng.standard_normal((c, means.shape[1])) * std[j]
                       for j, c in enumerate(counts)])
        y = np.concatenate([np.full(c, j, dtype=int) for j, c in enumerate(counts)])
        return X, y

    # ------------------------------------------------------------------ inference
    def _log_joint(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Float64 (n, K) posteriors and (n,) log p(x), chunked."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        device = resolve_device(self.device)
        weights, means, variances = gmm_parameters(self)  # float64 whatever X's dtype was
        shift = (weights[:, None] * means).sum(0)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        w_mat, bias = gemm_coefficients(
            as_t(weights), as_t(means - shift), as_t(variances), torch.float64
        )
        batch = self.batch_size or auto_batch_size(self.n_components, X.shape[1])
        resp = np.empty((X.shape[0], self.n_components))
        log_norm = np.empty(X.shape[0])
        for start in range(0, X.shape[0], batch):
            block = torch.from_numpy(X[start : start + batch] - shift).to(device)  # (B, D) float64
            logits = augment(block) @ w_mat + bias  # (B, K)
            log_norm[start : start + batch] = softmax_(logits).cpu().numpy()
            resp[start : start + batch] = logits.cpu().numpy()
        return resp, log_norm

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, K)."""
        return self._log_joint(X)[0]

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,)."""
        return self._log_joint(X)[0].argmax(1)

    def score_samples(self, X) -> np.ndarray:
        """Log density log p(x) of each sample, shape (n_samples,)."""
        return self._log_joint(X)[1]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        return 2 * k * d + k - 1

    def bic(self, X) -> float:
        """Bayesian information criterion (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()
