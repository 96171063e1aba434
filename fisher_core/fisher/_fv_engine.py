"""The batched Fisher-vector encoder behind :func:`fisher_core.fisher.vectors.fisher_vector`.

Everything reduces to three statistics per set, S0 = Σγ, S1 = Σγx, S2 = Σγx², and
    Σ γ (x − μ) = S1 − μ S0,     Σ γ (x − μ)² = S2 − 2 μ S1 + μ² S0.
Posteriors of all descriptors of a chunk of sets come from one GEMM against [x², x]; the
per-set statistics from one batched GEMM ``bmm(γᵀ, [x², x])`` over sets padded to a common
length (sets are sorted by length first, so padding is small; padded rows get γ = 0). Chunks
bound the memory; there is no Python loop over sets or components.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ._em import auto_batch_size, gemm_coefficients, softmax_
from .gmm import gmm_parameters

_L2_FLOOR = 1e-12
_STATS_BUDGET = 1 << 22  # elements of one (sets, K, 2D) statistics block
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def normalize_(z: torch.Tensor, power: float | None, l2: bool) -> torch.Tensor:
    """In place: signed power |z|^p · sign(z), then L2 with a 1e-12 floor (zeros stay zero)."""
    if power is not None:
        torch.copysign(z.abs().pow_(power), z, out=z)
    if l2:
        z.div_(torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_(min=_L2_FLOOR))
    return z


# Per-block scales applied to the exact gradient (α: softmax logits, μ, σ). "analytic" is the
# analytical diagonal FIM^(−1/2) of Sánchez et al. 2013: F_α = 1/w (for the logits, under
# the sum-to-one constraint), F_μ = w/σ², F_σ = 2w/σ².
_SCALES = {
    "analytic": lambda w, sd: (1 / w.sqrt(), sd / w.sqrt()[:, None], sd / (2 * w).sqrt()[:, None]),
    "none": lambda w, sd: (torch.ones_like(w), torch.ones_like(sd), torch.ones_like(sd)),
}


class _Model:
    """GMM coefficients on the working device/dtype, centred on the mixture mean.

    With S0 = Σγ, S1 = Σγx, S2 = Σγx² of a set of N descriptors, every block is linear in
    the statistics, so the vector is three fused multiply-adds with (K, D) tables:
        α = S0 · a / N − a·w
        μ = (S1 · e + S0 · f) / N                   e = c_μ/σ², f = −μ c_μ/σ²
        σ = (S2 · p + S1 · q + S0 · r) / N          p = c_σ/σ³, q = −2μ c_σ/σ³,
                                                    r = μ² c_σ/σ³ − c_σ/σ
    which is [Σ(γ − w), Σγ(x − μ)/σ², Σγ((x − μ)²/σ³ − 1/σ)] / N times the scales c.
    """

    def __init__(self, gmm, normalization: str, dtype: torch.dtype, device: torch.device):
        w, mu, var = gmm_parameters(gmm)
        centre = (w[:, None] * mu).sum(0)  # (D,)
        spread = (w[:, None] * (var + (mu - centre) ** 2)).sum()
        # Centring keeps the float32 x² expansion accurate; it costs a pass over the data,
        # so it is skipped when the data sit within their own spread of the origin.
        needed = float(centre @ centre) > float(spread)
        self.shift_t = torch.as_tensor(centre, dtype=dtype, device=device) if needed else None
        to = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        w_t, mu_t, var_t = to(w), to(mu - centre if needed else mu), to(var)
        self.w_mat, self.bias = gemm_coefficients(w_t, mu_t, var_t, dtype)
        sd = var_t.sqrt()
        c_a, c_mu, c_sd = _SCALES[normalization](w_t, sd)
        table = {
            "a": c_a, "a_off": c_a * w_t,
            "e": c_mu / var_t, "f": -mu_t * c_mu / var_t,
            "p": c_sd / (var_t * sd), "q": -2 * mu_t * c_sd / (var_t * sd),
            "r": mu_t * mu_t * c_sd / (var_t * sd) - c_sd / sd,
        }
        self.coef = {name: value.to(dtype) for name, value in table.items()}
        self.k, self.d = mu.shape
        self.dtype, self.device = dtype, device


def _load(model: _Model, rows: np.ndarray, buf: torch.Tensor) -> torch.Tensor:
    """Centred [x², x] of (m, L, D) float rows into the first m·L rows of a (B, 2D) buffer."""
    m, length, d = rows.shape
    aug = buf[: m * length]  # (m·L, 2D)
    x = aug[:, d:]
    with warnings.catch_warnings():
        # read-only inputs are only read here; torch warns about them regardless
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        source = torch.from_numpy(rows)
    x.view(m, length, d).copy_(source)  # casts on the fly (multi-threaded)
    if model.shift_t is not None:
        x.sub_(model.shift_t)
    torch.mul(x, x, out=aug[:, :d])
    return aug


def _window(flat: np.ndarray, starts, lens, longest: int, t0: int, span: int):
    """Rows [t0, t0 + span) of each set as (m, span, D), and a (m, span) pad mask or None."""
    m = len(starts)
    if np.all(lens == longest) and np.all(starts == starts[0] + longest * np.arange(m)):
        block = flat[starts[0] : starts[0] + m * longest].reshape(m, longest, -1)  # a view
        return block[:, t0 : t0 + span], None
    offs = np.arange(t0, t0 + span)  # (span,)
    # padded rows read some real row (finite); their posteriors are zeroed afterwards
    index = np.minimum(starts[:, None] + offs[None, :], len(flat) - 1)  # (m, span)
    return flat[index], offs[None, :] >= lens[:, None]


def _set_statistics(model: _Model, rows: np.ndarray, pad, bufs):
    """S0 (m, K) and Σγ[x², x] (m, K, 2D) of m sets given as padded (m, L, D) rows."""
    m, length, _ = rows.shape
    aug = _load(model, rows, bufs[0])  # (m·L, 2D)
    resp = bufs[1][: m * length]  # (m·L, K)
    torch.mm(aug, model.w_mat, out=resp).add_(model.bias)
    softmax_(resp, log_norm=False)
    resp = resp.view(m, length, model.k)  # (m, L, K)
    if pad is not None:
        resp.masked_fill_(torch.from_numpy(pad).to(model.device)[..., None], 0.0)
    s0 = resp.sum(1)  # (m, K)
    sxx = torch.bmm(resp.transpose(1, 2), aug.view(m, length, 2 * model.d))  # (m, K, 2D)
    return s0, sxx


def _encode_chunk(model: _Model, flat, starts, lens, row_budget, bufs):
    """Fisher vectors (m, K + 2KD) of one chunk of sets, before power / L2 normalisation."""
    m = len(starts)
    longest = int(lens.max())
    step = max(1, row_budget // m)  # < longest only for one set longer than the budget
    s0, sxx = _set_statistics(model, *_window(flat, starts, lens, longest, 0, step), bufs)
    for t0 in range(step, longest, step):
        rows, pad = _window(flat, starts, lens, longest, t0, min(step, longest - t0))
        a, b = _set_statistics(model, rows, pad, bufs)
        s0 += a
        sxx += b
    return _vectors(model, s0, sxx, lens)


def _vectors(model: _Model, s0, sxx, lens) -> torch.Tensor:
    """(m, K + 2KD) vectors from S0 (m, K) and [S2, S1] (m, K, 2D); see :class:`_Model`."""
    m, k, d, c = s0.shape[0], model.k, model.d, model.coef
    fv = torch.empty(m, k + 2 * k * d, dtype=model.dtype, device=model.device)
    s2, s1, s0_ = sxx[..., :d], sxx[..., d:], s0[..., None]  # (m, K, D), (m, K, D), (m, K, 1)
    torch.mul(s0, c["a"], out=fv[:, :k])
    torch.mul(s1, c["e"], out=fv[:, k : k + k * d].view(m, k, d)).addcmul_(s0_, c["f"])
    sigma = torch.mul(s2, c["p"], out=fv[:, k + k * d :].view(m, k, d))
    sigma.addcmul_(s1, c["q"]).addcmul_(s0_, c["r"])
    fv.div_(torch.as_tensor(lens, dtype=model.dtype, device=model.device)[:, None])
    fv[:, :k].sub_(c["a_off"])
    return fv


def _encode_all(model: _Model, flat, lengths, power, l2, batch_size):
    """(S, K + 2KD) Fisher vectors, chunk by chunk over sets sorted by decreasing length."""
    k, d = model.k, model.d
    row_budget = min(batch_size or auto_batch_size(k, d), len(flat))
    set_cap = max(1, _STATS_BUDGET // (k * 2 * d))  # bounds the (m, K, 2D) statistics
    bufs = (
        torch.empty(row_budget, 2 * d, dtype=model.dtype, device=model.device),
        torch.empty(row_budget, k, dtype=model.dtype, device=model.device),
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(lengths), k + 2 * k * d), dtype=_NUMPY_DTYPES[model.dtype])
    i = 0
    while i < len(order):  # a loop over chunks of sets, not over sets
        m = max(1, min(row_budget // int(lengths[order[i]]), set_cap, len(order) - i))
        ids = order[i : i + m]
        fv = _encode_chunk(model, flat, starts[ids], lengths[ids], row_budget, bufs)
        normalize_(fv, power, l2)
        if not bool(torch.isfinite(fv.sum(1)).all()):  # a NaN/inf anywhere poisons the sum
            raise ValueError(
                "descriptors contain NaN or infinite values (in one of the sets "
                f"{sorted(ids.tolist())[:5]}...); clean them before encoding."
            )
        out[ids] = fv.cpu().numpy()
        i += m
    return out
