"""The one embedding type that every downstream step (UMAP, decode, edit, metrics, probes) takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Embedding"]


@dataclass
class Embedding:
    """An (N, k) array of vectors plus a record of what produced it.

    Parameters
    ----------
    vectors : ndarray of shape (N, k)
        One row per example of ``dataset``, float32.
    dataset : str
        Name of the dataset (workspace key or built-in name) the rows belong to.
    kind : str
        What the vectors are: ``"fisher"`` (deep Fisher scores), ``"fisher_vector"``
        (classical GMM FV), ``"afv"``, ``"activations"``, ``"pixels"``, ``"latent"``...
    model : str or None, default=None
        Workspace name of the model that produced the vectors, if any.
    normalization : str or None, default=None
        Normalisation applied (``"analytic"``, ``"fim_diag"``, ``"l2"``...).
    projection : str or None, default=None
        Random projection applied (``"sparse"``, ``"gaussian"``, ``"kron"``) or None.
    params : dict, default={}
        Any other settings needed to reproduce the embedding (JSON-serialisable).
    base : ndarray of shape (N, d) or None, default=None
        For vectors whose last steps learn statistics from the rows themselves (empirical
        standardisation, PCA whitening): the vectors before those steps. ``vectors`` are
        then ``FisherNormalizer(**post).fit_transform(base)`` over all rows — right for
        looking at the data, leaky for a probe, which refits the steps on its training folds
        (:func:`fisher_core.metrics.linear_probe` does so when given the embedding).
    post : dict or None, default=None
        The :class:`~fisher_core.fisher.FisherNormalizer` arguments that turn ``base`` into
        ``vectors``; set together with ``base``.
    """

    vectors: np.ndarray
    dataset: str
    kind: str
    model: str | None = None
    normalization: str | None = None
    projection: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    base: np.ndarray | None = None
    post: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.vectors = _matrix(self.vectors, "vectors")
        if (self.base is None) != (self.post is None):
            raise ValueError("Embedding.base and Embedding.post go together: give both or "
                             "neither.")
        if self.base is not None:
            self.base = _matrix(self.base, "base")
            if self.base.shape[0] != self.vectors.shape[0]:
                raise ValueError(f"Embedding.base has {self.base.shape[0]} rows but vectors "
                                 f"has {self.vectors.shape[0]}; they are the same examples.")
            self.post = dict(self.post)

    @property
    def n(self) -> int:
        """Number of rows (examples)."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Dimension k of each vector."""
        return int(self.vectors.shape[1])

    def metadata(self) -> dict[str, Any]:
        """Everything but the vectors, as a JSON-serialisable dict."""
        return {
            "dataset": self.dataset,
            "kind": self.kind,
            "model": self.model,
            "normalization": self.normalization,
            "projection": self.projection,
            "params": dict(self.params),
            "shape": list(self.vectors.shape),
        } | ({"post": dict(self.post)} if self.post is not None else {})

    def label(self) -> str:
        """A short human-readable description, e.g. ``"fisher · pixelcnn-faces · sparse 512"``."""
        parts = [self.kind]
        if self.model:
            parts.append(self.model)
        if self.projection:
            parts.append(f"{self.projection} {self.dim}")
        if self.normalization:
            parts.append(self.normalization)
        return " · ".join(parts)

    def subset(self, index: np.ndarray) -> Embedding:
        """Rows ``index`` as a new embedding with the same metadata."""
        index = np.asarray(index)
        return Embedding(
            self.vectors[index], self.dataset, self.kind, self.model,
            self.normalization, self.projection, dict(self.params),
            None if self.base is None else self.base[index], self.post,
        )

    def probe_input(self) -> tuple[np.ndarray, Any]:
        """``(X, steps)`` for a cross-validated probe: with data-fitted last steps, the
        vectors before them and an unfitted :class:`~fisher_core.fisher.FisherNormalizer` to
        refit on each training fold; otherwise ``(vectors, None)``."""
        if self.base is None:
            return self.vectors, None
        from ..fisher.postprocess import FisherNormalizer

        return self.base, FisherNormalizer(**self.post)


def _matrix(a: Any, what: str) -> np.ndarray:
    v = np.asarray(a)
    if v.ndim != 2:
        raise ValueError(f"Embedding.{what} must be 2-D (N, k); got shape {v.shape}.")
    if not np.issubdtype(v.dtype, np.number):
        raise TypeError(f"Embedding.{what} must be numeric; got dtype {v.dtype}.")
    return np.ascontiguousarray(v, dtype=np.float32)
