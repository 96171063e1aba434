"""Johnson–Lindenstrauss projections of parameter-space vectors, never materialised whole.

A projection maps a flattened parameter-space vector ``g`` (length ``P``, the selected
parameters concatenated in ``named_parameters()`` order) to ``z = Rᵀ g`` of length ``dim``.
``R`` (P × dim) is split into one block per parameter, ``R_k`` (numel_k × dim), so a
gradient can be projected one parameter at a time and summed: ``z = Σ_k R_kᵀ g_k``. Every
map here satisfies ``E[‖Rᵀ g‖²] = ‖g‖²``.

Randomness comes from CPU ``torch.Generator`` objects seeded per ``(seed, stream, block,
chunk)`` through NumPy's ``SeedSequence``, never from global or CUDA RNG, so one seed gives
the same map on every run and machine.

- :class:`SparseProjection`: very sparse random projection (Li, Hastie & Church 2006).
  Entries ``±√s`` with probability ``1/(2s)`` each and 0 otherwise, ``s = √P``, scaled by
  ``1/√dim``. Only the non-zeros are stored (int32 row and column, split by sign: 8 bytes
  each); a 10⁷-parameter model at ``dim = 512`` holds ≈ 1.6·10⁶ of them (≈ 13 MB).
- :class:`GaussianProjection`: dense ``N(0, 1/dim)`` entries, regenerated per chunk of 2¹⁶
  rows (or cached when the whole map is ≤ 64 MB): the slow exact-JL reference.
- :class:`KronProjection`: Kronecker-factored map for weight matrices, see its docstring.
- :class:`IdentityProjection`: no projection (exact scores, ``dim = P``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "PROJECTIONS",
    "GaussianProjection",
    "IdentityProjection",
    "KronProjection",
    "ParamBlock",
    "Projection",
    "SparseProjection",
    "make_projection",
]

CHUNK_ROWS = 1 << 16  # parameter rows generated per chunk
_CACHE_LIMIT = 64 << 20  # bytes a dense Gaussian map may keep cached
_DENSE_BUDGET = 32 << 20  # bytes of dense blocks a sparse map may cache for speed
_DENSE_MAX_S = 512.0  # above this s = √P gathering the non-zeros beats a dense product
# Stream ids keep the random numbers of different maps (and factors) independent.
_SPARSE, _GAUSS, _KRON_OUT, _KRON_IN = 1, 2, 3, 4


@dataclass(frozen=True)
class ParamBlock:
    """One parameter's place in the flattened parameter vector.

    Parameters
    ----------
    name : str
        Parameter name, as in ``model.named_parameters()``.
    shape : tuple of int
        Parameter shape.
    """

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _generator(seed: int, *key: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *key)``; identical on every machine."""
    words = np.random.SeedSequence([int(seed), *map(int, key)]).generate_state(2, np.uint32)
    gen = torch.Generator(device="cpu")
    gen.manual_seed((int(words[0]) << 31) | (int(words[1]) >> 1))  # < 2**63
    return gen


class Projection:
    """Base class: a linear map from the flattened parameter vector to ``dim`` numbers.

    Parameters
    ----------
    blocks : sequence of ParamBlock
        The parameters, in the order they are concatenated.
    dim : int
        Output dimension.
    seed : int, default=0
        Seed of the random map.
    """

    kind = "base"

    def __init__(self, blocks: Sequence[ParamBlock], dim: int, *, seed: int = 0):
        self.blocks = tuple(blocks)
        self.dim = int(dim)
        self.seed = int(seed)
        sizes = [b.numel for b in self.blocks]
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)]))
        self.n_params = self.offsets[-1]
        self.device = torch.device("cpu")

    def accumulate(self, k: int, g: torch.Tensor, out: torch.Tensor) -> None:
        """Add ``R_kᵀ g`` for each row of ``g`` into ``out``.

        Parameters
        ----------
        k : int
            Block (parameter) index.
        g : Tensor of shape (B, numel_k)
            Per-example gradients of parameter ``k``, flattened.
        out : Tensor of shape (B, dim)
            Accumulator, updated in place.
        """
        raise NotImplementedError

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """Project flattened vectors: (B, P) -> (B, dim)."""
        out = g.new_zeros(g.shape[0], self.dim)
        for k in range(len(self.blocks)):
            self.accumulate(k, g[:, self.offsets[k] : self.offsets[k + 1]], out)
        return out

    def matrix(self) -> torch.Tensor:
        """The whole map ``R`` (P × dim), materialised: only for small models and tests."""
        return self.project(torch.eye(self.n_params, device=self.device))

    def to(self, device: torch.device | str) -> Projection:
        """Move the stored tensors to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        return self

    @property
    def nbytes(self) -> int:
        """Bytes held by the map's stored tensors."""
        return 0


