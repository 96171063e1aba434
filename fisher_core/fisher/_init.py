"""Initialisations of the diagonal Gaussian mixture (:mod:`fisher_core.fisher.gmm`), in torch.

scikit-learn's four ``init_params`` choices, each turned into starting parameters:

- ``"kmeans"`` (default): k-means++ seeds, then Lloyd's algorithm **to convergence** on a random
  subsample of at most ``max(10_000, 100 K)`` rows (float32 GEMMs, empty clusters relocated to
  the points farthest from their centre, as scikit-learn's ``KMeans`` does), then one hard
  assignment of *all* rows and an M-step. scikit-learn runs ``KMeans`` on all rows; k-means
  centres from ≥ 100 points per cluster are as good a start for EM, at a fraction of the cost
  (the benchmark in ``bench/bench_fv.py`` compares the held-out likelihood of both).
- ``"k-means++"``: the seeds alone, then the same hard assignment and M-step.
- ``"random"``: uniform random responsibilities (rows normalised), then an M-step.
- ``"random_from_data"``: K distinct rows as means, unit weights, variances ``reg_covar``
  (scikit-learn's one-hot responsibilities on those rows).

All work on the *centred* augmented data ``[x², x]`` of :mod:`._em` and return ``_Params``
(float64 weights, means relative to the centre, variances).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils import check_array

from ._em import _m_step, _Params

INIT_CHOICES = ("kmeans", "k-means++", "random", "random_from_data")


def subsample_size(n_samples: int, n_components: int) -> int:
    """Rows k-means (and k-means++) see: all of them up to ``max(10_000, 100 K)``."""
    return min(n_samples, max(10_000, 100 * n_components))


def kmeanspp(x: torch.Tensor, k: int, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """Greedy k-means++ (Arthur & Vassilvitskii; sklearn's 2 + log k local trials).

    Distances in the dtype of ``x``; the sampling (cumulative potential) in float64.

    Returns the (k, D) centres and how many were drawn from positive potential (the number of
    distinct centres found; less than k means the sample has fewer distinct points).
    """
    n = x.shape[0]
    sq = (x * x).sum(1)  # (n,)
    n_trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [first]
    closest = (sq - 2 * x @ x[first] + sq[first]).clamp_(min=0)  # (n,)
    n_distinct = 1
    for _ in range(1, k):
        potential = float(closest.sum(dtype=torch.float64))
        if potential <= 0.0:  # every point coincides with a centre: only duplicates remain
            centers.append(int(torch.randint(n, (1,), generator=gen)))
            continue
        draws = torch.rand(n_trials, generator=gen, dtype=torch.float64) * potential
        cumulative = torch.cumsum(closest.cpu().to(torch.float64), 0)
        cand = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        cand = cand.to(x.device)
        dist = (sq[None] - 2 * x[cand] @ x.T + sq[cand, None]).clamp_(min=0)  # (trials, n)
        torch.minimum(dist, closest[None], out=dist)
        best = int(torch.argmin(dist.sum(1)))
        closest = dist[best]
        centers.append(int(cand[best]))
        n_distinct += 1
    return x[centers], n_distinct


def lloyd(
    x: torch.Tensor, centers: torch.Tensor, *, max_iter: int = 300, tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd's k-means iterations from given centres until the assignment stops changing.

    Parameters
    ----------
    x : Tensor of shape (n, D)
        Points (float32 or float64; the arithmetic follows their dtype).
    centers : Tensor of shape (k, D)
        Starting centres.
    max_iter : int, default=300
    tol : float, default=1e-4
        Also stop when the squared centre shift, summed, falls below ``tol`` times the mean
        per-dimension variance of ``x`` (scikit-learn's ``KMeans`` criterion).

    Returns
    -------
    centers : Tensor of shape (k, D)
    labels : Tensor of shape (n,)
        Index of each point's nearest centre (for the returned centres).
    inertia : float
        Sum of squared distances of the points to their nearest centre.
    n_iter : int
        Lloyd iterations run.

    Notes
    -----
    A cluster left empty is moved onto the point farthest from its own centre (then the next
    farthest, …), as scikit-learn does, so k centres stay in use.
    """
    k = centers.shape[0]
    c = centers.to(x.dtype).clone()
    x_sq = (x * x).sum(1)  # (n,)
    tol_abs = tol * float(x.var(0, correction=0).mean())
    labels = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
        dist = (c * c).sum(1)[None] - 2 * x @ c.T  # (n, k), ‖x − c‖² − ‖x‖²
        best, new_labels = dist.min(1)
        # cluster sums as one GEMM with the one-hot assignment (index_add_ is a slow scatter)
        onehot = torch.nn.functional.one_hot(new_labels, k).to(x.dtype)  # (n, k)
        counts = onehot.sum(0)
        sums = onehot.T @ x  # (k, D)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():  # relocate onto the farthest points
            far = torch.argsort(best + x_sq, descending=True)[: empty.numel()]
            sums[empty], counts[empty] = x[far], 1.0
        new_c = sums / counts[:, None]
        shift = float(((new_c - c) ** 2).sum())
        c = new_c
        if labels is not None and bool(torch.equal(new_labels, labels)) and not empty.numel():
            break
        labels = new_labels
        if shift <= tol_abs:
            break
    dist = (c * c).sum(1)[None] - 2 * x @ c.T
    best, labels = dist.min(1)
    inertia = float((best + x_sq).clamp(min=0).sum(dtype=torch.float64))
    return c, labels, inertia, n_iter


def hard_assignment_params(
    aug: torch.Tensor, centers: torch.Tensor, batch: int, reg_covar: float
) -> _Params:
    """Assign every row to its nearest centre, then an M-step (a centre alone starts broad)."""
    n_features = aug.shape[1] // 2
    k = centers.shape[0]
    c = centers.to(aug.dtype)
    c_sq = (c * c).sum(1)
    nk = torch.zeros(k, dtype=torch.float64, device=aug.device)
    sxx = torch.zeros(k, 2 * n_features, dtype=torch.float64, device=aug.device)
    for start in range(0, aug.shape[0], batch):
        block = aug[start : start + batch]
        # ‖x − c‖² up to the row constant ‖x‖²
        labels = torch.argmin(c_sq - 2 * block[:, n_features:] @ c.T, dim=1)
        onehot = torch.nn.functional.one_hot(labels, k).to(aug.dtype)  # (B, K)
        nk += onehot.sum(0, dtype=torch.float64)
        sxx += torch.mm(onehot.T, block).to(torch.float64)
    x_all = aug[:, n_features:]
    global_var = x_all.var(0, correction=0).to(torch.float64) + reg_covar  # (D,)
    params = _m_step((nk, sxx[:, n_features:], sxx[:, :n_features]), None, reg_covar)
    lonely = nk < 2  # a centre with no other point: start it broad, not as a spike
    params.means[lonely] = centers[lonely].to(torch.float64)
    params.variances[lonely] = global_var
    return params


def random_resp_params(
    aug: torch.Tensor, k: int, gen: torch.Generator, batch: int, reg_covar: float
) -> _Params:
    """M-step from uniform random responsibilities (each row's normalised to sum 1)."""
    n_features = aug.shape[1] // 2
    nk = torch.zeros(k, dtype=torch.float64, device=aug.device)
    sxx = torch.zeros(k, 2 * n_features, dtype=torch.float64, device=aug.device)
    for start in range(0, aug.shape[0], batch):
        block = aug[start : start + batch]
        resp = torch.rand(block.shape[0], k, generator=gen, dtype=torch.float64)  # (B, K)
        resp = (resp / resp.sum(1, keepdim=True)).to(aug.device)
        nk += resp.sum(0)
        sxx += torch.mm(resp.T.to(aug.dtype), block).to(torch.float64)
    return _m_step((nk, sxx[:, n_features:], sxx[:, :n_features]), None, reg_covar)


def random_from_data_params(
    aug: torch.Tensor, k: int, gen: torch.Generator, reg_covar: float
) -> _Params:
    """K distinct random rows as means, equal weights, variances ``reg_covar``."""
    n_features = aug.shape[1] // 2
    rows = torch.randperm(aug.shape[0], generator=gen)[:k].to(aug.device)
    means = aug[rows, n_features:].to(torch.float64)  # (K, D)
    variances = torch.full_like(means, float(reg_covar))
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64, device=aug.device)
    return _Params(weights, means, variances)


