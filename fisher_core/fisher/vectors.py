"""Classical Fisher vectors of sets of local descriptors (Perronnin & Dance 2007; Sánchez 2013).

For a diagonal GMM (w_k, μ_k, σ_k) and a set of N descriptors x_t with posteriors γ_t(k):

    G_α_k = 1/N Σ_t (γ_t(k) − w_k) / √w_k
    G_μ_k = 1/(N √w_k) Σ_t γ_t(k) (x_t − μ_k) / σ_k
    G_σ_k = 1/(N √(2 w_k)) Σ_t γ_t(k) [(x_t − μ_k)² / σ_k² − 1]

i.e. the gradient of the mean log-likelihood w.r.t. (softmax logits of w, μ, σ) times the
analytical diagonal Fisher information^(−1/2). Layout: [α (K), μ (K·D component-major), σ (K·D)].
The sign convention is VLFeat's / Sánchez's; scikit-image's ``fisher_vector`` has the opposite
sign on the σ block (see the tests).


The batched encoder itself (three statistics per set from two GEMMs, no loop over sets or
components) lives in :mod:`fisher_core.fisher._fv_engine`.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..utils.devices import resolve_device, resolve_dtype
from ._fv_engine import _SCALES, _encode_all, _Model, normalize_
from .gmm import GaussianMixture, gmm_parameters
from .postprocess import FisherNormalizer

__all__ = ["FisherVectorEncoder", "fisher_vector", "gmm_parameters", "normalize_"]


def _as_sets(descriptors, n_features: int | None, *, allow_empty: bool = False):
    """(flat (T, D) array, lengths (S,), many) from one set, a list of sets or (S, n, D).

    ``allow_empty``: sets with no descriptor pass (VLAD and bag-of-words encode them as
    zeros); a Fisher vector averages over descriptors, so by default they are refused.
    """
    if isinstance(descriptors, torch.Tensor):
        descriptors = descriptors.detach().cpu().numpy()
    if isinstance(descriptors, (list, tuple)):
        if len(descriptors) == 0:
            raise ValueError("descriptors is an empty list; pass at least one (n_i, D) set.")
        sets = [_float_array(d) for d in descriptors]
        bad = [i for i, s in enumerate(sets) if s.ndim != 2]
        if bad:
            raise ValueError(
                f"each set of descriptors must be a 2-D (n_i, D) array; set {bad[0]} has "
                f"shape {sets[bad[0]].shape}."
            )
        widths = {s.shape[1] for s in sets}
        if len(widths) > 1:
            raise ValueError(f"all sets must have the same D, got D values {sorted(widths)}.")
        lengths = np.array([s.shape[0] for s in sets], dtype=np.int64)
        flat, many = np.concatenate(sets), True
    else:
        arr = _float_array(descriptors)
        if arr.ndim not in (2, 3):
            raise ValueError(
                "descriptors must be one (n, D) set, an (S, n, D) array or a list of (n_i, D) "
                f"arrays, got an array of shape {arr.shape}."
            )
        many = arr.ndim == 3
        sets_arr = arr if many else arr[None]
        lengths = np.full(sets_arr.shape[0], sets_arr.shape[1], dtype=np.int64)
        flat = sets_arr.reshape(-1, sets_arr.shape[2])  # (S·n, D)
    if lengths.min() == 0 and not allow_empty:
        raise ValueError(
            f"set {int(np.argmin(lengths))} has no descriptors; a Fisher vector averages over "
            "descriptors, so every set needs at least one."
        )
    if n_features is not None and flat.shape[1] != n_features:
        raise ValueError(
            f"descriptors have D={flat.shape[1]} features but the GMM was fitted on "
            f"D={n_features}; use descriptors of the GMM's dimension."
        )
    return flat, lengths, many


def _float_array(a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr)):
            raise TypeError(f"descriptors must be real numbers, got dtype {arr.dtype}.")
        arr = arr.astype(np.float64)
    return arr


def _check_power_l2(power, l2) -> None:
    ok = power is None or (
        isinstance(power, numbers.Real) and not isinstance(power, bool) and power > 0
    )
    if not ok:
        raise ValueError(f"power must be None or a float > 0 (0.5 is usual), got {power!r}.")
    if not isinstance(l2, (bool, np.bool_)):
        raise ValueError(f"l2 must be True or False, got {l2!r}.")


def _check_common(normalization: str, power, l2, allowed) -> None:
    if normalization not in allowed:
        hint = ""
        if normalization == "empirical":
            hint = (" 'empirical' standardises with statistics of training Fisher vectors; "
                    "use FisherVectorEncoder(normalization='empirical') for it.")
        raise ValueError(
            f"normalization must be one of {sorted(allowed)}, got {normalization!r}.{hint}"
        )
    _check_power_l2(power, l2)


# --------------------------------------------------------------------------- public API
def fisher_vector(
    descriptors,
    gmm,
    *,
    normalization: str = "analytic",
    power: float | None = 0.5,
    l2: bool = True,
    batch_size: int | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> np.ndarray:
    """Fisher vectors of one or many sets of local descriptors.

    Parameters
    ----------
    descriptors : array (n, D), array (S, n, D) or list of S arrays (n_i, D)
        One set, or many sets (encoded together, batched; sizes may differ in a list).
    gmm : fitted fisher_core.GaussianMixture or sklearn GaussianMixture (``"diag"``)
    normalization : {"analytic", "none"}, default="analytic"
        ``"analytic"``: gradient scaled by the analytical diagonal FIM^(−1/2) (Sánchez).
        ``"none"``: the exact gradient of 1/N Σ log p(x_t) w.r.t. (softmax logits of the
        weights, μ, σ). ``"empirical"`` needs training statistics: use
        :class:`FisherVectorEncoder`.
    power : float or None, default=0.5
        Signed power normalisation |z|^p · sign(z); ``None`` skips it.
    l2 : bool, default=True
        Final L2 normalisation (norm floored at 1e-12, so an all-zero vector stays zero).
    batch_size : int or None, default=None
        Descriptors per chunk (bounds memory); ``None`` picks ~16 MiB blocks.
    device : str or None, default=None
        Torch device (``None``: CPU).
    dtype : {"float32", "float64"}, default="float32"
        Arithmetic and output dtype.

    Returns
    -------
    ndarray of shape (K + 2KD,) for one set, or (S, K + 2KD) for many sets
        Layout [α (K), μ (K·D, component-major), σ (K·D)].
    """
    _check_common(normalization, power, l2, _SCALES)
    if batch_size is not None and (not isinstance(batch_size, numbers.Integral)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}.")
    model = _Model(gmm, normalization, resolve_dtype(dtype), resolve_device(device))
    flat, lengths, many = _as_sets(descriptors, model.d)
    out = _encode_all(model, flat, lengths, power, l2, batch_size)
    return out if many else out[0]


class FisherVectorEncoder(TransformerMixin, BaseEstimator):
    """Learn a diagonal GMM on local descriptors and encode sets of them as Fisher vectors.

    ``X`` is a list of (n_i, D) arrays or an (S, n, D) array; the output is (S, dim) with
    dim = K + 2KD, or ``whiten`` when whitening.

    Parameters
    ----------
    n_components : int, default=16
        GMM components K.
    normalization : {"analytic", "empirical", "none"}, default="analytic"
        ``"empirical"``: the un-normalised gradient standardised per dimension with the mean
        and std of the training Fisher vectors (learned in ``fit``).
    power : float or None, default=0.5
        Signed power normalisation exponent.
    l2 : bool, default=True
        Final L2 normalisation.
    whiten : int or None, default=None
        PCA-whiten the (power-normalised) vectors to this many dimensions before L2 — a
        full-covariance alternative to the diagonal normalisations (Jégou & Chum 2012 order:
        power → PCA-whitening → L2).
    reg_covar, max_iter, random_state, device
        Passed to :class:`fisher_core.GaussianMixture`.
    gmm_max_descriptors : int, default=100_000
        The GMM is fitted on at most this many descriptors, drawn at random.

    Attributes
    ----------
    gmm_ : fisher_core.GaussianMixture
    mean_, scale_ : ndarray of shape (K + 2KD,)
        Only for ``"empirical"``: training mean and (floored) std of the gradient vectors.
    pca_ : sklearn.decomposition.PCA
        Only when ``whiten`` is set.
    normalizer_ : FisherNormalizer
        The data-fitted steps (standardisation, power, whitening, L2) as one transformer.
    n_features_in_ : int
        Descriptor dimension D.
    """

    def __init__(
        self,
        n_components: int = 16,
        *,
        normalization: str = "analytic",
        power: float | None = 0.5,
        l2: bool = True,
        whiten: int | None = None,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        random_state=None,
        device: str | None = None,
        gmm_max_descriptors: int = 100_000,
    ) -> None:
        self.n_components = n_components
        self.normalization = normalization
        self.power = power
        self.l2 = l2
        self.whiten = whiten
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.random_state = random_state
        self.device = device
        self.gmm_max_descriptors = gmm_max_descriptors

    def _check_params(self, n_sets: int, n_features: int) -> None:
        _check_common(self.normalization, self.power, self.l2, {"analytic", "empirical", "none"})
        for name in ("n_components", "gmm_max_descriptors", "whiten"):
            value = getattr(self, name)
            if name == "whiten" and value is None:
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        dim = self.n_components * (1 + 2 * n_features)
        if self.whiten is not None and self.whiten > min(n_sets, dim):
            raise ValueError(
                f"whiten={self.whiten} exceeds min(n_sets, FV dim) = {min(n_sets, dim)}; "
                "lower whiten or pass more sets."
            )

    def _sets(self, X, n_features: int | None):
        flat, lengths, many = _as_sets(X, n_features)
        if not many:
            raise ValueError(
                "X must be many sets: a list of (n_i, D) arrays or an (S, n, D) array, got a "
                f"single 2-D array of shape {flat.shape}; wrap it in a list."
            )
        return flat, lengths

    def _encode(self, flat, lengths, *, fitting: bool) -> np.ndarray:
        """Gradient/analytic FV → (empirical standardisation) → power → (whiten) → L2."""
        base = "none" if self.normalization == "empirical" else self.normalization
        model = _Model(self.gmm_, base, torch.float32, resolve_device(self.device))
        z = _encode_all(model, flat, lengths, None, False, None)  # (S, K + 2KD)
        if fitting:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            self.normalizer_ = FisherNormalizer(
                standardize=self.normalization == "empirical", power=self.power,
                whiten=self.whiten, l2=self.l2, random_state=seed).fit(z)
            for name in ("mean_", "scale_", "pca_"):
                if hasattr(self.normalizer_, name):
                    setattr(self, name, getattr(self.normalizer_, name))
        return self.normalizer_.transform(z)

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit on training sets and return their encodings, shape (S, dim)."""
        flat, lengths = self._sets(X, None)
        self._check_params(len(lengths), flat.shape[1])
        rng = check_random_state(self.random_state)
        sample = flat
        if len(flat) > self.gmm_max_descriptors:
            sample = flat[np.sort(rng.choice(len(flat), self.gmm_max_descriptors, replace=False))]
        self.gmm_ = GaussianMixture(
            self.n_components, reg_covar=self.reg_covar, max_iter=self.max_iter,
            random_state=rng.randint(np.iinfo(np.int32).max), device=self.device,
        ).fit(sample)
        self.n_features_in_ = flat.shape[1]
        return self._encode(flat, lengths, fitting=True)

    def fit(self, X, y=None) -> FisherVectorEncoder:
        """Fit the GMM (and empirical / whitening statistics) on training sets."""
        self.fit_transform(X, y)
        return self

    def transform(self, X) -> np.ndarray:
        """Encode sets of descriptors, shape (S, dim)."""
        check_is_fitted(self, "gmm_")
        return self._encode(*self._sets(X, self.n_features_in_), fitting=False)
