"""Classical Fisher vectors of sets of local descriptors (Perronnin & Dance 2007; Sánchez 2013).

For a diagonal GMM (w_k, μ_k, σ_k) and a set of N descriptors x_t with posteriors γ_t(k):

    G_α_k = 1/N Σ_t (γ_t(k) − w_k) / √w_k
    G_μ_k = 1/(N √w_k) Σ_t γ_t(k) (x_t − μ_k) / σ_k
    G_σ_k = 1/(N √(2 w_k)) Σ_t γ_t(k) [(x_t − μ_k)² / σ_k² − 1]

i.e. the gradient of the mean log-likelihood w.r.t. (softmax logits of w, μ, σ) times the
analytical diagonal Fisher information^(−1/2). Layout: [α (K), μ (K·D component-major), σ (K·D)].
The sign convention is VLFeat's / Sánchez's; scikit-image's ``fisher_vector`` has the opposite
sign on the σ block (see the tests).


The batched encoder itself (three statistics per set from one GEMM and one sparse or batched
product, no loop over sets or components) lives in :mod:`fisher_core.fisher._fv_engine`, its
posterior and statistics kernels in :mod:`fisher_core.fisher._fv_stats`.
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


def _as_sets(descriptors, n_features: int | None, *, allow_empty: bool = False,
             keep_tensors: bool = False):
    """(flat (T, D), lengths (S,), many) from one set, a list of sets or (S, n, D).

    ``flat`` is a NumPy array, or with ``keep_tensors`` a tensor on the input's device when
    the input is a tensor or a list of tensors (no trip through host memory).
    ``allow_empty``: sets with no descriptor pass (VLAD and bag-of-words encode them as
    zeros); a Fisher vector averages over descriptors, so by default they are refused.
    """
    if keep_tensors and _is_tensor_input(descriptors):
        flat, lengths, many = _tensor_sets(descriptors)
    else:
        flat, lengths, many = _array_sets(descriptors)
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


def _is_tensor_input(descriptors) -> bool:
    if isinstance(descriptors, torch.Tensor):
        return True
    return (isinstance(descriptors, (list, tuple)) and len(descriptors) > 0
            and all(isinstance(d, torch.Tensor) for d in descriptors))


def _check_sets(sets: list) -> np.ndarray:
    """Lengths (S,) of a list of (n_i, D) sets, after checking their shapes."""
    bad = [i for i, s in enumerate(sets) if s.ndim != 2]
    if bad:
        raise ValueError(
            f"each set of descriptors must be a 2-D (n_i, D) array; set {bad[0]} has "
            f"shape {tuple(sets[bad[0]].shape)}."
        )
    widths = {int(s.shape[1]) for s in sets}
    if len(widths) > 1:
        raise ValueError(f"all sets must have the same D, got D values {sorted(widths)}.")
    return np.array([s.shape[0] for s in sets], dtype=np.int64)


def _check_ndim(shape) -> None:
    if len(shape) not in (2, 3):
        raise ValueError(
            "descriptors must be one (n, D) set, an (S, n, D) array or a list of (n_i, D) "
            f"arrays, got an array of shape {tuple(shape)}."
        )


def _array_sets(descriptors):
    if isinstance(descriptors, torch.Tensor):
        descriptors = descriptors.detach().cpu().numpy()
    if isinstance(descriptors, (list, tuple)):
        if len(descriptors) == 0:
            raise ValueError("descriptors is an empty list; pass at least one (n_i, D) set.")
        sets = [_float_array(d) for d in descriptors]
        lengths = _check_sets(sets)
        return np.concatenate(sets), lengths, True
    arr = _float_array(descriptors)
    _check_ndim(arr.shape)
    many = arr.ndim == 3
    sets_arr = arr if many else arr[None]
    lengths = np.full(sets_arr.shape[0], sets_arr.shape[1], dtype=np.int64)
    return sets_arr.reshape(-1, sets_arr.shape[2]), lengths, many  # (S·n, D)


def _tensor_sets(descriptors):
    """As :func:`_array_sets` for a tensor or a list of tensors, kept on their device."""
    sets = [descriptors] if isinstance(descriptors, torch.Tensor) else list(descriptors)
    devices = {t.device for t in sets}
    if len(devices) > 1:
        raise ValueError(
            f"all sets must be on one device, got {sorted(map(str, devices))}; move them "
            "to one device first."
        )
    for t in sets:
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"descriptors must be real numbers, got dtype {t.dtype}.")
    if isinstance(descriptors, torch.Tensor):
        _check_ndim(descriptors.shape)
        many = descriptors.ndim == 3
        cube = descriptors.detach() if many else descriptors.detach()[None]
        lengths = np.full(cube.shape[0], cube.shape[1], dtype=np.int64)
        return cube.reshape(-1, cube.shape[2]), lengths, many  # (S·n, D)
    lengths = _check_sets(sets)
    return torch.cat([t.detach() for t in sets]), lengths, True


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


# Default posterior threshold per working dtype (see ``fisher_vector``): in float32 the pairs it
# drops move the vectors about as much as float32 round-off does; float64 stays exact.
POSTERIOR_THRESHOLD = {torch.float32: 1e-8, torch.float64: 0.0}
PRECISIONS = ("highest", "tf32", "bf16")
_OUTPUTS = (None, "numpy", "torch")


def _check_engine_options(posterior_threshold, precision, dtype, device) -> None:
    ok = posterior_threshold is None or (
        isinstance(posterior_threshold, numbers.Real) and not isinstance(posterior_threshold, bool)
        and 0 <= posterior_threshold < 1)
    if not ok:
        raise ValueError(
            "posterior_threshold must be None or a float in [0, 1) (0: dense and exact), got "
            f"{posterior_threshold!r}."
        )
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    if precision != "highest" and dtype != torch.float32:
        raise ValueError(f"precision={precision!r} needs dtype='float32'.")
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(
            "precision='tf32' is a CUDA mode (TensorFloat-32 tensor cores) and the working "
            f"device is {device.type!r}; use 'highest' or 'bf16' there."
        )


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
    posterior_threshold: float | None = None,
    precision: str = "highest",
    output: str | None = None,
):
    """Fisher vectors of one or many sets of local descriptors.

    Parameters
    ----------
    descriptors : array or tensor (n, D), array or tensor (S, n, D), or list of S (n_i, D)
        One set, or many sets (encoded together, batched; sizes may differ in a list).
        Tensors are read where they are (CPU or GPU), never through NumPy.
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
        Descriptors per chunk (bounds memory); ``None`` picks ~4 MiB blocks on the CPU
        (8,192 rows at K = 64, D = 64), ~64 MiB on a GPU.
    device : str or None, default=None
        Torch device. ``None``: the device of tensor input, else the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Arithmetic and output dtype.
    posterior_threshold : float in [0, 1) or None, default=None
        A descriptor's posterior for component k counts as zero when it is at most τ times
        that descriptor's largest posterior (so below τ, like VLFeat, which skips
        posteriors under 1e-6). Most descriptors sit in one or two components, so on the
        CPU the statistics are then summed over those (descriptor, component) pairs only,
        as a sparse product; where more than 1/32 of the posteriors pass (unclustered
        data) the dense product is faster and is used, with the same result. ``0``: every
        posterior, dense and exact. ``None``: 1e-8 in float32, 0 in float64. Measured
        (``bench/fv_accuracy.py``, 100 sets × 500 descriptors, D = 64, K = 64 and 256,
        clustered and unclustered data), max |Δ| / max |exact float64 vector| of improved
        vectors: 1e-8 stays at the float32 round-off of the dense path (1.4e-5 against its
        8.1e-6 on clustered data with K = 64, equal in the other cases, up to 7.8e-4);
        1e-6 (VLFeat's) costs up to 2.8e-4 on clustered and 1.0e-3 on unclustered data,
        1e-4 up to 1.3e-2. Raw vectors (``power=None, l2=False``) move 10–100× less: the
        square root of the power normalisation magnifies small entries, round-off and
        dropped posteriors alike.
    precision : {"highest", "tf32", "bf16"}, default="highest"
        Operands of the statistics GEMM (float32 only); the E-step GEMM always runs in
        float32, because log-densities are differences of large numbers (bfloat16 there,
        emulated, gave vectors off by up to 5× their largest entry at K = 256). ``"tf32"``:
        TensorFloat-32 on CUDA (an error on other devices). ``"bf16"``: bfloat16 on CUDA;
        on other devices the same rounded operands go through float32 GEMMs (its accuracy,
        not its speed). γ is rounded once for S0, S1 and S2 and [x², x] is split into a
        rounded part and its remainder (two GEMMs), since the σ block is a cancellation
        between them. Cost, same measurement (TF32 emulated on the CPU): TF32 up to 1.7e-3
        (clustered) and 6.1e-3 (unclustered), bf16 up to 5.4e-3 and 2.1e-2. Both use the
        dense statistics.
    output : {None, "numpy", "torch"}, default=None
        ``"torch"``: a tensor on the working device; ``"numpy"``: an ndarray. ``None``:
        tensor input gives a tensor, anything else an ndarray.

    Returns
    -------
    ndarray or Tensor of shape (K + 2KD,) for one set, or (S, K + 2KD) for many sets
        Layout [α (K), μ (K·D, component-major), σ (K·D)].
    """
    _check_common(normalization, power, l2, _SCALES)
    if batch_size is not None and (not isinstance(batch_size, numbers.Integral)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}.")
    if output not in _OUTPUTS:
        raise ValueError(f"output must be None, 'numpy' or 'torch', got {output!r}.")
    tensors = _is_tensor_input(descriptors)
    if device is None and tensors:
        first = descriptors if isinstance(descriptors, torch.Tensor) else descriptors[0]
        device = first.device
    working_dtype, working_device = resolve_dtype(dtype), resolve_device(device)
    _check_engine_options(posterior_threshold, precision, working_dtype, working_device)
    model = _Model(gmm, normalization, working_dtype, working_device, precision)
    flat, lengths, many = _as_sets(descriptors, model.d, keep_tensors=True)
    kind = output or ("torch" if tensors else "numpy")
    if posterior_threshold is None:
        posterior_threshold = POSTERIOR_THRESHOLD[working_dtype]
    out = _encode_all(model, flat, lengths, power, l2, batch_size,
                      tau=float(posterior_threshold), output=kind)
    return out if many else out[0]


class FisherVectorEncoder(TransformerMixin, BaseEstimator):
    """Learn a diagonal GMM on local descriptors and encode sets of them as Fisher vectors.

    ``X`` is a list of (n_i, D) arrays or an (S, n, D) array; the output is (S, dim) with
    dim = K + 2KD, or ``whiten`` when whitening. Encoding is float32 with
    :func:`fisher_vector`'s default posterior threshold (1e-8).

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
        z = _encode_all(model, flat, lengths, None, False, None,
                        tau=POSTERIOR_THRESHOLD[torch.float32])  # (S, K + 2KD)
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
