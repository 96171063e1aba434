"""Classical Fisher vectors of sets of local descriptors (Perronnin & Dance 2007; Sánchez 2013).

For a diagonal GMM (w_k, μ_k, σ_k) and a set of N descriptors x_t with posteriors γ_t(k):

    G_α_k = 1/N Σ_t (γ_t(k) − w_k) / √w_k
    G_μ_k = 1/(N √w_k) Σ_t γ_t(k) (x_t − μ_k) / σ_k
    G_σ_k = 1/(N √(2 w_k)) Σ_t γ_t(k) [(x_t − μ_k)² / σ_k² − 1]

i.e. the gradient of the mean log-likelihood w.r.t. (softmax logits of w, μ, σ) times the
analytical diagonal Fisher information^(−1/2). Layout: [α (K), μ (K·D component-major), σ (K·D)].
The sign convention is VLFeat's / Sánchez's; scikit-image's ``fisher_vector`` has the opposite
sign on the σ block (see the tests).

Everything reduces to three statistics per set, S0 = Σγ, S1 = Σγx, S2 = Σγx², and
    Σ γ (x − μ) = S1 − μ S0,     Σ γ (x − μ)² = S2 − 2 μ S1 + μ² S0.
Posteriors of all descriptors of a chunk of sets come from one GEMM against [x², x]; the
per-set statistics from one batched GEMM ``bmm(γᵀ, [x², x])`` over sets padded to a common
length (sets are sorted by length first, so padding is small; padded rows get γ = 0). Chunks
bound the memory; there is no Python loop over sets or components.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from fisher_core.gmm import (
    GaussianMixture,
    auto_batch_size,
    gemm_coefficients,
    resolve_device,
    resolve_dtype,
    softmax_,
)

__all__ = ["FisherVectorEncoder", "fisher_vector", "gmm_parameters", "normalize_"]

_L2_FLOOR = 1e-12
_STATS_BUDGET = 1 << 22  # elements of one (sets, K, 2D) statistics block
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


# --------------------------------------------------------------------------- inputs
def gmm_parameters(gmm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 (weights (K,), means (K, D), variances (K, D)) of a fitted diagonal GMM.

    Accepts :class:`fisher_core.gmm.GaussianMixture` or scikit-learn's ``GaussianMixture``
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
            "gmm must be a fitted fisher_core.gmm.GaussianMixture or a scikit-learn "
            f"GaussianMixture(covariance_type='diag'), got {type(gmm).__name__}."
        )
    check_is_fitted(gmm, ["weights_", "means_", "covariances_"])
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return as64(gmm.weights_), as64(gmm.means_), as64(gmm.covariances_)


def _as_sets(descriptors, n_features: int | None):
    """(flat (T, D) array, lengths (S,), many) from one set, a list of sets or (S, n, D)."""
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
    if lengths.min() == 0:
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


# --------------------------------------------------------------------------- maths
def normalize_(z: torch.Tensor, power: float | None, l2: bool) -> torch.Tensor:
    """In place: signed power |z|^p · sign(z), then L2 with a 1e-12 floor (zeros stay zero)."""
    if power is not None:
        torch.copysign(z.abs().pow_(power), z, out=z)
    if l2:
        z.div_(torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_(min=_L2_FLOOR))
    return z


# Per-block scales applied to the exact gradient (α: softmax logits, μ, σ). "analytic" is the
# analytical diagonal FIM^(−1/2) of Sánchez et al. 2013: F_α = 1/w (for the logits, under
# the sum-to-one constraint), F_μ = w/σ², F_σ = 2w/σ².
_SCALES = {
    "analytic": lambda w, sd: (1 / w.sqrt(), sd / w.sqrt()[:, None], sd / (2 * w).sqrt()[:, None]),
    "none": lambda w, sd: (torch.ones_like(w), torch.ones_like(sd), torch.ones_like(sd)),
}


class _Model:
    """GMM coefficients on the working device/dtype, centred on the mixture mean.

    With S0 = Σγ, S1 = Σγx, S2 = Σγx² of a set of N descriptors, every block is linear in
    the statistics, so the vector is three fused multiply-adds with (K, D) tables:
        α = S0 · a / N − a·w
        μ = (S1 · e + S0 · f) / N                   e = c_μ/σ², f = −μ c_μ/σ²
        σ = (S2 · p + S1 · q + S0 · r) / N          p = c_σ/σ³, q = −2μ c_σ/σ³,
                                                    r = μ² c_σ/σ³ − c_σ/σ
    which is [Σ(γ − w), Σγ(x − μ)/σ², Σγ((x − μ)²/σ³ − 1/σ)] / N times the scales c.
    """

    def __init__(self, gmm, normalization: str, dtype: torch.dtype, device: torch.device):
        w, mu, var = gmm_parameters(gmm)
        centre = (w[:, None] * mu).sum(0)  # (D,)
        spread = (w[:, None] * (var + (mu - centre) ** 2)).sum()
        # Centring keeps the float32 x² expansion accurate; it costs a pass over the data,
        # so it is skipped when the data sit within their own spread of the origin.
        needed = float(centre @ centre) > float(spread)
        self.shift_t = torch.as_tensor(centre, dtype=dtype, device=device) if needed else None
        to = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        w_t, mu_t, var_t = to(w), to(mu - centre if needed else mu), to(var)
        self.w_mat, self.bias = gemm_coefficients(w_t, mu_t, var_t, dtype)
        sd = var_t.sqrt()
        c_a, c_mu, c_sd = _SCALES[normalization](w_t, sd)
        table = {
            "a": c_a, "a_off": c_a * w_t,
            "e": c_mu / var_t, "f": -mu_t * c_mu / var_t,
            "p": c_sd / (var_t * sd), "q": -2 * mu_t * c_sd / (var_t * sd),
            "r": mu_t * mu_t * c_sd / (var_t * sd) - c_sd / sd,
        }
        self.coef = {name: value.to(dtype) for name, value in table.items()}
        self.k, self.d = mu.shape
        self.dtype, self.device = dtype, device


def _load(model: _Model, rows: np.ndarray, buf: torch.Tensor) -> torch.Tensor:
    """Centred [x², x] of (m, L, D) float rows into the first m·L rows of a (B, 2D) buffer."""
    m, length, d = rows.shape
    aug = buf[: m * length]  # (m·L, 2D)
    x = aug[:, d:]
    with warnings.catch_warnings():
        # read-only inputs are only read here; torch warns about them regardless
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        source = torch.from_numpy(rows)
    x.view(m, length, d).copy_(source)  # casts on the fly (multi-threaded)
    if model.shift_t is not None:
        x.sub_(model.shift_t)
    torch.mul(x, x, out=aug[:, :d])
    return aug


def _window(flat: np.ndarray, starts, lens, longest: int, t0: int, span: int):
    """Rows [t0, t0 + span) of each set as (m, span, D), and a (m, span) pad mask or None."""
    m = len(starts)
    if np.all(lens == longest) and np.all(starts == starts[0] + longest * np.arange(m)):
        block = flat[starts[0] : starts[0] + m * longest].reshape(m, longest, -1)  # a view
        return block[:, t0 : t0 + span], None
    offs = np.arange(t0, t0 + span)  # (span,)
    # padded rows read some real row (finite); their posteriors are zeroed afterwards
    index = np.minimum(starts[:, None] + offs[None, :], len(flat) - 1)  # (m, span)
    return flat[index], offs[None, :] >= lens[:, None]


def _set_statistics(model: _Model, rows: np.ndarray, pad, bufs):
    """S0 (m, K) and Σγ[x², x] (m, K, 2D) of m sets given as padded (m, L, D) rows."""
    m, length, _ = rows.shape
    aug = _load(model, rows, bufs[0])  # (m·L, 2D)
    resp = bufs[1][: m * length]  # (m·L, K)
    torch.mm(aug, model.w_mat, out=resp).add_(model.bias)
    softmax_(resp, log_norm=False)
    resp = resp.view(m, length, model.k)  # (m, L, K)
    if pad is not None:
        resp.masked_fill_(torch.from_numpy(pad).to(model.device)[..., None], 0.0)
    s0 = resp.sum(1)  # (m, K)
    sxx = torch.bmm(resp.transpose(1, 2), aug.view(m, length, 2 * model.d))  # (m, K, 2D)
    return s0, sxx


def _encode_chunk(model: _Model, flat, starts, lens, row_budget, bufs):
    """Fisher vectors (m, K + 2KD) of one chunk of sets, before power / L2 normalisation."""
    m = len(starts)
    longest = int(lens.max())
    step = max(1, row_budget // m)  # < longest only for one set longer than the budget
    s0, sxx = _set_statistics(model, *_window(flat, starts, lens, longest, 0, step), bufs)
    for t0 in range(step, longest, step):
        rows, pad = _window(flat, starts, lens, longest, t0, min(step, longest - t0))
        a, b = _set_statistics(model, rows, pad, bufs)
        s0 += a
        sxx += b
    return _vectors(model, s0, sxx, lens)


def _vectors(model: _Model, s0, sxx, lens) -> torch.Tensor:
    """(m, K + 2KD) vectors from S0 (m, K) and [S2, S1] (m, K, 2D); see :class:`_Model`."""
    m, k, d, c = s0.shape[0], model.k, model.d, model.coef
    fv = torch.empty(m, k + 2 * k * d, dtype=model.dtype, device=model.device)
    s2, s1, s0_ = sxx[..., :d], sxx[..., d:], s0[..., None]  # (m, K, D), (m, K, D), (m, K, 1)
    torch.mul(s0, c["a"], out=fv[:, :k])
    torch.mul(s1, c["e"], out=fv[:, k : k + k * d].view(m, k, d)).addcmul_(s0_, c["f"])
    sigma = torch.mul(s2, c["p"], out=fv[:, k + k * d :].view(m, k, d))
    sigma.addcmul_(s1, c["q"]).addcmul_(s0_, c["r"])
    fv.div_(torch.as_tensor(lens, dtype=model.dtype, device=model.device)[:, None])
    fv[:, :k].sub_(c["a_off"])
    return fv


def _encode_all(model: _Model, flat, lengths, power, l2, batch_size):
    """(S, K + 2KD) Fisher vectors, chunk by chunk over sets sorted by decreasing length."""
    k, d = model.k, model.d
    row_budget = min(batch_size or auto_batch_size(k, d), len(flat))
    set_cap = max(1, _STATS_BUDGET // (k * 2 * d))  # bounds the (m, K, 2D) statistics
    bufs = (
        torch.empty(row_budget, 2 * d, dtype=model.dtype, device=model.device),
        torch.empty(row_budget, k, dtype=model.dtype, device=model.device),
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(lengths), k + 2 * k * d), dtype=_NUMPY_DTYPES[model.dtype])
    i = 0
    while i < len(order):  # a loop over chunks of sets, not over sets
        m = max(1, min(row_budget // int(lengths[order[i]]), set_cap, len(order) - i))
        ids = order[i : i + m]
        fv = _encode_chunk(model, flat, starts[ids], lengths[ids], row_budget, bufs)
        normalize_(fv, power, l2)
        if not bool(torch.isfinite(fv.sum(1)).all()):  # a NaN/inf anywhere poisons the sum
            raise ValueError(
                "descriptors contain NaN or infinite values (in one of the sets "
                f"{sorted(ids.tolist())[:5]}...); clean them before encoding."
            )
        out[ids] = fv.cpu().numpy()
        i += m
    return out


def _check_common(normalization: str, power, l2, allowed) -> None:
    if normalization not in allowed:
        hint = ""
        if normalization == "empirical":
            hint = (" 'empirical' standardises with statistics of training Fisher vectors; "
                    "use FisherVectorEncoder(normalization='empirical') for it.")
        raise ValueError(
            f"normalization must be one of {sorted(allowed)}, got {normalization!r}.{hint}"
        )
    ok = power is None or (
        isinstance(power, numbers.Real) and not isinstance(power, bool) and power > 0
    )
    if not ok:
        raise ValueError(f"power must be None or a float > 0 (0.5 is usual), got {power!r}.")
    if not isinstance(l2, (bool, np.bool_)):
        raise ValueError(f"l2 must be True or False, got {l2!r}.")


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
    gmm : fitted fisher_core.gmm.GaussianMixture or sklearn GaussianMixture (``"diag"``)
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
        Passed to :class:`fisher_core.gmm.GaussianMixture`.
    gmm_max_descriptors : int, default=100_000
        The GMM is fitted on at most this many descriptors, drawn at random.

    Attributes
    ----------
    gmm_ : fisher_core.gmm.GaussianMixture
    mean_, scale_ : ndarray of shape (K + 2KD,)
        Only for ``"empirical"``: training mean and (floored) std of the gradient vectors.
    pca_ : sklearn.decomposition.PCA
        Only when ``whiten`` is set.
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
        if self.normalization == "empirical":
            if fitting:
                self.mean_ = z.mean(0)
                std = z.std(0)
                # dimensions that never vary carry no information: leave them unscaled
                self.scale_ = np.where(std > 1e-6 * max(float(std.max()), 1e-30), std, 1.0)
            z = (z - self.mean_) / self.scale_
        z = normalize_(torch.from_numpy(np.ascontiguousarray(z)), self.power, False).numpy()
        if self.whiten is not None:
            if fitting:
                seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
                self.pca_ = PCA(self.whiten, whiten=True, random_state=seed).fit(z)
            z = self.pca_.transform(z)
        z = np.ascontiguousarray(z, dtype=np.float32)
        return normalize_(torch.from_numpy(z), None, self.l2).numpy()

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
