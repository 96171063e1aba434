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

Degenerate data. Fewer samples than components is a ``ValueError``. Fewer *distinct* points than
components (duplicates) gives a :class:`DegenerateDataWarning` and duplicate components.
Constant dimensions get the ``reg_covar`` variance floor. A component whose total responsibility
falls below ``1e-6`` (an "empty" component) is **kept**: its mean and variance stay at their
previous values (variance ≥ ``reg_covar``) and its weight is floored at 10·eps, so no parameter
is ever NaN; a :class:`DegenerateDataWarning` says how many ended empty.
"""

from __future__ import annotations

import math
import numbers
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
    _init_params,
    _kmeanspp,
    _m_step,
    augment,
    auto_batch_size,
    gemm_coefficients,
    softmax_,
)

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

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood per sample improves by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to every variance (floor against collapse on constant dimensions).
    max_iter : int, default=100
        Maximum EM iterations per initialisation (0: initialisation only).
    n_init : int, default=1
        Number of k-means++ initialisations; the best final likelihood wins.
    random_state : int, RandomState or None, default=None
        Seeds k-means++ (and its subsample).
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
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample at the last E-step of the best initialisation.
    n_features_in_ : int

    Notes
    -----
    k-means++ runs on a random subsample of at most ``max(10_000, 100 K)`` rows, followed by
    one hard-assignment step over all rows. Empty components are kept (see module docstring).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        random_state=None,
        batch_size: int | None = None,
        dtype: str = "float32",
        device: str | None = None,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
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
        _nonneg("tol")
        _nonneg("reg_covar")
        if self.batch_size is not None:
            _int("batch_size", 1)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> GaussianMixture:
        """Fit the mixture by EM.

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
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n_samples, n_features = X.shape
        k = self.n_components
        if n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n_samples}; lower n_components or pass more data."
            )
        batch = self.batch_size or auto_batch_size(k, n_features)
        shift = X.mean(0, dtype=np.float64)
        aug = _augmented_data(X, shift, dtype, device, batch)
        rng = check_random_state(self.random_state)
        best = None
        for _ in range(self.n_init):
            gen = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            result = self._fit_once(aug, gen, batch)
            if best is None or result[1] > best[1]:
                best = result
        self._store(*best, shift=shift)
        return self

    def _fit_once(self, aug: torch.Tensor, gen: torch.Generator, batch: int):
        n_samples, n_features = aug.shape[0], aug.shape[1] // 2
        k = self.n_components
        n_sub = min(n_samples, max(10_000, 100 * k))
        rows = torch.randperm(n_samples, generator=gen)[:n_sub].to(aug.device)
        sample = aug[rows, n_features:].to(torch.float64)  # (n_sub, D)
        centers, n_distinct = _kmeanspp(sample, k, gen)
        if n_distinct < k:
            warnings.warn(
                f"Found only {n_distinct} distinct points for n_components={k}; "
                "duplicate components were created. Lower n_components or deduplicate X.",
                DegenerateDataWarning,
                stacklevel=3,
            )
        params = _init_params(aug, centers, batch, self.reg_covar)
        lower_bound, converged, n_iter, n_empty = -np.inf, False, 0, 0
        while n_iter < self.max_iter:
            n_iter += 1
            previous = lower_bound
            stats, lower_bound = _e_pass(aug, params, batch)
            params = _m_step(stats, params, self.reg_covar)
            n_empty = int((stats[0] < _EMPTY).sum())
            if abs(lower_bound - previous) < self.tol:
                converged = True
                break
        return params, lower_bound, n_iter, converged, n_empty

    def _store(self, params, lower_bound, n_iter, converged, n_empty, *, shift) -> None:
        self.weights_ = params.weights.cpu().numpy()
        self.means_ = params.means.cpu().numpy() + shift
        self.covariances_ = params.variances.cpu().numpy()
        self.lower_bound_ = float(lower_bound)
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
                f"EM did not converge in max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ inference
    def _log_joint(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Float64 (n, K) posteriors and (n,) log p(x), chunked."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        device = resolve_device(self.device)
        shift = (self.weights_[:, None] * self.means_).sum(0)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        w_mat, bias = gemm_coefficients(
            as_t(self.weights_), as_t(self.means_ - shift), as_t(self.covariances_),
            torch.float64,
        )
        batch = self.batch_size or auto_batch_size(self.n_components, X.shape[1])
        resp = np.empty((X.shape[0], self.n_components))
        log_norm = np.empty(X.shape[0])
        for start in range(0, X.shape[0], batch):
            block = torch.from_numpy(X[start : start + batch] - shift).to(device)  # (B, D)
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
