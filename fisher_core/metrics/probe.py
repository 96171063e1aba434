"""Linear probes: how linearly separable are the classes in an embedding?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..embeddings.embedding import Embedding

__all__ = [
    "ProbeResult",
    "fisher_vector_ablation",
    "knn_probe",
    "linear_probe",
    "normalization_ablation",
    "probe_embeddings",
]


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy of a logistic-regression probe."""

    name: str
    accuracy: float
    std: float
    folds: list[float] = field(default_factory=list)
    n: int = 0
    dim: int = 0

    def row(self) -> dict[str, float | str | int]:
        """A table row: name, accuracy, std, n, dim."""
        return {"embedding": self.name, "accuracy": self.accuracy, "std": self.std,
                "n": self.n, "dim": self.dim}


def _probe_estimator(C: float, max_iter: int, standardize: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=C, max_iter=max_iter)
    return make_pipeline(StandardScaler(), clf) if standardize else clf


def linear_probe(
    X: np.ndarray | Embedding,
    y: np.ndarray,
    *,
    name: str = "embedding",
    cv: int = 5,
    C: float = 1.0,
    max_iter: int = 500,
    standardize: bool = False,
    seed: int = 0,
    estimator=None,
) -> ProbeResult:
    """Stratified k-fold accuracy of a logistic-regression probe.

    Parameters
    ----------
    X : ndarray of shape (N, k) or Embedding
        An embedding whose last steps learn statistics from its rows (empirical
        standardisation, whitening: :attr:`Embedding.base`) is probed on its vectors before
        those steps, the steps refitted on each training fold, so that no held-out row
        shapes the features it is scored on.
    y : ndarray of shape (N,)
        Integer classes (or booleans for an attribute).
    name : str, default="embedding"
    cv : int, default=5
        Folds (shuffled with ``seed``).
    C : float, default=1.0
        Inverse regularisation strength.
    max_iter : int, default=500
    standardize : bool, default=False
        Standardise features inside each fold. Off by default so that the probe measures the
        embedding's own normalisation.
    seed : int, default=0
    estimator : sklearn estimator, optional
        Replaces the logistic regression (it is cloned per fold).

    Returns
    -------
    ProbeResult
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    X, steps = X.probe_input() if isinstance(X, Embedding) else (X, None)
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (N, k) with N = len(y) = {y.shape[0]}; got {X.shape}.")
    counts = np.unique(y, return_counts=True)[1]
    if counts.size < 2:
        raise ValueError("y has a single class; a probe needs at least two.")
    folds = min(cv, int(counts.min()))
    if folds < 2:
        raise ValueError("every class needs at least 2 examples for cross-validation.")
    est = estimator if estimator is not None else _probe_estimator(C, max_iter, standardize)
    if steps is not None:
        est = make_pipeline(steps, est)  # cloned and refitted per fold with the classifier
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # One BLAS thread: a probe's matrices are small, and NumPy's and SciPy's OpenBLAS pools
    # spinning next to torch's OpenMP threads made the 12-probe ablation 100× slower on 2
    # cores (130–212 s against 1.5 s), in the app and in notebooks alike.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(est, X, y, cv=split)
    return ProbeResult(name, float(scores.mean()), float(scores.std()),
                       [float(s) for s in scores], int(X.shape[0]), int(X.shape[1]))


def knn_probe(
    X: np.ndarray | Embedding,
    y: np.ndarray,
    *,
    k: int = 10,
    name: str = "embedding",
    cv: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Stratified k-fold accuracy of a k-nearest-neighbour probe under cosine similarity.

    Each held-out vector takes the majority class of its ``k`` most cosine-similar training
    vectors (rows L2-normalised first; Zhai et al. 2019's nearest-neighbour evaluation). Same
    folds as :func:`linear_probe` with the same ``cv`` and ``seed``, so the two compare
    fold by fold: the linear probe asks whether classes are separable, this one whether
    neighbours in the space share a class.

    Parameters
    ----------
    X : ndarray of shape (N, d) or Embedding
        As in :func:`linear_probe` (data-fitted steps refitted per fold).
    y : ndarray of shape (N,)
    k : int, default=10
        Neighbours voting (uniform weights; ties go to the smallest class label).
    name : str, default="embedding"
    cv : int, default=5
    seed : int, default=0

    Returns
    -------
    ProbeResult
    """
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    # Euclidean order on unit vectors is cosine order: ‖a − b‖² = 2 − 2 cos(a, b)
    est = make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=k, algorithm="brute"))
    return linear_probe(X, y, name=name, cv=cv, seed=seed, estimator=est)


