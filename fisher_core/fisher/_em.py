"""EM pieces of the diagonal Gaussian mixture (:mod:`fisher_core.fisher.gmm`), shared with the
batched Fisher-vector encoder: the two-GEMM E-step on augmented data ``[x², x]``, the float64
M-step. The initialisations live in :mod:`._init`.
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
