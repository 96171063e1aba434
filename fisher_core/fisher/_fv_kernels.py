"""Compiled (numba) kernels for the sparse Fisher-vector statistics on the CPU.

Most descriptors sit in one or two components of a GMM, so of the K posteriors of a row
only ≈ 1–2 exceed the threshold. One pass over the rows of a window, sets in parallel
(each thread owns whole sets, so there are no write conflicts), adds γ·[x², x] of the kept
pairs into the set's (K, 2D) block: the work is ≈ 2D multiply-adds per kept pair plus one
comparison per posterior, with no index arrays, sorting or sparse-matrix bookkeeping.
:func:`sparse_set_vectors` goes on, set by set, to the Fisher vector and its √ and L2
normalisation, written straight into the output.

numba is a dependency of umap-learn, so it is always installed. This module imports it, so
it is itself imported only where a kernel is called (``import fisher_core`` stays light);
the kernels are compiled on their first call and cached on disk.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch


@numba.njit(nogil=True, cache=True, inline="always")
def _accumulate(weights, total, aug, first, stop, tau, s0, sxx):  # pragma: no cover
    """Add γ and γ·[x², x] of rows ``first:stop``'s pairs above ``tau`` into (s0, sxx)."""
    k, width = weights.shape[1], aug.shape[1]
    for row in range(first, stop):
        inv = 1.0 / total[row, 0]
        for c in range(k):
            w = weights[row, c]
            if w > tau:
                g = w * inv
                s0[c] += g
                for j in range(width):
                    sxx[c, j] += g * aug[row, j]


@numba.njit(parallel=True, nogil=True, cache=True)
def _statistics(weights, total, aug, starts, tau, s0, sxx):  # pragma: no cover - compiled
    for s in numba.prange(starts.shape[0] - 1):
        s0[s, :] = 0.0
        sxx[s, :, :] = 0.0
        _accumulate(weights, total, aug, starts[s], starts[s + 1], tau, s0[s], sxx[s])


@numba.njit(parallel=True, nogil=True, cache=True,
            fastmath={"nsz", "arcp", "contract", "reassoc"})
def _vectors(weights, total, aug, starts, tau, coef, power, l2, out,
             finite):  # pragma: no cover - compiled
    k, width = weights.shape[1], aug.shape[1]
    d = width // 2
    a, a_off, e, f, p, q, r = coef
    for s in numba.prange(starts.shape[0] - 1):
        s0 = np.zeros(k, dtype=out.dtype)
        sxx = np.zeros((k, width), dtype=out.dtype)
        _accumulate(weights, total, aug, starts[s], starts[s + 1], tau, s0, sxx)
        n = starts[s + 1] - starts[s]
        scale = 1.0 if l2 else 1.0 / n  # with L2 the 1/N cancels (the power is homogeneous)
        offset = n if l2 else 1.0  # of the α block's −w·a term
        v = out[s]
        for c in range(k):
            v[c] = s0[c] * a[c] * scale - a_off[c] * offset
            for j in range(d):
                v[k + c * d + j] = (sxx[c, d + j] * e[c, j] + s0[c] * f[c, j]) * scale
                v[k + k * d + c * d + j] = (sxx[c, j] * p[c, j] + sxx[c, d + j] * q[c, j]
                                            + s0[c] * r[c, j]) * scale
        if power == 0.5:  # branch-free loops, so that they vectorise
            for i in range(v.shape[0]):
                v[i] = math.copysign(math.sqrt(abs(v[i])), v[i])
        norm = 0.0
        for i in range(v.shape[0]):
            norm += v[i] * v[i]
        finite[s] = math.isfinite(norm)
        if l2:
            inv_norm = 1.0 / max(math.sqrt(norm), 1e-12)
            for i in range(v.shape[0]):
                v[i] *= inv_norm


def _starts(lens: np.ndarray) -> np.ndarray:
    """Row offsets (m + 1,) of m consecutive sets; sets the kernels' thread budget to the
    caller's (torch's), at most numba's pool."""
    starts = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return starts


def sparse_set_statistics(weights: np.ndarray, total: np.ndarray, aug: np.ndarray,
                          lens: np.ndarray, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """S0 (m, K) and Σγ[x², x] (m, K, 2D) over the pairs with weight > ``tau``.

    Parameters
    ----------
    weights : ndarray of shape (n, K)
        Unnormalised posteriors γ / max_k γ of the window's rows (float32 or float64).
    total : ndarray of shape (n, 1)
        Their row sums (γ = weights / total); finite.
    aug : ndarray of shape (n, 2D)
        The rows as [x², x], set after set.
    lens : ndarray of shape (m,)
        Rows of each of the m consecutive sets.
    tau : float
        Posteriors whose weight is at most ``tau`` count as zero.

    Returns
    -------
    s0, sxx : Tensor
        Statistics in the dtype of ``weights``, accumulated in it.
    """
    m, k = len(lens), weights.shape[1]
    s0 = np.empty((m, k), dtype=weights.dtype)
    sxx = np.empty((m, k, aug.shape[1]), dtype=weights.dtype)
    _statistics(weights, total, aug, _starts(lens), weights.dtype.type(tau), s0, sxx)
    return torch.from_numpy(s0), torch.from_numpy(sxx)


def sparse_set_vectors(weights: np.ndarray, total: np.ndarray, aug: np.ndarray,
                       lens: np.ndarray, tau: float, coef: dict[str, torch.Tensor],
                       power: float | None, l2: bool, out: np.ndarray) -> np.ndarray:
    """Fisher vectors of the window's m whole sets straight into ``out`` (m, K + 2KD): the
    sparse statistics, the three fused multiply-adds of :class:`._fv_engine._Model` and the
    power / L2 normalisation in one compiled pass per set (sets in parallel).

    ``coef``: the model's (K,) and (K, D) tables a, a_off, e, f, p, q, r; ``power``: None
    or 0.5. Returns a (m,) bool array, False for a set whose vector is not finite.
    """
    tables = tuple(coef[name].numpy() for name in ("a", "a_off", "e", "f", "p", "q", "r"))
    finite = np.empty(len(lens), dtype=np.bool_)
    _vectors(weights, total, aug, _starts(lens), weights.dtype.type(tau), tables,
             0.0 if power is None else float(power), bool(l2), out, finite)
    return finite
