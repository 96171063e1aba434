"""The batched Fisher-vector encoder behind :func:`fisher_core.fisher.vectors.fisher_vector`.

Everything reduces to three statistics per set, S0 = Σγ, S1 = Σγx, S2 = Σγx², and
    Σ γ (x − μ) = S1 − μ S0,     Σ γ (x − μ)² = S2 − 2 μ S1 + μ² S0.
Sets are taken in order, in windows of consecutive rows (whole sets up to a row budget, or a
slice of one longer set): rows are copied once into a [x², x] block on the working device,
posteriors come from one GEMM, the per-set statistics from a sparse or batched product
(:mod:`._fv_stats`), then each vector is three fused multiply-adds and the normalisation.
There is no Python loop over sets or components and no sorting; sets of different lengths
are zero-padded only for the dense statistics.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ._em import gemm_coefficients
from ._fv_stats import (
    conv_weight,
    gemm_precision,
    log2_joint,
    posterior_weights_,
    sparse_inputs,
    statistics,
)
from .gmm import gmm_parameters

_L2_FLOOR = 1e-12
_STATS_BUDGET = 1 << 22  # elements of one (sets, K, 2D) statistics block
_ROW_BLOCK = {"cpu": 1 << 20, "cuda": 1 << 24}  # elements of one (rows, max(K, 2D)) block
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_LOG2E = 1.4426950408889634


def normalize_(z: torch.Tensor, power: float | None, l2: bool) -> torch.Tensor:
    """In place: signed power |z|^p · sign(z), then L2 with a 1e-12 floor (zeros stay zero)."""
    if power is not None:
        magnitude = z.abs()
        if power == 0.5:  # √a = a · a^(−1/2): torch's CPU sqrt is 6× slower on zeros, which
            # sparse statistics make frequent; a = 0 stays 0 (the floor keeps a^(−1/2) finite)
            magnitude.mul_(magnitude.clamp(min=torch.finfo(z.dtype).tiny).rsqrt_())
        else:
            magnitude.pow_(power)
        torch.copysign(magnitude, z, out=z)
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
    ``w_mat``/``bias`` give base-2 log joint densities (log2(e) folded in).
    """

    def __init__(self, gmm, normalization: str, dtype: torch.dtype, device: torch.device,
                 precision: str = "highest"):
        w, mu, var = gmm_parameters(gmm)
        centre = (w[:, None] * mu).sum(0)  # (D,)
        spread = (w[:, None] * (var + (mu - centre) ** 2)).sum()
        # Centring keeps the float32 x² expansion accurate; it is fused with the copy of the
        # rows, and skipped when the data sit within their own spread of the origin.
        needed = float(centre @ centre) > float(spread)
        self.shift_t = torch.as_tensor(centre, dtype=dtype, device=device) if needed else None
        to = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        w_t, mu_t, var_t = to(w), to(mu - centre if needed else mu), to(var)
        w_mat, bias = gemm_coefficients(w_t, mu_t, var_t, torch.float64)
        self.w_mat, self.bias = (w_mat * _LOG2E).to(dtype), (bias * _LOG2E).to(dtype)
        self.weight4 = conv_weight(self.w_mat)  # CPU float32: the oneDNN E-step
        self.precision = precision
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


class _Loader:
    """Copies windows of rows (NumPy or torch, any device) into one [x², x] device block.

    The copy casts and centres in the same pass. NumPy rows bound for a GPU go through one
    pinned host buffer: one host-to-device transfer per window, and the buffer is reused
    only once the previous transfer has finished.
    """

    def __init__(self, model: _Model, rows: int, numpy_source: bool) -> None:
        self.model = model
        self.aug = torch.empty(rows, 2 * model.d, dtype=model.dtype, device=model.device)
        self.stage, self.sent = None, None
        if numpy_source and model.device.type == "cuda":
            self.stage = torch.empty(rows, model.d, dtype=model.dtype, pin_memory=True)

    def __call__(self, rows) -> torch.Tensor:
        n, d, model = rows.shape[0], self.model.d, self.model
        aug = self.aug[:n]  # (n, 2D)
        x = aug[:, d:]
        if isinstance(rows, np.ndarray):
            with warnings.catch_warnings():
                # read-only inputs are only read here; torch warns about them regardless
                warnings.filterwarnings("ignore", "The given NumPy array is not writable")
                rows = torch.from_numpy(rows)
        if self.stage is not None:
            if self.sent is not None:
                self.sent.synchronize()  # the previous window has left the buffer
            rows = self.stage[:n].copy_(rows)
        if model.shift_t is not None and rows.device == x.device:
            torch.sub(rows, model.shift_t, out=x)  # cast and centre in one pass
        else:
            x.copy_(rows, non_blocking=self.stage is not None)
            if self.stage is not None:
                self.sent = torch.cuda.Event()
                self.sent.record()
            if model.shift_t is not None:
                x.sub_(model.shift_t)
        torch.mul(x, x, out=aug[:, :d])
        return aug


def _window_statistics(model: _Model, load: _Loader, rows, lens: np.ndarray, tau: float):
    """S0 (m, K) and Σγ[x², x] (m, K, 2D) of one window of rows of m consecutive sets."""
    aug = load(rows)  # (n, 2D)
    logits = log2_joint(aug, model.w_mat, model.bias, model.weight4)  # (n, K)
    weights, total = posterior_weights_(logits)
    return statistics(weights, total, aug, lens, tau, model.precision)


