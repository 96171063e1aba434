"""VLAD and bag-of-visual-words: the Fisher vector's simpler relatives, as baselines.

Both quantise local descriptors with a k-means codebook {c_1 … c_K} and hard assignment
q(x) = argmin_k ‖x − c_k‖²:

- **Bag of visual words** (Sivic & Zisserman 2003; Csurka et al. 2004): the histogram
  h_k = #{t : q(x_t) = k} of a set — the Fisher vector's α block under hard assignment.
  Weighting ``"tf"`` divides by the set size, ``"tfidf"`` multiplies that by
  idf_k = ln((1 + S) / (1 + df_k)) + 1 learned on the S training sets (df_k: sets that use
  word k; scikit-learn's smoothed ``TfidfTransformer`` formula), ``"none"`` keeps counts.
- **VLAD** (Jégou et al. 2010): v_k = Σ_{t : q(x_t) = k} (x_t − c_k), concatenated (K·D,
  component-major like the Fisher vector's μ block, of which it is the hard-assignment,
  unscaled version). Optional intra-normalisation divides each v_k by its L2 norm
  (Arandjelović & Zisserman 2013, "All about VLAD"), then signed power |z|^p · sign(z)
  and global L2.

The codebook is the repository's k-means (:func:`fisher_core.fisher._init.kmeanspp` seeds,
then Lloyd to convergence, as the GMM's default initialisation uses) on a random subsample.
Encoding is vectorised: distances to the codebook by GEMM in chunks of descriptors, per-set
sums by one ``index_add_`` over (set, word) pairs — no loop over descriptors or sets. Sets may
differ in size and may be empty: an empty set encodes as the zero vector.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._fv_engine import normalize_
from ._init import kmeanspp, lloyd
from .vectors import _as_sets, _check_power_l2

__all__ = ["BagOfWordsEncoder", "VLADEncoder", "WEIGHTINGS"]

WEIGHTINGS = ("tf", "tfidf", "none")
_ROWS_PER_CHUNK = 1 << 16  # descriptors per distance GEMM: (65,536, K) float64 blocks


def _many_sets(X, n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(flat (T, D), lengths (S,)) of many sets; empty sets allowed."""
    flat, lengths, many = _as_sets(X, None, allow_empty=True)
    if not many:
        raise ValueError(
            "X must be many sets: a list of (n_i, D) arrays or an (S, n, D) array, got a "
            f"single 2-D array of shape {flat.shape}; wrap it in a list.")
    if n_features is not None and flat.shape[1] != n_features:
        raise ValueError(
            f"descriptors have D={flat.shape[1]} features but the codebook was fitted on "
            f"D={n_features}; use descriptors of the codebook's dimension.")
    return flat, lengths


def _assign(flat: np.ndarray, centers: torch.Tensor):
    """Chunks of (first row, descriptors (m, D) float64, nearest word (m,))."""
    c_sq = (centers * centers).sum(1)  # (K,)
    for start in range(0, len(flat), _ROWS_PER_CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(flat[start : start + _ROWS_PER_CHUNK]))
        x = x.to(torch.float64)  # (m, D)
        # ‖x − c‖² up to the row constant ‖x‖²
        yield start, x, torch.argmin(c_sq - 2 * x @ centers.T, dim=1)