class IdentityProjection(Projection):
    """No projection: the output is the flattened gradient itself (``dim = P``)."""

    kind = "identity"

    def __init__(self, blocks: Sequence[ParamBlock], *, seed: int = 0):
        super().__init__(blocks, sum(b.numel for b in blocks), seed=seed)

    def accumulate(self, k: int, g: torch.Tensor, out: torch.Tensor) -> None:
        out[:, self.offsets[k] : self.offsets[k + 1]] += g


class SparseProjection(Projection):
    """Very sparse random projection (Li, Hastie & Church 2006), stored as its non-zeros.

    Entry ``R[r, j]`` is ``+√(s/dim)`` or ``−√(s/dim)`` with probability ``1/(2s)`` each and
    0 otherwise, with ``s = √P`` (``P`` = total number of parameters), so
    ``E[R[r, j]²] = 1/dim`` and ``E[‖Rᵀ g‖²] = ‖g‖²``. Positions of the non-zeros are drawn
    exactly as a Bernoulli(1/s) process over the row-major entries of each chunk of
    ``CHUNK_ROWS`` rows, by cumulating geometric gaps (cost ∝ number of non-zeros, not P·dim).

    Applying the map gathers the non-zeros; for small models (``s ≤ 512``, i.e. P ≲ 2.6·10⁵)
    a dense copy of each block is cached instead, up to 32 MB in all, because one matrix
    product then beats gathering ``P·dim/s`` scattered entries.
    """

    kind = "sparse"

    def __init__(self, blocks: Sequence[ParamBlock], dim: int, *, seed: int = 0):
        super().__init__(blocks, dim, seed=seed)
        self.s = math.sqrt(max(self.n_params, 1))
        self.value = math.sqrt(self.s / self.dim)
        self._pos: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._neg: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, block in enumerate(self.blocks):
            rows, cols, signs = self._generate_block(k, block.numel)
            plus = signs > 0
            # int32 indices, split by sign: 8 bytes per non-zero and no value array.
            self._pos.append((rows[plus].to(torch.int32), cols[plus].to(torch.int32)))
            self._neg.append((rows[~plus].to(torch.int32), cols[~plus].to(torch.int32)))
        self._dense: dict[int, torch.Tensor | None] = {}

    def _dense_block(self, k: int) -> torch.Tensor | None:
        if k not in self._dense:
            used = sum(r.numel() * 4 for r in self._dense.values() if r is not None)
            size = self.blocks[k].numel * self.dim * 4
            if self.s > _DENSE_MAX_S or used + size > _DENSE_BUDGET:
                self._dense[k] = None
            else:
                r = torch.zeros(self.blocks[k].numel, self.dim, device=self.device)
                for (rows, cols), v in ((self._pos[k], self.value), (self._neg[k], -self.value)):
                    r[rows.long(), cols.long()] = v  # positions are distinct
                self._dense[k] = r
        return self._dense[k]

    def _generate_block(self, k: int, numel: int) -> tuple[torch.Tensor, ...]:
        parts = []
        for c, start in enumerate(range(0, numel, CHUNK_ROWS)):
            n_rows = min(CHUNK_ROWS, numel - start)
            gen = _generator(self.seed, _SPARSE, k, c)
            pos = _bernoulli_positions(n_rows * self.dim, 1.0 / self.s, gen)
            signs = torch.randint(0, 2, (pos.numel(),), generator=gen, dtype=torch.int8) * 2 - 1
            parts.append((pos // self.dim + start, pos % self.dim, signs))
        if not parts:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty, empty.to(torch.int8)
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))

    def accumulate(self, k: int, g: torch.Tensor, out: torch.Tensor) -> None:
        dense = self._dense_block(k)
        if dense is not None:
            out.addmm_(g, dense)
            return
        (rp, cp), (rn, cn) = self._pos[k], self._neg[k]
        out.index_add_(1, cp, g.index_select(1, rp), alpha=self.value)
        out.index_add_(1, cn, g.index_select(1, rn), alpha=-self.value)

    def to(self, device: torch.device | str) -> SparseProjection:
        super().to(device)
        self._pos = [(r.to(device), c.to(device)) for r, c in self._pos]
        self._neg = [(r.to(device), c.to(device)) for r, c in self._neg]
        self._dense = {}
        return self

    @property
    def nbytes(self) -> int:
        stored = sum(t.numel() * t.element_size() for pair in self._pos + self._neg for t in pair)
        return stored + sum(r.numel() * 4 for r in self._dense.values() if r is not None)

    @property
    def nnz(self) -> int:
        """Number of non-zero entries of ``R``."""
        return sum(r.numel() for r, _ in self._pos + self._neg)


