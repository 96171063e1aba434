"""Posteriors and per-set statistics for the batched Fisher-vector encoder (:mod:`._fv_engine`).

One window of rows at a time (whole consecutive sets, or part of one long set):

1. E-step: base-2 log joint densities ``[x², x] @ W + b`` of every row under every component,
   one GEMM, always in full float32. On the CPU it runs as a 1×1 convolution, which PyTorch
   hands to oneDNN (AVX-512 kernels, ≈ 460 GFLOP/s on the 2-core AMD bench machine) rather
   than ``torch.mm``, which goes to MKL (≈ 200 GFLOP/s there: MKL's AVX2 path on non-Intel
   CPUs). Base 2 because ``exp2`` is ≈ 4× faster than ``exp`` in PyTorch on the CPU;
   log2(e) is folded into W and b.
2. Posteriors: 2^(l − max l) per row and the row sums, in place; γ is their ratio.
3. Statistics S0 = Σγ and Σγ [x², x] per (set, component):

   - *sparse* (``posterior_threshold`` τ > 0, CPU): only the pairs whose posterior exceeds
     τ times the row's largest. Most descriptors sit in one or two components, so there
     are ≈ 1–2 pairs per row instead of K; a compiled kernel (:mod:`._fv_kernels`) adds
     γ·[x², x] of each kept pair into its set's block, sets in parallel. When more than
     ``_DENSE_ABOVE`` of the posteriors pass (unclustered data: ≈ 2D multiply-adds per pair
     then cost more than the GEMM they replace), or on other devices, the dense path is
     used with the dropped posteriors set to zero: the same result either way.
   - *dense*: a batched GEMM ``γᵀ [x², x]`` over the sets of the window (zero-padded to a
     common length when their lengths differ).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Log2-ratios to the row maximum are clamped before exp2, as in ``_em.softmax_``: posteriors
# under 2^-87 (float32) are zero for every purpose and subnormal floats are slow on x86.
_EXP2_FLOOR = {torch.float32: -87.0, torch.float64: -288.0}
_DENSE_ABOVE = 1 / 16  # fraction of kept posteriors above which dense statistics win
_DENSITY_PROBE = 512  # rows of a window on which that fraction is judged


def gemm_precision(precision: str, device: torch.device):
    """Context for float32 GEMMs: TF32 allowed only for ``"tf32"``, and only on CUDA.

    ``torch.set_float32_matmul_precision`` is process-wide; it is set for the duration of the
    block and restored afterwards (CUDA only, the one place where it changes anything).
    """
    return _MatmulPrecision("high" if precision == "tf32" else "highest", device)


class _MatmulPrecision:
    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode, self.active, self.before = mode, device.type == "cuda", None

    def __enter__(self) -> None:
        if self.active:
            self.before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision(self.mode)

    def __exit__(self, *exc) -> None:
        if self.active:
            torch.set_float32_matmul_precision(self.before)


def conv_weight(w_mat: torch.Tensor) -> torch.Tensor | None:
    """(K, 2D, 1, 1) channels-last weight for the oneDNN E-step, or None where mm is used."""
    cpu_f32 = w_mat.device.type == "cpu" and w_mat.dtype == torch.float32
    if not (cpu_f32 and torch.backends.mkldnn.is_available()):
        return None
    k = w_mat.shape[1]
    return w_mat.T.reshape(k, -1, 1, 1).contiguous(memory_format=torch.channels_last)


def log2_joint(aug: torch.Tensor, w_mat, bias, weight4) -> torch.Tensor:
    """(n, K) base-2 log joint densities of the rows of ``aug`` (n, 2D), in full precision.

    ``weight4``: the 1×1-convolution weight from :func:`conv_weight` (CPU float32) or None.
    """
    n = aug.shape[0]
    if weight4 is None:
        return torch.addmm(bias, aug, w_mat)
    # [x², x] rows read as a (1, 2D, n, 1) image in channels-last memory: no copy
    image = aug.view(1, n, 1, aug.shape[1]).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight4, bias)  # (1, K, n, 1), channels-last memory
    return out.permute(0, 2, 3, 1).reshape(n, weight4.shape[0])  # (n, K), a view


def posterior_weights_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Base-2 log densities (n, K) → weights 2^(l − max l) in place, and their sums (n, 1).

    The posteriors are weights / sums; they are left undivided because the sparse
    statistics divide only the pairs they keep.
    """
    top = logits.amax(1, keepdim=True)  # (n, 1)
    logits.sub_(top).clamp_(min=_EXP2_FLOOR[logits.dtype]).exp2_()
    return logits, logits.sum(1, keepdim=True)


