"""PCA/UMAP views and Fisher-kernel neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.explore import (
    DegenerateEmbeddingError,
    kernel_neighbors,
    neighbor_scores,
    pca_embed,
    umap_embed,
)


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
    ours = pca_embed(x, 2)
    ref = PCA(2).fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-4)


def test_umap_separates_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (150, 20)), rng.normal(8, 1, (150, 20))])
    y = np.repeat([0, 1], 150)
    xy = umap_embed(x.astype(np.float32), n_epochs=50)
    assert xy.shape == (300, 2)
    # each point's nearest neighbour in the 2-D view is from its own cluster
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.98
    np.testing.assert_array_equal(xy, umap_embed(x.astype(np.float32), n_epochs=50))


def test_umap_cosine_metric_sees_directions_not_lengths():
    """Two clusters of directions with lengths spread over 1–50: the cosine layout
    separates the directions whatever the lengths."""
    rng = np.random.default_rng(0)
    dirs = np.stack([np.r_[1.0, np.zeros(9)], np.r_[0.0, 1.0, np.zeros(8)]])
    y = np.repeat([0, 1], 100)
    x = (dirs[y] + 0.15 * rng.normal(size=(200, 10))) * rng.uniform(1, 50, (200, 1))
    def agreement(metric):
        xy = umap_embed(x.astype(np.float32), metric=metric, n_epochs=50, pca_dims=None)
        d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return (y[d.argmin(1)] == y).mean()

    assert agreement("cosine") > 0.95
    with pytest.raises(ValueError, match="metric must be 'euclidean' or 'cosine'"):
        umap_embed(x, metric="manhattan")
    with pytest.raises(ValueError, match=r"min_dist must be in \[0, 1\)"):
        umap_embed(x, min_dist=1.0)
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 2"):
        umap_embed(x, n_neighbors=1)


def test_kernel_neighbors_against_loop():
    x = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    idx, sims = kernel_neighbors(x, 7, k=5)
    ref = sorted(((float(x[7] @ x[j]), j) for j in range(40) if j != 7), reverse=True)[:5]
    assert idx.tolist() == [j for _, j in ref]
    np.testing.assert_allclose(sims, [s for s, _ in ref], rtol=1e-5)
    with pytest.raises(IndexError, match="index must be in \\[0, 40\\)"):
        kernel_neighbors(x, 40)


def test_identical_rows_are_refused_not_laid_out_as_nan():
    """Issue 14, defect 8: UMAP returned NaN coordinates, silently, for identical rows
    (the Fisher scores of constant images)."""
    same = np.ones((40, 10), np.float32)
    for layout in (umap_embed, pca_embed):
        with pytest.raises(DegenerateEmbeddingError, match="all 40 vectors are identical"):
            layout(same)
    bad = np.random.default_rng(0).normal(size=(40, 10)).astype(np.float32)
    bad[[3, 9]] = np.nan
    with pytest.raises(DegenerateEmbeddingError, match=r"2 of 40 vectors hold NaN.*\(rows 3, 9\)"):
        umap_embed(bad)


def test_duplicate_groups_and_constant_columns_still_get_finite_layouts():
    rng = np.random.default_rng(0)
    groups = np.repeat(rng.normal(size=(4, 10)), 10, axis=0).astype(np.float32)  # 4 points
    tiny = (1e-20 * rng.normal(size=(40, 10))).astype(np.float32)  # tiny but not identical
    cols = np.c_[rng.normal(size=(40, 5)), np.zeros((40, 5))].astype(np.float32)
    for x in (groups, tiny, cols):
        xy = umap_embed(x, n_epochs=30)
        assert np.isfinite(xy).all()
        assert np.isfinite(pca_embed(x)).all()


def test_neighbor_scores_are_scale_free_and_match_a_loop():
    """Issue 15: kernel values were not comparable between spaces (0.82 vs 8,563)."""
    x = np.random.default_rng(2).normal(size=(30, 4)).astype(np.float32)
    small, big = neighbor_scores(x, 5, k=4), neighbor_scores(1000 * x, 5, k=4)
    np.testing.assert_array_equal(small["index"], big["index"])
    np.testing.assert_allclose(small["cosine"], big["cosine"], rtol=1e-5)
    np.testing.assert_allclose(small["percentile"], big["percentile"])
    np.testing.assert_allclose(big["kernel"], 1e6 * small["kernel"], rtol=1e-4)
    for j, c, p in zip(small["index"], small["cosine"], small["percentile"], strict=True):
        ref_cos = x[5] @ x[j] / (np.linalg.norm(x[5]) * np.linalg.norm(x[j]))
        assert c == pytest.approx(ref_cos, rel=1e-5)
        lower = sum(float(x[5] @ x[i]) < float(x[5] @ x[j]) for i in range(30) if i != 5)
        assert p == pytest.approx(100 * lower / 29)
    assert small["percentile"][0] == pytest.approx(100 * 28 / 29)  # the nearest beats all
