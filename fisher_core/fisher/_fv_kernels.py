"""Compiled (numba) kernel for the sparse Fisher-vector statistics on the CPU.

Most descriptors sit in one or two components of a GMM, so of the K posteriors of a row
only ≈ 1–2 exceed the threshold. One pass over the rows of a window, sets in parallel
(each thread owns whole sets, so there are no write conflicts), adds γ·[x², x] of the kept
pairs into the set's (K, 2D) block: the work is ≈ 2D multiply-adds per kept pair plus one
comparison per posterior, with no index arrays, sorting or sparse-matrix bookkeeping.

numba is a dependency of umap-learn, so it is always installed; it is imported (and the
kernel compiled, then cached on disk) on the first call only, so ``import fisher_core``
stays light.
"""

from __future__ import annotations

import numpy as np
import torch

_KERNEL = None


def _compile():
    import numba

    @numba.njit(parallel=True, nogil=True, cache=True)
    def kernel(weights, total, aug, starts, tau, s0, sxx):  # pragma: no cover - compiled
        k, width = weights.shape[1], aug.shape[1]
        for s in numba.prange(starts.shape[0] - 1):
            s0[s, :] = 0.0
            sxx[s, :, :] = 0.0
            for r in range(starts[s], starts[s + 1]):
                inv = 1.0 / total[r, 0]
                for c in range(k):
                    w = weights[r, c]
                    if w > tau:
                        g = w * inv
                        s0[s, c] += g
                        for j in range(width):
                            sxx[s, c, j] += g * aug[r, j]

    return numba, kernel


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
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    numba, kernel = _KERNEL
    m, k = len(lens), weights.shape[1]
    starts = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    s0 = np.empty((m, k), dtype=weights.dtype)
    sxx = np.empty((m, k, aug.shape[1]), dtype=weights.dtype)
    # the caller's thread budget (torch's), at most numba's pool
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    kernel(weights, total, aug, starts, weights.dtype.type(tau), s0, sxx)
    return torch.from_numpy(s0), torch.from_numpy(sxx)