class _CodebookEncoder(TransformerMixin, BaseEstimator):
    """k-means codebook shared by :class:`VLADEncoder` and :class:`BagOfWordsEncoder`."""

    def _check_base(self) -> None:
        for name in ("n_clusters", "max_iter", "kmeans_max_descriptors"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")

    def _fit_codebook(self, flat: np.ndarray) -> None:
        if len(flat) < self.n_clusters:
            raise ValueError(
                f"n_clusters={self.n_clusters} needs at least that many descriptors to fit "
                f"the codebook; the sets hold {len(flat)}. Lower n_clusters or pass more.")
        rng = check_random_state(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        sample = flat
        if len(flat) > self.kmeans_max_descriptors:
            sample = flat[np.sort(rng.choice(len(flat), self.kmeans_max_descriptors,
                                             replace=False))]
        x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float64))  # (n, D)
        seeds, _ = kmeanspp(x, self.n_clusters, gen)
        centers, _, inertia, n_iter = lloyd(x, seeds, max_iter=self.max_iter)
        self.cluster_centers_ = centers.numpy()  # (K, D) float64
        self.inertia_, self.n_iter_ = inertia, n_iter
        self.n_features_in_ = flat.shape[1]

    def _statistics(self, flat: np.ndarray, lengths: np.ndarray, sums: bool):
        """Word counts (S, K) and, if ``sums``, per-word descriptor sums (S, K, D)."""
        k, d, n_sets = self.n_clusters, flat.shape[1], len(lengths)
        centers = torch.from_numpy(self.cluster_centers_)
        set_of = torch.from_numpy(np.repeat(np.arange(n_sets), lengths))  # (T,)
        counts = torch.zeros(n_sets * k, dtype=torch.float64)
        total = torch.zeros(n_sets * k, d, dtype=torch.float64) if sums else None
        for start, x, word in _assign(flat, centers):
            cell = set_of[start : start + len(x)] * k + word  # (m,) flat (set, word) index
            counts += torch.bincount(cell, minlength=n_sets * k)
            if sums:
                total.index_add_(0, cell, x)
        counts = counts.view(n_sets, k)  # (S, K)
        return counts, None if total is None else total.view(n_sets, k, d)  # (S, K, D)

    def fit(self, X, y=None):
        """Fit the codebook (and any statistics of the encoding) on training sets."""
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit on training sets and return their encodings, shape (S, dim)."""
        self._check_params()
        flat, lengths = _many_sets(X, None)
        self._fit_codebook(flat)
        return self._encode(flat, lengths, fitting=True)

    def transform(self, X) -> np.ndarray:
        """Encode sets of descriptors (n_i, D), shape (S, dim); an empty set gives zeros."""
        check_is_fitted(self, "cluster_centers_")
        return self._encode(*_many_sets(X, self.n_features_in_), fitting=False)


class VLADEncoder(_CodebookEncoder):
    """Vectors of locally aggregated descriptors (Jégou et al. 2010) over a k-means codebook.

    ``X`` is a list of (n_i, D) arrays (n_i may be 0) or an (S, n, D) array; the output is
    (S, K·D) float32, block k holding Σ (x_t − c_k) over the descriptors assigned to word k.

    Parameters
    ----------
    n_clusters : int, default=16
        Codebook size K.
    intra : bool, default=True
        Intra-normalisation: each block divided by its L2 norm (Arandjelović & Zisserman
        2013), before the power normalisation; an empty block stays zero.
    power : float or None, default=0.5
        Signed power normalisation exponent; ``None`` skips it.
    l2 : bool, default=True
        Final L2 normalisation.
    max_iter : int, default=300
        Lloyd iterations at most.
    random_state : int, RandomState or None, default=None
        Seeds the k-means++ seeds and the subsample.
    kmeans_max_descriptors : int, default=100_000
        The codebook is fitted on at most this many descriptors, drawn at random.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (K, D)
    inertia_ : float
        Sum of squared distances of the fitted (subsampled) descriptors to their word.
    n_iter_ : int
    n_features_in_ : int
        Descriptor dimension D.
    """

    def __init__(self, n_clusters: int = 16, *, intra: bool = True, power: float | None = 0.5,
                 l2: bool = True, max_iter: int = 300, random_state=None,
                 kmeans_max_descriptors: int = 100_000) -> None:
        self.n_clusters = n_clusters
        self.intra = intra
        self.power = power
        self.l2 = l2
        self.max_iter = max_iter
        self.random_state = random_state
        self.kmeans_max_descriptors = kmeans_max_descriptors

    def _check_params(self) -> None:
        self._check_base()
        _check_power_l2(self.power, self.l2)
        if not isinstance(self.intra, (bool, np.bool_)):
            raise ValueError(f"intra must be True or False, got {self.intra!r}.")

    def _encode(self, flat, lengths, *, fitting: bool) -> np.ndarray:
        counts, sums = self._statistics(flat, lengths, sums=True)
        centers = torch.from_numpy(self.cluster_centers_)  # (K, D)
        v = sums - counts[..., None] * centers  # (S, K, D): Σ (x − c_k) over word k
        if self.intra:
            v /= torch.linalg.vector_norm(v, dim=2, keepdim=True).clamp_(min=1e-12)
        z = v.reshape(len(lengths), -1).to(torch.float32)  # (S, K·D)
        return normalize_(z, self.power, self.l2).numpy()


class BagOfWordsEncoder(_CodebookEncoder):
    """Histograms of visual words (hard k-means assignment), normalised.

    ``X`` is a list of (n_i, D) arrays (n_i may be 0) or an (S, n, D) array; the output is
    (S, K) float32.

    Parameters
    ----------
    n_clusters : int, default=16
        Codebook size K.
    weighting : {"tf", "tfidf", "none"}, default="tf"
        ``"tf"``: counts / set size (L1); ``"tfidf"``: tf × idf, idf_k = ln((1 + S) /
        (1 + df_k)) + 1 from the training sets; ``"none"``: raw counts.
    power : float or None, default=0.5
        Signed power normalisation (0.5 on an L1 histogram is the Hellinger map).
    l2 : bool, default=True
        Final L2 normalisation.
    max_iter, random_state, kmeans_max_descriptors
        As in :class:`VLADEncoder`.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (K, D)
    idf_ : ndarray of shape (K,)
        Only for ``"tfidf"``.
    inertia_, n_iter_, n_features_in_
        As in :class:`VLADEncoder`.
    """

    def __init__(self, n_clusters: int = 16, *, weighting: str = "tf",
                 power: float | None = 0.5, l2: bool = True, max_iter: int = 300,
                 random_state=None, kmeans_max_descriptors: int = 100_000) -> None:
        self.n_clusters = n_clusters
        self.weighting = weighting
        self.power = power
        self.l2 = l2
        self.max_iter = max_iter
        self.random_state = random_state
        self.kmeans_max_descriptors = kmeans_max_descriptors

    def _check_params(self) -> None:
        self._check_base()
        _check_power_l2(self.power, self.l2)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got "
                             f"{self.weighting!r}.")

    def _encode(self, flat, lengths, *, fitting: bool) -> np.ndarray:
        counts, _ = self._statistics(flat, lengths, sums=False)  # (S, K)
        h = counts
        if self.weighting != "none":
            h = counts / torch.from_numpy(np.maximum(lengths, 1))[:, None]  # tf
        if self.weighting == "tfidf":
            if fitting:
                df = (counts > 0).sum(0).double().numpy()  # (K,) sets using each word
                self.idf_ = np.log((1 + len(lengths)) / (1 + df)) + 1
            h = h * torch.from_numpy(self.idf_)
        return normalize_(h.to(torch.float32).contiguous(), self.power, self.l2).numpy()
