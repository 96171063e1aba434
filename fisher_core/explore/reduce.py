"""Dimensionality reduction for looking at embeddings: PCA, UMAP, Fisher-kernel neighbours.

UMAP's numba code compiles on the first fit in a process (tens of seconds on a small CPU);
:func:`warmup_umap` pays that once on tiny data so that an app can call it at start-up in a
background thread. :func:`umap_embed` first reduces with PCA (common practice, and it makes the
neighbour search cheap), then computes exact k-nearest neighbours with scikit-learn and hands
them to UMAP, which skips pynndescent (and its compilation) entirely.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = [
    "DegenerateEmbeddingError",
    "kernel_neighbors",
    "neighbor_scores",
    "pca_embed",
    "umap_embed",
    "umap_is_warm",
    "warmup_umap",
]

_WARM = threading.Event()
_WARM_LOCK = threading.Lock()


class DegenerateEmbeddingError(ValueError):
    """An embedding that no layout can show: non-finite values, or every row the same."""


def _layout_input(vectors: np.ndarray, min_rows: int, method: str) -> np.ndarray:
    """(N, k) float32 rows that a layout can place, or a :class:`DegenerateEmbeddingError`.

    Identical rows have no neighbourhood structure: UMAP's per-point bandwidth search then
    divides by zero distances and returns NaN coordinates for every point, silently.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"vectors must be (N, k) with N ≥ {min_rows} for {method}; got shape "
                         f"{x.shape}.")
    bad = np.flatnonzero(~np.isfinite(x).all(1))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:5]) + (f" and {bad.size - 5} more"
                                                      if bad.size > 5 else "")
        raise DegenerateEmbeddingError(
            f"{bad.size} of {x.shape[0]} vectors hold NaN or infinite values (rows {shown}); "
            "recompute the embedding (a diverged model gives such scores) or drop those rows."
        )
    if (x == x[0]).all():
        raise DegenerateEmbeddingError(
            f"all {x.shape[0]} vectors are identical, so {method} has nothing to lay out; the "
            "images may all be the same (constant images give identical Fisher scores) or the "
            "model may ignore its input. Use another embedding or dataset."
        )
    return x


def pca_embed(vectors: np.ndarray, n_components: int = 2, *, random_state: int = 0
              ) -> np.ndarray:
    """Project ``vectors`` (N, k) on their top principal components.

    Returns
    -------
    ndarray of shape (N, min(n_components, N, k)), float32

    Raises
    ------
    DegenerateEmbeddingError
        Non-finite vectors, or all vectors identical.
    """
    from sklearn.decomposition import PCA

    x = _layout_input(vectors, 2, "PCA")
    n = min(n_components, x.shape[0], x.shape[1])
    solver = "randomized" if min(x.shape) > 5 * n else "full"
    return PCA(n, svd_solver=solver, random_state=random_state).fit_transform(x).astype(
        np.float32)


def umap_embed(
    vectors: np.ndarray,
    *,
    n_components: int = 2,
    pca_dims: int | None = 50,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    n_epochs: int = 200,
    random_state: int = 0,
) -> np.ndarray:
    """UMAP of an embedding, after PCA to ``pca_dims`` dimensions.

    Parameters
    ----------
    vectors : ndarray of shape (N, k)
    n_components : {2, 3}, default=2
    pca_dims : int or None, default=50
        PCA dimension before UMAP (None: no PCA).
    n_neighbors : int, default=15
        Size of the neighbourhood UMAP preserves (small: local detail; large: global shape).
    min_dist : float, default=0.1
        How tightly points may pack in the layout, in [0, 1).
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance of the neighbour graph (cosine: angles only, as the Fisher kernel of
        L2-normalised vectors).
    n_epochs : int, default=200
        Optimisation epochs (umap-learn's default is 500 below 10,000 points; 200 gives the
        same picture here at 40 % of the time).
    random_state : int, default=0
        Seed (UMAP then runs single-threaded, reproducibly).

    Returns
    -------
    ndarray of shape (N, n_components), float32

    Raises
    ------
    DegenerateEmbeddingError
        Non-finite vectors, or all vectors identical (no layout exists; UMAP itself would
        return NaN coordinates).
    """
    import umap
    from sklearn.neighbors import NearestNeighbors

    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}.")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 2:
        raise ValueError(f"n_neighbors must be an integer >= 2; got {n_neighbors!r}.")
    if not 0.0 <= min_dist < 1.0:
        raise ValueError(f"min_dist must be in [0, 1); got {min_dist!r}.")
    x = _layout_input(vectors, 4, "UMAP")
    n = x.shape[0]
    if pca_dims is not None and x.shape[1] > pca_dims and n > pca_dims:
        x = pca_embed(x, pca_dims, random_state=random_state)
    k = min(n_neighbors, n - 1)
    # Exact neighbours (scikit-learn) include each point itself first, as UMAP expects.
    dist, idx = NearestNeighbors(n_neighbors=k, metric=metric).fit(x).kneighbors(x)
    reducer = umap.UMAP(
        n_components=n_components, n_neighbors=k, min_dist=min_dist, n_epochs=n_epochs,
        metric=metric,
        init="pca" if n > n_components + 1 else "random", random_state=random_state,
        precomputed_knn=(idx, dist, None),
    )
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        out = np.asarray(reducer.fit_transform(x), dtype=np.float32)
    _WARM.set()
    if not np.isfinite(out).all():  # never hand NaN coordinates on silently
        raise DegenerateEmbeddingError(
            f"UMAP gave non-finite coordinates for {int((~np.isfinite(out).all(1)).sum())} of "
            f"{n} points (near-duplicate vectors); try pca_embed or fewer neighbours."
        )
    return out