def statistics(weights, total, aug, lens: np.ndarray, tau: float,
               precision: str = "highest"):
    """S0 (m, K) and Σγ[x², x] (m, K, 2D) of the m consecutive sets of a window.

    ``weights`` (n, K) unnormalised posteriors γ / max_k γ and ``total`` (n, 1) their row
    sums (γ = weights / total, see :func:`posterior_weights_`), ``aug`` (n, 2D) the window's rows,
    set after set; ``lens`` (m,) rows of each set. A posterior counts as zero when its
    weight is at most ``tau``. ``precision``: of the dense statistics GEMM ("tf32": CUDA
    TF32, "bf16": bfloat16 operands). ``weights`` is overwritten.
    """
    if tau > 0 and weights.device.type == "cpu" and precision == "highest":
        out = _sparse_statistics(weights, total, aug, lens, tau)
        if out is not None:
            return out
    if tau > 0:  # weights are γ / max γ: drop those ≤ τ (masked_fill_ is 30× slower here)
        F.threshold_(weights, tau, 0.0)
    gamma = weights.div_(total)
    m, longest = len(lens), int(lens.max())
    if m * longest != gamma.shape[0]:  # ragged sets: zero-pad to (m, longest)
        gamma, aug = _padded(gamma, lens, longest), _padded(aug, lens, longest)
    gamma = gamma.view(m, longest, -1)  # (m, L, K)
    aug = aug.view(m, longest, -1)  # (m, L, 2D)
    if precision != "highest":
        return _reduced_statistics(gamma, aug, precision)
    return gamma.sum(1), torch.bmm(gamma.transpose(1, 2), aug)  # (m, K), (m, K, 2D)


def _round_tf32(x: torch.Tensor) -> torch.Tensor:
    """Float32 rounded to TF32's 10 explicit mantissa bits (to nearest even)."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF).view(torch.float32)


_ROUND = {"tf32": _round_tf32, "bf16": lambda x: x.bfloat16().float()}


def _reduced_statistics(gamma: torch.Tensor, aug: torch.Tensor, precision: str):
    """S0 and Σγ[x², x] with TF32 or bfloat16 GEMM operands, float32 accumulation.

    The σ block is S2·p + S1·q + S0·r, a cancellation when components sit far from the
    data, so operand rounding must not differ between S0, S1 and S2: γ is rounded once and
    used for all three, and [x², x] is split into a rounded part plus its float32 remainder
    (two GEMMs). On CUDA the GEMMs run in TF32 / bfloat16; elsewhere the same rounded
    operands go through float32 GEMMs (the accuracy of the mode, not its speed).
    """
    rounded = _ROUND[precision]
    gamma = rounded(gamma)  # (m, L, K)
    high = rounded(aug)  # (m, L, 2D)
    parts = (high, aug - high)
    g_t = gamma.transpose(1, 2)  # (m, K, L)
    if precision == "bf16" and gamma.device.type == "cuda":
        sxx = sum(_bf16_bmm(g_t, part) for part in parts)
    else:
        with gemm_precision(precision, gamma.device):
            sxx = sum(torch.bmm(g_t, part) for part in parts)
    return gamma.sum(1), sxx


def _bf16_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched GEMM of bfloat16-valued float32 operands in bfloat16, float32 result."""
    try:  # exact casts: the operands are bfloat16 values already
        return torch.bmm(a.bfloat16(), b.bfloat16(), out_dtype=torch.float32)
    except torch.cuda.OutOfMemoryError:
        raise
    except (TypeError, NotImplementedError, RuntimeError):
        # a torch without out_dtype for this GPU: a float32 GEMM of the same values
        return torch.bmm(a, b)


def _padded(rows: torch.Tensor, lens: np.ndarray, longest: int) -> torch.Tensor:
    """(n, c) rows of consecutive sets → (m·longest, c), each set zero-padded."""
    lens_t = torch.as_tensor(lens, device=rows.device)
    keep = torch.arange(longest, device=rows.device)[None, :] < lens_t[:, None]  # (m, L)
    out = rows.new_zeros(len(lens), longest, rows.shape[1])
    out[keep] = rows  # boolean mask order is row-major: set after set
    return out.view(-1, rows.shape[1])


def sparse_inputs(weights, total, tau: float, precision: str = "highest"):
    """``(weights, totals)`` as NumPy arrays when the sparse path applies, else None.

    It applies on the CPU, in full precision, with τ > 0, when every row is finite (NaN/inf
    rows go the dense way, which carries them into the vectors) and when at most
    ``_DENSE_ABOVE`` of the posteriors of the window's first rows pass (unclustered data:
    the dense GEMM is then cheaper than ≈ 2D multiply-adds per kept pair).
    """
    if not (tau > 0 and weights.device.type == "cpu" and precision == "highest"):
        return None
    e, z = weights.numpy(), total.numpy()  # (n, K), (n, 1)
    if not np.isfinite(z).all():
        return None
    probe = e[:_DENSITY_PROBE]
    if np.count_nonzero(probe > tau) > _DENSE_ABOVE * probe.size:
        return None
    return e, z


def _sparse_statistics(weights, total, aug, lens: np.ndarray, tau: float):
    """Statistics from the (row, component) pairs with γ > τ (:mod:`._fv_kernels`); None
    when the sparse path does not apply (:func:`sparse_inputs`)."""
    found = sparse_inputs(weights, total, tau)
    if found is None:
        return None
    from ._fv_kernels import sparse_set_statistics  # imports numba: only when needed

    return sparse_set_statistics(*found, aug.numpy(), lens, tau)
