"""Pure float64 distances between two sets of feature vectors."""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_distance", "FrechetAccumulator", "fisher_distance", "fisher_similarity",
           "class_distance_matrix"]


def _stats(feats: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be (N, d) with N ≥ 2; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _clean_eigenvalues(w: np.ndarray) -> np.ndarray:
    # Eigenvalues of a PSD matrix below its rounding level are zeros in exact arithmetic:
    # left in, their square roots (≈1e-8 each) would bias Tr(·)^½ upwards when Σ is singular.
    tol = max(float(np.abs(w).max(initial=0.0)), 1e-300) * w.shape[0] * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(_clean_eigenvalues(w))) @ v.T


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray
                       ) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), all in float64.

    Tr((Σ1Σ2)^½) equals Σ √λ_i(Σ1^½ Σ2 Σ1^½): that matrix is symmetric positive
    semi-definite, so its eigenvalues are real and non-negative even when the covariances are
    singular (fewer samples than dimensions), where the non-symmetric product used by
    pytorch-fid produces complex parts.
    """
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    lam = _clean_eigenvalues(np.linalg.eigvalsh((m + m.T) / 2.0))
    tr_covmean = np.sqrt(lam).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID given features).

    Parameters
    ----------
    feats_a, feats_b : ndarray of shape (N_a, d), (N_b, d)

    Returns
    -------
    float
        Non-negative up to rounding. Report the sample counts with it: the estimate is biased
        upwards for small N.
    """
    mu1, s1 = _stats(feats_a, "feats_a")
    mu2, s2 = _stats(feats_b, "feats_b")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}.")
    return frechet_from_stats(mu1, s1, mu2, s2)


class FrechetAccumulator:
    """Streaming sums for the Fréchet distance (memory O(d²), any number of batches).

    Parameters
    ----------
    dim : int
        Feature dimension d.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        self._n = {"a": 0, "b": 0}
        self._s = {k: np.zeros(self.dim) for k in "ab"}
        self._ss = {k: np.zeros((self.dim, self.dim)) for k in "ab"}

    def update(self, feats: np.ndarray, *, real: bool) -> None:
        """Add a batch (N, d) to the real (``a``) or generated (``b``) side."""
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"feats must be (N, {self.dim}); got {x.shape}.")
        k = "a" if real else "b"
        self._n[k] += x.shape[0]
        self._s[k] += x.sum(0)
        self._ss[k] += x.T @ x

    def compute(self) -> float:
        """The Fréchet distance between everything added so far."""
        stats = []
        for k in "ab":
            n = self._n[k]
            if n < 2:
                raise ValueError("each side needs at least 2 samples before compute().")
            mu = self._s[k] / n
            cov = (self._ss[k] - n * np.outer(mu, mu)) / (n - 1)
            stats += [mu, cov]
        return frechet_from_stats(*stats)


def fisher_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the means of two sets of normalised Fisher scores (Zhai et al. 2019).

    With scores whitened by the diagonal Fisher information, ‖mean(a) − mean(b)‖ is the
    Fisher distance between the two sets under the model.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, k) with the same k; got {a.shape}, {b.shape}.")
    return float(np.linalg.norm(a.mean(0) - b.mean(0)))


def class_distance_matrix(vectors: np.ndarray, labels: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Fisher distance between every pair of classes.

    Returns
    -------
    classes : ndarray of shape (C,)
    distances : ndarray of shape (C, C)
    """
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(labels)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])  # (C, k)
    sq = (means**2).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * means @ means.T, 0.0, None)
    np.fill_diagonal(d2, 0.0)
    return classes, np.sqrt(d2)


def fisher_similarity(real: np.ndarray, fake: np.ndarray, *, scale: float = 10.0,
                      eps: float = 1e-12) -> float:
    """exp(−scale · mean_j (mean real_j − mean fake_j)² / var fake_j).

    The training monitor of the adversarial-Fisher-vector reference code: 1 when the
    discriminator's scores cannot tell real from generated sets apart, → 0 as they diverge.
    ``real`` and ``fake`` are (N, P) per-example scores (gradients) on each set.
    """
    r = np.asarray(real, dtype=np.float64)
    f = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"real and fake must be (N, P) with the same P; got {r.shape}, {f.shape}.")
    gap = (r.mean(0) - f.mean(0)) ** 2 / (f.var(0) + eps)
    return float(np.exp(-scale * gap.mean()))
