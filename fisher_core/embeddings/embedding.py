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
    """

    vectors: np.ndarray
    dataset: str
    kind: str
    model: str | None = None
    normalization: str | None = None
    projection: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors)
        if v.ndim != 2:
            raise ValueError(f"Embedding.vectors must be 2-D (N, k); got shape {v.shape}.")
        if not np.issubdtype(v.dtype, np.number):
            raise TypeError(f"Embedding.vectors must be numeric; got dtype {v.dtype}.")
        self.vectors = np.ascontiguousarray(v, dtype=np.float32)

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
        }

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
        return Embedding(
            self.vectors[np.asarray(index)], self.dataset, self.kind, self.model,
            self.normalization, self.projection, dict(self.params),
        )
