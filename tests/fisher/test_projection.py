"""Random projections: Li et al.'s sparse map, determinism, Kronecker structure, E‖Rᵀg‖² = ‖g‖²,
and Johnson–Lindenstrauss distance preservation on real per-example gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fisher_core.fisher.projection as proj
from fisher_core.fisher import fisher_scores
from fisher_core.fisher.projection import (
    GaussianProjection,
    KronProjection,
    ParamBlock,
    SparseProjection,
    kron_factors,
)

BLOCKS = [ParamBlock("w", (40, 30)), ParamBlock("b", (40,)), ParamBlock("v", (7, 3, 2, 2))]
P = 40 * 30 + 40 + 7 * 12


def test_sparse_map_matches_li_hastie_church(monkeypatch):
    monkeypatch.setattr(proj, "CHUNK_ROWS", 256)  # several chunks per block
    dim = 300
    R = SparseProjection(BLOCKS, dim, seed=1).matrix().numpy()
    s = math.sqrt(P)
    value = math.sqrt(s) / math.sqrt(dim)
    assert R.shape == (P, dim)
    np.testing.assert_allclose(np.unique(R), [-value, 0.0, value], rtol=1e-6)
    n = R.size
    nnz = np.count_nonzero(R)
    # Bernoulli(1/s) entries: the count is Binomial(n, 1/s); allow 5 standard deviations.
    assert abs(nnz - n / s) < 5 * math.sqrt(n / s * (1 - 1 / s))
    assert abs((R > 0).sum() - nnz / 2) < 5 * math.sqrt(nnz / 4)  # signs fair
    # Independence across rows: non-zeros per row follow Binomial(dim, 1/s).
    per_row = np.count_nonzero(R, axis=1)
    assert abs(per_row.var() - dim / s * (1 - 1 / s)) < 0.25 * dim / s


def test_sparse_gather_and_dense_paths_agree(monkeypatch):
    dense = SparseProjection(BLOCKS, 64, seed=4)
    g = torch.randn(3, P)
    z_dense = dense.project(g)
    assert dense.nbytes > P * 64 * 4  # small model: dense blocks cached
    monkeypatch.setattr(proj, "_DENSE_MAX_S", 0.0)
    sparse = SparseProjection(BLOCKS, 64, seed=4)
    torch.testing.assert_close(sparse.project(g), z_dense, rtol=1e-5, atol=1e-5)
    assert sparse.nbytes == 8 * sparse.nnz


def test_bernoulli_positions_are_an_exact_process():
    gen = torch.Generator().manual_seed(0)
    counts = [proj._bernoulli_positions(1000, 0.01, gen) for _ in range(400)]
    for c in counts[:10]:
        assert torch.all(c[1:] > c[:-1]) and c.min() >= 0 and c.max() < 1000
    sizes = np.array([c.numel() for c in counts])
    assert abs(sizes.mean() - 10) < 5 * math.sqrt(9.9 / 400)
    assert abs(sizes.var() - 9.9) < 3.0
    hits = torch.cat(counts)
    assert abs((hits < 500).float().mean().item() - 0.5) < 0.05  # uniform over positions


@pytest.mark.parametrize("cls", [SparseProjection, GaussianProjection, KronProjection])
def test_same_seed_same_map_different_seed_different(cls):
    blocks = [ParamBlock("w", (64, 40)), ParamBlock("b", (64,))]
    a = cls(blocks, 32, seed=7).matrix()
    torch.manual_seed(999)  # global RNG is never used
    torch.rand(10)
    b = cls(blocks, 32, seed=7).matrix()
    c = cls(blocks, 32, seed=8).matrix()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 0.1 * a.abs().max()


def test_gaussian_chunks_regenerate_identically(monkeypatch):
    cached = GaussianProjection(BLOCKS, 50, seed=3).matrix()
    monkeypatch.setattr(proj, "_CACHE_LIMIT", 0)
    monkeypatch.setattr(proj, "CHUNK_ROWS", 100)
    fresh = GaussianProjection(BLOCKS, 50, seed=3)
    assert fresh.nbytes == 0
    # Chunk boundaries change which seed makes which rows, but the statistics stay.
    R = fresh.matrix().numpy()
    np.testing.assert_allclose(R, fresh.matrix().numpy())
    assert abs(R.mean()) < 5 / math.sqrt(R.size) / math.sqrt(50)
    assert abs(R.var() * 50 - 1) < 0.05
    assert cached.shape == R.shape


def test_kron_block_is_a_kronecker_product():
    blocks = [ParamBlock("conv", (12, 4, 3, 3)), ParamBlock("bias", (12,))]
    p = KronProjection(blocks, 64, seed=2)
    r_out, r_in = p.factors[0]
    k1, k2 = kron_factors(12, 36, 64)
    assert (r_out.shape, r_in.shape) == ((12, k1), (36, k2)) and k1 * k2 == 64
    g = torch.randn(5, 12 * 36)
    out = torch.zeros(5, 64)
    p.accumulate(0, g, out)
    # vec(R_outᵀ G R_in) (row-major) = (R_out ⊗ R_in)ᵀ vec(G)
    kron = np.kron(r_out.numpy(), r_in.numpy())  # (12·36, k1·k2)
    np.testing.assert_allclose(out.numpy(), g.numpy() @ kron, rtol=1e-4, atol=1e-5)
    assert 0 not in p.factors or 1 not in p.factors  # the bias goes to the sparse part
    assert p.rest is not None and p.rest.n_params == 12


@pytest.mark.parametrize("cls", [SparseProjection, GaussianProjection, KronProjection])
def test_squared_norm_preserved_in_expectation(cls):
    blocks = [ParamBlock("w", (24, 20)), ParamBlock("b", (24,))]
    g = torch.randn(1, 504, generator=torch.Generator().manual_seed(0))
    g[0, :100] *= 4  # uneven mass
    ratios = np.array([
        (cls(blocks, 64, seed=s).project(g).norm() ** 2 / g.norm() ** 2).item()
        for s in range(150)
    ])
    # E‖Rᵀg‖² = ‖g‖²: the mean ratio is 1 up to 4 standard errors.
    assert abs(ratios.mean() - 1) < 4 * ratios.std() / math.sqrt(len(ratios))
    assert ratios.std() < 0.6


class JLNet(nn.Module):
    """Conv net whose first layer (32·16·3·3 = 4608 weights) is Kronecker-eligible at 2048."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(16, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 2, 1)

    def log_prob(self, x):
        h = torch.tanh(self.c1(x))
        return F.log_softmax(self.c2(h), 1)[:, 0].sum((1, 2))


