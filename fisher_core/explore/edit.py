"""Moving through an embedding: interpolation and attribute directions.

Works on any embedding (Fisher scores, activations, pixels, VAE latents), so every comparison
between spaces runs the same code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["interpolate", "attribute_direction", "apply_direction"]


def interpolate(a: np.ndarray, b: np.ndarray, alphas: np.ndarray | list[float], *,
                method: str = "linear") -> np.ndarray:
    """Points between (and beyond) ``a`` and ``b``.

    Parameters
    ----------
    a, b : ndarray of shape (k,)
        End points (α = 0 gives ``a``, α = 1 gives ``b``).
    alphas : array-like of shape (T,)
        Positions; values outside [0, 1] extrapolate.
    method : {"linear", "slerp"}, default="linear"
        ``"slerp"`` interpolates the direction on the great circle and the norm linearly
        (useful when norms carry no meaning, e.g. L2-normalised Fisher vectors).

    Returns
    -------
    ndarray of shape (T, k)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D vectors of equal length; got {a.shape}, {b.shape}.")
    t = np.asarray(alphas, dtype=np.float64).reshape(-1, 1)  # (T, 1)
    if method == "linear":
        return ((1.0 - t) * a + t * b).astype(np.float32)
    if method != "slerp":
        raise ValueError(f"method must be 'linear' or 'slerp'; got {method!r}.")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return ((1.0 - t) * a + t * b).astype(np.float32)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if omega < 1e-6:  # (anti-)parallel up to rounding: the great circle is undefined
        direction = (1.0 - t) * ua + t * ub
    else:
        direction = (np.sin((1.0 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return (direction * ((1.0 - t) * na + t * nb)).astype(np.float32)


def attribute_direction(vectors: np.ndarray, positive: np.ndarray,
                        negative: np.ndarray | None = None, *,
                        method: str = "mean") -> np.ndarray:
    """The direction of an attribute: δ = mean(z | positive) − mean(z | negative).

    Parameters
    ----------
    vectors : ndarray of shape (N, k)
    positive : ndarray of bool (N,) or of int indices
        Rows that have the attribute (or the first user-chosen group).
    negative : ndarray of bool (N,) or int indices, optional
        Rows without it; defaults to the complement of ``positive``.
    method : {"mean", "whitened"}, default="mean"
        ``"mean"``: the difference of means (Yan, Ho & Abbeel 2019). ``"whitened"``: that
        difference divided, dimension by dimension, by the pooled within-group variance
        (a diagonal linear discriminant), so that dimensions which vary a lot inside each
        group — other attributes, identity — move less; rescaled so that ``δ_w · δ = ‖δ‖²``
        (one unit of strength moves the group means apart as much as with ``"mean"``).

    Returns
    -------
    ndarray of shape (k,)
    """
    if method not in ("mean", "whitened"):
        raise ValueError(f"method must be 'mean' or 'whitened'; got {method!r}.")
    z = np.asarray(vectors, dtype=np.float64)
    pos = _mask(positive, z.shape[0], "positive")
    neg = ~pos if negative is None else _mask(negative, z.shape[0], "negative")
    if not pos.any() or not neg.any():
        raise ValueError(
            f"both groups need at least one example; got {int(pos.sum())} positive and "
            f"{int(neg.sum())} negative."
        )
    delta = z[pos].mean(0) - z[neg].mean(0)
    if method == "whitened":
        within = (((z[pos] - z[pos].mean(0)) ** 2).sum(0)
                  + ((z[neg] - z[neg].mean(0)) ** 2).sum(0)) / (pos.sum() + neg.sum())
        white = delta / (within + 1e-6 * within.mean() + 1e-12)
        delta = white * (delta @ delta) / max(float(white @ delta), 1e-300)
    return delta.astype(np.float32)


def apply_direction(z: np.ndarray, delta: np.ndarray,
                    strengths: float | np.ndarray | list[float]) -> np.ndarray:
    """z + s·δ for one or many embeddings and one or many strengths.

    Parameters
    ----------
    z : ndarray of shape (k,) or (M, k)
    delta : ndarray of shape (k,)
    strengths : float or array-like of shape (S,)

    Returns
    -------
    ndarray of shape (k,), (M, k), (S, k) or (S, M, k)
        Leading axes follow the inputs: strengths first, then embeddings.
    """
    z = np.asarray(z, dtype=np.float32)
    delta = np.asarray(delta, dtype=np.float32)
    if z.shape[-1] != delta.shape[-1] or delta.ndim != 1:
        raise ValueError(f"delta must be (k,) with k = {z.shape[-1]}; got {delta.shape}.")
    s = np.asarray(strengths, dtype=np.float32)
    if s.ndim == 0:
        return z + s * delta
    return z[None] + s.reshape((-1,) + (1,) * z.ndim) * delta  # (S, [M,] k)


def _mask(sel: np.ndarray, n: int, name: str) -> np.ndarray:
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ValueError(f"{name} mask must have shape ({n},); got {sel.shape}.")
        return sel
    mask = np.zeros(n, dtype=bool)
    mask[sel.astype(np.int64)] = True
    return mask