def normalization_ablation(
    raw: np.ndarray,
    analytic: np.ndarray,
    y: np.ndarray,
    *,
    cv: int = 5,
    seed: int = 0,
    C: float = 1.0,
    whiten: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, object]]:
    """The Fisher-vector normalisation ablation: {none, analytic, empirical} × power × L2,
    and, with ``whiten``, each normalisation with power, PCA whitening and L2.

    Parameters
    ----------
    raw : ndarray of shape (N, d)
        Plain-gradient Fisher vectors (``normalization="none"``, no power, no L2).
    analytic : ndarray of shape (N, d)
        The same vectors scaled by the analytical Fisher information (no power, no L2).
    y : ndarray of shape (N,)
    cv, seed, C
        As in :func:`linear_probe`.
    whiten : int or None, default=None
        Add three rows (none / analytic / empirical, each √ + whitening to ``whiten``
        dimensions + L2): the full sample covariance instead of a diagonal one.

    Returns
    -------
    list of dict
        One row per configuration: normalization, power, l2, whiten (dimension or None),
        accuracy, std.

    Notes
    -----
    Every step that learns statistics — the empirical standardisation (Sánchez et al. 2013)
    and the whitening PCA — is fitted on the *training folds* only (a
    :class:`~fisher_core.fisher.FisherNormalizer` inside the cross-validated pipeline).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from ..fisher.postprocess import FisherNormalizer

    norms = ("none", "analytic", "empirical")
    configs = [(n, p, l, None) for n in norms for p in (False, True) for l in (False, True)]
    if whiten is not None:
        configs += [(n, True, True, int(whiten)) for n in norms]
    rows = []
    for k, (norm, pw, l2, w) in enumerate(configs):
        if progress:
            progress(k / len(configs), f"probe {k + 1}/{len(configs)}: {norm} normalisation"
                     f"{' · power' if pw else ''}{f' · whiten {w}' if w else ''}"
                     f"{' · L2' if l2 else ''}")
        steps = FisherNormalizer(standardize=norm == "empirical", power=0.5 if pw else None,
                                 whiten=w, l2=l2, random_state=seed)
        X = analytic if norm == "analytic" else raw
        r = linear_probe(X, y, cv=cv, seed=seed, estimator=make_pipeline(
            steps, LogisticRegression(C=C, max_iter=500)))
        rows.append({"normalization": norm, "power": pw, "l2": l2, "whiten": w,
                     "accuracy": r.accuracy, "std": r.std})
    if progress:
        progress(1.0, "done")
    return rows


def probe_embeddings(
    pixels: np.ndarray,
    embeddings: dict[str, np.ndarray | Embedding],
    y: np.ndarray,
    *,
    cv: int = 5,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, object]]:
    """Linear and cosine k-NN probes on raw pixels (baseline) and on each named embedding.

    An :class:`Embedding` with data-fitted last steps (empirical standardisation,
    whitening) has them refitted on each training fold (see :func:`linear_probe`).

    Returns
    -------
    list of dict
        One :meth:`ProbeResult.row` per space, pixels first, with ``knn_accuracy`` and
        ``knn_std`` (:func:`knn_probe`, k = 10, the same folds) added.
    """
    spaces = {"raw pixels": pixels, **embeddings}
    rows = []
    for k, (name, X) in enumerate(spaces.items()):
        if progress:
            progress(k / len(spaces), f"probing {name}")
        knn = knn_probe(X, y, name=name, cv=cv, seed=seed)
        rows.append(linear_probe(X, y, name=name, cv=cv, seed=seed).row()
                    | {"knn_accuracy": knn.accuracy, "knn_std": knn.std})
    if progress:
        progress(1.0, "done")
    return rows


def fisher_vector_ablation(
    ds,
    y: np.ndarray,
    *,
    n_components: int = 16,
    patch: int | None = None,
    cv: int = 5,
    max_images: int | None = 2000,
    seed: int = 0,
    whiten: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, object]]:
    """The normalisation ablation on GMM Fisher vectors of a dataset's images.

    The GMM is fitted once, without labels, on local descriptors of the (subsampled) images;
    then :func:`normalization_ablation` probes all 12 normalisation settings (15 with
    ``whiten``, the whitening dimension).
    """
    from ..embeddings.classical import fisher_vector_embedding

    y = np.asarray(y)
    if max_images is not None and len(ds) > max_images:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(ds)), train_size=max_images,
                                   random_state=seed, stratify=y)
        keep = np.sort(keep)
        ds, y = ds.subset(keep), y[keep]

    def stage(lo: float, hi: float, what: str | None = None):
        """A part of the whole bar; a part's own "done" is not the end, so it is named."""
        if progress is None:
            return None
        return lambda f, m: progress(lo + (hi - lo) * f, f"{what}: {m}" if what else m)

    raw, gmm = fisher_vector_embedding(ds, n_components=n_components, patch=patch,
                                       normalization="none", power=None, l2=False,
                                       random_state=seed,
                                       progress=stage(0.0, 0.25, "GMM + plain Fisher vectors"))
    analytic, _ = fisher_vector_embedding(ds, n_components=n_components, patch=patch,
                                          normalization="analytic", power=None, l2=False,
                                          random_state=seed, gmm=gmm,
                                          progress=stage(0.25, 0.35, "analytic Fisher vectors"))
    if whiten is not None:
        cap = min(len(y) + (-len(y) // cv), raw.dim)  # rows of the smallest training fold
        if whiten > cap:
            raise ValueError(f"whiten={whiten} exceeds what a training fold can whiten "
                             f"(min(training rows, Fisher-vector dimension) = {cap}); choose "
                             f"at most {cap}.")
    return normalization_ablation(raw.vectors, analytic.vectors, y, cv=cv, seed=seed,
                                  whiten=whiten, progress=stage(0.35, 1.0))
