"""The data-fitted steps of the improved Fisher vector, as one scikit-learn transformer.

Some normalisations of Fisher vectors learn statistics from a set of training vectors: the
empirical standardisation (per-dimension mean and standard deviation, Sánchez et al. 2013)
and PCA whitening (the full sample covariance, Jégou & Chum 2012). Fitted on every row of a
dataset, they let a probe's held-out folds leak into its features; :class:`FisherNormalizer`
keeps them learnable per fold. The order is the one of the literature: standardise → signed
power → PCA-whiten → L2.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from ._fv_engine import normalize_

__all__ = ["FisherNormalizer"]


class FisherNormalizer(TransformerMixin, BaseEstimator):
    """Standardise → signed power → PCA-whiten → L2, with statistics learned in ``fit``.

    Parameters
    ----------
    standardize : bool, default=False
        Subtract each dimension's training mean and divide by its training standard deviation
        (the "empirical" Fisher-vector normalisation). Dimensions that never vary (std below
        1e-6 × the largest std) are only centred.
    power : float or None, default=0.5
        Signed power ``sign(z)·|z|^p``; ``None`` skips it.
    whiten : int or None, default=None
        PCA-whiten to this many dimensions (the sample covariance of the training vectors
        becomes the identity), after the power step.
    l2 : bool, default=True
        Divide each row by its L2 norm (floored at 1e-12, so zero rows stay zero).
    random_state : int, default=0
        Seeds the PCA solver.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Only with ``standardize``.
    pca_ : sklearn.decomposition.PCA
        Only with ``whiten``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 8))
    >>> FisherNormalizer(standardize=True, whiten=4).fit(X).transform(X).shape
    (50, 4)
    """

    def __init__(self, *, standardize: bool = False, power: float | None = 0.5,
                 whiten: int | None = None, l2: bool = True, random_state: int = 0) -> None:
        self.standardize = standardize
        self.power = power
        self.whiten = whiten
        self.l2 = l2
        self.random_state = random_state

    def _check(self, X: Any) -> np.ndarray:
        for name in ("standardize", "l2"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        p = self.power
        if p is not None and (isinstance(p, bool) or not isinstance(p, numbers.Real) or p <= 0):
            raise ValueError(f"power must be None or a number > 0 (0.5 is usual), got {p!r}.")
        w = self.whiten
        if w is not None and (isinstance(w, bool) or not isinstance(w, numbers.Integral)
                              or w < 1):
            raise ValueError(f"whiten must be None or an integer >= 1, got {w!r}.")
        X = np.asarray(X)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"X must be a numeric (N, d) array; got shape {X.shape}.")
        return X.astype(np.float64 if X.dtype == np.float64 else np.float32, copy=False)

    def fit(self, X: Any, y: Any = None) -> FisherNormalizer:
        """Learn the mean/std (``standardize``) and the whitening PCA (``whiten``) from ``X``.

        Parameters
        ----------
        X : ndarray of shape (N, d)
            Training vectors before any of the four steps.
        y : ignored

        Returns
        -------
        self
        """
        X = self._check(X)
        n, d = X.shape
        if self.whiten is not None and self.whiten > min(n, d):
            raise ValueError(
                f"whiten={self.whiten} exceeds min(n_samples, n_features) = {min(n, d)} of the "
                "training vectors; lower the whitening dimension or use more rows.")
        self.n_features_in_ = d
        if self.standardize:
            self.mean_ = X.mean(0)
            std = X.std(0)
            # dimensions that never vary carry no information: centre them, do not blow up
            self.scale_ = np.where(std > 1e-6 * max(float(std.max()), 1e-30), std, 1.0)
        if self.whiten is not None:
            self.pca_ = PCA(self.whiten, whiten=True, random_state=self.random_state)
            self.pca_.fit(self._power(X))
        return self

    def _power(self, X: np.ndarray) -> np.ndarray:
        if self.standardize:
            X = (X - self.mean_) / self.scale_
        z = torch.from_numpy(np.array(X, dtype=np.float32, copy=True))
        return normalize_(z, self.power, False).numpy()

    def transform(self, X: Any) -> np.ndarray:
        """Apply the four steps with the statistics learned in :meth:`fit`.

        Parameters
        ----------
        X : ndarray of shape (N, d)

        Returns
        -------
        ndarray of shape (N, d) or (N, whiten), float32
        """
        check_is_fitted(self, "n_features_in_")
        X = self._check(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the normaliser was fitted on "
                             f"{self.n_features_in_}.")
        z = self._power(X)
        if self.whiten is not None:
            z = self.pca_.transform(z)
        z = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        return normalize_(z, None, self.l2).numpy()

    def recipe(self) -> dict[str, Any]:
        """The constructor's arguments as a JSON-serialisable dict (kept with an embedding)."""
        return {"standardize": bool(self.standardize), "power": self.power,
                "whiten": None if self.whiten is None else int(self.whiten),
                "l2": bool(self.l2), "random_state": int(self.random_state)}