def _vectors(model: _Model, s0, sxx, lens, out: torch.Tensor, l2: bool) -> torch.Tensor:
    """(m, K + 2KD) vectors into ``out`` from S0 (m, K) and [S2, S1] (m, K, 2D).

    See :class:`_Model`. With a final L2 normalisation the per-set 1/N factor cancels (power
    normalisation is homogeneous), so it is applied only to the α offset.
    """
    m, k, d, c = s0.shape[0], model.k, model.d, model.coef
    s2, s1, s0_ = sxx[..., :d], sxx[..., d:], s0[..., None]  # (m, K, D), (m, K, D), (m, K, 1)
    n = torch.as_tensor(lens, dtype=model.dtype, device=model.device)[:, None]  # (m, 1)
    if l2:
        torch.mul(s0, c["a"], out=out[:, :k]).sub_(n * c["a_off"])
    else:
        torch.mul(s0, c["a"], out=out[:, :k])
    torch.mul(s1, c["e"], out=out[:, k : k + k * d].view(m, k, d)).addcmul_(s0_, c["f"])
    sigma = torch.mul(s2, c["p"], out=out[:, k + k * d :].view(m, k, d))
    sigma.addcmul_(s1, c["q"]).addcmul_(s0_, c["r"])
    if not l2:
        out.div_(n)
        out[:, :k].sub_(c["a_off"])
    return out


def _groups(lengths: np.ndarray, row_budget: int, set_cap: int):
    """(first, stop) ranges of consecutive sets of at most ``row_budget`` rows in all."""
    ends = np.cumsum(lengths)
    first = 0
    while first < len(lengths):  # a loop over chunks of sets, not over sets
        base = ends[first - 1] if first else 0
        stop = int(np.searchsorted(ends, base + row_budget, side="right"))
        stop = min(max(stop, first + 1), first + set_cap)
        yield first, stop
        first = stop


def _output(model: _Model, n_sets: int, dim: int, kind: str) -> torch.Tensor:
    """The (S, dim) result tensor: NumPy-backed, pinned host memory, or on the device."""
    if kind == "torch":
        return torch.empty(n_sets, dim, dtype=model.dtype, device=model.device)
    if model.device.type == "cuda":
        return torch.empty(n_sets, dim, dtype=model.dtype, pin_memory=True)
    return torch.from_numpy(np.empty((n_sets, dim), dtype=_NUMPY_DTYPES[model.dtype]))


def _encode_all(model: _Model, flat, lengths: np.ndarray, power, l2, batch_size, *,
                tau: float = 0.0, output: str = "numpy"):
    """(S, K + 2KD) Fisher vectors of the sets of ``flat`` (T, D), window by window.

    ``flat``: NumPy array or tensor (any device); ``lengths`` (S,) rows per set, in order;
    ``tau``: posterior threshold (0: dense and exact); ``output``: "numpy" or "torch".
    """
    k, d = model.k, model.d
    block = _ROW_BLOCK.get(model.device.type, _ROW_BLOCK["cpu"])
    row_budget = max(1, min(batch_size or max(256, block // max(k, 2 * d)), len(flat)))
    set_cap = max(1, _STATS_BUDGET // (k * 2 * d))  # bounds the (m, K, 2D) statistics
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    load = _Loader(model, row_budget, isinstance(flat, np.ndarray))
    out = _output(model, len(lengths), k + 2 * k * d, output)
    staged = out.device != model.device
    finite = torch.empty(len(lengths), dtype=torch.bool, device=model.device)
    # the compiled path for whole sets: CPU, sparse posteriors, power None or √
    fused = (tau > 0 and model.device.type == "cpu" and model.precision == "highest"
             and power in (None, 0.5))
    with gemm_precision("highest", model.device):  # the E-step is always full float32
        for first, stop in _groups(lengths, row_budget, set_cap):
            lens = lengths[first:stop]
            row0, total = int(starts[first]), int(lens.sum())
            target = out[first:stop] if not staged else torch.empty(
                stop - first, out.shape[1], dtype=model.dtype, device=model.device)
            if total <= row_budget and not staged and fused:  # whole sets in one window
                aug = load(flat[row0 : row0 + total])
                weights, sums = posterior_weights_(
                    log2_joint(aug, model.w_mat, model.bias, model.weight4))
                found = sparse_inputs(weights, sums, tau, model.precision)
                if found is not None:  # statistics, vectors and norms in one compiled pass
                    from ._fv_kernels import sparse_set_vectors  # imports numba: when needed

                    finite[first:stop] = torch.from_numpy(sparse_set_vectors(
                        *found, aug.numpy(), lens, tau, model.coef, power, l2,
                        target.numpy()))
                    continue
                s0, sxx = statistics(weights, sums, aug, lens, tau, model.precision)
            else:
                s0 = sxx = None
                for t0 in range(0, total, row_budget):  # > 1 window only for one long set
                    span = min(row_budget, total - t0)
                    rows = flat[row0 + t0 : row0 + t0 + span]
                    a, b = _window_statistics(model, load, rows, lens if span == total
                                              else np.array([span]), tau)
                    s0, sxx = (a, b) if s0 is None else (s0 + a, sxx + b)
            fv = normalize_(_vectors(model, s0, sxx, lens, target, l2), power, l2)
            finite[first:stop] = torch.isfinite(fv.sum(1))  # a NaN/inf poisons the sum
            if staged:
                out[first:stop].copy_(fv, non_blocking=True)
    if not bool(finite.all()):  # one device synchronisation, at the end
        bad = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"descriptors contain NaN or infinite values (set {bad} is the first); clean them "
            "before encoding."
        )
    if staged and model.device.type == "cuda":
        torch.cuda.synchronize(model.device)  # the last copies into pinned memory
    return out.numpy() if output == "numpy" else out