def initial_params(
    method: str, aug: torch.Tensor, k: int, gen: torch.Generator, batch: int, reg_covar: float
) -> tuple[_Params, int]:
    """Starting parameters by ``method`` (one of :data:`INIT_CHOICES`).

    Returns the parameters and the number of distinct seeds found (``k`` unless the data have
    fewer distinct points; only the k-means methods can tell).
    """
    if method == "random":
        return random_resp_params(aug, k, gen, batch, reg_covar), k
    if method == "random_from_data":
        return random_from_data_params(aug, k, gen, reg_covar), k
    n_samples, n_features = aug.shape[0], aug.shape[1] // 2
    rows = torch.randperm(n_samples, generator=gen)[: subsample_size(n_samples, k)]
    sample = aug[rows.to(aug.device), n_features:]  # (n_sub, D)
    centers, n_distinct = kmeanspp(sample, k, gen)
    if method == "kmeans" and n_distinct == k:
        centers = lloyd(sample, centers)[0].to(torch.float64)
    return hard_assignment_params(aug, centers.to(torch.float64), batch, reg_covar), n_distinct


def _check_shape(array: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}; "
            "its first axis is n_components, its second the number of features."
        )


def check_initial_arrays(weights_init, means_init, precisions_init, k: int, n_features: int):
    """Validated ``(weights_init, means_init, precisions_init)``; ``None`` where not given.

    scikit-learn's checks and messages: shapes (K,), (K, D), (K, D); weights in [0, 1] summing
    to 1; precisions > 0.
    """
    weights = means = precisions = None
    if weights_init is not None:
        weights = check_array(weights_init, dtype=[np.float64, np.float32],
                              ensure_2d=False, input_name="weights_init")
        _check_shape(weights, (k,), "weights")
        if weights.min() < 0 or weights.max() > 1:
            raise ValueError(
                "The parameter 'weights' should be in the range [0, 1], but got min value "
                f"{weights.min():.5f}, max value {weights.max():.5f}."
            )
        slack = max(1e-8, 4 * k * np.finfo(weights.dtype).eps)  # round-off of the sum
        if abs(1.0 - weights.sum(dtype=np.float64)) > slack:
            raise ValueError(
                "The parameter 'weights' should be normalized, but got sum(weights) = "
                f"{weights.sum():.5f}; divide weights_init by its sum."
            )
    if means_init is not None:
        means = check_array(means_init, dtype=[np.float64, np.float32],
                            input_name="means_init")
        _check_shape(means, (k, n_features), "means")
    if precisions_init is not None:
        precisions = check_array(precisions_init, dtype=[np.float64, np.float32],
                                 input_name="precisions_init")
        _check_shape(precisions, (k, n_features), "diag precision")
        if np.any(precisions <= 0):
            raise ValueError(
                "The parameter 'diag precision' should be positive (precisions are inverse "
                "variances); fix precisions_init."
            )
    return weights, means, precisions