@pytest.mark.parametrize("projection", ["sparse", "gaussian", "kron"])
def test_jl_pairwise_distances_of_real_gradients(projection):
    torch.manual_seed(0)
    model = JLNet()
    x = torch.randn(30, 16, 6, 6)
    exact = fisher_scores(model, x, dim=None, projection=None).astype(np.float64)
    z = fisher_scores(model, x, dim=2048, projection=projection, seed=11).astype(np.float64)
    iu = np.triu_indices(30, 1)
    d_true = np.linalg.norm(exact[:, None] - exact[None], axis=2)[iu]
    d_proj = np.linalg.norm(z[:, None] - z[None], axis=2)[iu]
    sq = (d_proj / d_true) ** 2
    if projection != "kron":
        # JL: at k = 2048 a fixed pair's squared-distance ratio has std ≈ √(2/k) ≈ 0.03
        # (a little more for the sparse map), so all 435 pairs fall well inside 1 ± 0.3.
        assert np.all(np.abs(np.sqrt(sq) - 1) < 0.3), (sq.min(), sq.max())
        assert abs(np.median(sq) - 1) < 0.05
        return
    # Kronecker map: for a rank-one difference G the squared ratio is a product of two
    # independent χ²_k/k variables, relative variance v = (1 + 2/k1)(1 + 2/k2) − 1, the worst
    # case (higher rank averages). Here the output-gradient side has rank ≈ 2 (two classes).
    k1, k2 = kron_factors(32, 16 * 9, 2048)
    sd = math.sqrt((1 + 2 / k1) * (1 + 2 / k2) - 1)
    # One draw of the map shifts all pairs together (they share the dominant layer), so the
    # spread is checked against the bound and the level only loosely.
    assert np.std(sq) < 1.3 * sd and abs(np.median(sq) - 1) < sd, (np.std(sq), sd)
    assert np.all(np.abs(sq - 1) < 5 * sd)


def test_sparse_projection_memory_for_ten_million_parameters():
    blocks = [ParamBlock("w", (2500, 4000))] + [ParamBlock(f"b{i}", (1000,)) for i in range(3)]
    p = SparseProjection(blocks, 512, seed=0)
    assert p.n_params == 10_003_000
    assert p.nbytes <= 64 << 20
    expected = p.n_params * 512 / p.s
    assert abs(p.nnz - expected) < 5 * math.sqrt(expected)