def warmup_umap() -> None:
    """Compile UMAP's numba code on a tiny problem (idempotent, thread-safe)."""
    with _WARM_LOCK:
        if _WARM.is_set():
            return
        rng = np.random.default_rng(0)
        umap_embed(rng.normal(size=(64, 8)).astype(np.float32), n_epochs=10)


def umap_is_warm() -> bool:
    """Whether UMAP has already been compiled in this process."""
    return _WARM.is_set()


def kernel_neighbors(vectors: np.ndarray, index: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbours of row ``index`` under the Fisher kernel.

    For Fisher vectors whitened by the (diagonal) Fisher information, the Fisher kernel
    K(x, y) = U_xᵀ I⁻¹ U_y is the plain dot product of the normalised vectors; when they are
    also L2-normalised it is the cosine similarity.

    Returns
    -------
    indices : ndarray of shape (k,)
        Rows most similar to ``index`` (itself excluded), most similar first.
    similarities : ndarray of shape (k,)
        Kernel values K(x_index, x_j).
    """
    x = np.asarray(vectors, dtype=np.float32)
    sims = _kernel_row(x, index)
    order = _top(sims, k)
    return order, sims[order]


def _kernel_row(x: np.ndarray, index: int) -> np.ndarray:
    """K(x_index, x_j) for every row j, (N,), with −inf at the query itself."""
    if not 0 <= index < x.shape[0]:
        raise IndexError(f"index must be in [0, {x.shape[0]}); got {index}.")
    sims = x @ x[index]  # (N,)
    sims[index] = -np.inf
    return sims


def _top(sims: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k largest finite values, largest first (ties in row order)."""
    k = min(k, sims.shape[0] - 1)
    top = np.argpartition(-sims, k - 1)[:k] if k < sims.shape[0] - 1 else np.arange(len(sims))
    top = top[np.isfinite(sims[top])]
    return top[np.argsort(-sims[top], kind="stable")][:k]


def neighbor_scores(vectors: np.ndarray, index: int, k: int = 8) -> dict[str, np.ndarray]:
    """Fisher-kernel neighbours of row ``index`` with scores comparable between spaces.

    The raw kernel K(x, y) = ⟨V_x, V_y⟩ has the scale of the embedding (about 1 for
    L2-normalised Fisher vectors, thousands for unnormalised AFVs), so it is reported with
    two scale-free companions: the cosine of the angle between the vectors, and the
    percentile of K(x, y) among the query's kernel values with every other row.

    Parameters
    ----------
    vectors : ndarray of shape (N, k)
    index : int
        The query row.
    k : int, default=8
        Neighbours wanted (at most N − 1).

    Returns
    -------
    dict of str to ndarray of shape (k,)
        ``index`` (rows, most similar first, the query excluded), ``kernel`` (raw K),
        ``cosine`` (in [−1, 1]; 0 for an all-zero row) and ``percentile`` (in [0, 100]: the
        share of the other rows whose kernel value with the query is lower).
    """
    x = np.asarray(vectors, dtype=np.float32)
    sims = _kernel_row(x, index)  # one pass over the N rows serves all three scores
    order = _top(sims, k)
    kernel = sims[order]
    others = np.delete(sims, index).astype(np.float64)  # (N − 1,)
    denom = (np.linalg.norm(x[order], axis=1) * np.linalg.norm(x[index])).astype(np.float64)
    cosine = np.divide(kernel.astype(np.float64), denom, out=np.zeros(len(order)),
                       where=denom > 0)
    below = np.searchsorted(np.sort(others), kernel.astype(np.float64), side="left")
    return {"index": order, "kernel": kernel, "cosine": np.clip(cosine, -1.0, 1.0),
            "percentile": 100.0 * below / max(len(others), 1)}