def _bernoulli_positions(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices in ``[0, n)`` where i.i.d. Bernoulli(p) trials succeed.

    The gaps between successes of a Bernoulli process are i.i.d. Geometric(p) (support 1, 2,
    …), so cumulating geometric draws gives the exact process in O(n·p) work.
    """
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    if p >= 1.0:
        return torch.arange(n, dtype=torch.int64)
    pieces, last = [], -1
    mean = n * p
    while True:
        m = int(mean + 6.0 * math.sqrt(mean) + 16)
        gaps = torch.empty(m, dtype=torch.float64).geometric_(p, generator=gen)
        pos = last + torch.cumsum(gaps.to(torch.int64), 0)
        pieces.append(pos[pos < n])
        if pos[-1] >= n:
            return torch.cat(pieces)
        last = int(pos[-1])
        mean = (n - last) * p


class GaussianProjection(Projection):
    """Dense Gaussian projection, entries i.i.d. ``N(0, 1/dim)``.

    Each chunk of ``CHUNK_ROWS`` rows is regenerated from its own seed whenever it is needed
    (slow, exact-JL reference); the map is cached when it fits in 64 MB.
    """

    kind = "gaussian"

    def __init__(self, blocks: Sequence[ParamBlock], dim: int, *, seed: int = 0):
        super().__init__(blocks, dim, seed=seed)
        self._cached = self.n_params * self.dim * 4 <= _CACHE_LIMIT
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def _chunk(self, k: int, c: int, n_rows: int) -> torch.Tensor:
        key = (k, c)
        if key in self._cache:
            return self._cache[key]
        gen = _generator(self.seed, _GAUSS, k, c)
        r = torch.randn(n_rows, self.dim, generator=gen) / math.sqrt(self.dim)
        r = r.to(self.device)
        if self._cached:
            self._cache[key] = r
        return r

    def accumulate(self, k: int, g: torch.Tensor, out: torch.Tensor) -> None:
        numel = self.blocks[k].numel
        for c, start in enumerate(range(0, numel, CHUNK_ROWS)):
            n_rows = min(CHUNK_ROWS, numel - start)
            r = self._chunk(k, c, n_rows).to(g.dtype)
            out.addmm_(g[:, start : start + n_rows], r)

    def to(self, device: torch.device | str) -> GaussianProjection:
        super().to(device)
        self._cache = {}
        return self

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._cache.values())


def kron_factors(out_features: int, in_features: int, dim: int) -> tuple[int, int]:
    """Sizes ``(k1, k2)`` with ``k1·k2 = dim`` for a Kronecker-factored block.

    The distortion of a rank-one gradient grows like ``2/k1 + 2/k2``, smallest at
    ``k1 = k2 = √dim``; the cost per position, ``out·k1 + K·k2``, prefers
    ``k1 ≈ √(dim·K/out)``. The target is the latter clamped to ``[√dim/√2, √2·√dim]`` (at most
    a factor 2 from balanced; the cost then stays within ≈ 1.5× of its optimum), and ``k1`` is
    the divisor of ``dim`` closest to it in log scale (ties: the smaller).
    """
    target = math.sqrt(dim * in_features / max(out_features, 1))
    root = math.sqrt(dim)
    target = min(max(target, root / math.sqrt(2.0)), root * math.sqrt(2.0))
    divisors = [d for d in range(1, dim + 1) if dim % d == 0]
    k1 = min(divisors, key=lambda d: (round(abs(math.log(d / target)), 9), d))
    return k1, dim // k1


class KronProjection(Projection):
    """Kronecker-factored JL map for weight matrices, sparse map for everything else.

    A weight of shape ``(out, in, *kernel)`` is read as a matrix ``G`` (out × K),
    ``K = in·∏kernel``. Its block of ``R`` is ``R_in ⊗ R_out``: ``z = vec(R_outᵀ G R_in)``
    (row-major, ``k1 × k2 = dim``), with ``R_out`` (out × k1) i.i.d. ``N(0, 1/k1)`` and
    ``R_in`` (K × k2) i.i.d. ``N(0, 1/k2)``. Then ``E[‖R_outᵀ G R_in‖²] = tr(Gᵀ E[R_out R_outᵀ]
    G E[R_in R_inᵀ]) = ‖G‖²``, and for a per-example gradient ``G = Σ_p δ(p) a(p)ᵀ`` (output
    gradient times layer input, summed over positions ``p``) the projection is
    ``Σ_p (R_outᵀ δ(p)) (R_inᵀ a(p))ᵀ``, computable without ever forming ``G``.

    Every weight block is mapped onto all ``dim`` outputs and the blocks are summed, so the
    whole map stays one JL map with ``E[‖z‖²] = ‖g‖²`` (blocks are independent with zero
    mean). ``(k1, k2)`` per block come from :func:`kron_factors`. Blocks with ``ndim < 2``
    (biases, norms) or fewer than ``dim`` entries go through one
    :class:`SparseProjection` over those parameters alone. The factored map is less uniform
    than an i.i.d. one: for a rank-one ``G`` (a Linear layer seeing one input vector) the
    relative variance of ``‖z‖²`` is ≈ ``2/k1 + 2/k2`` instead of ``2/dim``.
    """

    kind = "kron"

    def __init__(self, blocks: Sequence[ParamBlock], dim: int, *, seed: int = 0):
        super().__init__(blocks, dim, seed=seed)
        self.factors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rest = []
        self._rest_index: dict[int, int] = {}
        for k, block in enumerate(self.blocks):
            # A weight (out, in, *kernel) read as an out × K matrix, K = in·∏kernel.
            out_f, in_f = (block.shape[0], block.numel // block.shape[0]) if (
                len(block.shape) >= 2 and block.numel) else (1, block.numel)
            if block.numel >= self.dim and min(out_f, in_f) >= 2:
                k1, k2 = kron_factors(out_f, in_f, self.dim)
                r_out = torch.randn(out_f, k1, generator=_generator(seed, _KRON_OUT, k))
                r_in = torch.randn(in_f, k2, generator=_generator(seed, _KRON_IN, k))
                self.factors[k] = (r_out / math.sqrt(k1), r_in / math.sqrt(k2))
            else:
                self._rest_index[k] = len(rest)
                rest.append(block)
        self.rest = SparseProjection(rest, self.dim, seed=seed) if rest else None

    def accumulate(self, k: int, g: torch.Tensor, out: torch.Tensor) -> None:
        if k in self.factors:
            r_out, r_in = self.factors[k]
            G = g.reshape(g.shape[0], r_out.shape[0], r_in.shape[0])  # (B, out, K)
            z = torch.matmul(r_out.t(), torch.matmul(G, r_in))  # (B, k1, k2)
            out += z.reshape(g.shape[0], self.dim)
        else:
            self.rest.accumulate(self._rest_index[k], g, out)

    def to(self, device: torch.device | str) -> KronProjection:
        super().to(device)
        self.factors = {k: (a.to(device), b.to(device)) for k, (a, b) in self.factors.items()}
        if self.rest is not None:
            self.rest.to(device)
        return self

    @property
    def nbytes(self) -> int:
        own = sum(a.numel() * 4 + b.numel() * 4 for a, b in self.factors.values())
        return own + (self.rest.nbytes if self.rest is not None else 0)


PROJECTIONS = {
    "sparse": SparseProjection,
    "gaussian": GaussianProjection,
    "kron": KronProjection,
}


def make_projection(
    name: str | None, blocks: Sequence[ParamBlock], dim: int | None, *, seed: int = 0
) -> Projection:
    """Build the projection called ``name`` (``None`` with ``dim=None``: identity).

    Parameters
    ----------
    name : {"sparse", "gaussian", "kron"} or None
        Projection family.
    blocks : sequence of ParamBlock
        Parameters in concatenation order.
    dim : int or None
        Output dimension; ``None`` (with ``name=None``) keeps the exact gradient.
    seed : int, default=0
        Seed of the map.

    Returns
    -------
    Projection
    """
    if name is None:
        return IdentityProjection(blocks, seed=seed)
    return PROJECTIONS[name](blocks, dim, seed=seed)
