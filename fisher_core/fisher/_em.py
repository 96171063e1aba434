"""EM pieces of the diagonal Gaussian mixture (:mod:`fisher_core.fisher.gmm`), shared with the
batched Fisher-vector encoder: the two-GEMM E-step on augmented data ``[x², x]``, the float64
M-step, k-means++ and the hard-assignment initialisation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

_EMPTY = 1e-6  # total responsibility under which a component counts as empty
_WEIGHT_FLOOR = 10 * np.finfo(np.float64).eps
_LOG_2PI = math.log(2 * math.pi)
_EXP_FLOOR = {torch.float32: -60.0, torch.float64: -200.0}


class _Params(NamedTuple):
    """Mixture parameters as float64 tensors; means relative to the data centre."""

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    variances: torch.Tensor  # (K, D)


def auto_batch_size(n_components: int, n_features: int) -> int:
    """Rows per chunk so that one (batch, max(K, 2D)) float block stays near 16 MiB."""
    return max(256, (1 << 22) // max(n_components, 2 * n_features))


def gemm_coefficients(
    weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients turning ``[x², x] @ W + b`` into ``log w_k + log N(x | μ_k, σ_k²)``.

    Parameters
    ----------
    weights, means, variances : Tensor, shapes (K,), (K, D), (K, D)
        Float64 mixture parameters (means already relative to any centring of x).
    dtype : torch.dtype
        Dtype of the returned coefficients (they are computed in float64 first).

    Returns
    -------
    W : Tensor, shape (2D, K)
    b : Tensor, shape (K,)
    """
    prec = 1.0 / variances  # (K, D)
    w_mat = torch.cat([-0.5 * prec, means * prec], dim=1).T  # (2D, K)
    n_features = means.shape[1]
    bias = (
        torch.log(weights)
        - 0.5 * (means * means * prec).sum(1)
        - 0.5 * torch.log(variances).sum(1)
        - 0.5 * n_features * _LOG_2PI
    )
    return w_mat.to(dtype).contiguous(), bias.to(dtype)


def softmax_(logits: torch.Tensor, log_norm: bool = True) -> torch.Tensor | None:
    """Turn (B, K) joint log densities into posteriors *in place*; return log p(x), (B,).

    Log-ratios to the row maximum are clamped at −60 (float32) / −200 (float64) before
    ``exp``: such posteriors (< 1e-26) are zero for every purpose, whereas letting them become
    subnormal floats slows ``exp``, the sums and the following GEMMs down by 10× on x86
    (microcode assists). The clamp changes every result by less than K·e^−60 relative.
    With ``log_norm=False`` the log-normaliser is not computed and ``None`` is returned.
    """
    top = logits.amax(1, keepdim=True)  # (B, 1)
    logits.sub_(top).clamp_(min=_EXP_FLOOR[logits.dtype]).exp_()
    total = logits.sum(1, keepdim=True)  # (B, 1)
    logits.div_(total)
    return (top + total.log()).squeeze(1) if log_norm else None


def augment(x: torch.Tensor) -> torch.Tensor:
    """[x², x] for a (B, D) block → (B, 2D); the one operand of both EM GEMMs."""
    out = torch.empty(x.shape[0], 2 * x.shape[1], dtype=x.dtype, device=x.device)
    n_features = x.shape[1]
    out[:, n_features:] = x
    torch.mul(x, x, out=out[:, :n_features])
    return out


def _augmented_data(X: np.ndarray, shift: np.ndarray, dtype, device, batch: int) -> torch.Tensor:
    """Centred [x², x] for all rows, built chunk by chunk (no full float64 temporary)."""
    n_samples, n_features = X.shape
    aug = torch.empty(n_samples, 2 * n_features, dtype=dtype, device=device)
    for start in range(0, n_samples, batch):
        block = torch.from_numpy(X[start : start + batch] - shift)  # float64 centring
        aug[start : start + batch, n_features:] = block.to(device=device, dtype=dtype)
    torch.mul(aug[:, n_features:], aug[:, n_features:], out=aug[:, :n_features])
    return aug


# --------------------------------------------------------------------------- EM pieces
def _kmeanspp(x: torch.Tensor, k: int, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """Greedy k-means++ (Arthur & Vassilvitskii; sklearn's 2 + log k local trials), float64.

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
        potential = float(closest.sum())
        if potential <= 0.0:  # every point coincides with a centre: only duplicates remain
            centers.append(int(torch.randint(n, (1,), generator=gen)))
            continue
        draws = torch.rand(n_trials, generator=gen, dtype=torch.float64) * potential
        cand = torch.searchsorted(torch.cumsum(closest.cpu(), 0), draws).clamp_(max=n - 1)
        cand = cand.to(x.device)
        dist = (sq[None] - 2 * x[cand] @ x.T + sq[cand, None]).clamp_(min=0)  # (trials, n)
        torch.minimum(dist, closest[None], out=dist)
        best = int(torch.argmin(dist.sum(1)))
        closest = dist[best]
        centers.append(int(cand[best]))
        n_distinct += 1
    return x[centers], n_distinct


def _m_step(stats, prev: _Params | None, reg_covar: float) -> _Params:
    """Weights, means and floored variances from float64 (Nk, Σγx, Σγx²) statistics."""
    nk, s1, s2 = stats
    safe = nk.clamp(min=_EMPTY)[:, None]
    means = s1 / safe
    variances = (s2 / safe - means * means).clamp_(min=0.0) + reg_covar
    empty = nk < _EMPTY
    if prev is not None and bool(empty.any()):
        means[empty] = prev.means[empty]  # keep empty components where they were
        variances[empty] = prev.variances[empty]
    weights = nk.clamp(min=_WEIGHT_FLOOR)
    return _Params(weights / weights.sum(), means, variances)


def _e_pass(aug: torch.Tensor, params: _Params, batch: int):
    """One pass over the data: sufficient statistics and mean log-likelihood (float64)."""
    n_features = aug.shape[1] // 2
    w_mat, bias = gemm_coefficients(*params, aug.dtype)
    k = bias.shape[0]
    buf = torch.empty(min(batch, aug.shape[0]), k, dtype=aug.dtype, device=aug.device)
    nk = torch.zeros(k, dtype=torch.float64, device=aug.device)
    sxx = torch.zeros(k, 2 * n_features, dtype=torch.float64, device=aug.device)
    loglik = torch.zeros((), dtype=torch.float64, device=aug.device)
    for start in range(0, aug.shape[0], batch):
        block = aug[start : start + batch]  # (B, 2D) view, no copy
        resp = buf[: block.shape[0]]
        torch.mm(block, w_mat, out=resp).add_(bias)
        loglik += softmax_(resp).sum(dtype=torch.float64)
        nk += resp.sum(0, dtype=torch.float64)
        sxx += torch.mm(resp.T, block).to(torch.float64)  # (K, 2D) = γᵀ [x², x]
    stats = (nk, sxx[:, n_features:], sxx[:, :n_features])
    return stats, float(loglik) / aug.shape[0]


def _init_params(aug: torch.Tensor, centers: torch.Tensor, batch: int, reg_covar: float):
    """One hard-assignment (Lloyd) step from the k-means++ centres, then an M-step."""
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
